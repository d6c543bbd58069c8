/* The manifest reader of mustdrop-eval (core/cli/json.c): values, escapes,
 * surrogate pairs, numbers, skipped nesting, and every rejection with its
 * column; the string writer's escaping and UTF-8 repair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "md_test.h"

static int parse(const char *s, struct json_object *o, char *err, size_t n)
{
    return json_parse_object(s, strlen(s), o, err, n);
}

static void rejects(const char *s, const char *want)
{
    struct json_object o;
    char err[256] = "";
    int rc = parse(s, &o, err, sizeof err);
    CHECKF(rc == -1, "accepted: %s", s);
    CHECKF(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", s, err, want);
    CHECKF(o.n == 0 && o.field == NULL, "%s: object not emptied", s);
}

static const char *str(const struct json_object *o, const char *key)
{
    const struct json_field *f = json_get(o, key);
    return f && f->type == JSON_STRING ? f->str : NULL;
}

int main(void)
{
    struct json_object o;
    char err[256];

    CHECK(parse(" {\"a\": \"x\", \"b\" :-12.5e1 ,\"c\":true,\"d\":false,\"e\":null,"
                "\"f\":[1,[2,{\"g\":\"h\"}],{}],\"i\":{\"j\":[]} }\r\n", &o, err, sizeof err) == 0);
    CHECK(o.n == 7);
    CHECK(str(&o, "a") && !strcmp(str(&o, "a"), "x"));
    CHECK(json_get(&o, "b") && json_get(&o, "b")->type == JSON_NUMBER && json_get(&o, "b")->num == -125.0);
    CHECK(json_get(&o, "c")->type == JSON_TRUE && json_get(&o, "d")->type == JSON_FALSE);
    CHECK(json_get(&o, "e")->type == JSON_NULL);
    CHECK(json_get(&o, "f")->type == JSON_COMPOUND && json_get(&o, "i")->type == JSON_COMPOUND);
    CHECK(json_get(&o, "zz") == NULL);
    json_object_free(&o);

    CHECK(parse("{}", &o, err, sizeof err) == 0 && o.n == 0);
    json_object_free(&o);

    /* escapes: simple, \u (BMP, 2- and 3-byte UTF-8), a surrogate pair, raw UTF-8 kept */
    CHECK(parse("{\"s\": \"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t \\u00e9\\u20AC \\ud83d\\ude00 caf\xc3\xa9\"}",
                &o, err, sizeof err) == 0);
    CHECKF(str(&o, "s") && !strcmp(str(&o, "s"), "q\"b\\s/\b\f\n\r\t \xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 caf\xc3\xa9"),
           "%s", str(&o, "s") ? str(&o, "s") : "(null)");
    json_object_free(&o);
    CHECK(parse("{\"\\u0041\": \"\"}", &o, err, sizeof err) == 0 && str(&o, "A") && !str(&o, "A")[0]);
    json_object_free(&o);
    CHECK(parse("{\"n\": 0, \"m\": -0.5, \"k\": 1E+2, \"l\": 7e-1}", &o, err, sizeof err) == 0);
    CHECK(json_get(&o, "k")->num == 100.0 && json_get(&o, "l")->num == 0.7);
    json_object_free(&o);

    rejects("", "empty line");
    rejects("   ", "empty line");
    rejects("[1]", "column 1: expected '{'");
    rejects("{\"a\" 1}", "column 6: expected ':'");
    rejects("{\"a\": }", "column 7: expected a value");
    rejects("{\"a\": 1,}", "column 9: expected a key");
    rejects("{a: 1}", "expected a key");
    rejects("{\"a\": 1} x", "column 10: unexpected text");
    rejects("{\"a\": 1", "unterminated object");
    rejects("{\"a\": \"x", "unterminated string");
    rejects("{\"a\": \"x\ty\"}", "control character 0x09");
    rejects("{\"a\": \"\\x\"}", "bad escape '\\x'");
    rejects("{\"a\": \"\\u12G4\"}", "4 hex digits");
    rejects("{\"a\": \"\\u0000\"}", "\\u0000");
    rejects("{\"a\": \"\\ud800\"}", "without its low half");
    rejects("{\"a\": \"\\ud800\\u0041\"}", "bad low surrogate");
    rejects("{\"a\": \"\\udc00\"}", "lone low surrogate");
    rejects("{\"a\": 01}", "expected ',' or '}'");
    rejects("{\"a\": 1.}", "digits expected after '.'");
    rejects("{\"a\": 1e}", "digits expected in the exponent");
    rejects("{\"a\": -}", "bad number");
    rejects("{\"a\": +1}", "expected a value, found '+'");
    rejects("{\"a\": tru}", "unexpected character");
    rejects("{\"a\": [1 2]}", "expected ',' or ']'");
    rejects("{\"a\": {\"b\" 1}}", "expected ':'");
    rejects("{\"a\": 1, \"a\": 2}", "duplicate key \"a\"");
    char deep[300] = "{\"a\": ";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    rejects(deep, "nested more than 64");

    /* the writer: escapes, control bytes, invalid UTF-8 replaced, valid kept */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    if (f) {
        json_write_string(f, "a\"b\\c\nd\x01 \xc3\xa9 \xae \xe2\x82 \xf0\x9f\x98\x80 \xed\xa0\x80");
        fclose(f);
        CHECKF(!strcmp(buf, "\"a\\\"b\\\\c\\nd\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd \xf0\x9f\x98\x80 "
                            "\\ufffd\\ufffd\\ufffd\""), "%s", buf);
        /* what it writes reads back */
        char line[512];
        snprintf(line, sizeof line, "{\"k\": %s}", buf);
        CHECK(parse(line, &o, err, sizeof err) == 0 && str(&o, "k") && !strncmp(str(&o, "k"), "a\"b\\c\nd\x01 ", 9));
        json_object_free(&o);
        free(buf);
    }
    return md_test_finish("json");
}
