/* test_validate.c: the user service's input validation (validate.c): email
 * and name rules, unknown fields, pagination defaults and capping, ids, and
 * the user_logged_in event. Pure functions: no database, no loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "user.h"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
  assert_non_null(j);
  return j;
}

/* errs holds an error for field with message (exact). */
static void assert_err(const user_verrs_t *errs, const char *field, const char *message) {
  for (size_t i = 0; i < errs->n; i++)
    if (errs->e[i].field_len == strlen(field) &&
        memcmp(errs->e[i].field, field, errs->e[i].field_len) == 0) {
      assert_string_equal(errs->e[i].message, message);
      return;
    }
  fail_msg("no error for field '%s' (%zu errors)", field, errs->n);
}

static const char *email_why(const char *s) {
  return user_validate_email(s, strlen(s));
}

/* --- email ------------------------------------------------------------------- */

static void email_accepts_ordinary_addresses(void **state) {
  (void)state;
  assert_null(email_why("a@b.co"));
  assert_null(email_why("Alice.Smith+tag@Example.COM"));
  assert_null(email_why("o'brien@mail.example.org"));
  assert_null(email_why("caf\xc3\xa9@exampl\xc3\xa9.fr")); /* internationalised */
  assert_null(email_why("x@a-b.example"));
}

static void email_rejects_malformed(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",            "plain",        "@example.com", "a@",        "a@b",
      "a@@b.com",    "a@b@c.com",    "a b@c.com",    "a@b .com",  " a@b.com",
      "a@b.com ",    "a\t@b.com",    "a@b..com",     "a@.b.com",  "a@b.com.",
      ".a@b.com",    "a.@b.com",     "a..b@c.com",   "a@-b.com",  "a@b-.com",
      "a<b@c.com",   "a\"b@c.com",   "a@b_c.com",    "a@b\xc2\xa0.com",
      "a\xc2\x85@b.com", /* U+0085, a C1 control */
      "a\xff@b.com",     /* not UTF-8 */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *why = email_why(bad[i]);
    if (!why)
      fail_msg("accepted '%s'", bad[i]);
    assert_string_equal(why, "must be an email address");
  }
  /* An embedded NUL (from "\u0000" in JSON) is a control character. */
  assert_non_null(user_validate_email("a\0b@c.com", 9));
}

static void email_length_limits(void **state) {
  (void)state;
  char buf[300];
  /* 64-byte local part is the maximum; 65 is rejected. */
  memset(buf, 'l', 64);
  strcpy(buf + 64, "@example.com");
  assert_null(email_why(buf));
  memset(buf, 'l', 65);
  strcpy(buf + 65, "@example.com");
  assert_non_null(email_why(buf));
  /* 254 bytes total passes, 255 fails with the length message. */
  memset(buf, 0, sizeof(buf));
  strcpy(buf, "a@");
  size_t n = 2;
  while (n < 254) {
    size_t label = 254 - n > 60 ? 59 : 254 - n - 1; /* keep a label + '.' */
    if (n > 2)
      buf[n++] = '.';
    memset(buf + n, 'd', label);
    n += label;
  }
  buf[n] = '\0';
  assert_int_equal(strlen(buf), 254);
  assert_null(email_why(buf));
  buf[n] = 'e';
  buf[n + 1] = '\0';
  assert_string_equal(email_why(buf), "must be at most 254 bytes");
  /* A 64-byte domain label is too long. */
  memset(buf, 0, sizeof(buf));
  strcpy(buf, "a@");
  memset(buf + 2, 'x', 64);
  strcat(buf, ".com");
  assert_non_null(email_why(buf));
}

/* --- name --------------------------------------------------------------------- */

static const char *name_why(const char *s, size_t *start, size_t *len) {
  return user_validate_name(s, strlen(s), start, len);
}

