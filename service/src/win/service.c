/*
 * win/service.c - streambrokerd as the Windows service StreamBroker: registration,
 * the service control handler and the status reports.
 *
 * Threads: the process's main thread becomes the service control dispatcher (and runs
 * the control handler); ServiceMain runs the broker's loop on the thread the
 * dispatcher gives it. The handler reaches the loop only through uv_async_send.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "oserror.h"

#define SB__SERVICE_WNAME L"StreamBroker"
#define SB__STOP_WAIT_HINT_MS 20000
#define SB__START_WAIT_HINT_MS 10000
#define SB__CHECKPOINT_MS 1000

static SERVICE_STATUS_HANDLE sb__status_handle;
static SERVICE_STATUS sb__status;
static CRITICAL_SECTION sb__status_lock;
static sb__broker_t* volatile sb__running_broker;
static sb__run_fn sb__run;
static void* sb__run_arg;
static int sb__exit_code;
static HANDLE sb__stop_ticker;

/* Reports a state; pending states carry a wait hint and a checkpoint that grows. */
static void report(DWORD state, DWORD win32_exit, DWORD specific_exit,
                   DWORD wait_hint) {
  EnterCriticalSection(&sb__status_lock);
  sb__status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
  sb__status.dwCurrentState = state;
  sb__status.dwWin32ExitCode = win32_exit;
  sb__status.dwServiceSpecificExitCode = specific_exit;
  sb__status.dwWaitHint = wait_hint;
  sb__status.dwControlsAccepted = state == SERVICE_RUNNING
                                      ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN |
                                            SERVICE_ACCEPT_PRESHUTDOWN |
                                            SERVICE_ACCEPT_PARAMCHANGE
                                      : 0;
  if (state == SERVICE_RUNNING || state == SERVICE_STOPPED)
    sb__status.dwCheckPoint = 0;
  else
    sb__status.dwCheckPoint++;
  SetServiceStatus(sb__status_handle, &sb__status);
  LeaveCriticalSection(&sb__status_lock);
}

/*
 * While starting or stopping, a checkpoint a second tells the SCM the work goes on
 * (arg: the pending state watched; the thread ends once the state is another). A
 * start scans the archive directory and opens and checks the spool before the pipe is
 * bound, which a large archive or spool makes longer than one wait hint: without
 * checkpoints the SCM would log event 7022 (hung on starting), and an MSI upgrade
 * waiting on the start would fail.
 */
static DWORD WINAPI pending_ticker(LPVOID arg) {
  DWORD state = (DWORD)(uintptr_t)arg;
  for (;;) {
    Sleep(SB__CHECKPOINT_MS);
    EnterCriticalSection(&sb__status_lock);
    if (sb__status.dwCurrentState != state) {
      LeaveCriticalSection(&sb__status_lock);
      return 0;
    }
    sb__status.dwCheckPoint++;
    SetServiceStatus(sb__status_handle, &sb__status);
    LeaveCriticalSection(&sb__status_lock);
  }
}

static DWORD WINAPI control_handler(DWORD control, DWORD type, LPVOID data,
                                    LPVOID ctx) {
  sb__broker_t* b = sb__running_broker;
  (void)type;
  (void)data;
  (void)ctx;
  switch (control) {
  case SERVICE_CONTROL_STOP:
  case SERVICE_CONTROL_SHUTDOWN:
  case SERVICE_CONTROL_PRESHUTDOWN:
    SB_LOG_I("service", "control %lu: stopping", control);
    report(SERVICE_STOP_PENDING, NO_ERROR, 0, SB__STOP_WAIT_HINT_MS);
    if (sb__stop_ticker == NULL)
      sb__stop_ticker = CreateThread(NULL, 0, pending_ticker,
                                     (LPVOID)(uintptr_t)SERVICE_STOP_PENDING, 0, NULL);
    if (b != NULL)
      uv_async_send(&b->stop_async);
    return NO_ERROR;
  case SERVICE_CONTROL_PARAMCHANGE:
    /* sc control StreamBroker paramchange: the config is re-read on the loop. */
    if (b != NULL)
      uv_async_send(&b->reload_async);
    return NO_ERROR;
  case SERVICE_CONTROL_INTERROGATE:
    return NO_ERROR;
  default:
    return ERROR_CALL_NOT_IMPLEMENTED;
  }
}

