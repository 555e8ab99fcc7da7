/* proto/config.h: configuration from environment variables.
 *
 * Every getter validates: a value that is set but malformed is an error, never
 * silently replaced by the default and never left for the first request to
 * trip over. On error the getter logs one "config_invalid" line naming the
 * variable, the value and what is expected, and returns PROTO_EINVAL; daemons
 * call the getters once at start-up and exit with status 1 on an error.
 * An unset or empty variable means the default.
 */
#ifndef PROTO_CONFIG_H
#define PROTO_CONFIG_H

#include <stdint.h>

/* Longest DNS name (RFC 1035: 253 characters without the trailing dot) and
 * longest label. */
#define PROTO_CONFIG_HOST_MAX_BYTES 253
#define PROTO_CONFIG_LABEL_MAX_BYTES 63

/* The variable's value, or def when unset or empty. Never NULL unless def is.
 * Unchecked: only for values any string suits (a password). */
const char *proto_config_str(const char *name, const char *def);

/* A TCP port 0..65535 to listen on (0 = ephemeral). 0 or PROTO_EINVAL. */
int proto_config_port(const char *name, int def, int *out);

/* A TCP port 1..65535 to connect to (0 names no peer). 0 or PROTO_EINVAL. */
int proto_config_peer_port(const char *name, int def, int *out);

/* An unsigned integer in [min, max]. 0 or PROTO_EINVAL. */
int proto_config_u64(const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out);

/* A boolean: 1/0, true/false, yes/no, on/off. 0 or PROTO_EINVAL. */
int proto_config_bool(const char *name, int def, int *out);

/* A host to connect to: an IPv4 or IPv6 address literal (no brackets), or a
 * DNS name of at most PROTO_CONFIG_HOST_MAX_BYTES (one trailing dot allowed)
 * whose labels are 1..63 letters, digits, '-' or '_' (container names use
 * '_'), with no '-' at either end of a label, and whose last label is not all
 * digits (so "10.0.0.256" is a typo, not a name). A list ("a,b"), spaces or an
 * empty label ("a..b") are refused. *out is the environment's string or def
 * (borrowed). 0 or PROTO_EINVAL. */
int proto_config_host(const char *name, const char *def, const char **out);

/* An address to bind to: an IPv4 or IPv6 literal only (listeners bind without
 * resolving names). *out as above. 0 or PROTO_EINVAL. */
int proto_config_ip(const char *name, const char *def, const char **out);

/* One of choices (NULL-terminated, compared case-insensitively): *out gets
 * its index, or def when unset. 0 or PROTO_EINVAL (the message lists the
 * choices). */
int proto_config_choice(const char *name, const char *const *choices, int def, int *out);

/* An http:// or https:// URL: the scheme, "//", optional "user[:password]@",
 * a host as proto_config_host() accepts it (an IPv6 literal in brackets),
 * an optional ":port" of 1..65535, then nothing or a path, query or fragment
 * ('/', '?', '#'). No spaces or control characters anywhere. *out is the
 * value or def (may be NULL). The message shows the URL without what follows
 * "://" up to '@', so a password is never logged. 0 or PROTO_EINVAL. */
int proto_config_url(const char *name, const char *def, const char **out);

/* A directory the daemon keeps files in (DATA_DIR): an existing directory it
 * can write to, or a path it can create, i.e. whose nearest existing
 * ancestor is such a directory. Nothing is created here. *out is the value
 * or def (def itself is not checked: the store reports what it cannot do).
 * 0 or PROTO_EINVAL (the message says which part of the path is wrong). */
int proto_config_dir(const char *name, const char *def, const char **out);

/* The checks behind the getters, on a string: non-zero when valid. */
int proto_config_host_valid(const char *s);
int proto_config_ip_valid(const char *s);
int proto_config_url_valid(const char *s);

#endif
