/* proto/error.h: the one error vocabulary of libproto.
 *
 * Every libproto function that can fail returns 0 on success or a negative
 * PROTO_E* code. libuv, jansson, hiredis and sqlite errors are mapped to these
 * codes at the boundary. Contract for every function that takes a callback:
 * if it returns an error, the callback will not run.
 */
#ifndef PROTO_ERROR_H
#define PROTO_ERROR_H

/* XX(name, value, message) */
#define PROTO_ERRNO_MAP(XX)                                                   \
  XX(ENOMEM, -1, "out of memory")                                             \
  XX(EINVAL, -2, "invalid argument")                                          \
  XX(EPROTO, -3, "protocol error")                                            \
  XX(ETOOBIG, -4, "frame too large")                                          \
  XX(ETIMEDOUT, -5, "deadline exceeded")                                      \
  XX(ECONNLOST, -6, "connection lost")                                        \
  XX(EUNAVAIL, -7, "service unavailable")                                     \
  XX(ECANCELED, -8, "canceled")                                               \
  XX(EREMOTE, -9, "remote error")                                             \
  XX(EIO, -10, "i/o error")                                                   \
  XX(ECLOSED, -11, "closed")                                                  \
  XX(EFULL, -12, "queue full")

typedef enum {
  PROTO_OK = 0,
#define XX(name, value, msg) PROTO_##name = (value),
  PROTO_ERRNO_MAP(XX)
#undef XX
} proto_errno_t;

/* A static message for a PROTO_E* code ("unknown error" for anything else). */
const char *proto_strerror(int err);
/* The code's name without prefix, e.g. "ETIMEDOUT". */
const char *proto_err_name(int err);

#endif
