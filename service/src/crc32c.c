/*
 * crc32c.c - CRC-32C (Castagnoli), the checksum of every spool chunk.
 *
 * Slicing-by-8 in portable C: eight 256-entry tables, built once on first use. A chunk
 * is at most one client read (128 KiB), and this runs on the spool's worker thread, so
 * a software CRC at a few GB/s costs far less than the SQLite write beside it.
 */
#include "crc32c.h"

#include <uv.h>

static uint32_t sb__crc_table[8][256];
static uv_once_t sb__crc_once = UV_ONCE_INIT;

static void crc_init(void) {
  uint32_t i, j, c;
  for (i = 0; i < 256; i++) {
    c = i;
    for (j = 0; j < 8; j++)
      c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    sb__crc_table[0][i] = c;
  }
  for (i = 0; i < 256; i++)
    for (j = 1; j < 8; j++)
      sb__crc_table[j][i] = (sb__crc_table[j - 1][i] >> 8) ^
                            sb__crc_table[0][sb__crc_table[j - 1][i] & 0xff];
}

uint32_t sb__crc32c(uint32_t crc, const void* data, size_t len) {
  const unsigned char* p = data;
  uv_once(&sb__crc_once, crc_init);
  crc = ~crc;
  while (len >= 8) {
    /* Little-endian assembly by hand: no alignment or byte-order assumption. */
    uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                         (uint32_t)p[3] << 24);
    crc = sb__crc_table[7][lo & 0xff] ^ sb__crc_table[6][(lo >> 8) & 0xff] ^
          sb__crc_table[5][(lo >> 16) & 0xff] ^ sb__crc_table[4][lo >> 24] ^
          sb__crc_table[3][p[4]] ^ sb__crc_table[2][p[5]] ^ sb__crc_table[1][p[6]] ^
          sb__crc_table[0][p[7]];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = (crc >> 8) ^ sb__crc_table[0][(crc ^ *p++) & 0xff];
  return ~crc;
}
