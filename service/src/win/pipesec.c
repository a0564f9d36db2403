/*
 * win/pipesec.c - the listener pipe's security descriptor: built from the configured
 * SDDL and checked before anything listens (network logons denied, the service's own
 * account able to create instances, others that could serve the name warned about),
 * and its mandatory label read back on the pipe. Used by win/listener.c only.
 */
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "pipesec.h"

/* The generic rights of an ACE as Windows maps them for files, pipes included: there
 * GENERIC_WRITE holds FILE_APPEND_DATA, which on a pipe is FILE_CREATE_PIPE_INSTANCE.
 */
static GENERIC_MAPPING sb__file_mapping = {FILE_GENERIC_READ, FILE_GENERIC_WRITE,
                                           FILE_GENERIC_EXECUTE, FILE_ALL_ACCESS};

/* A copy of one of the process token's facts (TokenUser, TokenGroups), or NULL. */
static void* token_info(HANDLE tok, TOKEN_INFORMATION_CLASS c) {
  DWORD n = 0;
  void* p;
  GetTokenInformation(tok, c, NULL, 0, &n);
  if (n == 0)
    return NULL;
  p = sb__xmalloc(n);
  if (!GetTokenInformation(tok, c, p, n, &n)) {
    free(p);
    return NULL;
  }
  return p;
}

/* A service SID (S-1-5-80-...): the one of our own service in its token. */
static int is_service_sid(PSID sid) {
  SID_IDENTIFIER_AUTHORITY nt = SECURITY_NT_AUTHORITY;
  return IsValidSid(sid) &&
         memcmp(GetSidIdentifierAuthority(sid), &nt, sizeof(nt)) == 0 &&
         *GetSidSubAuthorityCount(sid) >= 1 &&
         *GetSidSubAuthority(sid, 0) == SECURITY_SERVICE_ID_BASE_RID;
}

static int is_well_known(PSID sid, WELL_KNOWN_SID_TYPE type) {
  BYTE buf[SECURITY_MAX_SID_SIZE];
  DWORD n = sizeof(buf);
  return CreateWellKnownSid(type, NULL, buf, &n) && EqualSid(sid, buf);
}

static void sid_text(PSID sid, char* out, size_t size) {
  LPSTR s = NULL;
  if (ConvertSidToStringSidA(sid, &s))
    snprintf(out, size, "%s", s);
  else
    snprintf(out, size, "(a SID)");
  LocalFree(s);
}

/*
 * The pipe's security descriptor, from sddl, checked before anything listens:
 * - a DACL, with network logons (NU) denied before anything is allowed: a descriptor
 *   without it is refused (PIPE_REJECT_REMOTE_CLIENTS stands behind it too);
 * - the service's own account (its token's user, and its service SID NT
 *   SERVICE\StreamBroker when the token has one) is added with full control, at run
 *   time: every instance after the first needs FILE_CREATE_PIPE_INSTANCE, and a
 *   descriptor that leaves the account out (LocalService, a custom one) would make
 *   each re-arm fail. That the account then holds the right is checked as Windows
 *   will (AccessCheck with our own token): a deny entry that takes it away is refused;
 * - anyone else granted FILE_CREATE_PIPE_INSTANCE (GW and GA hold it) could serve the
 *   pipe's name beside us and read other users' streams: that is warned about (an
 *   administrator may choose it, for clients that ask GENERIC_WRITE);
 * - a SACL (a mandatory label, S:) is kept as given;
 * - the owner is the service SID when the token lets it own objects, else the token's
 *   user: clients that cannot read our token check the pipe's owner.
 * The DACL is protected (nothing inherited). On a named pipe only the first
 * instance's descriptor counts: later instances share it (theirs is ignored).
 */
