/*
 * win/pipesec.h - the listener pipe's security descriptor (win/pipesec.c), included
 * by win/listener.c only.
 */
#ifndef SB_WIN_PIPESEC_H
#define SB_WIN_PIPESEC_H

#include <windows.h>

/* Embedded in the listener, zeroed; owned by it until sb__pipesec_destroy. */
typedef struct {
  PSECURITY_DESCRIPTOR parsed; /* the SDDL's, which sd points into */
  SECURITY_DESCRIPTOR sd;      /* the pipe's: parsed's DACL, our own SIDs added */
  PACL acl;
  PSID owner;
  SECURITY_ATTRIBUTES sa; /* every instance's, pointing at sd */
  DWORD first_access;     /* WRITE_OWNER when a label may need setting again */
} sb__pipesec_t;

/*
 * Builds sec from sddl and checks it (path names the pipe in the log lines): 0,
 * SB_ECONFIG (the descriptor is refused, logged why) or SB_EIO. On failure sec may
 * hold part of what it made: sb__pipesec_destroy frees it.
 */
int sb__pipesec_create(sb__pipesec_t* sec, const char* sddl, const char* path);
/* Reads the mandatory label of sec's SACL back on the pipe's first instance first (set
 * once more if missing); says so when the pipe lacks it. Nothing when there is no
 * label or no instance (first NULL). */
void sb__pipesec_label(sb__pipesec_t* sec, HANDLE first, const char* path);
/* Frees what sb__pipesec_create made; a half-built one too, and may run twice. */
void sb__pipesec_destroy(sb__pipesec_t* sec);

#endif
