/*
 * test_security_win.c - Windows access, read back under Wine. Wine enforces none of
 * it (every process runs as one user, and access lists are kept but not checked), so
 * these tests read what the service set and what the client decides:
 * - the control and admin pipes' DACLs: clients may read and write without
 *   FILE_CREATE_PIPE_INSTANCE, the service's own account may create instances, no
 *   user on the admin pipe;
 * - the directories the service makes: a protected DACL of SYSTEM, Administrators and
 *   the service, no write for anyone else;
 * - a data directory owned by someone else, or writable by Users, refused at start;
 * - the client's check of who serves the pipe (SB_TEST_PIPE_SERVER_SID names the one
 *   SID trusted besides SYSTEM and the service, in place of the client's own user);
 * - a stream opened for a child process that another child does not inherit.
 * That Windows then enforces these lists needs a real Windows machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "task.h"

#ifndef _WIN32

TEST_IMPL(security_win_pipe_acls) {
  TEST_SKIP("Windows access lists: Windows (Wine) only");
}
TEST_IMPL(security_win_dirs_private) {
  TEST_SKIP("Windows access lists: Windows (Wine) only");
}
TEST_IMPL(security_win_acl_decisions) {
  TEST_SKIP("Windows access lists: Windows (Wine) only");
}
TEST_IMPL(security_win_data_dir_refused) {
  TEST_SKIP("Windows access lists: Windows (Wine) only");
}
TEST_IMPL(security_win_client_checks_server) {
  TEST_SKIP("named pipe servers: Windows (Wine) only");
}
TEST_IMPL(security_win_custom_sddl_checked) {
  TEST_SKIP("control_pipe_sddl: Windows (Wine) only");
}
TEST_IMPL(security_win_taken_name_named) {
  TEST_SKIP("named pipe servers: Windows (Wine) only");
}
TEST_IMPL(security_win_stream_not_inherited) {
  TEST_SKIP("handle inheritance: Windows (Wine) only (POSIX: O_CLOEXEC tests)");
}

#else

#include <windows.h>
#include <aclapi.h>
#include <sddl.h>

#include "win/acl.h"

static GENERIC_MAPPING file_map = {FILE_GENERIC_READ, FILE_GENERIC_WRITE,
                                   FILE_GENERIC_EXECUTE, FILE_ALL_ACCESS};

/* This process's user SID as text (the service under Wine runs as the same). */
static void own_sid(char* out, size_t size) {
  HANDLE tok;
  BYTE buf[512];
  DWORD n;
  LPSTR s = NULL;
  ASSERT(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok));
  ASSERT(GetTokenInformation(tok, TokenUser, buf, sizeof(buf), &n));
  CloseHandle(tok);
  ASSERT(ConvertSidToStringSidA(((TOKEN_USER*)buf)->User.Sid, &s));
  snprintf(out, size, "%s", s);
  LocalFree(s);
}

/* The rights an SDDL's DACL allows sid (text, "S-1-..."), generic rights mapped as for
 * files; *denied gets what its deny entries take away. */
static ACCESS_MASK allowed_to(const char* sddl, const char* sid_text,
                              ACCESS_MASK* denied) {
  PSECURITY_DESCRIPTOR sd = NULL;
  PACL dacl = NULL;
  BOOL present, defaulted;
  PSID want = NULL;
  ACCESS_MASK all = 0;
  DWORD i;
  if (denied)
    *denied = 0;
  ASSERT(ConvertStringSecurityDescriptorToSecurityDescriptorA(sddl, SDDL_REVISION_1,
                                                              &sd, NULL));
  ASSERT(ConvertStringSidToSidA(sid_text, &want));
  ASSERT(GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted));
  ASSERT(present && dacl != NULL);
  for (i = 0; i < dacl->AceCount; i++) {
    ACCESS_ALLOWED_ACE* ace;
    ACCESS_MASK m;
    ASSERT(GetAce(dacl, i, (void**)&ace));
    if (!EqualSid(&ace->SidStart, want) || (ace->Header.AceFlags & INHERIT_ONLY_ACE))
      continue;
    m = ace->Mask;
    MapGenericMask(&m, &file_map);
    if (ace->Header.AceType == ACCESS_ALLOWED_ACE_TYPE)
      all |= m;
    else if (ace->Header.AceType == ACCESS_DENIED_ACE_TYPE && denied)
      *denied |= m;
  }
  LocalFree(want);
  LocalFree(sd);
  return all;
}

