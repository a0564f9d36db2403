/*
 * win/eventlog.c - the event source StreamBroker in the Application log: its
 * registration (install, uninstall; the MSI writes the same registry values) and the
 * reports. The messages are the message table compiled into streambrokerd.exe from
 * streambroker.mc, each "%1" after a short lead, so the Event Viewer shows our text
 * with no "description cannot be found" around it.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "../internal.h"
#include "oserror.h"

#define SB__EVENT_SOURCE L"StreamBroker"
#define SB__EVENT_KEY                                                                  \
  L"SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\StreamBroker"

/* Written once before the threads that report start, read by them after. */
static HANDLE sb__event_source;

void sb__eventlog_open(void) {
  if (sb__event_source == NULL)
    sb__event_source = RegisterEventSourceW(NULL, SB__EVENT_SOURCE);
}

/*
 * The Event Viewer reads "%%N" in an insertion string as a reference to parameter
 * message N and shows that instead (shortened archive names hold "%%" and hex
 * digits): a word joiner (U+2060, invisible) goes between two '%', in place. w has
 * room for twice its length.
 */
static void escape_percents(WCHAR* w) {
  size_t len = wcslen(w), i;
  for (i = 0; i + 1 < len; i++) {
    if (w[i] == L'%' && w[i + 1] == L'%') {
      memmove(w + i + 2, w + i + 1, (len - i) * sizeof(WCHAR));
      w[i + 1] = 0x2060;
      len++;
      i++;
    }
  }
}

/* ReportEventW is thread-safe: the log calls this from any thread, under its lock. */
void sb__eventlog_report(int event_id, const char* text) {
  WCHAR stack[1024];
  WCHAR* w = stack;
  LPCWSTR strings[1];
  WORD type;
  int n;
  if (sb__event_source == NULL)
    return;
  n = MultiByteToWideChar(CP_UTF8, 0, text, -1, NULL, 0);
  if (n <= 0)
    return;
  /* Room for a word joiner after every '%' (below). */
  if ((size_t)n * 2 > sizeof(stack) / sizeof(stack[0]))
    w = sb__xmalloc((size_t)n * 2 * sizeof(WCHAR));
  MultiByteToWideChar(CP_UTF8, 0, text, -1, w, n);
  escape_percents(w);
  switch (event_id) {
  case SB__EVENT_STARTED:
  case SB__EVENT_STOPPED:
    type = EVENTLOG_INFORMATION_TYPE;
    break;
  case SB__EVENT_START_FAILED:
  case SB__EVENT_ERROR:
    type = EVENTLOG_ERROR_TYPE;
    break;
  default:
    type = EVENTLOG_WARNING_TYPE;
    break;
  }
  strings[0] = w;
  ReportEventW(sb__event_source, type, 0, (DWORD)event_id, NULL, 1, 0, strings, NULL);
  if (w != stack)
    free(w);
}

void sb__eventlog_close(void) {
  if (sb__event_source != NULL)
    DeregisterEventSource(sb__event_source);
  sb__event_source = NULL;
}

int sb__eventlog_install(void) {
  WCHAR exe[MAX_PATH];
  DWORD types = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE;
  DWORD len = GetModuleFileNameW(NULL, exe, MAX_PATH);
  HKEY key;
  LONG e;
  if (len == 0 || len >= MAX_PATH)
    return SB_EIO;
  e = RegCreateKeyExW(HKEY_LOCAL_MACHINE, SB__EVENT_KEY, 0, NULL, 0, KEY_SET_VALUE, NULL,
                      &key, NULL);
  if (e == ERROR_SUCCESS) {
    e = RegSetValueExW(key, L"EventMessageFile", 0, REG_EXPAND_SZ, (const BYTE*)exe,
                       (len + 1) * sizeof(WCHAR));
    if (e == ERROR_SUCCESS)
      e = RegSetValueExW(key, L"TypesSupported", 0, REG_DWORD, (const BYTE*)&types,
                         sizeof(types));
    RegCloseKey(key);
  }
  if (e != ERROR_SUCCESS) {
    fprintf(stderr, "streambrokerd: registering the event source %s: error %ld%s\n",
            SB_SERVICE_NAME, e,
            e == ERROR_ACCESS_DENIED ? " (run this as an administrator)" : "");
    return sb__err_keep(sb__os_err((DWORD)e), SB__ERR_BIT(SB_EACCES));
  }
  printf("registered the event source %s in the Application log\n", SB_SERVICE_NAME);
  return 0;
}

int sb__eventlog_uninstall(void) {
  LONG e = RegDeleteKeyW(HKEY_LOCAL_MACHINE, SB__EVENT_KEY);
  if (e == ERROR_FILE_NOT_FOUND)
    return 0;
  if (e != ERROR_SUCCESS) {
    fprintf(stderr, "streambrokerd: removing the event source %s: error %ld\n",
            SB_SERVICE_NAME, e);
    return SB_EIO;
  }
  printf("removed the event source %s\n", SB_SERVICE_NAME);
  return 0;
}
