/* deadline.h: the caller's own deadline, from the X-Request-Timeout header
 * ("250ms", "2s", or a bare number of milliseconds). It bounds the upstream
 * call (capped by RPC_TIMEOUT_MS), and the client passes what is left on to
 * every hop in metadata.timeoutMs, so a service does not start work the
 * caller will not wait for. Pure; unit tested in tests/unit/gateway.
 */
#ifndef GW_DEADLINE_H
#define GW_DEADLINE_H

#include <stdint.h>

#define GW_DEADLINE_HEADER "X-Request-Timeout"

/* *out = the header's deadline in milliseconds, at most cap_ms (a larger one
 * is capped, not refused). 0; or -1 for a value that is not 1 or more
 * milliseconds written as digits with an optional "ms" or "s" (spaces
 * around are allowed): "", "0", "-5", "1.5s", "10m", "abc". */
int gw_deadline_parse(const char *header, uint32_t cap_ms, uint32_t *out);

#endif
