/* request_id.c: sanitising the client's X-Request-Id and making new ones.
 * Pure apart from the one-time seeding; unit tested in
 * tests/unit/gateway/test_request_id.c. */
#include "request_id.h"

#include <string.h>

#include "proto/util.h"

int gw_request_id_gen_init(gw_request_id_gen_t *gen) {
  gen->counter = 0;
  return proto_random_bytes(gen->key, sizeof(gen->key));
}

/* splitmix64's finaliser: a bijection on 64 bits, so distinct counters give
 * distinct outputs, and consecutive ids do not look consecutive. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void put_hex64(char *out, uint64_t v) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) {
    out[i] = hex[v & 15u];
    v >>= 4;
  }
}

void gw_request_id_next(gw_request_id_gen_t *gen, char out[GW_REQUEST_ID_SIZE]) {
  const size_t plen = sizeof(GW_REQUEST_ID_PREFIX) - 1;
  uint64_t n = gen->counter++;
  memcpy(out, GW_REQUEST_ID_PREFIX, plen);
  /* First half: fixed per process; second half: unique per request. */
  put_hex64(out + plen, gen->key[0]);
  put_hex64(out + plen + 16, mix64(n + gen->key[1]));
  out[plen + 32] = '\0';
}

static int id_char_ok(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == ':' || c == '-';
}

int gw_request_id_valid(const char *s) {
  if (!s)
    return 0;
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    if (n >= GW_REQUEST_ID_MAX_CHARS || !id_char_ok((unsigned char)s[n]))
      return 0;
  }
  return n > 0;
}

int gw_request_id_pick(gw_request_id_gen_t *gen, const char *header,
                       char out[GW_REQUEST_ID_SIZE]) {
  if (gw_request_id_valid(header)) {
    /* valid implies at most GW_REQUEST_ID_MAX_CHARS characters */
    memcpy(out, header, strlen(header) + 1);
    return 1;
  }
  gw_request_id_next(gen, out);
  return 0;
}
