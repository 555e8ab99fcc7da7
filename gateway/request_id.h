/* request_id.h: the X-Request-Id every gateway response carries.
 *
 * A client's id is kept when it is sane (1 to 128 characters of
 * [A-Za-z0-9._:-]); otherwise the gateway makes one. Generated ids are
 * "req_" + 32 lowercase hex digits, like proto_random_id(), but come from a
 * per-process random key and a counter so the request path makes no syscall.
 */
#ifndef GW_REQUEST_ID_H
#define GW_REQUEST_ID_H

#include <stddef.h>
#include <stdint.h>

#define GW_REQUEST_ID_MAX_CHARS 128
#define GW_REQUEST_ID_SIZE (GW_REQUEST_ID_MAX_CHARS + 1)
#define GW_REQUEST_ID_PREFIX "req_"

typedef struct gw_request_id_gen {
  uint64_t key[2];   /* random per process, from proto_random_bytes() */
  uint64_t counter;  /* ids made so far */
} gw_request_id_gen_t;

/* Seed the generator. 0 or PROTO_EIO. */
int gw_request_id_gen_init(gw_request_id_gen_t *gen);

/* Write the next generated id into out (NUL-terminated). Never repeats within
 * a process (the counter goes through a bijective mix). */
void gw_request_id_next(gw_request_id_gen_t *gen, char out[GW_REQUEST_ID_SIZE]);

/* Non-zero when s (may be NULL) is 1 to 128 characters of [A-Za-z0-9._:-]. */
int gw_request_id_valid(const char *s);

/* Copy header into out when valid (returns 1), else generate one (returns 0). */
int gw_request_id_pick(gw_request_id_gen_t *gen, const char *header,
                       char out[GW_REQUEST_ID_SIZE]);

#endif
