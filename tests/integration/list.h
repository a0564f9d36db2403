/* list.h - every integration test, from the per-area lists. */
#ifndef SB_ITEST_LIST_H
#define SB_ITEST_LIST_H

#include "list_accept.h"
#include "list_admin.h"
#include "list_archive.h"
#include "list_archive_spool.h"
#include "list_broker.h"
#include "list_faults.h"
#include "list_instance.h"
#include "list_live.h"
#include "list_butler.h"
#include "list_ops.h"
#include "list_reload.h"
#include "list_follow.h"
#include "list_sbcat.h"
#include "list_sbrun.h"
#include "list_security_files.h"
#include "list_security_limits.h"
#include "list_security_win.h"
#include "list_spool.h"
#include "list_winservice.h"
#include "list_winreal.h"

#define TEST_LIST(X)                                                                   \
  TEST_LIST_SBCAT(X) TEST_LIST_SBRUN(X) TEST_LIST_BROKER(X) TEST_LIST_ADMIN(X) TEST_LIST_SPOOL(X) \
      TEST_LIST_FAULTS(X) TEST_LIST_WINSERVICE(X) TEST_LIST_ARCHIVE(X) TEST_LIST_BUTLER(X) \
      TEST_LIST_OPS(X) TEST_LIST_LIVE(X) TEST_LIST_INSTANCE(X) TEST_LIST_ARCHIVE_SPOOL(X) \
      TEST_LIST_ACCEPT(X) TEST_LIST_SECURITY_FILES(X) TEST_LIST_SECURITY_LIMITS(X) \
      TEST_LIST_SECURITY_WIN(X) TEST_LIST_WINREAL(X) TEST_LIST_RELOAD(X) TEST_LIST_FOLLOW(X)
TEST_LIST(TEST_DECLARE)

#endif
