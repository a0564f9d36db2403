/* win/platform.c - default paths and directories on Windows. */
#include <windows.h>
#include <aclapi.h>
#include <knownfolders.h>
#include <lm.h>
#include <sddl.h>
#include <shlobj.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "oserror.h"
#include "../path.h"
#include "acl.h"
#include "win/wide.h"

static uv_once_t sb__paths_once = UV_ONCE_INIT;
static char* sb__config_path; /* sb__default_data_dir()\streambroker.json */
static char* sb__service_log; /* sb__default_data_dir()\logs\streambrokerd.log */

/* Computed once, under the data directory (the client library's, win/defaults.c): the
 * paths are handed out as plain const char* for the life of the process, possibly to
 * several threads. */
static void sb__paths_init(void) {
  sb__config_path = sb__path_join(sb__default_data_dir(), "streambroker.json");
  sb__service_log = sb__path_join(sb__default_data_dir(), "logs\\streambrokerd.log");
}

/* A service has no console: its log goes under ProgramData unless log_file says. */
const char* sb__default_service_log(void) {
  uv_once(&sb__paths_once, sb__paths_init);
  return sb__service_log;
}

const char* sb__default_config_path(void) {
  uv_once(&sb__paths_once, sb__paths_init);
  return sb__config_path;
}

/* Windows has no per-process handle limit to raise. */
void sb__process_init(void) {
}

void sb__raise_fd_limit(void) {
}

int64_t sb__process_open_handles(void) {
  DWORD n = 0;
  return GetProcessHandleCount(GetCurrentProcess(), &n) ? (int64_t)n : -1;
}

/* libuv's SIGHUP on Windows is the console closing, which ends the process anyway: a
 * reload is asked with sbctl reload or the service control PARAMCHANGE instead. */
int sb__reload_signal(void) {
  return 0;
}

static int sb__is_sep(WCHAR c) {
  return c == L'\\' || c == L'/';
}

static size_t sb__skip_seps(const WCHAR* p, size_t i) {
  while (sb__is_sep(p[i]))
    i++;
  return i;
}

static size_t sb__skip_part(const WCHAR* p, size_t i) {
  while (p[i] != 0 && !sb__is_sep(p[i]))
    i++;
  return i;
}

/*
 * The length of the path's root, which names a volume and is never created: "C:\",
 * "\", "\\server\share\", "\\?\C:\", "\\?\UNC\server\share\" or "\\?\Volume{...}\".
 */
static size_t sb__root_len(const WCHAR* p) {
  size_t i = 0;
  if (sb__is_sep(p[0]) && sb__is_sep(p[1])) {
    if ((p[2] == L'?' || p[2] == L'.') && sb__is_sep(p[3])) {
      if (p[4] != 0 && p[5] == L':')
        return sb__skip_seps(p, 6);
      if (_wcsnicmp(p + 4, L"UNC", 3) != 0 || !sb__is_sep(p[7]))
        return sb__skip_seps(p, sb__skip_part(p, 4));
      i = 8;
    } else {
      i = 2;
    }
    i = sb__skip_seps(p, sb__skip_part(p, i));    /* server */
    return sb__skip_seps(p, sb__skip_part(p, i)); /* share */
  }
  if (p[0] != 0 && p[1] == L':')
    i = 2;
  return sb__skip_seps(p, i);
}

/* ---- the service's own access lists ---- */

/* A copy of one of the process token's facts (TokenUser, TokenGroups), or NULL. */
static void* sb__token_info(TOKEN_INFORMATION_CLASS c) {
  HANDLE tok;
  DWORD n = 0;
  void* p = NULL;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
    return NULL;
  GetTokenInformation(tok, c, NULL, 0, &n);
  if (n > 0) {
    p = sb__xmalloc(n);
    if (!GetTokenInformation(tok, c, p, n, &n)) {
      free(p);
      p = NULL;
    }
  }
  CloseHandle(tok);
  return p;
}

/* Who the service is: its token's user, and its service SID (S-1-5-80-...) when the
 * token has one (a service with a SID type). Computed once, never freed. */
