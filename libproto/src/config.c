/* config.c: environment variables, validated. A malformed value is an error
 * reported once at start-up, naming the variable, the value and what is
 * expected, never silently replaced by the default nor left for the first
 * request to fail on (a host "a,b" used to start a gateway that answered 503
 * to everything). */
#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_IP_TEXT_MAX_BYTES 64      /* INET6_ADDRSTRLEN (46) and room to spare */
#define CONFIG_CHOICES_TEXT_MAX_BYTES 256
#define CONFIG_URL_SHOWN_MAX_BYTES 512

/* The variable's value, NULL when unset or empty (both mean "the default"). */
static const char *env_value(const char *name) {
  const char *v = getenv(name);
  return (v && *v) ? v : NULL;
}

static int invalid(const char *name, const char *value, const char *expected) {
  proto_log(PROTO_LOG_ERROR, NULL, "config_invalid", "%s=%s: expected %s", name, value,
            expected);
  return PROTO_EINVAL;
}

const char *proto_config_str(const char *name, const char *def) {
  const char *v = env_value(name);
  return v ? v : def;
}

int proto_config_u64(const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out) {
  const char *v = env_value(name);
  if (!v) {
    *out = def;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  /* strtoull accepts leading spaces and a sign ("-1" wraps to 2^64-1). */
  if (v[0] < '0' || v[0] > '9' || errno != 0 || *end != '\0' || n < min || n > max) {
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

int proto_config_peer_port(const char *name, int def, int *out) {
  uint64_t v;
  int rc = proto_config_u64(name, (uint64_t)def, 1, 65535, &v);
  if (rc == 0)
    *out = (int)v;
  return rc;
}

int proto_config_bool(const char *name, int def, int *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  const char *v = env_value(name);
  if (!v) {
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
  return invalid(name, v, "true or false");
}

/* --- hosts ------------------------------------------------------------------ */

/* s[0, len) as an IPv4 or IPv6 literal. inet_pton takes only the canonical
 * dotted quad ("127.1" and "0x7f.0.0.1" are refused, unlike inet_aton). */
static int ip_valid_n(const char *s, size_t len) {
  char buf[CONFIG_IP_TEXT_MAX_BYTES];
  unsigned char addr[16];
  if (len == 0 || len >= sizeof(buf))
    return 0;
  memcpy(buf, s, len);
  buf[len] = '\0';
  return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/* s[0, len) as an IPv6 literal: what a URL puts in brackets. */
static int ip6_valid_n(const char *s, size_t len) {
  char buf[CONFIG_IP_TEXT_MAX_BYTES];
  unsigned char addr[16];
  if (len == 0 || len >= sizeof(buf))
    return 0;
  memcpy(buf, s, len);
  buf[len] = '\0';
  return inet_pton(AF_INET6, buf, addr) == 1;
}

static int label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

/* s[0, len) as a DNS name (see proto_config_host()). */
static int name_valid_n(const char *s, size_t len) {
  if (len > 0 && s[len - 1] == '.') /* the root: "db.example." */
    len--;
  if (len == 0 || len > PROTO_CONFIG_HOST_MAX_BYTES)
    return 0;
  size_t start = 0;
  int all_digits = 1;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && s[i] != '.') {
      if (!label_char(s[i]))
        return 0; /* ',', ' ', ':', '/', control characters, non-ASCII ... */
      if (s[i] < '0' || s[i] > '9')
        all_digits = 0;
      continue;
    }
    size_t n = i - start;
    if (n == 0 || n > PROTO_CONFIG_LABEL_MAX_BYTES || s[start] == '-' || s[i - 1] == '-')
      return 0;
    if (i == len && all_digits)
      return 0; /* "10.0.0.256": a mistyped address, not a name */
    start = i + 1;
    all_digits = 1;
  }
  return 1;
}

static int host_valid_n(const char *s, size_t len) {
  return ip_valid_n(s, len) || name_valid_n(s, len);
}

int proto_config_ip_valid(const char *s) {
  return s && ip_valid_n(s, strlen(s));
}

int proto_config_host_valid(const char *s) {
  return s && host_valid_n(s, strlen(s));
}

int proto_config_host(const char *name, const char *def, const char **out) {
  const char *v = env_value(name);
  if (!v) {
    *out = def;
    return 0;
  }
  if (!proto_config_host_valid(v))
    return invalid(name, v,
                   "one host name (letters, digits, '-', '_' and dots, at most 253 "
                   "characters) or one IPv4 or IPv6 address");
  *out = v;
  return 0;
}

int proto_config_ip(const char *name, const char *def, const char **out) {
  const char *v = env_value(name);
  if (!v) {
    *out = def;
    return 0;
  }
  if (!proto_config_ip_valid(v))
    return invalid(name, v,
                   "an IPv4 or IPv6 address to bind (such as 127.0.0.1, 0.0.0.0 or ::), "
                   "not a name");
  *out = v;
  return 0;
}

/* --- choices ---------------------------------------------------------------- */

int proto_config_choice(const char *name, const char *const *choices, int def, int *out) {
  char expected[CONFIG_CHOICES_TEXT_MAX_BYTES];
  size_t used = 0;
  const char *v = env_value(name);
  if (!v) {
    *out = def;
    return 0;
  }
  for (int i = 0; choices[i]; i++) {
    if (strcasecmp(v, choices[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  /* "one of debug, info, warn, error" */
  expected[0] = '\0';
  for (int i = 0; choices[i]; i++) {
    int n = snprintf(expected + used, sizeof(expected) - used, "%s%s", i ? ", " : "one of ",
                     choices[i]);
    if (n < 0 || (size_t)n >= sizeof(expected) - used)
      break; /* cut short: still names the first choices */
    used += (size_t)n;
  }
  return invalid(name, v, expected);
}

/* --- URLs --------------------------------------------------------------------- */

int proto_config_url_valid(const char *s) {
  const char *p;
  if (!s)
    return 0;
  for (p = s; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return 0; /* spaces and control characters: curl would refuse or mangle them */
  if (strncasecmp(s, "http://", 7) == 0)
    p = s + 7;
  else if (strncasecmp(s, "https://", 8) == 0)
    p = s + 8;
  else
    return 0;
  size_t auth_len = strcspn(p, "/?#");
  const char *auth_end = p + auth_len;
  const char *at = NULL;
  for (const char *q = p; q < auth_end; q++) /* the last '@' ends the userinfo */
    if (*q == '@')
      at = q;
  const char *host = at ? at + 1 : p;
  const char *port = NULL;
  if (*host == '[') { /* [IPv6] */
    const char *close = memchr(host, ']', (size_t)(auth_end - host));
    if (!close || !ip6_valid_n(host + 1, (size_t)(close - host - 1)))
      return 0;
    if (close + 1 < auth_end && close[1] != ':')
      return 0;
    port = close + 1 < auth_end ? close + 2 : NULL;
  } else {
    const char *colon = memchr(host, ':', (size_t)(auth_end - host));
    size_t host_len = colon ? (size_t)(colon - host) : (size_t)(auth_end - host);
    if (!host_valid_n(host, host_len))
      return 0;
    port = colon ? colon + 1 : NULL;
  }
  if (port) {
    unsigned long n = 0;
    if (port >= auth_end)
      return 0; /* "http://h:" */
    for (const char *q = port; q < auth_end; q++) {
      if (*q < '0' || *q > '9' || q - port >= 5)
        return 0;
      n = n * 10 + (unsigned long)(*q - '0');
    }
    if (n < 1 || n > 65535)
      return 0;
  }
  return 1;
}

/* value with any "user:password@" after "://" shown as "***@", into buf. */
static const char *url_shown(const char *value, char *buf, size_t size) {
  const char *sep = strstr(value, "://");
  if (!sep)
    return value;
  const char *auth = sep + 3;
  size_t auth_len = strcspn(auth, "/?#");
  const char *at = NULL;
  for (const char *q = auth; q < auth + auth_len; q++)
    if (*q == '@')
      at = q;
  if (!at)
    return value;
  snprintf(buf, size, "%.*s***%s", (int)(auth - value), value, at);
  return buf;
}

int proto_config_url(const char *name, const char *def, const char **out) {
  char shown[CONFIG_URL_SHOWN_MAX_BYTES];
  const char *v = env_value(name);
  if (!v) {
    *out = def;
    return 0;
  }
  if (!proto_config_url_valid(v))
    return invalid(name, url_shown(v, shown, sizeof(shown)),
                   "an http:// or https:// URL with one valid host and an optional port "
                   "from 1 to 65535 (no spaces)");
  *out = v;
  return 0;
}

/* --- directories ------------------------------------------------------------- */

/* Why path cannot be (or become) a writable directory, into why; 0 when it
 * can. Walks up to the nearest existing ancestor: what mkdir -p would need. */
static int dir_problem(const char *path, char *why, size_t size) {
  char p[PATH_MAX];
  struct stat st;
  if (strlen(path) >= sizeof(p)) {
    snprintf(why, size, "the path is longer than %d bytes", PATH_MAX - 1);
    return -1;
  }
  snprintf(p, sizeof(p), "%s", path);
  for (;;) {
    if (stat(p, &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        snprintf(why, size, "%s is not a directory", p);
        return -1;
      }
      if (access(p, W_OK | X_OK) != 0) {
        snprintf(why, size, "%s is not writable by this process", p);
        return -1;
      }
      return 0;
    }
    if (errno != ENOENT) {
      snprintf(why, size, "%s: %s", p, strerror(errno));
      return -1;
    }
    if (strcmp(p, ".") == 0 || strcmp(p, "/") == 0) {
      snprintf(why, size, "%s is missing", p); /* a removed working directory */
      return -1;
    }
    /* Missing: its parent must let us create it. */
    char *slash = strrchr(p, '/');
    while (slash && slash > p && slash[1] == '\0') { /* "a/b/" */
      *slash = '\0';
      slash = strrchr(p, '/');
    }
    if (!slash)
      snprintf(p, sizeof(p), ".");
    else if (slash == p)
      p[1] = '\0'; /* "/x" -> "/" */
    else
      *slash = '\0';
  }
}

int proto_config_dir(const char *name, const char *def, const char **out) {
  char why[PATH_MAX + 64], expected[PATH_MAX + 160];
  const char *v = env_value(name);
  if (!v) {
    *out = def;
    return 0;
  }
  if (dir_problem(v, why, sizeof(why)) != 0) {
    snprintf(expected, sizeof(expected),
             "a directory this process can write, or one it can create (%s)", why);
    return invalid(name, v, expected);
  }
  *out = v;
  return 0;
}
