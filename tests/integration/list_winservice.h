/* list_winservice.h - integration tests of test_winservice.c. */
#ifndef SB_LIST_WINSERVICE_H
#define SB_LIST_WINSERVICE_H

#define TEST_LIST_WINSERVICE(X)                                                        \
  X(winservice_install_start_use_stop_uninstall)                                       \
  X(winservice_failed_start_reports_exit_code)                                         \
  X(winservice_install_as_account)                                                     \
  X(winservice_event_source)                                                           \
  X(winservice_unicode_config_path)

#endif
