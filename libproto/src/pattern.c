/* pattern.c: NestJS pattern normalisation (transformPatternToRoute), the
 * string under which handlers are registered and looked up. Owns the ICU key
 * order for ASCII keys and JavaScript's number-to-string conversion, since
 * both show up literally in the normalised string (PROTOCOL.md section 3). */
#include "proto/pattern.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NestJS's DEFAULT_MAX_DEPTH and DEFAULT_MAX_KEYS. */
#define PATTERN_MAX_DEPTH 5
#define PATTERN_MAX_KEYS 20
#define PATTERN_DEPTH_MARK "[MAX_DEPTH_REACHED]"
#define PATTERN_KEYS_MARK "[TOO_MANY_KEYS]"
#define PATTERN_INITIAL_BYTES 64
/* Longest JavaScript number text: "-0.000000" + 17 digits, or 21 digits. */
#define JS_NUMBER_MAX_BYTES 40
/* Digits that always round-trip a double. */
#define JS_DOUBLE_MAX_DIGITS 17

/* --- key order --------------------------------------------------------------
 * String.prototype.localeCompare uses ICU's root collation. For ASCII:
 * control characters other than TAB..CR are ignorable; whitespace, then
 * punctuation and symbols in CLDR order, then digits, then letters, each with
 * its own primary weight (a and A share one). Case only counts (third level)
 * when the primary weights of the whole strings tie, lowercase first.
 * Table generated from Node 20 (ICU 78) `localeCompare` over all of ASCII. */
static const unsigned char ascii_primary[128] = {
   0,  0,  0,  0,  0,  0,  0,  0,  0,  1,  2,  3,  4,  5,  0,  0,
   0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
   6, 12, 16, 28, 38, 29, 27, 15, 17, 18, 24, 32,  9,  8, 14, 25,
  39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 11, 10, 33, 34, 35, 13,
  23, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
  64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 19, 26, 20, 31,  7,
  30, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
  64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 21, 36, 22, 37,  0,
};

/* Bytes of non-ASCII characters are not collated as ICU would (that needs
 * the full tables); they sort after every ASCII character, in byte order. */
static unsigned primary_weight(unsigned char c) {
  return c < 128 ? ascii_primary[c] : 256u + c;
}

static unsigned tertiary_weight(unsigned char c) {
  return c >= 'A' && c <= 'Z';
}

/* Compare the weight sequences of one collation level, skipping ignorables. */
static int compare_level(const unsigned char *a, const unsigned char *b,
                         unsigned (*weight)(unsigned char)) {
  for (;;) {
    while (*a && primary_weight(*a) == 0)
      a++;
    while (*b && primary_weight(*b) == 0)
      b++;
    if (!*a || !*b)
      return (*a != 0) - (*b != 0);
    unsigned wa = weight(*a), wb = weight(*b);
    if (wa != wb)
      return wa < wb ? -1 : 1;
    a++;
    b++;
  }
}

int proto_pattern_keycmp(const char *a, const char *b) {
  const unsigned char *ua = (const unsigned char *)a, *ub = (const unsigned char *)b;
  int c = compare_level(ua, ub, primary_weight);
  return c != 0 ? c : compare_level(ua, ub, tertiary_weight);
}

/* --- output buffer ------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len;
  size_t cap;
  int oom; /* sticky: once set, appends are dropped and the result is NULL */
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->cap - b->len <= n) {
    size_t cap = b->cap ? b->cap : PATTERN_INITIAL_BYTES;
    while (cap - b->len <= n)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) {
  sb_put(b, s, strlen(s));
}

/* NestJS escapes only backslash and double quote, nothing else. */
static void sb_put_escaped(sbuf_t *b, const char *s, size_t n) {
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\' && s[i] != '"')
      continue;
    sb_put(b, s + run, i - run);
    sb_put(b, "\\", 1);
    run = i;
  }
  sb_put(b, s + run, n - run);
}

/* --- JavaScript numbers -------------------------------------------------- */

/* The shortest digits that read back as x > 0: `digits` as text and the
 * exponent n with x ~= 0.<digits> * 10^n. For each precision the C library
 * gives the correctly rounded candidate; where the rounding interval of x is
 * lopsided (x a power of two) the neighbour on the wide side may read back
 * when the nearest does not, so both neighbours are tried too. Needs the "C"
 * numeric locale, as every daemon runs in. */
