/* Constrained answers without a model: the JSON reader, the schema subset
 * (accepted schemas and the messages of refused ones), the byte matcher
 * (texts it takes and refuses, integer ranges and enum prefixes), the token
 * mask over hand-made pieces (SPM "▁" pieces, byte tokens, byte-level BPE
 * pieces) and the mask walked against a brute-force check on the real
 * vocabularies, the parsed value, md_vqa_choices_parse. */
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "grammar.h"
#include "md_test.h"
#include "tokenizer.h"

/* ---- the reader ---- */

static void json_reader(void)
{
    static const char *good[] = { "{}", " [1, -2, 3.5e1, true, false, null] ",
                                  "{\"a\": {\"b\": [\"\\u00e9\\ud83d\\ude00\\n\"]}}",
                                  "-9223372036854775808", "\"\"" };
    static const struct { const char *text, *msg; } bad[] = {
        { "", "at byte 0: a value expected, the text ended" },
        { "{\"a\":1,\"a\":2}", "a duplicate member name" },
        { "[1,]", "a value expected" },
        { "01", "leading zero" },
        { "\"\\ud800\"", "without its low surrogate" },
        { "\"a\x01\"", "control character" },
        { "{} x", "text after the value" },
        { "\"\xff\"", "invalid UTF-8" },
        { "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "nested deeper" },
        { "\"\\u0000\"", "\\u0000" },
    };
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct md_json *j;
        CHECKF(md_json_parse(good[i], strlen(good[i]), &j, err, sizeof err) == MD_OK, "%s: %s",
               good[i], err);
        md_json_free(j);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct md_json *j = (struct md_json *)1;
        CHECKF(md_json_parse(bad[i].text, strlen(bad[i].text), &j, err, sizeof err) ==
               MD_ERR_INVALID && !j && strstr(err, bad[i].msg), "%s: got '%s'", bad[i].text, err);
    }
    struct md_json *j;
    const char *t = "{\"k\": \"\\u00e9\\ud83d\\ude00\", \"n\": -12, \"x\": 1.5}";
    CHECK(md_json_parse(t, strlen(t), &j, err, sizeof err) == MD_OK);
    CHECK(!strcmp(md_json_get(j, "k")->string, "\xc3\xa9\xf0\x9f\x98\x80"));
    CHECK(md_json_get(j, "n")->type == MD_JSON_INT && md_json_get(j, "n")->integer == -12);
    CHECK(md_json_get(j, "x")->type == MD_JSON_NUMBER && !md_json_get(j, "y"));
    md_json_free(j);
}

/* ---- the subset ---- */

