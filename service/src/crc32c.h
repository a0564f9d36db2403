/*
 * crc32c.h - CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected), as used by iSCSI,
 * ext4 and SSE4.2's crc32 instruction. Any thread.
 */
#ifndef SB_SERVICE_CRC32C_H
#define SB_SERVICE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at data. sb__crc32c(0, "123456789", 9) is
 * 0xE3069283. */
uint32_t sb__crc32c(uint32_t crc, const void* data, size_t len);

#endif
