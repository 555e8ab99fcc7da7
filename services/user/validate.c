/* validate.c: turns the data of user requests and events into typed inputs,
 * or into a list of field errors. Pure: no I/O, no allocation, no clock.
 * Strings in the results borrow from the validated JSON.
 */
#include "user.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define MSG_EMAIL "must be an email address"
#define MSG_EMAIL_LEN "must be at most " STR(USER_EMAIL_MAX_BYTES) " bytes"
#define MSG_EMPTY "must not be empty"
#define MSG_CONTROL "must not contain control characters"
#define MSG_UTF8 "must be valid UTF-8"
#define MSG_NAME_LEN "must be at most " STR(USER_NAME_MAX_CHARS) " characters"
#define MSG_ID_LEN "must be at most " STR(USER_ID_MAX_BYTES) " bytes"
#define MSG_PAGE "must be an integer from 1 to " STR(USER_PAGE_MAX)
#define MSG_LIMIT "must be a positive integer (values above " STR(USER_LIMIT_MAX) \
                  " are capped)"
#define MSG_TIMESTAMP "must be an ISO 8601 UTC timestamp"

/* --- UTF-8 ------------------------------------------------------------------ */

/* Decode the code point at s[*i], advance *i. -1 on invalid UTF-8 (jansson
 * already guarantees valid text, but these functions are also called on raw
 * bytes by tests). */
