/* util.c: clocks, ISO timestamps and random ids. */
#include "proto/util.h"
#include "proto/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uv.h>

uint64_t proto_now_ms(void) {
  return uv_hrtime() / 1000000u;
}

void proto_time_iso(char out[PROTO_ISO_TIME_LEN]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  /* A roomy buffer keeps the compiler's truncation analysis quiet; the text
   * is always 24 characters for years 0-9999. */
  char tmp[64];
  snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, (int)(ts.tv_nsec / 1000000));
  memcpy(out, tmp, PROTO_ISO_TIME_LEN - 1);
  out[PROTO_ISO_TIME_LEN - 1] = '\0';
}

int proto_random_bytes(void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return PROTO_EIO;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Ids take their random bits from a per-thread pool filled by one getrandom
 * call per 25 ids, instead of a system call each. The bytes are the same
 * kernel CSPRNG output, each used once. */
#define RANDOM_POOL_BYTES 256

static __thread unsigned char random_pool[RANDOM_POOL_BYTES];
static __thread size_t random_left;

static int random_take(unsigned char *out, size_t n) {
  if (n > RANDOM_POOL_BYTES)
    return proto_random_bytes(out, n);
  if (random_left < n) {
    if (proto_random_bytes(random_pool, sizeof(random_pool)) != 0)
      return PROTO_EIO;
    random_left = sizeof(random_pool);
  }
  unsigned char *p = random_pool + (sizeof(random_pool) - random_left);
  memcpy(out, p, n);
  memset(p, 0, n); /* not kept around once handed out */
  random_left -= n;
  return 0;
}

int proto_random_id(const char *prefix, char *out, size_t out_size) {
  static const char hex[] = "0123456789abcdef";
  unsigned char b[16];
  size_t plen = prefix ? strlen(prefix) : 0;
  if (out_size < plen + 2 * sizeof(b) + 1)
    return PROTO_EINVAL;
  /* 48 bits of Unix milliseconds first (as UUIDv7 does), then 80 random
   * bits. Ids made close in time sort next to each other, so a batch of
   * inserts into an index on them touches its last page instead of one
   * random page per row: fewer pages per commit, a smaller working set. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  for (int i = 0; i < 6; i++)
    b[i] = (unsigned char)(ms >> (8 * (5 - i)));
  if (random_take(b + 6, sizeof(b) - 6) != 0)
    return PROTO_EIO;
  memcpy(out, prefix, plen);
  for (size_t i = 0; i < sizeof(b); i++) {
    out[plen + 2 * i] = hex[b[i] >> 4];
    out[plen + 2 * i + 1] = hex[b[i] & 15];
  }
  out[plen + 2 * sizeof(b)] = '\0';
  return 0;
}