static uv_once_t sb__self_once = UV_ONCE_INIT;
static TOKEN_USER* sb__self_user;
static PSID sb__self_service;
static PSECURITY_DESCRIPTOR sb__private_sd; /* for the directories we make */

static void sb__self_init(void) {
  TOKEN_GROUPS* groups = sb__token_info(TokenGroups);
  SID_IDENTIFIER_AUTHORITY nt = SECURITY_NT_AUTHORITY;
  char sddl[1024];
  LPSTR user = NULL, service = NULL;
  WCHAR wide[1024];
  DWORD i;
  sb__self_user = sb__token_info(TokenUser);
  for (i = 0; groups != NULL && i < groups->GroupCount; i++) {
    PSID sid = groups->Groups[i].Sid;
    if ((groups->Groups[i].Attributes & SE_GROUP_ENABLED) &&
        memcmp(GetSidIdentifierAuthority(sid), &nt, sizeof(nt)) == 0 &&
        *GetSidSubAuthorityCount(sid) >= 1 &&
        *GetSidSubAuthority(sid, 0) == SECURITY_SERVICE_ID_BASE_RID) {
      sb__self_service = sb__xmalloc(GetLengthSid(sid));
      CopySid(GetLengthSid(sid), sb__self_service, sid);
      break;
    }
  }
  free(groups);
  /* SYSTEM, Administrators and the service itself; protected, so nothing of
   * ProgramData's (where Users may create files and read) is inherited. */
  if (sb__self_user != NULL)
    ConvertSidToStringSidA(sb__self_user->User.Sid, &user);
  if (sb__self_service != NULL)
    ConvertSidToStringSidA(sb__self_service, &service);
  snprintf(sddl, sizeof(sddl), "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)%s%s%s%s%s%s",
           user ? "(A;OICI;FA;;;" : "", user ? user : "", user ? ")" : "",
           service ? "(A;OICI;FA;;;" : "", service ? service : "", service ? ")" : "");
  LocalFree(user);
  LocalFree(service);
  if (MultiByteToWideChar(CP_UTF8, 0, sddl, -1, wide, 1024) == 0 ||
      !ConvertStringSecurityDescriptorToSecurityDescriptorW(wide, SDDL_REVISION_1,
                                                            &sb__private_sd, NULL))
    sb__private_sd = NULL;
}

static int sb__is_wk(PSID sid, WELL_KNOWN_SID_TYPE type) {
  BYTE buf[SECURITY_MAX_SID_SIZE];
  DWORD n = sizeof(buf);
  return CreateWellKnownSid(type, NULL, buf, &n) && EqualSid(sid, buf);
}

/* SYSTEM, Administrators, the service's account or its service SID. */
static int sb__sid_trusted(PSID sid) {
  uv_once(&sb__self_once, sb__self_init);
  return sb__is_wk(sid, WinLocalSystemSid) ||
         sb__is_wk(sid, WinBuiltinAdministratorsSid) ||
         (sb__self_user != NULL && EqualSid(sid, sb__self_user->User.Sid)) ||
         (sb__self_service != NULL && EqualSid(sid, sb__self_service));
}

/*
 * Whether the account sid is a member of BUILTIN\Administrators, directly or through
 * a group: a file an administrator made is owned by their own account (Windows' default
 * owner for administrators' objects is the object's creator). Asked of the local
 * account database (NetUserGetLocalGroups); an account it cannot tell about is not
 * taken for one.
 */