static int utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp) {
  unsigned char c = s[*i];
  size_t n;
  uint32_t v, min;
  if (c < 0x80) {
    *cp = c;
    (*i)++;
    return 0;
  } else if ((c & 0xE0) == 0xC0) {
    n = 1, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 2, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 3, v = c & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (*i + n >= len)
    return -1; /* truncated sequence */
  for (size_t k = 1; k <= n; k++) {
    unsigned char cc = s[*i + k];
    if ((cc & 0xC0) != 0x80)
      return -1;
    v = (v << 6) | (cc & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
    return -1;
  *cp = v;
  *i += n + 1;
  return 0;
}

/* C0, DEL and C1 controls (tab and newline included). */
static bool is_control(uint32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
}

/* Unicode White_Space, less the controls (rejected before trimming matters). */
static bool is_space(uint32_t cp) {
  return cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* --- building blocks -------------------------------------------------------- */

static bool email_local_char_ok(uint32_t cp) {
  /* RFC 5322 specials are only legal quoted; we do not accept quoted local parts. */
  return cp >= 0x80 || !strchr("()<>[]\\,;:@\"", (int)cp);
}

static bool email_domain_char_ok(uint32_t cp) {
  /* LDH for ASCII labels; non-ASCII is an internationalised (U-label) domain. */
  return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
         cp == '-' || cp == '.' || cp >= 0x80;
}

const char *user_validate_email(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  if (len == 0)
    return MSG_EMAIL;
  if (len > USER_EMAIL_MAX_BYTES)
    return MSG_EMAIL_LEN;
  size_t at = len, i = 0;
  while (i < len) {
    size_t pos = i;
    uint32_t cp;
    if (utf8_next(s, len, &i, &cp) != 0 || is_control(cp) || is_space(cp))
      return MSG_EMAIL;
    if (cp == '@') {
      if (at != len)
        return MSG_EMAIL; /* a second @ */
      at = pos;
    } else if (at == len ? !email_local_char_ok(cp) : !email_domain_char_ok(cp)) {
      return MSG_EMAIL;
    }
  }
  if (at == len || at == 0 || at > USER_EMAIL_LOCAL_MAX_BYTES)
    return MSG_EMAIL;
  /* Local part: a dot-atom, so no leading, trailing or doubled dot. */
  if (s[0] == '.' || s[at - 1] == '.')
    return MSG_EMAIL;
  for (size_t k = 1; k < at; k++)
    if (s[k] == '.' && s[k - 1] == '.')
      return MSG_EMAIL;
  /* Domain: at least two labels, each 1..63 bytes, no hyphen at either end. */
  size_t labels = 0, start = at + 1;
  for (size_t k = at + 1; k <= len; k++) {
    if (k < len && s[k] != '.')
      continue;
    size_t llen = k - start;
    if (llen == 0 || llen > USER_EMAIL_LABEL_MAX_BYTES || s[start] == '-' || s[k - 1] == '-')
      return MSG_EMAIL;
    labels++;
    start = k + 1;
  }
  return labels >= 2 ? NULL : MSG_EMAIL;
}

const char *user_validate_name(const char *str, size_t len, size_t *start,
                               size_t *trimmed_len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, chars = 0;
  size_t first = len, last_end = 0;      /* byte bounds of the non-space run */
  size_t first_char = 0, last_char = 0;  /* code point indexes of those bounds */
  while (i < len) {
    size_t pos = i;
    uint32_t cp;
    if (utf8_next(s, len, &i, &cp) != 0)
      return MSG_UTF8;
    if (is_control(cp))
      return MSG_CONTROL;
    if (!is_space(cp)) {
      if (first == len) {
        first = pos;
        first_char = chars;
      }
      last_end = i;
      last_char = chars;
    }
    chars++;
  }
  if (first == len)
    return MSG_EMPTY;
  if (last_char - first_char + 1 > USER_NAME_MAX_CHARS)
    return MSG_NAME_LEN;
  *start = first;
  *trimmed_len = last_end - first;
  return NULL;
}

static bool digits(const char *s, size_t n, int *out) {
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

int user_parse_iso_time(const char *s, size_t len, char out[PROTO_ISO_TIME_LEN]) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y, mo, d, h, mi, sec, ms = 0;
  /* YYYY-MM-DDTHH:MM:SS = 19 bytes, then optional .fraction, then Z. */
  if (len < 20 || s[len - 1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
      s[13] != ':' || s[16] != ':')
    return -1;
  if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
      !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
    return -1;
  if (len > 20) {
    /* .f to .fffffffff: other runtimes send micro- or nanoseconds; keep ms. */
    size_t fdigits = len - 21;
    int frac;
    if (s[19] != '.' || fdigits < 1 || fdigits > 9 || !digits(s + 20, fdigits, &frac))
      return -1;
    for (size_t k = 0; k < 3; k++)
      ms = ms * 10 + (k < fdigits ? s[20 + k] - '0' : 0);
  }
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
      mi > 59 || sec > 59)
    return -1;
  /* Every field is range-checked above, so the text is exactly 24 characters;
   * the roomy buffer keeps gcc's truncation analysis quiet in -O2 builds. */
  char tmp[64];
  snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, mo, d, h, mi, sec, ms);
  memcpy(out, tmp, PROTO_ISO_TIME_LEN);
  out[PROTO_ISO_TIME_LEN - 1] = '\0';
  return 0;
}

/* --- validators ------------------------------------------------------------- */

int user_validate_create(const json_t *data, user_create_input_t *out, user_verrs_t *errs) {
  static const char *const allowed[] = {"email", "name", NULL};
  size_t elen = 0, nlen = 0, nstart = 0, ntrim = 0;
  if (!valid_begin(data, errs))
    return -1;
  const char *email = valid_req_string(data, "email", &elen, errs);
  const char *why;
  if (email && (why = user_validate_email(email, elen)) != NULL)
    valid_verr_add_static(errs, "email", why);
  const char *name = valid_req_string(data, "name", &nlen, errs);
  if (name && (why = user_validate_name(name, nlen, &nstart, &ntrim)) != NULL)
    valid_verr_add_static(errs, "name", why);
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = (user_create_input_t){email, elen, name + nstart, ntrim};
  return 0;
}

int user_validate_get(const json_t *data, user_get_input_t *out, user_verrs_t *errs) {
  static const char *const allowed[] = {"id", NULL};
  const char *id = NULL;
  size_t len = 0;
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, "id", USER_ID_MAX_BYTES, MSG_ID_LEN, &id, &len, errs);
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = (user_get_input_t){id, len};
  return 0;
}

int user_validate_list(const json_t *data, user_list_input_t *out, user_verrs_t *errs) {
  static const char *const allowed[] = {"page", "limit", NULL};
  int64_t page = USER_PAGE_DEFAULT, limit = USER_LIMIT_DEFAULT;
  if (json_is_null(data)) {
    /* No query at all: every field has a default. */
    errs->n = 0;
    *out = (user_list_input_t){page, limit};
    return 0;
  }
  if (!valid_begin(data, errs))
    return -1;
  valid_page_limit(data, USER_PAGE_MAX, MSG_PAGE, USER_LIMIT_MAX, MSG_LIMIT, &page, &limit,
                   errs);
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = (user_list_input_t){page, limit};
  return 0;
}

int user_validate_login(const json_t *data, user_login_input_t *out, user_verrs_t *errs) {
  const char *id = NULL;
  size_t idlen = 0, tlen = 0;
  if (!valid_begin(data, errs))
    return -1;
  bool id_ok =
      valid_check_id(data, "userId", USER_ID_MAX_BYTES, MSG_ID_LEN, &id, &idlen, errs);
  const char *ts = valid_req_string(data, "timestamp", &tlen, errs);
  if (ts && user_parse_iso_time(ts, tlen, out->timestamp) != 0)
    valid_verr_add_static(errs, "timestamp", MSG_TIMESTAMP);
  /* No reject_unknown: an event has no reply to carry a rejection, and
   * producers add fields over time; dropping the login for that would lose
   * data silently. */
  if (errs->n > 0 || !id_ok)
    return -1;
  out->user_id = id;
  out->user_id_len = idlen;
  return 0;
}
