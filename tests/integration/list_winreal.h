/* list_winreal.h - integration tests of test_winreal.c: the Windows service as real
 * Windows runs it (issue 22), each run under Wine where Wine can show the fault. */
#ifndef SB_LIST_WINREAL_H
#define SB_LIST_WINREAL_H

#define TEST_LIST_WINREAL(X)                                                           \
  X(winreal_watcher_refused_upstream)                                                  \
  X(winreal_end_flush_cancel_gap)                                                      \
  X(winreal_many_streams_through_pair)                                                 \
  X(winservice_start_checkpoints_large_archive)                                        \
  X(winreal_archive_delete_pending_name)                                               \
  X(winreal_sbrun_unicode_argument)                                                    \
  X(winreal_unicode_paths)

#endif
