/*
 * config_keys.h - the table of config keys, shared by config.c (defaults, parsing,
 * validation) and config_keys.c (the table itself, the key table and default config
 * printed). Included by those two only; other modules include internal.h.
 */
#ifndef SB_SERVICE_CONFIG_KEYS_H
#define SB_SERVICE_CONFIG_KEYS_H

#include "internal.h"

typedef enum {
  SB__KEY_STRING, /* a JSON string (with the flags below) */
  SB__KEY_UINT,   /* a JSON number with an integer value within [min, max] */
  SB__KEY_ENUM    /* a JSON string among values[]; stored as its index, an int */
} sb__key_type_t;

enum {
  SB__KEY_NULLABLE = 1, /* null is allowed and stored as NULL */
  SB__KEY_ADDRESS = 2,  /* an address of this platform's kind */
  SB__KEY_NONEMPTY = 4, /* "" is refused */
  SB__KEY_PATH = 8,     /* a path: absolute ("" keeps its meaning) */
  SB__KEY_NAME = 16     /* one account or group name: no control character, ',' or
                           ':', at most 256 bytes */
};

typedef struct {
  const char* name;
  sb__key_type_t type;
  unsigned flags;
  size_t offset;                     /* of the field in sb__config_t */
  uint64_t min, max, def;            /* UINT; ENUM: def is the index of the default */
  const char* def_string;            /* STRING default; NULL: def_platform(), or null */
  const char* (*def_platform)(void); /* STRING default that depends on the platform */
  const char* def_doc;       /* the table's default column, when platform-bound */
  const char* const* values; /* ENUM names, NULL-terminated, index = value */
  const char* allowed_doc;   /* the table's allowed column, for STRING keys */
  const char* meaning;
} sb__key_t;

/* One row per key of sb__config_t, in the order of the printed table. */
extern const sb__key_t sb__keys[];
extern const size_t sb__nkeys;
#define SB__NKEYS sb__nkeys

/* A STRING key's default: its platform's, or the fixed one (NULL: null). */
const char* sb__config_key_default(const sb__key_t* k);

#endif /* SB_SERVICE_CONFIG_KEYS_H */