static int sb__sid_is_admin(PSID sid) {
  WCHAR name[256], domain[256], full[520], admins[256], adomain[256];
  DWORD nn = 256, dn = 256, an = 256, adn = 256, read = 0, total = 0, i;
  BYTE buf[SECURITY_MAX_SID_SIZE];
  DWORD bn = sizeof(buf);
  SID_NAME_USE use;
  LOCALGROUP_USERS_INFO_0* groups = NULL;
  int r = 0;
  if (!CreateWellKnownSid(WinBuiltinAdministratorsSid, NULL, buf, &bn) ||
      !LookupAccountSidW(NULL, buf, admins, &an, adomain, &adn, &use) ||
      !LookupAccountSidW(NULL, sid, name, &nn, domain, &dn, &use) || use != SidTypeUser)
    return 0;
  _snwprintf(full, 520, L"%ls\\%ls", domain, name);
  full[519] = 0;
  if (NetUserGetLocalGroups(NULL, full, 0, LG_INCLUDE_INDIRECT, (LPBYTE*)&groups,
                            MAX_PREFERRED_LENGTH, &read, &total) != NERR_Success)
    return 0;
  for (i = 0; i < read && !r; i++)
    r = _wcsicmp(groups[i].lgrui0_name, admins) == 0;
  NetApiBufferFree(groups);
  return r;
}

/* "BUILTIN\Users (S-1-5-32-545)", for a message. */
static void sb__sid_name(PSID sid, char* out, size_t size) {
  WCHAR name[256], domain[256];
  DWORD nn = 256, dn = 256;
  SID_NAME_USE use;
  LPSTR text = NULL;
  char n8[512] = "", d8[512] = "";
  ConvertSidToStringSidA(sid, &text);
  if (LookupAccountSidW(NULL, sid, name, &nn, domain, &dn, &use)) {
    WideCharToMultiByte(CP_UTF8, 0, name, -1, n8, sizeof(n8), NULL, NULL);
    WideCharToMultiByte(CP_UTF8, 0, domain, -1, d8, sizeof(d8), NULL, NULL);
    snprintf(out, size, "%s%s%s (%s)", d8, d8[0] ? "\\" : "", n8, text ? text : "?");
  } else {
    snprintf(out, size, "%s", text ? text : "an unknown SID");
  }
  LocalFree(text);
}

/* The rights that let someone put, replace or remove what is in a directory (or a
 * file's content), or change who may. */
#define SB__WRITE_RIGHTS                                                               \
  (FILE_ADD_FILE | FILE_ADD_SUBDIRECTORY | FILE_DELETE_CHILD | FILE_WRITE_EA |         \
   DELETE | WRITE_DAC | WRITE_OWNER)

/*
 * Whether path (a directory or file) is the service's own: not a link (reparse
 * point), owned by SYSTEM, Administrators or the service, and writable by nobody else.
 * A directory a user made before the service (ProgramData lets any user create
 * folders) could hold a config or files of theirs, and one with ProgramData's access
 * list lets any user plant some: either is refused, saying why and what to do.
 */
int sb__path_check_private(const char* key, const char* path, char* why, size_t size) {
  WCHAR* w = sb__utf16(path);
  PSECURITY_DESCRIPTOR sd = NULL;
  DWORD attr, e;
  int r;
  if (w == NULL)
    return 0; /* not UTF-8: the open that follows says so */
  attr = GetFileAttributesW(w);
  if (attr == INVALID_FILE_ATTRIBUTES) {
    free(w);
    return 0; /* absent: made by us, privately */
  }
  if (attr & FILE_ATTRIBUTE_REPARSE_POINT) {
    snprintf(why, size,
             "%s \"%s\" is a link (a junction or symbolic link); the service follows "
             "none: make it a directory of its own",
             key, path);
    free(w);
    return SB_EACCES;
  }
  e = GetNamedSecurityInfoW(w, SE_FILE_OBJECT,
                            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                            NULL, NULL, NULL, NULL, &sd);
  free(w);
  if (e != ERROR_SUCCESS) {
    snprintf(why, size, "%s \"%s\": cannot read its owner and access list (error %lu)",
             key, path, (unsigned long)e);
    return SB_EACCES;
  }
  r = sb__acl_check_private(sd, key, path, why, size);
  LocalFree(sd);
  return r;
}