int sb__pipesec_create(sb__pipesec_t* sec, const char* sddl, const char* path) {
  WCHAR wide[1024];
  PACL dacl = NULL, sacl = NULL;
  BOOL present = FALSE, defaulted = FALSE, spresent = FALSE, access = FALSE;
  HANDLE tok = NULL, imp = NULL;
  TOKEN_USER* user = NULL;
  TOKEN_GROUPS* groups = NULL;
  PSID service = NULL;
  int service_owns = 0, denied_network = 0, seen_allow = 0, r = SB_ECONFIG;
  DWORD i, size, granted = 0, plen = sizeof(PRIVILEGE_SET);
  PRIVILEGE_SET privs;
  char who[SECURITY_MAX_SID_SIZE * 4];
  if (MultiByteToWideChar(CP_UTF8, 0, sddl, -1, wide, 1024) == 0 ||
      !ConvertStringSecurityDescriptorToSecurityDescriptorW(wide, SDDL_REVISION_1,
                                                            &sec->parsed, NULL)) {
    SB_LOG_E("listener", "%s: invalid security descriptor \"%s\" (error %lu)", path,
             sddl, (unsigned long)GetLastError());
    return SB_ECONFIG;
  }
  if (!GetSecurityDescriptorDacl(sec->parsed, &present, &dacl, &defaulted) ||
      !present || dacl == NULL) {
    SB_LOG_E("listener",
             "%s: security descriptor \"%s\" has no DACL, which would let anyone in",
             path, sddl);
    return SB_ECONFIG;
  }
  GetSecurityDescriptorSacl(sec->parsed, &spresent, &sacl, &defaulted);
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY | TOKEN_DUPLICATE, &tok) ||
      (user = token_info(tok, TokenUser)) == NULL ||
      (groups = token_info(tok, TokenGroups)) == NULL) {
    SB_LOG_E("listener", "%s: reading the process token: error %lu", path,
             (unsigned long)GetLastError());
    r = SB_EIO;
    goto done;
  }
  for (i = 0; i < groups->GroupCount; i++) {
    if (is_service_sid(groups->Groups[i].Sid) &&
        (groups->Groups[i].Attributes & SE_GROUP_ENABLED)) {
      service = groups->Groups[i].Sid;
      service_owns = (groups->Groups[i].Attributes & SE_GROUP_OWNER) != 0;
      break;
    }
  }
  for (i = 0; i < dacl->AceCount; i++) {
    ACE_HEADER* ace;
    ACCESS_MASK mask;
    PSID sid;
    if (!GetAce(dacl, i, (void**)&ace))
      continue;
    if (ace->AceType != ACCESS_ALLOWED_ACE_TYPE &&
        ace->AceType != ACCESS_DENIED_ACE_TYPE)
      continue;
    if (ace->AceFlags & INHERIT_ONLY_ACE)
      continue;
    mask = ((ACCESS_ALLOWED_ACE*)ace)->Mask;
    sid = &((ACCESS_ALLOWED_ACE*)ace)->SidStart;
    MapGenericMask(&mask, &sb__file_mapping);
    if (ace->AceType == ACCESS_DENIED_ACE_TYPE) {
      if (!seen_allow && is_well_known(sid, WinNetworkSid) &&
          (mask & (FILE_READ_DATA | FILE_WRITE_DATA)) ==
              (FILE_READ_DATA | FILE_WRITE_DATA))
        denied_network = 1;
      continue;
    }
    seen_allow = 1;
    if ((mask & (FILE_CREATE_PIPE_INSTANCE | WRITE_DAC | WRITE_OWNER)) &&
        !is_well_known(sid, WinLocalSystemSid) &&
        !is_well_known(sid, WinBuiltinAdministratorsSid) &&
        !EqualSid(sid, user->User.Sid) &&
        !(service != NULL && EqualSid(sid, service))) {
      sid_text(sid, who, sizeof(who));
      SB_LOG_W("listener",
               "%s: security descriptor \"%s\" grants %s the right to create instances "
               "of the pipe or to change its access (GW and GA hold "
               "FILE_CREATE_PIPE_INSTANCE): its processes could serve the pipe's name "
               "and read other users' streams; grant clients 0x12019B (read and write "
               "without it) instead",
               path, sddl, who);
    }
  }
  if (!denied_network) {
    SB_LOG_E("listener",
             "%s: security descriptor \"%s\" does not deny network logons before it "
             "allows anything: begin its DACL with (D;;GA;;;NU)",
             path, sddl);
    goto done;
  }
  size = dacl->AclSize + 2 * (sizeof(ACCESS_ALLOWED_ACE) + SECURITY_MAX_SID_SIZE);
  sec->acl = sb__xcalloc(1, size);
  memcpy(sec->acl, dacl, dacl->AclSize);
  sec->acl->AclSize = (WORD)size;
  if (!AddAccessAllowedAce(sec->acl, sec->acl->AclRevision, FILE_ALL_ACCESS,
                           user->User.Sid) ||
      (service != NULL && !AddAccessAllowedAce(sec->acl, sec->acl->AclRevision,
                                               FILE_ALL_ACCESS, service))) {
    SB_LOG_E("listener", "%s: AddAccessAllowedAce: error %lu", path,
             (unsigned long)GetLastError());
    r = SB_EIO;
    goto done;
  }
  size = GetLengthSid(service_owns ? service : user->User.Sid);
  sec->owner = sb__xmalloc(size);
  CopySid(size, sec->owner, service_owns ? service : user->User.Sid);
  InitializeSecurityDescriptor(&sec->sd, SECURITY_DESCRIPTOR_REVISION);
  SetSecurityDescriptorDacl(&sec->sd, TRUE, sec->acl, FALSE);
  SetSecurityDescriptorControl(&sec->sd, SE_DACL_PROTECTED, SE_DACL_PROTECTED);
  SetSecurityDescriptorOwner(&sec->sd, sec->owner, FALSE);
  SetSecurityDescriptorGroup(&sec->sd, sec->owner, FALSE);
  if (spresent && sacl != NULL) {
    SetSecurityDescriptorSacl(&sec->sd, TRUE, sacl, FALSE);
    sec->first_access = WRITE_OWNER; /* a label is set with WRITE_OWNER */
  }
  if (!DuplicateToken(tok, SecurityIdentification, &imp) ||
      !AccessCheck(&sec->sd, imp, FILE_CREATE_PIPE_INSTANCE, &sb__file_mapping, &privs,
                   &plen, &granted, &access)) {
    SB_LOG_E("listener", "%s: checking the service's own access: error %lu", path,
             (unsigned long)GetLastError());
    r = SB_EIO;
    goto done;
  }
  if (!access) {
    sid_text(user->User.Sid, who, sizeof(who));
    SB_LOG_E("listener",
             "%s: security descriptor \"%s\" denies this service's account (%s) the "
             "right to create instances of its own pipe",
             path, sddl, who);
    goto done;
  }
  sec->sa.nLength = sizeof(sec->sa);
  sec->sa.lpSecurityDescriptor = &sec->sd;
  sec->sa.bInheritHandle = FALSE;
  r = 0;