static int shortest_digits(double x, char digits[JS_NUMBER_MAX_BYTES]) {
  char text[JS_NUMBER_MAX_BYTES];
  for (int prec = 1; prec <= JS_DOUBLE_MAX_DIGITS; prec++) {
    snprintf(text, sizeof(text), "%.*e", prec - 1, x);
    uint64_t mantissa = 0;
    const char *s = text;
    for (; *s != 'e'; s++)
      if (*s != '.')
        mantissa = mantissa * 10 + (uint64_t)(*s - '0');
    int scale = atoi(s + 1) - (prec - 1); /* x ~= mantissa * 10^scale */
    const uint64_t candidates[3] = {mantissa, mantissa - 1, mantissa + 1};
    for (int i = 0; i < 3; i++) {
      if (candidates[i] == 0)
        continue;
      snprintf(text, sizeof(text), "%" PRIu64 "e%d", candidates[i], scale);
      if (strtod(text, NULL) != x)
        continue;
      int k = snprintf(digits, JS_NUMBER_MAX_BYTES, "%" PRIu64, candidates[i]);
      int n = k + scale;
      while (k > 1 && digits[k - 1] == '0')
        digits[--k] = '\0';
      return n;
    }
  }
  return 0; /* not reached: 17 digits always read back */
}

/* Number.prototype.toString(): plain notation for 1e-7 <= |x| < 1e21,
 * exponent notation outside (ECMAScript Number::toString). */
static void js_number(double x, char out[JS_NUMBER_MAX_BYTES]) {
  char digits[JS_NUMBER_MAX_BYTES];
  char *o = out;

  if (isnan(x) || isinf(x)) {
    strcpy(out, isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
    return;
  }
  if (x == 0) { /* also -0, which JavaScript prints as "0" */
    strcpy(out, "0");
    return;
  }
  if (x < 0) {
    *o++ = '-';
    x = -x;
  }
  int n = shortest_digits(x, digits);
  int k = (int)strlen(digits);

  if (k <= n && n <= 21) { /* integer: digits then zeros */
    memcpy(o, digits, (size_t)k);
    memset(o + k, '0', (size_t)(n - k));
    o += n;
  } else if (0 < n && n <= 21) { /* point inside the digits */
    memcpy(o, digits, (size_t)n);
    o[n] = '.';
    memcpy(o + n + 1, digits + n, (size_t)(k - n));
    o += k + 1;
  } else if (-6 < n && n <= 0) { /* 0.000ddd */
    memcpy(o, "0.", 2);
    memset(o + 2, '0', (size_t)-n);
    memcpy(o + 2 - n, digits, (size_t)k);
    o += 2 - n + k;
  } else { /* d.ddde+x */
    *o++ = digits[0];
    if (k > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, (size_t)(k - 1));
      o += k - 1;
    }
    o += sprintf(o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
  }
  *o = '\0';
}

static void sb_put_number(sbuf_t *b, double x) {
  char text[JS_NUMBER_MAX_BYTES];
  js_number(x, text);
  sb_puts(b, text);
}

/* --- normalisation ------------------------------------------------------- */

typedef struct member {
  const char *key;
  const json_t *value;
  uint64_t pos; /* rank in JavaScript's Object.keys() order */
} member_t;

/* The keys of an array's elements; longer arrays are [TOO_MANY_KEYS]. */
static const char *const index_names[PATTERN_MAX_KEYS] = {
  "0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",  "9",
  "10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
};

/* Largest array index of JavaScript (2^32 - 2), and its digit count. */
#define JS_MAX_ARRAY_INDEX 4294967294ull
#define JS_MAX_ARRAY_INDEX_DIGITS 10

/* Rank of key k, inserted n-th, in Object.keys(): canonical array indices
 * ("0", "17", not "017") first in numeric order, then the rest in insertion
 * order. */
static uint64_t object_keys_rank(const char *k, size_t n) {
  size_t digits = strspn(k, "0123456789");
  if (digits > 0 && digits <= JS_MAX_ARRAY_INDEX_DIGITS && k[digits] == '\0' &&
      (k[0] != '0' || digits == 1)) {
    uint64_t v = strtoull(k, NULL, 10);
    if (v <= JS_MAX_ARRAY_INDEX)
      return v;
  }
  return JS_MAX_ARRAY_INDEX + 1 + n;
}

/* Array.prototype.sort is stable, so keys that localeCompare calls equal
 * (they differ only in ignorable characters) keep Object.keys() order. */
static int member_cmp(const member_t *a, const member_t *b) {
  int c = proto_pattern_keycmp(a->key, b->key);
  if (c != 0)
    return c;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* At most PATTERN_MAX_KEYS members: insertion sort is enough. */
static void sort_members(member_t *m, size_t n) {
  for (size_t i = 1; i < n; i++) {
    member_t cur = m[i];
    size_t j = i;
    for (; j > 0 && member_cmp(&cur, &m[j - 1]) < 0; j--)
      m[j] = m[j - 1];
    m[j] = cur;
  }
}

/* Fill m with the members of v (at most PATTERN_MAX_KEYS), return how many. */
static size_t collect_members(const json_t *v, member_t *m) {
  size_t n = 0;
  if (json_is_array(v)) {
    for (; n < json_array_size(v); n++)
      m[n] = (member_t){index_names[n], json_array_get(v, n), n};
    return n;
  }
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)v, key, value) {
    m[n] = (member_t){key, value, object_keys_rank(key, n)};
    n++;
  }
  return n;
}

