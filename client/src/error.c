/* error.c - the text and name of every SB_E* code, generated from SB_ERRNO_MAP. */
#include "streambroker.h"

const char* sb_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define SB__ERR_TEXT(name, value, text)                                                \
  case SB_##name:                                                                      \
    return text;
    SB_ERRNO_MAP(SB__ERR_TEXT)
#undef SB__ERR_TEXT
  default:
    return "unknown error";
  }
}

const char* sb_err_name(int err) {
  switch (err) {
  case 0:
    return "SB_OK";
#define SB__ERR_NAME(name, value, text)                                                \
  case SB_##name:                                                                      \
    return "SB_" #name;
    SB_ERRNO_MAP(SB__ERR_NAME)
#undef SB__ERR_NAME
  default:
    return "SB_UNKNOWN";
  }
}