/* A file or directory's owner and DACL as SDDL (GetNamedSecurityInfoW). */
static int path_sddl(const char* path, char* out, size_t size) {
  WCHAR w[1024];
  PSECURITY_DESCRIPTOR sd = NULL;
  LPSTR text = NULL;
  int r = -1;
  MultiByteToWideChar(CP_UTF8, 0, path, -1, w, 1024);
  if (GetNamedSecurityInfoW(w, SE_FILE_OBJECT,
                            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                            NULL, NULL, NULL, NULL, &sd) == ERROR_SUCCESS &&
      ConvertSecurityDescriptorToStringSecurityDescriptorA(
          sd, SDDL_REVISION_1, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
          &text, NULL)) {
    snprintf(out, size, "%s", text);
    r = 0;
  }
  LocalFree(text);
  LocalFree(sd);
  return r;
}

/*
 * A directory the service made, read back: only SYSTEM, Administrators and the
 * service's account have any right to it, SYSTEM and the account full control. (Wine
 * keeps only what Unix modes say, and reads back SYSTEM and the owner, plus Everyone
 * for what "other" may do; Windows reads back the list as set, protected.)
 */
static void assert_private_dir(const char* path) {
  char sd[4096], self[256];
  const char* others[] = {"S-1-5-32-545", "S-1-5-11", "S-1-1-0",
                          "S-1-5-4",      "S-1-5-2",  NULL};
  int i;
  own_sid(self, sizeof(self));
  if (path_sddl(path, sd, sizeof(sd)) != 0)
    sb_test_fail(__FILE__, __LINE__, "cannot read the access list of %s (error %lu)",
                 path, GetLastError());
  if ((allowed_to(sd, "S-1-5-18", NULL) & FILE_ALL_ACCESS) != FILE_ALL_ACCESS ||
      (allowed_to(sd, self, NULL) & FILE_ALL_ACCESS) != FILE_ALL_ACCESS)
    sb_test_fail(__FILE__, __LINE__,
                 "%s: SYSTEM or the service's account %s lacks full "
                 "control: %s",
                 path, self, sd);
  for (i = 0; others[i]; i++)
    if (allowed_to(sd, others[i], NULL) != 0)
      sb_test_fail(__FILE__, __LINE__, "%s: %s has access: %s", path, others[i], sd);
}

/* What the service gives the directories it makes, and what it refuses at start,
 * decided on descriptors (which Wine cannot keep on files). */
