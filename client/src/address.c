/* address.c - stream server addresses and stream name joining. */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Go's limit: the macOS sun_path size, kept so one address works on every POSIX. */
#define SB__UNIX_PATH_MAX 104

int sb__address_parse(const char* address, int* kind, const char** path) {
  const char* colon;
  if (address == NULL || (colon = strchr(address, ':')) == NULL)
    return SB_EADDRESS;
  *path = colon + 1;
  if ((size_t)(colon - address) == 4 && memcmp(address, "unix", 4) == 0) {
    if ((*path)[0] != '/' || strlen(*path) > SB__UNIX_PATH_MAX)
      return SB_EADDRESS;
    *kind = SB__ADDR_UNIX;
    return 0;
  }
  if ((size_t)(colon - address) == 8 && memcmp(address, "net.pipe", 8) == 0) {
    /* \\.\pipe\ plus the name must fit in 256 characters. */
    if ((*path)[0] == '\0' || strlen(*path) > 256 - 9)
      return SB_EADDRESS;
    *kind = SB__ADDR_PIPE;
    return 0;
  }
  return SB_EADDRESS;
}

static void sb__trim(const char** s, size_t* len) {
  while (*len > 0 && (*s)[0] == '/') {
    (*s)++;
    (*len)--;
  }
  while (*len > 0 && (*s)[*len - 1] == '/')
    (*len)--;
}

char* sb__name_join(const char* ns, const char* name) {
  size_t nl = ns ? strlen(ns) : 0, ml = name ? strlen(name) : 0;
  char* out;
  size_t o = 0;
  if (ns)
    sb__trim(&ns, &nl);
  if (name)
    sb__trim(&name, &ml);
  out = malloc(nl + ml + 2);
  if (out == NULL)
    return NULL;
  if (nl > 0) {
    memcpy(out, ns, nl);
    o = nl;
  }
  if (ml > 0) {
    if (o > 0)
      out[o++] = '/';
    memcpy(out + o, name, ml);
    o += ml;
  }
  out[o] = '\0';
  return out;
}