/* The decision of sb__path_check_private on a path's security descriptor. */
int sb__acl_check_private(PSECURITY_DESCRIPTOR sd, const char* key, const char* path,
                          char* why, size_t size) {
  static GENERIC_MAPPING map = {FILE_GENERIC_READ, FILE_GENERIC_WRITE,
                                FILE_GENERIC_EXECUTE, FILE_ALL_ACCESS};
  PSID owner = NULL;
  PACL dacl = NULL;
  BOOL present = FALSE, defaulted = FALSE;
  DWORD i;
  char who[700];
  int r = 0;
  GetSecurityDescriptorOwner(sd, &owner, &defaulted);
  GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted);
  if (owner != NULL && !sb__sid_trusted(owner) && !sb__sid_is_admin(owner)) {
    sb__sid_name(owner, who, sizeof(who));
    snprintf(
        why, size,
        "%s \"%s\" is owned by %s, not by SYSTEM, an administrator or this service: "
        "someone else made it and may have put files in it; look at what it holds, "
        "remove it, and start the service again, which makes it with an access "
        "list of its own (or, if it is yours, icacls \"%s\" /setowner "
        "*S-1-5-32-544)",
        key, path, who, path);
    r = SB_EACCES;
    goto done;
  }
  if (dacl == NULL) {
    snprintf(why, size, "%s \"%s\" has no access list: anyone may write in it", key,
             path);
    r = SB_EACCES;
    goto done;
  }
  for (i = 0; i < dacl->AceCount; i++) {
    ACCESS_ALLOWED_ACE* ace;
    ACCESS_MASK mask;
    PSID sid;
    if (!GetAce(dacl, i, (void**)&ace) ||
        ace->Header.AceType != ACCESS_ALLOWED_ACE_TYPE ||
        (ace->Header.AceFlags & INHERIT_ONLY_ACE))
      continue;
    sid = &ace->SidStart;
    mask = ace->Mask;
    MapGenericMask(&mask, &map);
    /* CREATOR OWNER and OWNER RIGHTS name the owner, checked above. */
    if (!(mask & SB__WRITE_RIGHTS) || sb__sid_trusted(sid) ||
        sb__is_wk(sid, WinCreatorOwnerSid) || sb__is_wk(sid, WinCreatorOwnerRightsSid))
      continue;
    sb__sid_name(sid, who, sizeof(who));
    snprintf(
        why, size,
        "%s \"%s\" lets %s write in it (access mask 0x%lx): anyone in it could "
        "plant or replace the service's files; give it the service's own access "
        "list (\"streambrokerd install\" does, as an administrator; or icacls "
        "\"%s\" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F)",
        key, path, who, (unsigned long)ace->Mask, path);
    r = SB_EACCES;
    break;
  }
done:
  return r;
}

PSECURITY_DESCRIPTOR sb__acl_private_sd(void) {
  uv_once(&sb__self_once, sb__self_init);
  return sb__private_sd;
}

/*
 * path's directories strictly below root, each checked not to be a link (reparse
 * point: junction, symbolic link, mount point): one planted there would send the
 * archive's writes and retention's deletes elsewhere. Only what the archive made is
 * looked at; root itself is the administrator's choice.
 */