TEST_IMPL(security_win_acl_decisions) {
  PSECURITY_DESCRIPTOR mine = sb__acl_private_sd(), sd;
  LPSTR text = NULL;
  char self[256], why[1024], sddl[600];
  ACCESS_MASK m;
  SECURITY_DESCRIPTOR_CONTROL control;
  DWORD rev;
  int i;
  const char* refused[][2] = {
      /* owned by Users: a folder a user made before the install */
      {"O:BUD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)", "is owned by"},
      /* ProgramData's own list, inherited by a folder made without one */
      {"O:BAD:(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICIIO;GA;;;CO)(A;OICI;0x1200a9;;;BU)"
       "(A;CI;0x116;;;BU)",
       "lets "},
      {"O:SYD:P(A;OICI;FA;;;SY)(A;;FA;;;WD)", "lets "},
      {"O:SY", "no access list"},
  };
  own_sid(self, sizeof(self));
  ASSERT(mine != NULL);
  ASSERT(GetSecurityDescriptorControl(mine, &control, &rev));
  ASSERT(control & SE_DACL_PROTECTED);
  ASSERT(ConvertSecurityDescriptorToStringSecurityDescriptorA(
      mine, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &text, NULL));
  if (strncmp(text, "D:P", 3) != 0 || strstr(text, "(A;OICI;FA;;;SY)") == NULL ||
      strstr(text, "(A;OICI;FA;;;BA)") == NULL)
    sb_test_fail(__FILE__, __LINE__, "directories' DACL: %s", text);
  m = allowed_to(text, self, NULL);
  ASSERT_EQ(m & FILE_ALL_ACCESS, FILE_ALL_ACCESS);
  ASSERT_EQ(allowed_to(text, "S-1-5-32-545", NULL), 0);
  ASSERT_EQ(allowed_to(text, "S-1-5-11", NULL), 0);
  ASSERT_EQ(allowed_to(text, "S-1-1-0", NULL), 0);
  LocalFree(text);
  /* Refused, each saying why. */
  for (i = 0; i < (int)(sizeof(refused) / sizeof(refused[0])); i++) {
    ASSERT(ConvertStringSecurityDescriptorToSecurityDescriptorA(
        refused[i][0], SDDL_REVISION_1, &sd, NULL));
    why[0] = '\0';
    if (sb__acl_check_private(sd, "data_dir", "C:\\ProgramData\\StreamBroker", why,
                              sizeof(why)) != SB_EACCES ||
        strstr(why, refused[i][1]) == NULL)
      sb_test_fail(__FILE__, __LINE__, "%s: want refused (\"%s\"), got \"%s\"",
                   refused[i][0], refused[i][1], why);
    LocalFree(sd);
  }
  /* Accepted: the service's own, and one an administrator owns with its list. */
  ASSERT_OK(sb__acl_check_private(mine, "data_dir", "x", why, sizeof(why)));
  snprintf(sddl, sizeof(sddl),
           "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;%s)"
           "(A;OICI;0x1200a9;;;BU)",
           self);
  ASSERT(ConvertStringSecurityDescriptorToSecurityDescriptorA(sddl, SDDL_REVISION_1,
                                                              &sd, NULL));
  ASSERT_OK(sb__acl_check_private(sd, "data_dir", "x", why, sizeof(why)));
  LocalFree(sd);
}

TEST_IMPL(security_win_pipe_acls) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char control[2048], admin[2048], self[256];
  ACCESS_MASK au, denied;
  ASSERT_OK(uv_loop_init(&loop));
  own_sid(self, sizeof(self));
  sb_it_daemon_start(&d, &loop, "secacl", NULL, NULL);
  ASSERT_OK(sb_it_pipe_security(d.address, control, sizeof(control)));
  ASSERT_OK(sb_it_pipe_security(d.admin_address, admin, sizeof(admin)));
  /* Authenticated Users (AU): read and write, never FILE_CREATE_PIPE_INSTANCE. */
  au = allowed_to(control, "S-1-5-11", NULL);
  if ((au & (FILE_READ_DATA | FILE_WRITE_DATA)) != (FILE_READ_DATA | FILE_WRITE_DATA) ||
      (au & (FILE_CREATE_PIPE_INSTANCE | WRITE_DAC | WRITE_OWNER)) != 0)
    sb_test_fail(__FILE__, __LINE__,
                 "control pipe: Authenticated Users get 0x%lx; want read and write "
                 "without FILE_CREATE_PIPE_INSTANCE (0x12019B): %s",
                 (unsigned long)au, control);
  /* Network logons denied. */
  allowed_to(control, "S-1-5-2", &denied);
  ASSERT((denied & (FILE_READ_DATA | FILE_WRITE_DATA)) ==
         (FILE_READ_DATA | FILE_WRITE_DATA));
  /* The service's own account may create instances of both (it runs as this user). */
  if (!(allowed_to(control, self, NULL) & FILE_CREATE_PIPE_INSTANCE) ||
      !(allowed_to(admin, self, NULL) & FILE_CREATE_PIPE_INSTANCE))
    sb_test_fail(__FILE__, __LINE__,
                 "the service's account %s cannot create instances: "
                 "control %s, admin %s",
                 self, control, admin);
  /* The admin pipe: nobody but SYSTEM, Administrators and the service. */
  ASSERT_EQ(allowed_to(admin, "S-1-5-11", NULL), 0);
  ASSERT_EQ(allowed_to(admin, "S-1-5-32-545", NULL), 0);
  ASSERT_EQ(allowed_to(admin, "S-1-1-0", NULL), 0);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* Runs streambrokerd on cfg (a config that stops it early, or not at all) and returns
 * its result. */
static void run_daemon(uv_loop_t* loop, const char* cfg, sb_it_result_t* res) {
  char prog[4096];
  const char* argv[] = {prog, "--config", cfg, NULL};
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, res);
}

