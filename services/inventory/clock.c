/* clock.c: the inventory's wall clock. Reservation expiry is a point in Unix
 * time stored in the database, so it must survive a restart: the monotonic
 * clock of libuv would not. Tests replace the clock (inventory_app_t.now_ms).
 */
#include "inventory.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t inventory_clock_wall_ms(void *arg) {
  struct timespec ts;
  (void)arg;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return 0; /* cannot fail with CLOCK_REALTIME and a valid pointer */
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void inventory_time_iso(int64_t unix_ms, char out[PROTO_ISO_TIME_LEN]) {
  time_t secs = (time_t)(unix_ms / 1000);
  int ms = (int)(unix_ms % 1000);
  struct tm tm;
  char tmp[64]; /* roomy: keeps gcc's truncation analysis quiet */
  if (unix_ms < 0 || !gmtime_r(&secs, &tm)) {
    memcpy(out, "1970-01-01T00:00:00.000Z", PROTO_ISO_TIME_LEN);
    return;
  }
  snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  memcpy(out, tmp, PROTO_ISO_TIME_LEN);
  out[PROTO_ISO_TIME_LEN - 1] = '\0';
}
