/* config.c: environment variables, validated. A malformed value is an error
 * reported once at start-up, never silently replaced by the default. */
#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *proto_config_str(const char *name, const char *def) {
  const char *v = getenv(name);
  return (v && *v) ? v : def;
}

int proto_config_u64(const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out) {
  const char *v = getenv(name);
  if (!v || !*v) {
    *out = def;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (v[0] == '-' || v[0] == '+' || errno != 0 || *end != '\0' || n < min || n > max) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "%s=%s: expected an integer from %llu to %llu", name, v,
              (unsigned long long)min, (unsigned long long)max);
    return PROTO_EINVAL;
  }
  *out = n;
  return 0;
}

int proto_config_port(const char *name, int def, int *out) {
  uint64_t v;
  int rc = proto_config_u64(name, (uint64_t)def, 0, 65535, &v);
  if (rc == 0)
    *out = (int)v;
  return rc;
}

int proto_config_bool(const char *name, int def, int *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  const char *v = getenv(name);
  if (!v || !*v) {
    *out = def;
    return 0;
  }
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(v, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  proto_log(PROTO_LOG_ERROR, NULL, "config_invalid", "%s=%s: expected true or false",
            name, v);
  return PROTO_EINVAL;
}
