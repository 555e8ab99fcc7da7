/* error.c: names and messages of the PROTO_E* codes, both generated from the
 * one X-macro table in proto/error.h so they cannot drift apart. */
#include "proto/error.h"

const char *proto_strerror(int err) {
  switch (err) {
  case PROTO_OK:
    return "success";
#define XX(name, value, msg) \
  case PROTO_##name:         \
    return msg;
    PROTO_ERRNO_MAP(XX)
#undef XX
  default:
    return "unknown error";
  }
}

const char *proto_err_name(int err) {
  switch (err) {
  case PROTO_OK:
    return "OK";
#define XX(name, value, msg) \
  case PROTO_##name:         \
    return #name;
    PROTO_ERRNO_MAP(XX)
#undef XX
  default:
    return "UNKNOWN";
  }
}
