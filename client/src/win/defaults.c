/* win/defaults.c - where a client finds the service on Windows: the default pipes
 * and the data directory. */
#include <windows.h>
#include <knownfolders.h>
#include <shlobj.h>
#include <stdlib.h>

#include <uv.h>

#include "../alloc.h"
#include "../paths.h"
#include "wide.h"

static uv_once_t sb__data_dir_once = UV_ONCE_INIT;
static char* sb__data_dir; /* %ProgramData%\StreamBroker, UTF-8, never freed */

/*
 * ProgramData is asked of the shell (it may have been moved off C:), then of the
 * environment, else the usual place. Computed once: the path is handed out as a
 * plain const char* for the life of the process, possibly to several threads.
 */
static void sb__data_dir_init(void) {
  PWSTR known = NULL;
  WCHAR env[MAX_PATH];
  char* base = NULL;
  DWORD n;
  if (SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, NULL, &known) == S_OK)
    base = sb__utf8(known);
  CoTaskMemFree(known);
  if (base == NULL) {
    n = GetEnvironmentVariableW(L"PROGRAMDATA", env, MAX_PATH);
    if (n > 0 && n < MAX_PATH)
      base = sb__utf8(env);
  }
  if (base == NULL)
    base = sb__xstrdup("C:\\ProgramData");
  sb__data_dir = sb__path_join(base, "StreamBroker");
  free(base);
}

const char* sb__default_control_pipe(void) {
  return "net.pipe:streambroker";
}

const char* sb__default_admin_pipe(void) {
  return "net.pipe:streambroker-admin";
}

const char* sb__default_data_dir(void) {
  uv_once(&sb__data_dir_once, sb__data_dir_init);
  return sb__data_dir;
}
