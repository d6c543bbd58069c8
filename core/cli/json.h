/* A small strict JSON reader for one flat object per line (mustdrop-eval's
 * manifest.jsonl), and a string writer.
 *
 * Accepted: one object {"key": value, ...} surrounded by optional
 * whitespace. Values are strings (all RFC 8259 escapes, \uXXXX with
 * surrogate pairs, decoded to UTF-8), numbers (RFC 8259 grammar), true,
 * false, null; nested objects and arrays are checked and skipped (their
 * type is JSON_COMPOUND, up to 64 levels deep). Rejected, with the column
 * (1-based byte offset) in the message: anything else, trailing text,
 * duplicate keys, raw control characters in strings, \u0000, lone
 * surrogates. No global state. */
#ifndef MD_CLI_JSON_H
#define MD_CLI_JSON_H

#include <stddef.h>
#include <stdio.h>

enum json_type { JSON_STRING, JSON_NUMBER, JSON_TRUE, JSON_FALSE, JSON_NULL, JSON_COMPOUND };

struct json_field {
    char *key;
    enum json_type type;
    char *str;        /* JSON_STRING: the decoded text (NUL-terminated) */
    double num;       /* JSON_NUMBER */
};

struct json_object {
    struct json_field *field;
    int n;
};

/* Parse text[0..len) as one object. Returns 0, or -1 with err set, e.g.
 * "column 17: expected ':' after the key". out is empty on failure. */
int json_parse_object(const char *text, size_t len, struct json_object *out, char *err,
                      size_t errlen);
void json_object_free(struct json_object *o);
/* The field named key, or NULL. */
const struct json_field *json_get(const struct json_object *o, const char *key);

/* s as a JSON string literal (quotes included) on f. */
void json_write_string(FILE *f, const char *s);

#endif