static void write_config(const char* path, const char* data_dir, const char* pipe,
                         const char* extra) {
  char text[4096], jdir[1200];
  size_t i, o = 0;
  for (i = 0; data_dir[i] && o < sizeof(jdir) - 2; i++) {
    if (data_dir[i] == '\\')
      jdir[o++] = '\\';
    jdir[o++] = data_dir[i];
  }
  jdir[o] = '\0';
  snprintf(text, sizeof(text),
           "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s-admin\", \"data_dir\": "
           "\"%s\", \"archive_dir\": \"%s\\\\archive\"%s%s}",
           pipe, pipe, jdir, jdir, extra ? ", " : "", extra ? extra : "");
  sb_it_write_file(path, text, strlen(text));
}

TEST_IMPL(security_win_dirs_private) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char dir[512], data[700], cfg[700], address[256], bind[256], archive[800];
  sb_it_result_t res;
  ASSERT_OK(uv_loop_init(&loop));
  /* The archive directory a running service made. */
  sb_it_daemon_start(&d, &loop, "secdirs", NULL, NULL);
  assert_private_dir(d.archive_dir);
  sb_it_daemon_close(&d);
  /* A data directory it made: the start stops at the pipe's broken descriptor, after
   * the data directory was made and locked. */
  sb_it_tempdir("secdata", dir, sizeof(dir));
  sb_it_address("secdata", address, bind, sizeof(address));
  snprintf(data, sizeof(data), "%s\\data", dir);
  snprintf(cfg, sizeof(cfg), "%s\\streambroker.json", dir);
  write_config(cfg, data, address, "\"control_pipe_sddl\": \"D:(broken\"");
  run_daemon(&loop, cfg, &res);
  ASSERT(res.exit_status != 0);
  sb_it_result_free(&res);
  assert_private_dir(data);
  snprintf(archive, sizeof(archive), "%s\\archive", data);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * Links (reparse points), where the system makes them (Windows; Wine 8 makes none,
 * and its Unix symbolic links show as plain directories): a data_dir that is one is
 * refused at start; a link planted inside the archive directory is never written
 * through (the stream waits in the spool, logged), and its target stays empty. An
 * owner or access list that is not the service's cannot be kept on a file by Wine:
 * security_win_acl_decisions checks those refusals on descriptors.
 */