/*
 * Restart 5 s, 10 s and 30 s after a failure (counts reset after a day), and a
 * preshutdown timeout as long as a stop may take. The failure-actions flag makes the
 * SCM apply them also when the service stops itself with an error (a failed start
 * reports STOPPED with a service-specific code), not only when its process dies
 * without reporting STOPPED. Set by install, and again by the service itself as each
 * start begins (before anything can fail), so a service registered by the MSI (whose
 * wixl has no ServiceConfig) gets them from its first start.
 */
static DWORD set_recovery(SC_HANDLE svc, const char** what) {
  SC_ACTION actions[3] = {{SC_ACTION_RESTART, 5000},
                          {SC_ACTION_RESTART, 10000},
                          {SC_ACTION_RESTART, 30000}};
  SERVICE_FAILURE_ACTIONSW failure;
  SERVICE_FAILURE_ACTIONS_FLAG flag;
  SERVICE_PRESHUTDOWN_INFO preshutdown;
  DWORD e = 0;
  memset(&failure, 0, sizeof(failure));
  failure.dwResetPeriod = 24 * 3600;
  failure.cActions = 3;
  failure.lpsaActions = actions;
  flag.fFailureActionsOnNonCrashFailures = TRUE;
  preshutdown.dwPreshutdownTimeout = SB__STOP_WAIT_HINT_MS;
  /* Each is set even if another fails (Wine knows no failure-actions flag). */
  if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_PRESHUTDOWN_INFO, &preshutdown)) {
    e = GetLastError();
    *what = "the preshutdown timeout";
  }
  if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS, &failure)) {
    e = GetLastError();
    *what = "the restart actions";
  }
  if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &flag)) {
    e = GetLastError();
    *what = "the failure-actions flag (restarts after a failed start)";
  }
  return e;
}

/* At the start of ServiceMain, before the log is open: what failed is said once the
 * service runs (or its start failed). */
static DWORD sb__recovery_error;
static const char* sb__recovery_what;

static void set_own_recovery(void) {
  SC_HANDLE scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT), svc = NULL;
  if (scm != NULL)
    svc = OpenServiceW(scm, SB__SERVICE_WNAME, SERVICE_CHANGE_CONFIG | SERVICE_START);
  if (svc == NULL) {
    sb__recovery_error = GetLastError();
    sb__recovery_what = "the recovery actions";
  } else {
    sb__recovery_error = set_recovery(svc, &sb__recovery_what);
  }
  if (svc != NULL)
    CloseServiceHandle(svc);
  if (scm != NULL)
    CloseServiceHandle(scm);
}

static void on_started(sb__broker_t* b) {
  sb__running_broker = b;
  report(SERVICE_RUNNING, NO_ERROR, 0, 0);
  SB_LOG_I("service", "running as the service %s", SB_SERVICE_NAME);
  if (sb__recovery_error != 0)
    SB_LOG_W("service",
             "cannot set %s: error %lu; an administrator can (sc failure, sc "
             "failureflag)",
             sb__recovery_what, sb__recovery_error);
}

static HANDLE sb__start_ticker;

/*
 * START_PENDING is reported only once the quick checks passed (the config loads, the
 * directories can be used): a start that fails at once then reports STOPPED, with its
 * service-specific code, as its first status. StartService itself fails then where
 * the SCM decides on the first status (Wine's: "net start" would otherwise say
 * "started successfully" for a service that was already gone); Windows' net start
 * waits for the state after START_PENDING either way.
 */
void sb__service_starting(void) {
  if (sb__status_handle == NULL || sb__start_ticker != NULL)
    return;
  report(SERVICE_START_PENDING, NO_ERROR, 0, SB__START_WAIT_HINT_MS);
  sb__start_ticker = CreateThread(NULL, 0, pending_ticker,
                                  (LPVOID)(uintptr_t)SERVICE_START_PENDING, 0, NULL);
}