static void put_value(sbuf_t *b, const json_t *v, int depth);

static void put_object(sbuf_t *b, const json_t *v, int depth) {
  member_t m[PATTERN_MAX_KEYS];
  size_t n = json_is_array(v) ? json_array_size(v) : json_object_size(v);
  if (depth > PATTERN_MAX_DEPTH) {
    sb_puts(b, PATTERN_DEPTH_MARK);
    return;
  }
  if (n > PATTERN_MAX_KEYS) {
    sb_puts(b, PATTERN_KEYS_MARK);
    return;
  }
  n = collect_members(v, m);
  sort_members(m, n);
  sb_put(b, "{", 1);
  for (size_t i = 0; i < n; i++) {
    if (i > 0)
      sb_put(b, ",", 1);
    sb_put(b, "\"", 1);
    sb_put_escaped(b, m[i].key, strlen(m[i].key));
    sb_put(b, "\":", 2);
    if (json_is_string(m[i].value)) { /* only strings are quoted */
      sb_put(b, "\"", 1);
      sb_put_escaped(b, json_string_value(m[i].value), json_string_length(m[i].value));
      sb_put(b, "\"", 1);
    } else {
      put_value(b, m[i].value, depth + 1);
    }
  }
  sb_put(b, "}", 1);
}

static void put_value(sbuf_t *b, const json_t *v, int depth) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
  case JSON_ARRAY:
    put_object(b, v, depth);
    break;
  case JSON_STRING:
    sb_put(b, json_string_value(v), json_string_length(v));
    break;
  case JSON_INTEGER: /* JavaScript holds every number as a double */
    sb_put_number(b, (double)json_integer_value(v));
    break;
  case JSON_REAL:
    sb_put_number(b, json_real_value(v));
    break;
  case JSON_TRUE:
    sb_puts(b, "true");
    break;
  case JSON_FALSE:
    sb_puts(b, "false");
    break;
  case JSON_NULL:
    sb_puts(b, "null");
    break;
  }
}

static char *render(const json_t *v) {
  sbuf_t b = {0};
  put_value(&b, v, 0);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p; /* sb_put() allocates even for "", so never NULL here */
}

/* NestJS JSON.parse()s an incoming string pattern and normalises the result,
 * so "{\"cmd\":\"x\"}" finds the {"cmd":"x"} handler and "1.0" the handler of
 * 1. Text that is not JSON, and JSON true/false/null (which NestJS turns
 * into a route that matches no handler), stay the string itself. Numbers are
 * read as doubles, as JavaScript does, so no integer is too large. */
static char *render_string_pattern(const json_t *pattern) {
  json_t *parsed = json_loadb(json_string_value(pattern), json_string_length(pattern),
                              JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
  char *key;
  if (parsed && !json_is_boolean(parsed) && !json_is_null(parsed))
    key = render(parsed);
  else
    key = render(pattern);
  json_decref(parsed);
  return key;
}

char *proto_pattern_key(const json_t *pattern) {
  if (!pattern || json_is_boolean(pattern) || json_is_null(pattern))
    return NULL;
  if (json_is_string(pattern))
    return render_string_pattern(pattern);
  return render(pattern);
}

json_t *proto_pattern_cmd(const char *cmd) {
  return cmd ? json_pack("{s:s}", "cmd", cmd) : NULL;
}
