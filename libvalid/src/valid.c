/* valid.c: the field error list and the field readers every service's
 * validator uses, and the 400 error object built from the list. The messages
 * are part of the API contract: tests assert them byte for byte.
 */
#include "valid/valid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/packet.h"

void valid_verr_add(valid_verrs_t *errs, const char *field, size_t field_len,
                    const char *message) {
  if (errs->n >= VALID_VERR_MAX)
    return; /* enough to act on; the rest would only bloat the reply */
  errs->e[errs->n++] = (valid_verr_t){field, field_len, message};
}

/* Keep at most max of s's len bytes, not splitting a UTF-8 character. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
  if (len <= max)
    return len;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
    max--;
  return max;
}

void valid_verrs_nest(valid_verrs_t *errs, const char *prefix, const valid_verrs_t *inner) {
  for (size_t i = 0; i < inner->n; i++)
    valid_verr_add_prefixed(errs, prefix, inner->e[i].field, inner->e[i].field_len,
                            inner->e[i].message);
}

void valid_verr_add_static(valid_verrs_t *errs, const char *field, const char *message) {
  valid_verr_add(errs, field, strlen(field), message);
}

void valid_verr_add_prefixed(valid_verrs_t *errs, const char *prefix, const char *field,
                             size_t field_len, const char *message) {
  if (errs->n >= VALID_VERR_MAX)
    return;
  char *name = errs->names[errs->n];
  size_t plen = strlen(prefix), room = VALID_VERR_NAME_MAX_BYTES - 1;
  if (plen > room)
    plen = room;
  size_t flen = field_len > room - plen ? room - plen : field_len;
  /* Cut on a character boundary so the reply stays valid UTF-8. */
  if (flen < field_len)
    while (flen > 0 && ((unsigned char)field[flen] & 0xC0) == 0x80)
      flen--;
  memcpy(name, prefix, plen);
  memcpy(name + plen, field, flen);
  name[plen + flen] = '\0';
  valid_verr_add(errs, name, plen + flen, message);
}

bool valid_begin(const json_t *data, valid_verrs_t *errs) {
  errs->n = 0;
  if (!json_is_object(data)) {
    valid_verr_add_static(errs, "data", VALID_MSG_OBJECT);
    return false;
  }
  return true;
}

void valid_reject_unknown(const json_t *obj, const char *const *allowed, valid_verrs_t *errs) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool known = false;
    for (const char *const *a = allowed; *a && !known; a++)
      known = strcmp(key, *a) == 0;
    if (known)
      continue;
    /* Echo at most VALID_VERR_FIELD_MAX_BYTES of a hostile key, cut on a
     * character boundary so the reply stays valid UTF-8. */
    valid_verr_add(errs, key, utf8_cut(key, strlen(key), VALID_VERR_FIELD_MAX_BYTES),
                   VALID_MSG_NOT_ALLOWED);
  }
}

const char *valid_req_string(const json_t *obj, const char *field, size_t *len,
                             valid_verrs_t *errs) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    valid_verr_add_static(errs, field, VALID_MSG_REQUIRED);
    return NULL;
  }
  if (!json_is_string(v)) {
    valid_verr_add_static(errs, field, VALID_MSG_STRING);
    return NULL;
  }
  *len = json_string_length(v);
  return json_string_value(v);
}

bool valid_check_id(const json_t *obj, const char *field, size_t max_bytes,
                    const char *too_long, const char **id, size_t *len, valid_verrs_t *errs) {
  const char *s = valid_req_string(obj, field, len, errs);
  if (!s)
    return false;
  const char *why = NULL;
  if (*len == 0)
    why = VALID_MSG_EMPTY;
  else if (*len > max_bytes)
    why = too_long;
  for (size_t i = 0; !why && i < *len; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
      why = VALID_MSG_CONTROL;
  if (why) {
    valid_verr_add_static(errs, field, why);
    return false;
  }
  *id = s;
  return true;
}

bool valid_int_in_range(const json_t *v, int64_t min, int64_t max, int64_t *out) {
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
      return false;
    *out = (int64_t)i;
    return true;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
      return false;
    *out = (int64_t)d;
    return true;
  }
  return false;
}