static void schemas(void)
{
    static const char *good[] = {
        "{\"type\":\"object\",\"properties\":{\"person\":{\"type\":\"boolean\"},"
        "\"count\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},"
        "\"required\":[\"person\"],\"additionalProperties\":false}",
        "{\"enum\":[\"yes\",\"no\",3,true]}",
        "{\"type\":\"string\",\"maxLength\":5,\"minLength\":1,\"title\":\"t\"}",
        "{\"$schema\":\"x\",\"type\":\"object\"}",
        "{\"const\":\"door\"}",
        "{\"type\":\"integer\",\"exclusiveMinimum\":-3,\"exclusiveMaximum\":3}",
    };
    static const struct { const char *schema, *msg; } bad[] = {
        { "{\"type\":\"number\"}", "(root): type \"number\" is not supported (integer is)" },
        { "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\"}}}",
          "/properties/n: type \"number\" is not supported (integer is)" },
        { "{\"type\":\"array\"}", "(root): type \"array\" is not supported" },
        { "{\"$ref\":\"#/x\"}", "(root): keyword \"$ref\" is not supported" },
        { "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"x\"}}}",
          "/properties/a: keyword \"pattern\" is not supported" },
        { "{\"oneOf\":[]}", "keyword \"oneOf\" is not supported" },
        { "{\"type\":\"object\",\"additionalProperties\":true}", "additionalProperties must be false" },
        { "{\"type\":\"object\",\"properties\":{\"a b\":{\"type\":\"boolean\"}}}",
          "/properties/a b: property names must start with a letter" },
        { "{\"type\":\"object\",\"properties\":{\"1a\":{\"type\":\"boolean\"}}}",
          "/properties/1a: property names" },
        { "{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer lies between" },
        { "{\"type\":\"integer\",\"minimum\":0.5}", "minimum must be an integer" },
        { "{\"type\":\"string\",\"maxLength\":1000}", "maxLength must be an integer from 0 to 256" },
        { "{\"enum\":[1,[2]]}", "enum value 1 is of type array" },
        { "{\"enum\":[\"a\",\"a\"]}", "enum value 1 repeats value 0" },
        { "{\"type\":\"string\",\"enum\":[1]}", "enum value 0 is of type integer, the type is string" },
        { "{\"type\":[\"string\",\"null\"]}", "unions are not supported" },
        { "{\"properties\":{}}", "a type, an enum or a const is needed" },
        { "[]", "a schema must be an object" },
        { "{\"type\":\"object\",\"properties\":{\"a\":{}}, \"required\":[\"b\"]}",
          "required value 0 is not a property" },
        { "{\"type\":", "the schema is not valid JSON: at byte 8" },
        { "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":"
          "{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"object\",\"properties\":{\"d\":"
          "{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"object\",\"properties\":{\"f\":"
          "{\"type\":\"object\",\"properties\":{\"g\":{\"type\":\"object\",\"properties\":{\"h\":"
          "{\"type\":\"object\"}}}}}}}}}}}}}}}}}",
          "/properties/a/properties/b/properties/c/properties/d/properties/e/properties/f/"
          "properties/g/properties/h: objects nested deeper than 8" },
    };
    char err[512];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECKF(md_vqa_check_schema(good[i], err, sizeof err) == MD_OK, "%s: %s", good[i], err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECKF(md_vqa_check_schema(bad[i].schema, err, sizeof err) == MD_ERR_INVALID &&
               strstr(err, bad[i].msg), "%s: got '%s'", bad[i].schema, err);
    }
    CHECK(md_vqa_check_schema(NULL, err, sizeof err) == MD_ERR_INVALID);
}

/* ---- the matcher ---- */

static struct md_grammar *compile(const char *schema)
{
    struct md_grammar *g = NULL;
    char err[512];
    CHECKF(md_grammar_compile(schema, &g, err, sizeof err) == MD_OK, "%s: %s", schema, err);
    return g;
}

/* 1: the whole text is taken and is a complete value; 0: taken, not complete;
 * -1: refused. */
static int match(const struct md_grammar *g, const char *text)
{
    struct md_gstate st;
    md_gstate_init(g, &st);
    if (!md_gstate_feed_bytes(g, &st, text, strlen(text)))
        return -1;
    return md_gstate_complete(g, &st) ? 1 : 0;
}

struct case_ {
    const char *text;
    int want;
};

static void run_cases(const char *schema, const struct case_ *c, size_t n)
{
    struct md_grammar *g = compile(schema);
    for (size_t i = 0; g && i < n; i++)
        CHECKF(match(g, c[i].text) == c[i].want, "%s on '%s': %d, expected %d", schema,
               c[i].text, match(g, c[i].text), c[i].want);
    md_grammar_free(g);
}

#define RUN(schema, ...) do { static const struct case_ c_[] = { __VA_ARGS__ }; \
        run_cases(schema, c_, sizeof c_ / sizeof c_[0]); } while (0)