static void name_trims_and_counts_characters(void **state) {
  (void)state;
  size_t st = 99, len = 99;
  assert_null(name_why("  Ada Lovelace  ", &st, &len));
  assert_int_equal(st, 2);
  assert_int_equal(len, strlen("Ada Lovelace"));
  /* Unicode spaces (U+00A0, U+3000) are trimmed too. */
  assert_null(name_why("\xc2\xa0" "Bo\xe3\x80\x80", &st, &len));
  assert_int_equal(st, 2);
  assert_int_equal(len, 2);
  /* 100 characters of 4 bytes each (emoji) are 400 bytes: still accepted. */
  char buf[512] = "";
  for (int i = 0; i < 100; i++)
    strcat(buf, "\xf0\x9f\x98\x80");
  assert_null(name_why(buf, &st, &len));
  assert_int_equal(len, 400);
  strcat(buf, "\xf0\x9f\x98\x80");
  assert_string_equal(name_why(buf, &st, &len), "must be at most 100 characters");
  /* 100 ASCII letters inside surrounding spaces: the limit is after trimming. */
  memset(buf, 0, sizeof(buf));
  memset(buf, ' ', 3);
  memset(buf + 3, 'n', 100);
  memset(buf + 103, ' ', 3);
  assert_null(name_why(buf, &st, &len));
  assert_int_equal(len, 100);
}

static void name_rejects_empty_and_control(void **state) {
  (void)state;
  size_t st, len;
  assert_string_equal(name_why("", &st, &len), "must not be empty");
  assert_string_equal(name_why("   ", &st, &len), "must not be empty");
  assert_string_equal(name_why("a\nb", &st, &len), "must not contain control characters");
  assert_string_equal(name_why("\tab", &st, &len), "must not contain control characters");
  assert_string_equal(name_why("a\x7f", &st, &len), "must not contain control characters");
  assert_string_equal(name_why("a\xc2\x9b", &st, &len), "must not contain control characters");
  assert_string_equal(user_validate_name("a\0b", 3, &st, &len),
                      "must not contain control characters");
  assert_string_equal(name_why("a\xe2\x82", &st, &len), "must be valid UTF-8");
  assert_string_equal(name_why("\xed\xa0\x80", &st, &len), "must be valid UTF-8"); /* surrogate */
  assert_string_equal(name_why("\xc0\xaf", &st, &len), "must be valid UTF-8");     /* overlong */
}

/* --- create_user ----------------------------------------------------------------- */

static void create_ok_borrows_trimmed_name(void **state) {
  (void)state;
  json_t *d = parse("{\"email\":\"Ann@Example.com\",\"name\":\"  Ann  \"}");
  user_create_input_t in;
  user_verrs_t errs;
  assert_int_equal(user_validate_create(d, &in, &errs), 0);
  assert_int_equal(errs.n, 0);
  assert_int_equal(in.email_len, 15);
  assert_memory_equal(in.email, "Ann@Example.com", 15); /* case kept */
  assert_int_equal(in.name_len, 3);
  assert_memory_equal(in.name, "Ann", 3);
  json_decref(d);
}

static void create_reports_every_bad_field(void **state) {
  (void)state;
  user_create_input_t in;
  user_verrs_t errs;
  json_t *d = parse("{\"email\":\"nope\",\"role\":\"admin\"}");
  assert_int_equal(user_validate_create(d, &in, &errs), -1);
  assert_int_equal(errs.n, 3);
  assert_err(&errs, "email", "must be an email address");
  assert_err(&errs, "name", "is required");
  assert_err(&errs, "role", "is not allowed");
  json_decref(d);

  d = parse("{\"email\":42,\"name\":null}");
  assert_int_equal(user_validate_create(d, &in, &errs), -1);
  assert_err(&errs, "email", "must be a string");
  assert_err(&errs, "name", "is required");
  json_decref(d);

  d = parse("{\"email\":\"a@b.co\",\"name\":\"x\\u0000y\"}");
  assert_int_equal(user_validate_create(d, &in, &errs), -1);
  assert_err(&errs, "name", "must not contain control characters");
  json_decref(d);
}