static void WINAPI service_main(DWORD argc, LPWSTR* argv) {
  HANDLE start_ticker;
  (void)argc;
  (void)argv;
  sb__status_handle =
      RegisterServiceCtrlHandlerExW(SB__SERVICE_WNAME, control_handler, NULL);
  if (sb__status_handle == NULL) {
    sb__exit_code = 4;
    return;
  }
  set_own_recovery();
  sb__exit_code = sb__run(sb__run_arg, on_started);
  sb__running_broker = NULL;
  /* A failed start reports why: the service-specific code is the exit status. */
  if (sb__exit_code != 0)
    report(SERVICE_STOPPED, ERROR_SERVICE_SPECIFIC_ERROR, (DWORD)sb__exit_code, 0);
  else
    report(SERVICE_STOPPED, NO_ERROR, 0, 0);
  start_ticker = sb__start_ticker;
  if (start_ticker != NULL)
    CloseHandle(start_ticker); /* it ended once the state left START_PENDING */
}

int sb__service_dispatch(sb__run_fn run, void* arg, int* exit_code) {
  SERVICE_TABLE_ENTRYW table[] = {{SB__SERVICE_WNAME, service_main}, {NULL, NULL}};
  sb__run = run;
  sb__run_arg = arg;
  InitializeCriticalSection(&sb__status_lock);
  if (!StartServiceCtrlDispatcherW(table)) {
    /* ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: started from a console, not the SCM. */
    return 0;
  }
  *exit_code = sb__exit_code;
  return 1;
}

static int open_manager(DWORD access, SC_HANDLE* scm) {
  *scm = OpenSCManagerW(NULL, NULL, access);
  if (*scm != NULL)
    return 0;
  if (GetLastError() == ERROR_ACCESS_DENIED) {
    fprintf(stderr, "streambrokerd: the service manager refused access: run this as an "
                    "administrator\n");
    return SB_EACCES;
  }
  fprintf(stderr, "streambrokerd: OpenSCManager: error %lu\n", GetLastError());
  return SB_EIO;
}

int sb__service_install(const char* config_path, const char* account,
                        const char* password) {
  WCHAR exe[MAX_PATH], config[MAX_PATH], command[3 * MAX_PATH];
  WCHAR wide[MAX_PATH], waccount[256], wpassword[256];
  SC_HANDLE scm, svc;
  SERVICE_DESCRIPTIONW desc;
  int r;
  if (GetModuleFileNameW(NULL, exe, MAX_PATH) == 0)
    return SB_EIO;
  if (config_path != NULL) {
    /* The service starts in system32: the config path must not be relative. */
    if (MultiByteToWideChar(CP_UTF8, 0, config_path, -1, wide, MAX_PATH) == 0 ||
        GetFullPathNameW(wide, MAX_PATH, config, NULL) == 0)
      return SB_EINVAL;
    _snwprintf(command, 3 * MAX_PATH, L"\"%ls\" --config \"%ls\"", exe, config);
  } else {
    _snwprintf(command, 3 * MAX_PATH, L"\"%ls\"", exe);
  }
  command[3 * MAX_PATH - 1] = 0;
  if ((account && MultiByteToWideChar(CP_UTF8, 0, account, -1, waccount, 256) == 0) ||
      (password && MultiByteToWideChar(CP_UTF8, 0, password, -1, wpassword, 256) == 0))
    return SB_EINVAL;
  if ((r = open_manager(SC_MANAGER_CREATE_SERVICE, &scm)) != 0)
    return r;
  svc = CreateServiceW(scm, SB__SERVICE_WNAME, L"StreamBroker log-stream broker",
                       SERVICE_ALL_ACCESS, SERVICE_WIN32_OWN_PROCESS,
                       SERVICE_AUTO_START, SERVICE_ERROR_NORMAL, command, NULL, NULL,
                       NULL, account ? waccount : NULL, password ? wpassword : NULL);
  if (svc == NULL) {
    DWORD e = GetLastError();
    CloseServiceHandle(scm);
    if (e == ERROR_SERVICE_EXISTS) {
      fprintf(stderr, "streambrokerd: the service %s is already installed\n",
              SB_SERVICE_NAME);
      return SB_EEXIST;
    }
    if (e == ERROR_ACCESS_DENIED) {
      fprintf(stderr, "streambrokerd: CreateService: access denied: run this as an "
                      "administrator\n");
      return SB_EACCES;
    }
    fprintf(stderr, "streambrokerd: CreateService: error %lu\n", e);
    return SB_EIO;
  }
  desc.lpDescription = L"Brokers log streams of local programs to an upstream stream "
                       L"server (LUCI LogDog butler protocol), or archives them.";
  ChangeServiceConfig2W(svc, SERVICE_CONFIG_DESCRIPTION, &desc);
  {
    const char* what = NULL;
    DWORD e = set_recovery(svc, &what);
    if (e != 0)
      fprintf(stderr,
              "streambrokerd: cannot set %s: error %lu (the service tries again as it "
              "starts)\n",
              what, e);
  }
  CloseServiceHandle(svc);
  CloseServiceHandle(scm);
  printf("installed the service %s as %s: %ls\n", SB_SERVICE_NAME,
         account ? account : "LocalSystem", command);
  if (account == NULL) {
    /* An existing data directory (an earlier version's, with ProgramData's access
     * list) becomes the service's own; an absent one the service makes so itself. */
    char why[1024];
    if (sb__path_make_private(sb__default_data_dir(), why, sizeof(why)) != 0)
      fprintf(stderr,
              "streambrokerd: the service will not start until this is fixed: %s\n",
              why);
  }
  /* Its events then show with our message table, not "description not found". */
  return sb__eventlog_install();
}