TEST_IMPL(security_win_data_dir_refused) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char dir[512], real[700], link[700], cfg[700], address[256], bind[256];
  char sbcat[4096], planted[900], target[900], pattern[1000];
  WCHAR wlink[700], wreal[700];
  const char* cat[] = {sbcat, "--name", "planted/stream", "--server", NULL, NULL};
  sb_it_result_t res;
  WIN32_FIND_DATAA fd;
  HANDLE find;
  int entries = 0;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_tempdir("seclink", dir, sizeof(dir));
  sb_it_address("seclink", address, bind, sizeof(address));
  snprintf(real, sizeof(real), "%s\\real", dir);
  snprintf(link, sizeof(link), "%s\\data", dir);
  snprintf(cfg, sizeof(cfg), "%s\\streambroker.json", dir);
  ASSERT(CreateDirectoryA(real, NULL));
  MultiByteToWideChar(CP_UTF8, 0, link, -1, wlink, 700);
  MultiByteToWideChar(CP_UTF8, 0, real, -1, wreal, 700);
  if (!CreateSymbolicLinkW(wlink, wreal,
                           SYMBOLIC_LINK_FLAG_DIRECTORY |
                               SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE) ||
      GetFileAttributesW(wlink) == INVALID_FILE_ATTRIBUTES ||
      !(GetFileAttributesW(wlink) & FILE_ATTRIBUTE_REPARSE_POINT)) {
    RemoveDirectoryW(wlink);
    DeleteFileW(wlink);
    RemoveDirectoryA(real);
    RemoveDirectoryA(dir);
    TEST_SKIP("this system makes no directory links (Wine 8 makes none; real Windows "
              "does)");
  }
  write_config(cfg, link, address, NULL);
  run_daemon(&loop, cfg, &res);
  if (res.exit_status != 4 || !sb_it_contains(res.err.data, res.err.len, "is a link"))
    sb_test_fail(__FILE__, __LINE__, "a data_dir that is a link: exit %d, %s",
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
  /* Nothing was made through it. */
  snprintf(pattern, sizeof(pattern), "%s\\*", real);
  find = FindFirstFileA(pattern, &fd);
  ASSERT(find != INVALID_HANDLE_VALUE);
  do {
    if (strcmp(fd.cFileName, ".") != 0 && strcmp(fd.cFileName, "..") != 0)
      entries++;
  } while (FindNextFileA(find, &fd));
  FindClose(find);
  ASSERT_EQ(entries, 0);
  ASSERT(RemoveDirectoryW(wlink) || DeleteFileW(wlink));

  /* A link planted in the archive, where a stream's directory would go. */
  sb_it_program("sbcat", sbcat, sizeof(sbcat));
  sb_it_daemon_start(&d, &loop, "seclink2", NULL, NULL);
  snprintf(planted, sizeof(planted), "%s\\planted", d.archive_dir);
  snprintf(target, sizeof(target), "%s", real);
  MultiByteToWideChar(CP_UTF8, 0, planted, -1, wlink, 700);
  ASSERT(CreateSymbolicLinkW(wlink, wreal,
                             SYMBOLIC_LINK_FLAG_DIRECTORY |
                                 SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE));
  cat[4] = d.address;
  sb_it_run(&loop, cat, NULL, "through the link?\n", 18, NULL, 0, &res);
  sb_it_result_free(&res);
  sb_it_daemon_wait_log(&d, "is a link (reparse point) the service did not make", 1,
                        30000);
  find = FindFirstFileA(pattern, &fd);
  ASSERT(find != INVALID_HANDLE_VALUE);
  entries = 0;
  do {
    if (strcmp(fd.cFileName, ".") != 0 && strcmp(fd.cFileName, "..") != 0)
      entries++;
  } while (FindNextFileA(find, &fd));
  FindClose(find);
  if (entries != 0)
    sb_test_fail(__FILE__, __LINE__,
                 "%d files were written through the planted link %s", entries, planted);
  sb_it_daemon_close(&d);
  ASSERT(RemoveDirectoryW(wlink) || DeleteFileW(wlink));
  ASSERT_OK(uv_loop_close(&loop));
}

