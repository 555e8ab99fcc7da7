/* proto/util.h: clocks, timestamps and random ids used by every daemon. */
#ifndef PROTO_UTIL_H
#define PROTO_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* "2026-01-01T00:00:00.000Z" plus NUL: JavaScript's Date.toISOString(). */
#define PROTO_ISO_TIME_LEN 25
/* prefix + 32 hex characters + NUL fits in this much. */
#define PROTO_ID_MAX 64

/* Monotonic milliseconds (uv_hrtime based); only differences are meaningful. */
uint64_t proto_now_ms(void);

/* Current UTC wall-clock time in ISO 8601 with milliseconds. */
void proto_time_iso(char out[PROTO_ISO_TIME_LEN]);

/* Fill buf with len cryptographically random bytes. 0 or PROTO_EIO. */
int proto_random_bytes(void *buf, size_t len);

/* Write prefix followed by 32 lowercase hex digits into out: 48 bits of Unix
 * milliseconds, then 80 random bits (the UUIDv7 layout). URL-safe,
 * unguessable, and ordered by creation time to the millisecond, which keeps
 * index inserts on the last page. 0, PROTO_EINVAL (out too small) or
 * PROTO_EIO. */
int proto_random_id(const char *prefix, char *out, size_t out_size);

#endif