static void create_rejects_non_object(void **state) {
  (void)state;
  static const char *const texts[] = {"null", "[]", "\"x\"", "3"};
  for (size_t i = 0; i < 4; i++) {
    json_t *d = json_loads(texts[i], JSON_DECODE_ANY, NULL);
    user_create_input_t in;
    user_verrs_t errs;
    assert_non_null(d);
    assert_int_equal(user_validate_create(d, &in, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_err(&errs, "data", "must be an object");
    json_decref(d);
  }
}

static void unknown_field_name_is_cut_on_a_character(void **state) {
  (void)state;
  /* 63 ASCII bytes then a 2-byte character straddling the 64-byte cut. */
  char key[80], text[160];
  memset(key, 'k', 63);
  strcpy(key + 63, "\xc3\xa9zz");
  snprintf(text, sizeof(text), "{\"id\":\"u\",\"%s\":1}", key);
  json_t *d = parse(text);
  user_get_input_t in;
  user_verrs_t errs;
  assert_int_equal(user_validate_get(d, &in, &errs), -1);
  assert_int_equal(errs.n, 1);
  assert_int_equal(errs.e[0].field_len, 63);
  json_decref(d);

  /* Many unknown fields: the list stops at USER_VERR_MAX. */
  d = json_object();
  for (int i = 0; i < 20; i++) {
    char k[8];
    snprintf(k, sizeof(k), "f%d", i);
    json_object_set_new(d, k, json_true());
  }
  assert_int_equal(user_validate_get(d, &in, &errs), -1);
  assert_int_equal(errs.n, USER_VERR_MAX);
  json_decref(d);
}

/* --- get_user --------------------------------------------------------------------- */

static void get_user_id_rules(void **state) {
  (void)state;
  user_get_input_t in;
  user_verrs_t errs;
  json_t *d = parse("{\"id\":\"user_0123\"}");
  assert_int_equal(user_validate_get(d, &in, &errs), 0);
  assert_int_equal(in.id_len, 9);
  assert_memory_equal(in.id, "user_0123", 9);
  json_decref(d);

  static const struct {
    const char *text, *message;
  } bad[] = {
      {"{}", "is required"},
      {"{\"id\":\"\"}", "must not be empty"},
      {"{\"id\":7}", "must be a string"},
      {"{\"id\":\"a\\nb\"}", "must not contain control characters"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    d = parse(bad[i].text);
    assert_int_equal(user_validate_get(d, &in, &errs), -1);
    assert_err(&errs, "id", bad[i].message);
    json_decref(d);
  }
  char big[USER_ID_MAX_BYTES + 2];
  memset(big, 'i', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  d = json_pack("{s:s}", "id", big);
  assert_int_equal(user_validate_get(d, &in, &errs), -1);
  assert_err(&errs, "id", "must be at most 128 bytes");
  json_decref(d);
}

/* --- get_users -------------------------------------------------------------------- */

static void list_defaults_and_forms(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t page, limit;
  } ok[] = {
      {"null", 1, 10},
      {"{}", 1, 10},
      {"{\"page\":null,\"limit\":null}", 1, 10},
      {"{\"page\":3,\"limit\":25}", 3, 25},
      {"{\"page\":\"3\",\"limit\":\"25\"}", 3, 25},  /* query strings */
      {"{\"page\":2.0,\"limit\":1e1}", 2, 10},       /* integral numbers */
      {"{\"limit\":100}", 1, 100},
      {"{\"limit\":101}", 1, 100},                   /* capped */
      {"{\"limit\":\"5000\"}", 1, 100},
      {"{\"limit\":\"99999999999999999999999\"}", 1, 100},
      {"{\"page\":1000000000}", 1000000000, 10},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    json_t *d = json_loads(ok[i].text, JSON_DECODE_ANY, NULL);
    user_list_input_t in = {0, 0};
    user_verrs_t errs;
    assert_non_null(d);
    if (user_validate_list(d, &in, &errs) != 0)
      fail_msg("rejected %s: %s", ok[i].text, errs.e[0].message);
    assert_int_equal(in.page, ok[i].page);
    assert_int_equal(in.limit, ok[i].limit);
    json_decref(d);
  }
}

static void list_rejects_bad_values(void **state) {
  (void)state;
  static const struct {
    const char *text, *field;
  } bad[] = {
      {"{\"page\":0}", "page"},
      {"{\"page\":-1}", "page"},
      {"{\"page\":\"-1\"}", "page"},
      {"{\"page\":1.5}", "page"},
      {"{\"page\":\"1.5\"}", "page"},
      {"{\"page\":\"\"}", "page"},
      {"{\"page\":\" 2\"}", "page"},
      {"{\"page\":\"2a\"}", "page"},
      {"{\"page\":true}", "page"},
      {"{\"page\":[1]}", "page"},
      {"{\"page\":1000000001}", "page"},
      {"{\"page\":\"99999999999999999999999\"}", "page"},
      {"{\"limit\":0}", "limit"},
      {"{\"limit\":-5}", "limit"},
      {"{\"limit\":\"ten\"}", "limit"},
      {"{\"sort\":\"name\"}", "sort"},
      {"[]", "data"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    json_t *d = parse(bad[i].text);
    user_list_input_t in;
    user_verrs_t errs;
    if (user_validate_list(d, &in, &errs) != -1)
      fail_msg("accepted %s", bad[i].text);
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.e[0].field_len, strlen(bad[i].field));
    assert_memory_equal(errs.e[0].field, bad[i].field, strlen(bad[i].field));
    json_decref(d);
  }
}

/* --- user_logged_in ------------------------------------------------------------------ */

static void iso_time_forms(void **state) {
  (void)state;
  char out[PROTO_ISO_TIME_LEN];
#define ISO_OK(in, want)                                       \
  do {                                                         \
    assert_int_equal(user_parse_iso_time(in, strlen(in), out), 0); \
    assert_string_equal(out, want);                            \
  } while (0)
  ISO_OK("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
  ISO_OK("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z");
  ISO_OK("2026-03-04T05:06:07.5Z", "2026-03-04T05:06:07.500Z");
  ISO_OK("2026-03-04T05:06:07.123456789Z", "2026-03-04T05:06:07.123Z");
  ISO_OK("2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999Z");
#undef ISO_OK
  static const char *const bad[] = {
      "",
      "2026-01-01",
      "2026-01-01T00:00:00.000",       /* no zone */
      "2026-01-01T00:00:00.000+01:00", /* not UTC */
      "2026-01-01 00:00:00.000Z",
      "2026-13-01T00:00:00.000Z",
      "2026-00-01T00:00:00.000Z",
      "2025-02-29T00:00:00.000Z",      /* not a leap year */
      "2026-04-31T00:00:00.000Z",
      "2026-01-01T24:00:00.000Z",
      "2026-01-01T00:60:00.000Z",
      "2026-01-01T00:00:60.000Z",
      "2026-01-01T00:00:00.Z",
      "2026-01-01T00:00:00.1234567890Z",
      "2026-01-01T00:00:00,000Z",
      "+02026-01-01T00:00:00.000Z",
      "2026-1-01T00:00:00.000Z",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (user_parse_iso_time(bad[i], strlen(bad[i]), out) != -1)
      fail_msg("accepted '%s'", bad[i]);
}

static void login_event(void **state) {
  (void)state;
  user_login_input_t in;
  user_verrs_t errs;
  /* The PROTOCOL.md test vector, plus a field a newer producer might add. */
  json_t *d = parse("{\"userId\":\"u1\",\"timestamp\":\"2026-01-01T00:00:00.000Z\","
                    "\"ip\":\"10.0.0.1\"}");
  assert_int_equal(user_validate_login(d, &in, &errs), 0);
  assert_int_equal(in.user_id_len, 2);
  assert_memory_equal(in.user_id, "u1", 2);
  assert_string_equal(in.timestamp, "2026-01-01T00:00:00.000Z");
  json_decref(d);

  d = parse("{\"userId\":\"\",\"timestamp\":\"yesterday\"}");
  assert_int_equal(user_validate_login(d, &in, &errs), -1);
  assert_err(&errs, "userId", "must not be empty");
  assert_err(&errs, "timestamp", "must be an ISO 8601 UTC timestamp");
  json_decref(d);

  d = parse("{\"timestamp\":1767225600000}");
  assert_int_equal(user_validate_login(d, &in, &errs), -1);
  assert_err(&errs, "userId", "is required");
  assert_err(&errs, "timestamp", "must be a string");
  json_decref(d);

  d = parse("\"u1\"");
  assert_int_equal(user_validate_login(d, &in, &errs), -1);
  assert_err(&errs, "data", "must be an object");
  json_decref(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(email_accepts_ordinary_addresses),
      cmocka_unit_test(email_rejects_malformed),
      cmocka_unit_test(email_length_limits),
      cmocka_unit_test(name_trims_and_counts_characters),
      cmocka_unit_test(name_rejects_empty_and_control),
      cmocka_unit_test(create_ok_borrows_trimmed_name),
      cmocka_unit_test(create_reports_every_bad_field),
      cmocka_unit_test(create_rejects_non_object),
      cmocka_unit_test(unknown_field_name_is_cut_on_a_character),
      cmocka_unit_test(get_user_id_rules),
      cmocka_unit_test(list_defaults_and_forms),
      cmocka_unit_test(list_rejects_bad_values),
      cmocka_unit_test(iso_time_forms),
      cmocka_unit_test(login_event),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
