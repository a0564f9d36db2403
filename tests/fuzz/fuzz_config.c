/*
 * fuzz_config.c - the config parser on arbitrary text: it must either accept it or
 * fail with SB_ECONFIG and a message naming a line, never crash or leak, and an
 * accepted config must hold values within each key's range.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sb__config_t cfg;
  char err[512];
  int r;
  sb__config_defaults(&cfg);
  err[0] = '\0';
  r = sb__config_parse(&cfg, (const char*)data, size, "fuzz.json", err, sizeof(err));
  if (r != 0 && (r != SB_ECONFIG || strncmp(err, "fuzz.json:", 10) != 0))
    abort();
  if (r == 0 && (cfg.max_frame_size < 64 || cfg.max_frame_size > SB_MAX_FRAME_SIZE ||
                 cfg.backoff_max_ms < cfg.backoff_initial_ms || cfg.control_pipe == NULL ||
                 cfg.data_dir == NULL || cfg.archive_dir == NULL))
    abort();
  sb__config_free(&cfg);
  return 0;
}