int sb__service_uninstall(void) {
  SC_HANDLE scm, svc;
  SERVICE_STATUS st;
  int r, i;
  if ((r = open_manager(SC_MANAGER_CONNECT, &scm)) != 0)
    return r;
  svc = OpenServiceW(scm, SB__SERVICE_WNAME,
                     DELETE | SERVICE_STOP | SERVICE_QUERY_STATUS);
  if (svc == NULL) {
    DWORD e = GetLastError();
    CloseServiceHandle(scm);
    if (e == ERROR_SERVICE_DOES_NOT_EXIST) {
      fprintf(stderr, "streambrokerd: the service %s is not installed\n",
              SB_SERVICE_NAME);
      return SB_ENOENT;
    }
    fprintf(stderr, "streambrokerd: OpenService: %s\n",
            e == ERROR_ACCESS_DENIED ? "access denied: run this as an administrator"
                                     : "failed");
    return sb__err_keep(sb__os_err((DWORD)e), SB__ERR_BIT(SB_EACCES));
  }
  if (QueryServiceStatus(svc, &st) && st.dwCurrentState != SERVICE_STOPPED) {
    ControlService(svc, SERVICE_CONTROL_STOP, &st);
    for (i = 0; i < 300 && QueryServiceStatus(svc, &st) &&
                st.dwCurrentState != SERVICE_STOPPED;
         i++)
      Sleep(100);
  }
  r = DeleteService(svc) ? 0 : SB_EIO;
  CloseServiceHandle(svc);
  CloseServiceHandle(scm);
  if (r == 0)
    printf("removed the service %s\n", SB_SERVICE_NAME);
  else
    fprintf(stderr, "streambrokerd: DeleteService: error %lu\n", GetLastError());
  if (sb__eventlog_uninstall() != 0 && r == 0)
    r = SB_EIO;
  return r;
}

#define SB__ENV_KEY L"SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment"

/* Whether a PATH entry (len characters) is dir: case-insensitively, with or without
 * a trailing backslash. */
static int path_entry_is(const WCHAR* entry, size_t len, const WCHAR* dir) {
  size_t dlen = wcslen(dir);
  while (len > 0 && entry[len - 1] == L'\\')
    len--;
  while (dlen > 0 && dir[dlen - 1] == L'\\')
    dlen--;
  return len == dlen && _wcsnicmp(entry, dir, len) == 0;
}