done:
  if (imp != NULL)
    CloseHandle(imp);
  if (tok != NULL)
    CloseHandle(tok);
  free(user);
  free(groups);
  return r;
}

/*
 * A label (S:) of the SDDL is given at creation, then read back (and set once more if
 * missing): a pipe that lacks it would refuse the low-integrity clients it was meant
 * to admit, so that is said rather than left silent.
 */
/* The first mandatory label entry of sacl, or NULL. */
static SYSTEM_MANDATORY_LABEL_ACE* label_of(PACL sacl) {
  ACE_HEADER* ace;
  DWORD i;
  for (i = 0; sacl != NULL && i < sacl->AceCount; i++)
    if (GetAce(sacl, i, (void**)&ace) &&
        ace->AceType == SYSTEM_MANDATORY_LABEL_ACE_TYPE)
      return (SYSTEM_MANDATORY_LABEL_ACE*)ace;
  return NULL;
}

/* Whether the pipe's label, read back, is the one asked for (its level and policy). */
static int label_kept(HANDLE pipe, SYSTEM_MANDATORY_LABEL_ACE* want, const char* path,
                      DWORD* err) {
  PSECURITY_DESCRIPTOR got = NULL;
  PACL have = NULL;
  SYSTEM_MANDATORY_LABEL_ACE* ace;
  char sid[SECURITY_MAX_SID_SIZE * 4];
  int r = 0;
  *err = GetSecurityInfo(pipe, SE_KERNEL_OBJECT, LABEL_SECURITY_INFORMATION, NULL, NULL,
                         NULL, &have, &got);
  if (*err == ERROR_SUCCESS && (ace = label_of(have)) != NULL)
    r = ace->Mask == want->Mask && EqualSid(&ace->SidStart, &want->SidStart);
  if (r) {
    sid_text(&ace->SidStart, sid, sizeof(sid));
    SB_LOG_D("listener", "%s: label %s, policy 0x%lx, read back on the pipe", path, sid,
             (unsigned long)ace->Mask);
  }
  LocalFree(got);
  return r;
}

void sb__pipesec_label(sb__pipesec_t* sec, HANDLE first, const char* path) {
  PACL sacl = NULL;
  BOOL present = FALSE, defaulted = FALSE;
  SYSTEM_MANDATORY_LABEL_ACE* want;
  DWORD e, set;
  if (!GetSecurityDescriptorSacl(&sec->sd, &present, &sacl, &defaulted) || !present ||
      (want = label_of(sacl)) == NULL || first == NULL)
    return;
  /* Read back; set once more only when it is missing (that needs WRITE_OWNER, which
   * the server's handle may lack: what counts is what is read back). */
  if (label_kept(first, want, path, &e))
    return;
  set = SetSecurityInfo(first, SE_KERNEL_OBJECT, LABEL_SECURITY_INFORMATION, NULL, NULL,
                        NULL, sacl);
  if (label_kept(first, want, path, &e))
    return;
  SB_LOG_E(
      "listener",
      "%s: the mandatory label of control_pipe_sddl is not on the pipe (read back: "
      "error %lu, set: error %lu): clients below medium integrity will be refused",
      path, (unsigned long)e, (unsigned long)set);
}

/* Frees what sb__pipesec_create made; a half-built one too, and may run twice. */
void sb__pipesec_destroy(sb__pipesec_t* sec) {
  LocalFree(sec->parsed);
  free(sec->acl);
  free(sec->owner);
  sec->parsed = NULL;
  sec->acl = NULL;
  sec->owner = NULL;
}
