/* deadline.c: X-Request-Timeout (deadline.h). */
#include "deadline.h"

#include <string.h>

int gw_deadline_parse(const char *h, uint32_t cap_ms, uint32_t *out) {
  uint64_t v = 0, scale = 1;
  int digits = 0;
  if (!h)
    return -1;
  while (*h == ' ' || *h == '\t')
    h++;
  for (; *h >= '0' && *h <= '9'; h++, digits++) {
    /* Past any cap already: keep scanning, stop growing (no overflow). */
    if (v < UINT64_C(1) << 40)
      v = v * 10 + (uint64_t)(*h - '0');
  }
  if (digits == 0)
    return -1;
  if (strncmp(h, "ms", 2) == 0)
    h += 2;
  else if (*h == 's') {
    scale = 1000;
    h++;
  }
  while (*h == ' ' || *h == '\t')
    h++;
  if (*h != '\0' || v == 0)
    return -1;
  v *= scale;
  *out = v > cap_ms ? cap_ms : (uint32_t)v;
  return 0;
}