int sb__path_check_links(const char* root, const char* path) {
  size_t rl = strlen(root), i;
  char* p;
  int r = 0;
  while (rl > 0 && (root[rl - 1] == '\\' || root[rl - 1] == '/'))
    rl--;
  if (strncmp(root, path, rl) != 0 || (path[rl] != '\\' && path[rl] != '/'))
    return 0;
  p = sb__xstrdup(path);
  for (i = rl + 1; r == 0; i++) {
    if (p[i] == '\\' || p[i] == '/' || p[i] == '\0') {
      char c = p[i];
      WCHAR* w;
      DWORD attr;
      p[i] = '\0';
      if ((w = sb__utf16(p)) != NULL) {
        attr = GetFileAttributesW(w);
        if (attr != INVALID_FILE_ATTRIBUTES && (attr & FILE_ATTRIBUTE_REPARSE_POINT)) {
          SB_LOG_E("archive",
                   "%s is a link (reparse point) the service did not make; "
                   "nothing is written through it",
                   p);
          r = SB_EACCES;
        }
        free(w);
      }
      p[i] = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  return r;
}

/*
 * Gives an existing directory owned by SYSTEM, Administrators or the service the
 * service's access list (protected, so ProgramData's is no longer inherited; the files
 * in it take it too), as made by this process (run it as the service's account: the
 * install of a LocalSystem service, by an administrator). An absent one is left for
 * the service to make at its start, with its own account in its access list; one
 * owned by someone else is left alone: sb__path_check_private says why.
 */
int sb__path_make_private(const char* path, char* why, size_t size) {
  WCHAR* w;
  PACL dacl = NULL;
  BOOL present = FALSE, defaulted = FALSE;
  DWORD e, attr;
  uv_once(&sb__self_once, sb__self_init);
  if ((w = sb__utf16(path)) == NULL || sb__private_sd == NULL) {
    free(w);
    snprintf(why, size, "\"%s\": invalid path", path);
    return SB_EINVAL;
  }
  attr = GetFileAttributesW(w);
  if (attr == INVALID_FILE_ATTRIBUTES) {
    free(w);
    return 0;
  }
  if (sb__path_check_private("data_dir", path, why, size) != 0 &&
      (attr & FILE_ATTRIBUTE_REPARSE_POINT || strstr(why, "is owned by") != NULL)) {
    free(w);
    return SB_EACCES;
  }
  GetSecurityDescriptorDacl(sb__private_sd, &present, &dacl, &defaulted);
  e = SetNamedSecurityInfoW(w, SE_FILE_OBJECT,
                            DACL_SECURITY_INFORMATION |
                                PROTECTED_DACL_SECURITY_INFORMATION,
                            NULL, NULL, dacl, NULL);
  free(w);
  if (e != ERROR_SUCCESS) {
    snprintf(why, size, "\"%s\": setting its access list: error %lu", path,
             (unsigned long)e);
    return SB_EACCES;
  }
  return sb__path_check_private("data_dir", path, why, size);
}

/* A directory that already exists is success whatever CreateDirectoryW says. The
 * ones made here get the service's own access list (sb__self_init), not their
 * parent's. */
static int sb__mkdir_one_w(const WCHAR* path) {
  SECURITY_ATTRIBUTES sa;
  DWORD attr, e;
  uv_once(&sb__self_once, sb__self_init);
  sa.nLength = sizeof(sa);
  sa.lpSecurityDescriptor = sb__private_sd;
  sa.bInheritHandle = FALSE;
  if (CreateDirectoryW(path, sb__private_sd != NULL ? &sa : NULL))
    return 0;
  e = GetLastError();
  attr = GetFileAttributesW(path);
  if (attr != INVALID_FILE_ATTRIBUTES)
    return (attr & FILE_ATTRIBUTE_DIRECTORY) ? 0 : SB_EEXIST;
  /* A write-protected medium refuses as a permission would; a share that is not
   * there is a missing parent. */
  if (e == ERROR_WRITE_PROTECT)
    return SB_EACCES;
  if (e == ERROR_BAD_NETPATH)
    return SB_ENOENT;
  return sb__err_keep(sb__os_err(e), SB__ERR_BIT(SB_EACCES) | SB__ERR_BIT(SB_ENOSPC) |
                                         SB__ERR_BIT(SB_ENOENT) |
                                         SB__ERR_BIT(SB_EINVAL));
}

static int sb__mkdir_one(const char* path) {
  WCHAR* w = sb__utf16(path);
  int r;
  if (w == NULL)
    return SB_EINVAL;
  r = sb__mkdir_one_w(w);
  free(w);
  return r;
}

/* The root's length in bytes of the UTF-8 path; SB_EINVAL when it is not UTF-8. */
static int sb__path_root_len(const char* path) {
  WCHAR* w = sb__utf16(path);
  size_t root;
  int n = 0;
  if (w == NULL)
    return SB_EINVAL;
  root = sb__root_len(w);
  if (root > 0)
    n = WideCharToMultiByte(CP_UTF8, 0, w, (int)root, NULL, 0, NULL, NULL);
  free(w);
  return n > 0 ? n : 0;
}

/* The same, 0 for a path that is not UTF-8. */
static size_t sb__root_len8(const char* p) {
  int n = sb__path_root_len(p);
  return n > 0 ? (size_t)n : 0;
}

/* Both separators count; the root is never made. */
int sb__mkdir_p(const char* path) {
  return sb__path_mkdirs(path, sb__path_root_len, sb__mkdir_one);
}

int sb__path_is_absolute(const char* path) {
  if (path == NULL)
    return 0;
  if ((path[0] == '\\' || path[0] == '/') && (path[1] == '\\' || path[1] == '/'))
    return 1; /* UNC, or \\?\ */
  return ((path[0] >= 'A' && path[0] <= 'Z') || (path[0] >= 'a' && path[0] <= 'z')) &&
         path[1] == ':' && (path[2] == '\\' || path[2] == '/');
}

/* "C:\a\b\" -> "C:\a"; "C:\a" -> "C:\"; "C:\" -> NULL; UNC roots likewise. */
char* sb__path_parent(const char* path) {
  size_t root = sb__root_len8(path), n = strlen(path);
  char* out;
  while (n > root && (path[n - 1] == '\\' || path[n - 1] == '/'))
    n--;
  if (n <= root)
    return NULL;
  while (n > root && path[n - 1] != '\\' && path[n - 1] != '/')
    n--;
  if (n == 0)
    return NULL;
  while (n > root && (path[n - 1] == '\\' || path[n - 1] == '/'))
    n--;
  out = sb__xmalloc(n + 1);
  memcpy(out, path, n);
  out[n] = '\0';
  return out;
}

/*
 * Windows refuses paths of MAX_PATH (260) characters or more, and directories of 248
 * or more, unless they are in the "\\?\" form: absolute, '\' separators only, no "."
 * or ".." left. GetFullPathNameW makes them so; a UNC path becomes "\\?\UNC\...".
 */
char* sb__path_long(const char* path) {
  WCHAR* w;
  WCHAR* full;
  WCHAR* out;
  DWORD n;
  size_t len;
  char* res;
  if (strncmp(path, "\\\\?\\", 4) == 0 || (w = sb__utf16(path)) == NULL)
    return sb__xstrdup(path);
  n = GetFullPathNameW(w, 0, NULL, NULL);
  if (n == 0) {
    free(w);
    return sb__xstrdup(path);
  }
  full = sb__xmalloc((size_t)n * sizeof(WCHAR));
  n = GetFullPathNameW(w, n, full, NULL);
  free(w);
  len = wcslen(full);
  out = sb__xmalloc((len + 8) * sizeof(WCHAR));
  if (full[0] == L'\\' && full[1] == L'\\') {
    wcscpy(out, L"\\\\?\\UNC\\");
    wcscat(out, full + 2);
  } else {
    wcscpy(out, L"\\\\?\\");
    wcscat(out, full);
  }
  free(full);
  res = n > 0 ? sb__utf8(out) : NULL;
  free(out);
  return res ? res : sb__xstrdup(path);
}

/* ---- files the service keeps to itself: the POSIX side's twins ---- */

/* The access lists of the data directory, the archive and the logs are set where the
 * directories are made; no umask to set here. */
int sb__files_policy(const char* reader_group, int apply, char* err, size_t size) {
  (void)reader_group;
  (void)apply;
  (void)err;
  (void)size;
  return 0;
}

int sb__dir_secure(const char* key, const char* shown, const char* dir, unsigned how,
                   char* err, size_t size) {
  (void)key;
  (void)shown;
  (void)dir;
  (void)how;
  (void)err;
  (void)size;
  return 0;
}

uv_file sb__file_open(const char* path, int flags) {
  uv_fs_t req;
  uv_file fd = uv_fs_open(NULL, &req, path, flags, 0644, NULL);
  uv_fs_req_cleanup(&req);
  return fd;
}

FILE* sb__file_append(const char* path) {
  return sb__wfopen(path, L"ab");
}
