/* list.h - every unit test, from the per-area lists. */
#ifndef SB_UNIT_LIST_H
#define SB_UNIT_LIST_H

#include "list_archive.h"
#include "list_codec.h"
#include "list_config.h"
#include "list_json.h"
#include "list_strset.h"
#include "list_upstream.h"

#define TEST_LIST(X)                                                                   \
  TEST_LIST_CODEC(X)                                                                   \
  TEST_LIST_JSON(X) TEST_LIST_CONFIG(X) TEST_LIST_ARCHIVE(X) TEST_LIST_UPSTREAM(X)     \
      TEST_LIST_STRSET(X)
TEST_LIST(TEST_DECLARE)

#endif