static void matcher(void)
{
    RUN("{\"type\":\"object\",\"properties\":{\"person\":{\"type\":\"boolean\"},"
        "\"count\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":12}}}",
        { "{\"person\":true,\"count\":1}", 1 }, { " {\"person\":false,\"count\":12}", 1 },
        { "{\"person\":true,\"count\":1", 0 }, { "{\"person\":true,\"count\":13}", -1 },
        { "{\"person\":true,\"count\":01}", -1 }, { "{\"person\": true", -1 },
        { "{\"count\":1,\"person\":true}", -1 }, { "{\"person\":tru", 0 },
        { "{\"person\":true,\"count\":-1}", -1 }, { "{\"person\":true,\"count\":1}x", -1 },
        { "{\"person\":true}", -1 }, { "     {", -1 }, { "    {", 0 });
    /* integer prefixes: only those that can still end inside the range */
    RUN("{\"type\":\"integer\",\"minimum\":-15,\"maximum\":230}",
        { "-", 0 }, { "-1", 1 }, { "-15", 1 }, { "-16", -1 }, { "-2", 1 }, { "-20", -1 },
        { "-0", -1 }, { "0", 1 }, { "00", -1 }, { "23", 1 }, { "230", 1 }, { "231", -1 },
        { "2300", -1 }, { "3", 1 }, { "30", 1 }, { "300", -1 }, { "99", 1 }, { "999", -1 }, { "", 0 }, { "+1", -1 });
    RUN("{\"type\":\"integer\",\"minimum\":100,\"maximum\":150}",
        { "1", 0 }, { "10", 0 }, { "2", -1 }, { "16", -1 }, { "100", 1 }, { "0", -1 },
        { "-", -1 });
    RUN("{\"type\":\"integer\",\"maximum\":-10}",
        { "-", 0 }, { "-9", 0 }, { "-10", 1 }, { "-9223372036854775808", 1 }, { "1", -1 },
        { "-92233720368547758080", -1 });
    RUN("{\"type\":\"integer\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":3}",
        { "0", -1 }, { "1", 1 }, { "2", 1 }, { "3", -1 });
    /* enum prefixes: a value that is a prefix of another is complete yet open */
    RUN("{\"enum\":[\"top\",\"top left\",7,77,false]}",
        { "\"top\"", 1 }, { "\"top", 0 }, { "\"top left\"", 1 }, { "\"top r", -1 }, { "7", 1 },
        { "77", 1 }, { "777", -1 }, { "f", 0 }, { "false", 1 }, { "\"to\"", -1 }, { "8", -1 });
    RUN("{\"type\":\"object\",\"properties\":{\"n\":{\"enum\":[1,12]},\"b\":{\"const\":true}}}",
        { "{\"n\":1,\"b\":true}", 1 }, { "{\"n\":12,\"b\":true}", 1 }, { "{\"n\":123", -1 },
        { "{\"n\":12,\"b\":false}", -1 });
    /* strings: characters counted, no escapes, UTF-8 checked byte by byte */
    RUN("{\"type\":\"string\",\"minLength\":1,\"maxLength\":3}",
        { "\"abc\"", 1 }, { "\"abcd", -1 }, { "\"\"", -1 }, { "\"a\\", -1 },
        { "\"\xc3\xa9\xc3\xa9\xc3\xa9\"", 1 }, { "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3", -1 },
        { "\"\xc3", 0 }, { "\"\xc0\x80", -1 }, { "\"\xed\xa0\x80", -1 }, { "\"\xf0\x9f\x98\x80\"", 1 },
        { "\"a\nb\"", -1 }, { "\"a\"", 1 }, { "\"a\" ", -1 });
    RUN("{\"type\":\"object\"}", { "{}", 1 }, { "{", 0 }, { "{\"", -1 });
    RUN("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":"
        "{\"b\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":5}}},\"c\":{\"type\":\"string\","
        "\"maxLength\":2}}}",
        { "{\"a\":{\"b\":5},\"c\":\"xy\"}", 1 }, { "{\"a\":{\"b\":5}}", -1 },
        { "{\"a\":{\"b\":5},\"c\":\"xyz", -1 });
    RUN("{\"enum\":[\"say \\\"hi\\\"\"]}", { "\"say \\\"hi\\\"\"", 1 }, { "\"say \"", -1 });
}

/* ---- the mask ---- */

