/*
 * win/acl.h - the access lists of the service's directories (win/platform.c), for
 * the Windows tests: Wine keeps no access list on files (it keeps only what Unix
 * modes can say), so the tests check these decisions on descriptors of their own.
 */
#ifndef SB_WIN_ACL_H
#define SB_WIN_ACL_H

#include <windows.h>

/* The security descriptor every directory the service makes is created with: a
 * protected DACL of SYSTEM, Administrators, the service's account and its service SID,
 * each full control, inherited by what is made in it. NULL if it could not be made. */
PSECURITY_DESCRIPTOR sb__acl_private_sd(void);
/* sb__path_check_private's decision on sd (owner and DACL): 0, or SB_EACCES with why.
 */
int sb__acl_check_private(PSECURITY_DESCRIPTOR sd, const char* key, const char* path,
                          char* why, size_t size);

#endif