bool valid_opt_int(const json_t *obj, const char *field, int64_t def, int64_t min,
                   int64_t max, const char *msg, int64_t *out, valid_verrs_t *errs) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    *out = def;
    return true;
  }
  if (valid_int_in_range(v, min, max, out))
    return true;
  valid_verr_add_static(errs, field, msg);
  return false;
}

bool valid_req_int(const json_t *obj, const char *field, int64_t min, int64_t max,
                   const char *msg, int64_t *out, valid_verrs_t *errs) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    valid_verr_add_static(errs, field, VALID_MSG_REQUIRED);
    return false;
  }
  return valid_opt_int(obj, field, 0, min, max, msg, out, errs);
}

bool valid_currency_code(const char *s, size_t len) {
  if (len != 3)
    return false;
  for (size_t i = 0; i < 3; i++)
    if (s[i] < 'A' || s[i] > 'Z')
      return false;
  return true;
}

bool valid_opt_currency(const json_t *obj, const char *field, const char *msg, char out[4],
                        valid_verrs_t *errs) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v))
    return true;
  if (!json_is_string(v) || !valid_currency_code(json_string_value(v), json_string_length(v))) {
    valid_verr_add_static(errs, field, msg);
    return false;
  }
  memcpy(out, json_string_value(v), 4); /* three letters and the NUL */
  return true;
}

bool valid_int_param(const json_t *obj, const char *field, int64_t def, int64_t *out) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    *out = def;
    return true;
  }
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return true;
  }
  if (json_is_real(v)) {
    /* JavaScript has one number type: 2.0 is the integer 2. */
    double d = json_real_value(v);
    if (!isfinite(d) || d != floor(d))
      return false;
    *out = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
    return true;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), i = 0;
    bool neg = n > 0 && s[0] == '-';
    if (neg)
      i++;
    if (i == n)
      return false;
    int64_t acc = 0;
    for (; i < n; i++) {
      if (s[i] < '0' || s[i] > '9')
        return false;
      /* saturate; keep checking the rest are digits */
      acc = acc <= (INT64_MAX - 9) / 10 ? acc * 10 + (s[i] - '0') : INT64_MAX;
    }
    *out = neg ? -acc : acc;
    return true;
  }
  return false;
}

void valid_page_limit(const json_t *data, int64_t page_max, const char *page_msg,
                      int64_t limit_max, const char *limit_msg, int64_t *page, int64_t *limit,
                      valid_verrs_t *errs) {
  if (!valid_int_param(data, "page", *page, page) || *page < 1 || *page > page_max)
    valid_verr_add_static(errs, "page", page_msg);
  if (!valid_int_param(data, "limit", *limit, limit) || *limit < 1)
    valid_verr_add_static(errs, "limit", limit_msg);
  else if (*limit > limit_max)
    *limit = limit_max; /* documented: capped, like most list APIs */
}

json_t *valid_error_object(const valid_verrs_t *errs) {
  json_t *details = json_array();
  char *msg = NULL;
  size_t cap = 1;
  for (size_t i = 0; i < errs->n; i++)
    cap += errs->e[i].field_len + strlen(errs->e[i].message) + 3;
  if (!details || !(msg = malloc(cap)))
    goto fail;
  /* "email must be an email address; name is required": names every field. */
  size_t used = 0;
  msg[0] = '\0';
  for (size_t i = 0; i < errs->n; i++) {
    const valid_verr_t *e = &errs->e[i];
    json_t *d = json_pack("{s:s%, s:s}", "field", e->field, e->field_len, "message",
                          e->message);
    if (!d || json_array_append_new(details, d) != 0)
      goto fail;
    used += (size_t)snprintf(msg + used, cap - used, "%s%.*s %s", i ? "; " : "",
                             (int)e->field_len, e->field, e->message);
  }
  json_t *err = proto_error_object(400, "VALIDATION_FAILED", msg, details);
  free(msg);
  return err;
fail:
  json_decref(details);
  free(msg);
  return NULL;
}