static void mask_pieces(void)
{
    /* SPM pieces as md_token_to_piece gives them ("▁" is a space), byte
     * tokens (one byte each), byte-level BPE pieces ("Ġ" is a space: raw
     * bytes again), and a duplicate of another piece's bytes */
    static const char *text[] = {
        "{", "{\"", "\"", " {", "true", "tr", "t", "ue", " true", "false", "1", "12", "123",
        "0", "-", "\xc3", "\xa9", "\xc3\xa9", "}", "\":", "\"count\":", "count", "\"person\":",
        ",", ",\"", "\"}", "1}", " ", "  ", "\n", "x", "", "\"person\":true,\"count\":1}", "{",
    };
    int32_t n = (int32_t)(sizeof text / sizeof text[0]);
    uint32_t len[64];
    for (int32_t i = 0; i < n; i++)
        len[i] = (uint32_t)strlen(text[i]);
    struct md_pieces *p;
    CHECK(md_pieces_from_list(text, len, n, &p) == MD_OK);
    CHECK(p->n == n - 1);   /* the empty piece is left out */
    struct md_grammar *g = compile("{\"type\":\"object\",\"properties\":{\"person\":"
                                   "{\"type\":\"boolean\"},\"count\":{\"type\":\"integer\","
                                   "\"minimum\":0,\"maximum\":12}}}");
    bool allowed[64];
    struct md_gstate st;
    md_gstate_init(g, &st);
    /* brute force: each piece fed on its own copy */
    const char *prefixes[] = { "", " ", "{", "{\"person\":", "{\"person\":t",
                               "{\"person\":true,\"count\":", "{\"person\":true,\"count\":1",
                               "{\"person\":true,\"count\":12" };
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
        md_gstate_init(g, &st);
        CHECK(md_gstate_feed_bytes(g, &st, prefixes[k], strlen(prefixes[k])));
        int64_t got = md_grammar_mask(g, &st, p, allowed), want = 0;
        for (int32_t t = 0; t < n; t++) {
            struct md_gstate c = st;
            bool ok = len[t] > 0 && md_gstate_feed_bytes(g, &c, text[t], len[t]);
            want += ok;
            CHECKF(allowed[t] == ok, "after '%s': piece %d '%s' allowed %d, expected %d",
                   prefixes[k], t, text[t], allowed[t], ok);
        }
        CHECKF(got == want, "after '%s': %lld allowed, expected %lld", prefixes[k],
               (long long)got, (long long)want);
    }
    /* spot checks of what the brute force agrees on */
    md_gstate_init(g, &st);
    md_grammar_mask(g, &st, p, allowed);
    CHECK(allowed[0] && allowed[1] && allowed[3] && allowed[33] && allowed[27] && allowed[28]);
    CHECK(!allowed[2] && !allowed[4] && !allowed[31]);
    CHECK(allowed[32] == false);   /* "\"person\"..." cannot start the value */
    const char *pre = "{\"person\":true,\"count\":";
    CHECK(md_gstate_feed_bytes(g, &st, pre, strlen(pre)));
    md_grammar_mask(g, &st, p, allowed);
    CHECK(allowed[10] && allowed[11] && !allowed[12] && allowed[13] && !allowed[14] &&
          allowed[26] && !allowed[18]);
    md_grammar_free(g);
    md_pieces_free(p);
}

/* The mask on a real vocabulary agrees with feeding every token alone. */
static void mask_vocab(const char *path, const char *what)
{
    char err[512];
    struct md_gguf *gg = NULL;
    struct md_vocab *v = NULL;
    CHECKF(md_gguf_open(path, &gg, err, sizeof err) == MD_OK, "%s: %s", what, err);
    if (gg)
        CHECKF(md_vocab_load(gg, &v, err, sizeof err) == MD_OK, "%s: %s", what, err);
    md_gguf_close(gg);
    if (!v)
        return;
    struct md_pieces *p;
    CHECK(md_pieces_from_vocab(v, &p) == MD_OK);
    int32_t n = md_vocab_n_tokens(v);
    bool *allowed = malloc((size_t)n);
    struct md_grammar *g = compile("{\"type\":\"object\",\"properties\":{\"shape\":{\"enum\":"
                                   "[\"circle\",\"square\"]},\"n\":{\"type\":\"integer\","
                                   "\"minimum\":0,\"maximum\":40},\"note\":{\"type\":\"string\","
                                   "\"maxLength\":8}}}");
    const char *prefixes[] = { "", "{\"shape\":\"", "{\"shape\":\"circle\",\"n\":",
                               "{\"shape\":\"circle\",\"n\":4", "{\"shape\":\"square\",\"n\":4,"
                               "\"note\":\"ab" };
    char piece[512];
    for (size_t k = 0; g && allowed && p && k < sizeof prefixes / sizeof prefixes[0]; k++) {
        struct md_gstate st;
        md_gstate_init(g, &st);
        CHECK(md_gstate_feed_bytes(g, &st, prefixes[k], strlen(prefixes[k])));
        int64_t got = md_grammar_mask(g, &st, p, allowed), want = 0, bad = 0;
        for (int32_t t = 0; t < n; t++) {
            enum md_token_type ty = md_vocab_token_type(v, t);
            int32_t k2 = md_token_to_piece(v, t, piece, sizeof piece, false);
            struct md_gstate c = st;
            bool ok = (ty == MD_TOKEN_NORMAL || ty == MD_TOKEN_BYTE || ty == MD_TOKEN_UNDEFINED)
                      && k2 > 0 && k2 <= MD_PIECE_MAX &&
                      md_gstate_feed_bytes(g, &c, piece, (size_t)k2);
            want += ok;
            bad += allowed[t] != ok;
        }
        CHECKF(got == want && bad == 0, "%s after '%s': %lld allowed, %lld expected, %lld differ",
               what, prefixes[k], (long long)got, (long long)want, (long long)bad);
        printf("%s: after '%s': %lld of %d tokens allowed\n", what, prefixes[k], (long long)got,
               n);
    }
    md_grammar_free(g);
    free(allowed);
    md_pieces_free(p);
    md_vocab_free(v);
}

