/* valid/valid.h: building blocks of the services' request validators. A
 * validator collects field errors in a valid_verrs_t and, on failure, the
 * handler turns them into the 400 VALIDATION_FAILED error object. Pure: no
 * I/O, no clock; only valid_error_object() allocates.
 */
#ifndef VALID_VALID_H
#define VALID_VALID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define VALID_VERR_MAX 8                /* field errors reported per request */
#define VALID_VERR_FIELD_MAX_BYTES 64   /* an unknown field's name is cut to this */
#define VALID_VERR_NAME_MAX_BYTES 96    /* a composed name ("items[3].quantity"), NUL included */

#define VALID_MSG_REQUIRED "is required"
#define VALID_MSG_STRING "must be a string"
#define VALID_MSG_NOT_ALLOWED "is not allowed"
#define VALID_MSG_EMPTY "must not be empty"
#define VALID_MSG_CONTROL "must not contain control characters"
#define VALID_MSG_OBJECT "must be an object"

/* One field error. field borrows from the validated data (or is static, or
 * is a composed name in the list's names[]) and is field_len bytes, not
 * NUL-terminated; message is static. */
typedef struct valid_verr {
  const char *field;
  size_t field_len;
  const char *message;
} valid_verr_t;

/* Keep a list where it was filled: a composed name (valid_verr_add_prefixed)
 * lives in names[] and e[i].field points there, so a copy of the struct would
 * point into the original. */
typedef struct valid_verrs {
  size_t n;                             /* errors recorded (at most VALID_VERR_MAX) */
  valid_verr_t e[VALID_VERR_MAX];
  char names[VALID_VERR_MAX][VALID_VERR_NAME_MAX_BYTES]; /* composed field names */
} valid_verrs_t;

/* Record an error; beyond VALID_VERR_MAX errors are dropped. */
void valid_verr_add(valid_verrs_t *errs, const char *field, size_t field_len,
                    const char *message);
/* The same for a NUL-terminated field name. */
void valid_verr_add_static(valid_verrs_t *errs, const char *field, const char *message);

/* Record prefix + field (field_len bytes) as the field's name, composed in
 * errs' own storage: for fields of nested objects ("items[3]." + "quantity").
 * The name is cut to VALID_VERR_NAME_MAX_BYTES - 1 on a UTF-8 boundary. */
void valid_verr_add_prefixed(valid_verrs_t *errs, const char *prefix, const char *field,
                             size_t field_len, const char *message);

/* Append the errors of a nested value (an array element, say, checked with
 * the readers below into inner) to errs, each named prefix + its field as
 * valid_verr_add_prefixed() does ("items[2]." + "price"; prefix "items[2]"
 * with an empty field names the element itself). In order; beyond
 * VALID_VERR_MAX the rest is dropped. */
void valid_verrs_nest(valid_verrs_t *errs, const char *prefix, const valid_verrs_t *inner);

/* Start a validation: clear errs; false (with "data must be an object")
 * when data is not an object. */
bool valid_begin(const json_t *data, valid_verrs_t *errs);

/* Record "is not allowed" for every key of obj not in allowed (NULL-ended),
 * the key echoed cut to VALID_VERR_FIELD_MAX_BYTES on a UTF-8 boundary. */
void valid_reject_unknown(const json_t *obj, const char *const *allowed, valid_verrs_t *errs);

/* A required string field: the string (and its length) or NULL with
 * "is required" / "must be a string" recorded. */
const char *valid_req_string(const json_t *obj, const char *field, size_t *len,
                             valid_verrs_t *errs);

/* A required id: 1..max_bytes bytes, no control characters (C0, DEL; an
 * embedded NUL included). too_long is the message when longer than max_bytes.
 * False with an error recorded otherwise. */
bool valid_check_id(const json_t *obj, const char *field, size_t max_bytes,
                    const char *too_long, const char **id, size_t *len, valid_verrs_t *errs);

/* A JSON integer, or an integral number (JavaScript has one number type: 2.0
 * is the integer 2), within [min, max] into *out. Strings are not numbers
 * here (see valid_int_param for query strings). False otherwise. */
bool valid_int_in_range(const json_t *v, int64_t min, int64_t max, int64_t *out);

/* An optional integer field: absent or null gives def; otherwise it must pass
 * valid_int_in_range, else msg is recorded for field. False on an error. */
bool valid_opt_int(const json_t *obj, const char *field, int64_t def, int64_t min,
                   int64_t max, const char *msg, int64_t *out, valid_verrs_t *errs);

/* The same for a required field ("is required" when absent or null). */
bool valid_req_int(const json_t *obj, const char *field, int64_t min, int64_t max,
                   const char *msg, int64_t *out, valid_verrs_t *errs);

/* Non-zero when s is the shape of an ISO 4217 code: three letters A-Z. */
bool valid_currency_code(const char *s, size_t len);

/* An optional currency field: absent or null leaves out as it is (the
 * caller's default); a string passing valid_currency_code is copied into out
 * with its NUL; anything else records msg for field. False on an error. */
bool valid_opt_currency(const json_t *obj, const char *field, const char *msg, char out[4],
                        valid_verrs_t *errs);

/* page/limit: a JSON integer, an integral number, or a decimal string (query
 * strings passed through by the gateway). Absent or null: *out = def.
 * False when the value is not an integer at all; a value too large for int64
 * saturates so the caller's range check applies. */
bool valid_int_param(const json_t *obj, const char *field, int64_t def, int64_t *out);

/* The "page" and "limit" fields of a list request. *page and *limit hold the
 * defaults on entry. page must be 1..page_max (else page_msg); limit must be
 * >= 1 (else limit_msg) and is capped at limit_max. */
void valid_page_limit(const json_t *data, int64_t page_max, const char *page_msg,
                      int64_t limit_max, const char *limit_msg, int64_t *page, int64_t *limit,
                      valid_verrs_t *errs);

/* {"statusCode":400,"code":"VALIDATION_FAILED","message":"<field> <msg>; ...",
 *  "details":[{"field","message"}, ...]}; new reference, NULL when out of
 * memory. */
json_t *valid_error_object(const valid_verrs_t *errs);

#endif
