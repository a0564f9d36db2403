/* paths.c - joining two path parts, written once for both platforms (the separator is
 * the platform's, paths.h). */
#include <string.h>

#include "alloc.h"
#include "paths.h"

/* One separator between the parts however many each brings; an empty part gives the
 * other one unchanged. */
char* sb__path_join(const char* a, const char* b) {
  size_t la = strlen(a), lb = strlen(b);
  char* out;
  if (la == 0 || lb == 0)
    return sb__xstrdup(la == 0 ? b : a);
  while (la > 0 && SB__IS_PATH_SEP(a[la - 1]))
    la--;
  while (lb > 0 && SB__IS_PATH_SEP(b[0])) {
    b++;
    lb--;
  }
  out = sb__xmalloc(la + lb + 2);
  memcpy(out, a, la);
  out[la] = SB__PATH_SEP;
  memcpy(out + la + 1, b, lb + 1);
  return out;
}
