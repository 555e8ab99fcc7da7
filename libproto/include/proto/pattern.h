/* proto/pattern.h: NestJS pattern normalisation (how handlers are matched).
 *
 * A pattern is a string, a number or an object; handlers are registered and
 * looked up by its normalised string (see PROTOCOL.md section 3): objects
 * become `{"key":value,...}` with keys in ICU collation order, no whitespace,
 * recursively; a string holding JSON (object, array or number, as NestJS
 * JSON.parse()s it) is parsed and normalised too.
 */
#ifndef PROTO_PATTERN_H
#define PROTO_PATTERN_H

#include <jansson.h>

/* The normalised key of a pattern, malloc'd (caller frees), or NULL when the
 * pattern is of an unsupported type (null, bool) or on out-of-memory. An
 * array, at top level too, is an object with keys "0", "1", ... as in NestJS. */
char *proto_pattern_key(const json_t *pattern);

/* The NestJS comparison of two ASCII keys (localeCompare order): <0, 0, >0. */
int proto_pattern_keycmp(const char *a, const char *b);

/* {"cmd":"<cmd>"} as a new JSON object (NULL on ENOMEM). */
json_t *proto_pattern_cmd(const char *cmd);

#endif