/*
 * The machine's PATH is one registry value that other installers edit too: it is read,
 * changed by whole entries (never rewritten from a copy of the process's own PATH,
 * which has the user's part and expanded variables), and written only when it changes.
 */
int sb__service_path(int add) {
  WCHAR dir[MAX_PATH], *slash, *old = NULL, *out = NULL, *p;
  HKEY key;
  DWORD type = REG_EXPAND_SZ, size = 0;
  LONG e;
  int r = 0, found = 0;
  if (GetModuleFileNameW(NULL, dir, MAX_PATH) == 0 ||
      (slash = wcsrchr(dir, L'\\')) == NULL)
    return SB_EIO;
  *slash = 0;
  e = RegOpenKeyExW(HKEY_LOCAL_MACHINE, SB__ENV_KEY, 0, KEY_QUERY_VALUE | KEY_SET_VALUE,
                    &key);
  if (e != ERROR_SUCCESS) {
    fprintf(stderr,
            "streambrokerd: the system environment's registry key: error %ld%s\n", e,
            e == ERROR_ACCESS_DENIED ? " (run this as an administrator)" : "");
    return sb__err_keep(sb__os_err((DWORD)e), SB__ERR_BIT(SB_EACCES));
  }
  e = RegQueryValueExW(key, L"Path", NULL, &type, NULL, &size);
  if (e != ERROR_SUCCESS && e != ERROR_FILE_NOT_FOUND) {
    fprintf(stderr, "streambrokerd: reading the system PATH: error %ld\n", e);
    RegCloseKey(key);
    return SB_EIO;
  }
  if (e == ERROR_FILE_NOT_FOUND)
    size = 0;
  old = sb__xcalloc(size / sizeof(WCHAR) + 2, sizeof(WCHAR));
  if (size > 0 &&
      RegQueryValueExW(key, L"Path", NULL, &type, (BYTE*)old, &size) != ERROR_SUCCESS) {
    fprintf(stderr, "streambrokerd: reading the system PATH failed\n");
    r = SB_EIO;
    goto done;
  }
  out = sb__xcalloc(wcslen(old) + wcslen(dir) + 4, sizeof(WCHAR));
  for (p = old; *p != 0;) {
    WCHAR* semi = wcschr(p, L';');
    size_t len = semi != NULL ? (size_t)(semi - p) : wcslen(p);
    int is_dir = len > 0 && path_entry_is(p, len, dir);
    found |= is_dir;
    if (len > 0 && (add || !is_dir)) {
      if (out[0] != 0)
        wcscat(out, L";");
      wcsncat(out, p, len);
    }
    p += len;
    if (*p == L';')
      p++;
  }
  if (add ? found : !found) {
    printf("%ls is %s the system PATH\n", dir, add ? "already on" : "not on");
    goto done;
  }
  if (add) {
    if (out[0] != 0)
      wcscat(out, L";");
    wcscat(out, dir);
  }
  e = RegSetValueExW(key, L"Path", 0, type == REG_SZ ? REG_SZ : REG_EXPAND_SZ,
                     (const BYTE*)out, (DWORD)((wcslen(out) + 1) * sizeof(WCHAR)));
  if (e != ERROR_SUCCESS) {
    fprintf(stderr, "streambrokerd: writing the system PATH: error %ld\n", e);
    r = sb__err_keep(sb__os_err((DWORD)e), SB__ERR_BIT(SB_EACCES));
    goto done;
  }
  /* New consoles see it; running programs that listen (Explorer) reload it. */
  SendMessageTimeoutW(HWND_BROADCAST, WM_SETTINGCHANGE, 0, (LPARAM)L"Environment",
                      SMTO_ABORTIFHUNG, 5000, NULL);
  printf("%s %ls %s the system PATH\n", add ? "added" : "removed", dir,
         add ? "to" : "from");
done:
  RegCloseKey(key);
  free(old);
  free(out);
  return r;
}