/* ---- values and choice lists ---- */

static void values(void)
{
    struct md_value *v = md_value_from_json("{\"a\":true,\"b\":-3,\"c\":\"x\",\"d\":{\"e\":7}}");
    CHECK(v && v->type == MD_VALUE_OBJECT && v->n_members == 4);
    if (v && v->n_members == 4) {
        CHECK(!strcmp(v->keys[0], "a") && v->members[0].type == MD_VALUE_BOOL &&
              v->members[0].boolean);
        CHECK(v->members[1].type == MD_VALUE_INT && v->members[1].integer == -3);
        CHECK(v->members[2].type == MD_VALUE_STRING && !strcmp(v->members[2].string, "x"));
        CHECK(v->members[3].type == MD_VALUE_OBJECT && v->members[3].members[0].integer == 7);
    }
    md_value_free(v);
    CHECK(!md_value_from_json("[1]") && !md_value_from_json("1.5") && !md_value_from_json("{"));

    char **c;
    int32_t n;
    char err[256];
    CHECK(md_vqa_choices_parse(" yes | no|top left ", &c, &n, err, sizeof err) == MD_OK);
    CHECK(n == 3 && !strcmp(c[0], "yes") && !strcmp(c[1], "no") && !strcmp(c[2], "top left") &&
          !c[3]);
    md_vqa_choices_free(c);
    CHECK(md_vqa_choices_parse("single", &c, &n, err, sizeof err) == MD_OK && n == 1);
    md_vqa_choices_free(c);
    CHECK(md_vqa_choices_parse("a||b", &c, &n, err, sizeof err) == MD_ERR_INVALID && !c &&
          strstr(err, "an empty choice"));
    CHECK(md_vqa_choices_parse("a|b|a ", &c, &n, err, sizeof err) == MD_ERR_INVALID &&
          strstr(err, "duplicate choice 'a'"));
    CHECK(md_vqa_choices_parse("", &c, &n, err, sizeof err) == MD_ERR_INVALID);
    CHECK(md_vqa_choices_parse("a|\xff", &c, &n, err, sizeof err) == MD_ERR_INVALID &&
          strstr(err, "UTF-8"));
}

int main(void)
{
    json_reader();
    schemas();
    matcher();
    mask_pieces();
    values();
    char path[1024];
    mask_vocab(md_test_data("../models/synthvqa/synthvqa-llm-f16.gguf", path, sizeof path),
               "synthvqa (SPM, 817)");
    static const char *shared[] = { "llama-spm", "gpt-2" };
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "fixtures/tokenizer/llama.cpp-vocab/ggml-vocab-%s.gguf",
                 shared[i]);
        const char *dir = getenv("MD_SHARED_DIR");
        snprintf(path, sizeof path, "%s/%s", dir ? dir : "../shared", rel);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            mask_vocab(path, shared[i]);
        } else {
            /* shared/ is optional here; CI has it */
            printf("%s is absent: the %s vocabulary is not checked\n", path, shared[i]);
        }
    }
    return md_test_finish("schema");
}
