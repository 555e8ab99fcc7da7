/* proto/config.h: configuration from environment variables.
 *
 * Every getter validates: a value that is set but malformed is an error, never
 * silently replaced by the default. Daemons call these once at start-up and exit
 * with a clear message on error.
 */
#ifndef PROTO_CONFIG_H
#define PROTO_CONFIG_H

#include <stdint.h>

/* The variable's value, or def when unset or empty. Never NULL unless def is. */
const char *proto_config_str(const char *name, const char *def);

/* A TCP port 0..65535 (0 = ephemeral). 0 or PROTO_EINVAL (message logged). */
int proto_config_port(const char *name, int def, int *out);

/* An unsigned integer in [min, max]. 0 or PROTO_EINVAL (message logged). */
int proto_config_u64(const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out);

/* A boolean: 1/0, true/false, yes/no, on/off. 0 or PROTO_EINVAL. */
int proto_config_bool(const char *name, int def, int *out);

#endif