TEST_IMPL(security_win_client_checks_server) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char sbcat[4096], sbctl[4096], self[256], env_self[300];
  const char* cat[] = {sbcat, "--name", "sec/squatted", "--server", NULL, NULL};
  const char* ctl[] = {sbctl, "--admin", NULL, "status", NULL};
  const char* as_system[] = {"SB_TEST_PIPE_SERVER_SID=S-1-5-18", NULL};
  const char* as_self[] = {env_self, NULL};
  sb_it_result_t res;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("sbcat", sbcat, sizeof(sbcat));
  sb_it_program("sbctl", sbctl, sizeof(sbctl));
  own_sid(self, sizeof(self));
  snprintf(env_self, sizeof(env_self), "SB_TEST_PIPE_SERVER_SID=%s", self);
  sb_it_daemon_start(&d, &loop, "secsrv", NULL, NULL);
  cat[4] = d.address;
  ctl[2] = d.admin_address;
  /* A client that trusts only SYSTEM and the service SID: this console service, run
   * by another user as far as it knows, is a squatter. Nothing is written to it. */
  sb_it_run(&loop, cat, as_system, "secret\n", 7, NULL, 0, &res);
  if (res.exit_status != 1 ||
      !sb_it_contains(res.err.data, res.err.len, "not the stream service"))
    sb_test_fail(__FILE__, __LINE__, "sbcat to an untrusted server: exit %d, %s",
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
  sb_it_run(&loop, ctl, as_system, "", 0, NULL, 0, &res);
  if (res.exit_status != 1 ||
      !sb_it_contains(res.err.data, res.err.len, "not the stream service"))
    sb_test_fail(__FILE__, __LINE__, "sbctl to an untrusted server: exit %d, %s",
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
  /* The same with the server's own SID trusted: accepted. */
  cat[2] = "sec/trusted";
  sb_it_run(&loop, cat, as_self, "hello\n", 6, NULL, 0, &res);
  if (res.exit_status != 0)
    sb_test_fail(__FILE__, __LINE__, "sbcat to a trusted server: exit %d, %s",
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
  sb_it_run(&loop, ctl, as_self, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  sb_it_daemon_wait_log(&d, "\"sec/trusted\" opened", 1, 30000);
  /* The refused stream never reached the service. */
  if (sb_it_contains(d.log.data, d.log.len, "sec/squatted"))
    sb_test_fail(__FILE__, __LINE__, "the refused client's stream reached the server");
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* The label of the pipe at address as a client reads it, "SID policy" ("S-1-16-4096
 * 0x1" for low integrity, no write up), or "" when none. */
static void pipe_label(const char* address, char* out, size_t size) {
  char path[300];
  WCHAR wide[300];
  HANDLE h;
  PSECURITY_DESCRIPTOR sd = NULL;
  PACL sacl = NULL;
  LPSTR sid = NULL;
  DWORD i;
  snprintf(path, sizeof(path), "\\\\.\\pipe\\%s", strchr(address, ':') + 1);
  MultiByteToWideChar(CP_UTF8, 0, path, -1, wide, 300);
  out[0] = '\0';
  h = CreateFileW(wide, READ_CONTROL, 0, NULL, OPEN_EXISTING, 0, NULL);
  ASSERT(h != INVALID_HANDLE_VALUE);
  if (GetSecurityInfo(h, SE_KERNEL_OBJECT, LABEL_SECURITY_INFORMATION, NULL, NULL, NULL,
                      &sacl, &sd) == ERROR_SUCCESS) {
    for (i = 0; sacl != NULL && i < sacl->AceCount; i++) {
      SYSTEM_MANDATORY_LABEL_ACE* ace;
      if (GetAce(sacl, i, (void**)&ace) &&
          ace->Header.AceType == SYSTEM_MANDATORY_LABEL_ACE_TYPE &&
          ConvertSidToStringSidA(&ace->SidStart, &sid)) {
        snprintf(out, size, "%s 0x%lx", sid, (unsigned long)ace->Mask);
        LocalFree(sid);
        break;
      }
    }
  }
  LocalFree(sd);
  CloseHandle(h);
}

/*
 * A custom control_pipe_sddl is checked before anything listens: one that does not
 * deny network logons first, or that denies the service's own account the right to
 * create instances, is refused (exit 4, saying why); one that lets users create
 * instances (GW) is warned about; a label is kept on the pipe.
 */
TEST_IMPL(security_win_custom_sddl_checked) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char dir[512], data[700], cfg[700], address[256], bind[256], self[256], extra[600];
  char label[512], control[2048];
  sb_it_result_t res;
  ASSERT_OK(uv_loop_init(&loop));
  own_sid(self, sizeof(self));
  sb_it_tempdir("secsddl", dir, sizeof(dir));
  sb_it_address("secsddl", address, bind, sizeof(address));
  snprintf(data, sizeof(data), "%s\\data", dir);
  snprintf(cfg, sizeof(cfg), "%s\\streambroker.json", dir);
  /* No network deny. */
  write_config(
      cfg, data, address,
      "\"control_pipe_sddl\": \"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12019b;;;AU)\"");
  run_daemon(&loop, cfg, &res);
  if (res.exit_status != 4 ||
      !sb_it_contains(res.err.data, res.err.len, "does not deny network logons"))
    sb_test_fail(__FILE__, __LINE__, "no network deny: exit %d, %s",
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
  /* A network deny after an allow does not count. */
  write_config(
      cfg, data, address,
      "\"control_pipe_sddl\": \"D:P(A;;GA;;;SY)(D;;GA;;;NU)(A;;0x12019b;;;AU)\"");
  run_daemon(&loop, cfg, &res);
  ASSERT_EQ(res.exit_status, 4);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "does not deny network logons"));
  sb_it_result_free(&res);
  /* The service's own account denied: its pipe could not be re-armed. */
  snprintf(extra, sizeof(extra),
           "\"control_pipe_sddl\": \"D:P(D;;GA;;;NU)(D;;0x4;;;%s)(A;;GA;;;SY)"
           "(A;;GA;;;BA)(A;;0x12019b;;;AU)\"",
           self);
  write_config(cfg, data, address, extra);
  run_daemon(&loop, cfg, &res);
  if (res.exit_status != 4 ||
      !sb_it_contains(res.err.data, res.err.len, "denies this service's account"))
    sb_test_fail(__FILE__, __LINE__, "account denied: exit %d, %s",
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
  /* GW for users: it runs, with a warning; the service's account is added. */
  sb_it_daemon_start(
      &d, &loop, "secgw", NULL,
      "\"control_pipe_sddl\": \"D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GRGW;;;AU)\"");
  sb_it_daemon_wait_log(&d, "grants S-1-5-11 the right to create instances", 1, 30000);
  ASSERT_OK(sb_it_pipe_security(d.address, control, sizeof(control)));
  ASSERT(allowed_to(control, self, NULL) & FILE_CREATE_PIPE_INSTANCE);
  sb_it_daemon_close(&d);
  /* A label: kept, so low-integrity clients may write. Read back by a client where
   * the system shows it to one (Windows); Wine keeps it on the service's own handle
   * only, where the service reads it back and says so. Never dropped silently. */
  sb_it_daemon_start(&d, &loop, "seclabel", NULL,
                     "\"control_pipe_sddl\": \"D:P(D;;GA;;;NU)(A;;GA;;;SY)"
                     "(A;;0x12019b;;;AU)S:(ML;;NW;;;LW)\"");
  pipe_label(d.address, label, sizeof(label));
  if (strcmp(label, "S-1-16-4096 0x1") != 0) {
    if (!sb_it_contains(d.log.data, d.log.len,
                        "label S-1-16-4096, policy 0x1, read back on the pipe")) {
      sb_it_daemon_dump(&d);
      sb_test_fail(__FILE__, __LINE__, "the pipe's label: \"%s\", and not read back",
                   label);
    }
    fprintf(stderr, "note: a client reads no label here; the service read it back\n");
  }
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * The name taken while the service was down (here by a second service, which a
 * squatter stands for): the start fails, naming the pipe's server, its pid and user.
 */
TEST_IMPL(security_win_taken_name_named) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char dir[512], data[700], cfg[700], want[64];
  sb_it_result_t res;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "sectaken", NULL, NULL);
  sb_it_tempdir("sectaken2", dir, sizeof(dir));
  snprintf(data, sizeof(data), "%s\\data", dir);
  snprintf(cfg, sizeof(cfg), "%s\\streambroker.json", dir);
  write_config(cfg, data, d.address, NULL);
  run_daemon(&loop, cfg, &res);
  snprintf(want, sizeof(want), "(pid %d, user ", (int)d.proc.pid);
  if (res.exit_status != 4 || !sb_it_contains(res.err.data, res.err.len, want))
    sb_test_fail(__FILE__, __LINE__,
                 "a start on a taken name: exit %d, want \"%s\": %s",
                 (int)res.exit_status, want, res.err.data);
  sb_it_result_free(&res);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

static void on_child_exit(uv_process_t* p, int64_t status, int sig) {
  (void)status;
  (void)sig;
  uv_close((uv_handle_t*)p, NULL);
}

/*
 * A stream opened for one child, while the program starts another (uv_spawn, which
 * lets the child inherit every inheritable handle): the other child must not hold
 * the stream, so it ends when the program closes its handle, while that child lives.
 */
TEST_IMPL(security_win_stream_not_inherited) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_opts_t o;
  sb_os_handle_t h;
  uv_process_t proc;
  uv_process_options_t opts;
  uv_stdio_container_t stdio[3];
  char child[4096];
  char* args[] = {child, "sleep", "120000", NULL};
  DWORD n;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("sb_child", child, sizeof(child));
  sb_it_daemon_start(&d, &loop, "secinh", NULL, NULL);
  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "sec/for-process";
  ASSERT_OK(sb_stream_open_for_process(client, &o, &h));
  /* Another child, started while the stream is open. */
  memset(&opts, 0, sizeof(opts));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_IGNORE;
  opts.file = child;
  opts.args = args;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = on_child_exit;
  ASSERT_OK(uv_spawn(&loop, &proc, &opts));
  ASSERT(WriteFile(h, "line\n", 5, &n, NULL));
  CloseHandle(h);
  sb_client_close(client);
  /* The stream ends now, not when the other child does (in 120 s). */
  sb_it_daemon_wait_log(&d, "\"sec/for-process\": client finished", 1, 40000);
  ASSERT_OK(uv_process_kill(&proc, SIGTERM));
  sb_it_daemon_close(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

#endif
