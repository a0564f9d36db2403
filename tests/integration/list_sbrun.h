/* list_sbrun.h - integration tests of test_sbrun.c. */
#ifndef SB_LIST_SBRUN_H
#define SB_LIST_SBRUN_H

#define TEST_LIST_SBRUN(X)                                                             \
  X(sbrun_passes_stdout_and_stderr)                                                    \
  X(sbrun_exit_status_and_env)                                                         \
  X(sbrun_errors)

#endif
