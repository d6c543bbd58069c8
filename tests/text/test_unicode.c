/* UTF-8 decoding, codepoint classes and the BPE pre-tokenizer splitters
 * (no fixtures needed). */
#include <stdarg.h>
#include <stdbool.h>

#include "md_test.h"
#include "unicode.h"
#include "vocab-impl.h"

static void check_decode(const char *s, size_t len, uint32_t want_cp, size_t want_n, int line)
{
    uint32_t cp = 0;
    const size_t n = md_utf8_decode((const uint8_t *)s, len, &cp);
    if (cp != want_cp || n != want_n) {
        fprintf(stderr, "line %d: decode gave U+%04X/%zu, want U+%04X/%zu\n",
                line, cp, n, want_cp, want_n);
        md_test_failures++;
    }
}
#define DEC(s, len, cp, n) check_decode(s, len, cp, n, __LINE__)

struct span { size_t off, n; };
struct spans { struct span v[512]; size_t n; };

static int store(void *ctx, size_t off, size_t n)
{
    struct spans *s = ctx;
    if (s->n == sizeof(s->v) / sizeof(s->v[0]))
        return 1;
    s->v[s->n++] = (struct span){ off, n };
    return 0;
}

/* Split s with pre; compare with the expected words (NULL-terminated). */
static void check_split(int line, enum md_pre_kind pre, const char *s, ...)
{
    struct spans got = { .n = 0 };
    const int rc = md_bpe_split(pre, (const uint8_t *)s, strlen(s), store, &got);
    bool ok = rc == 0;
    va_list ap;
    va_start(ap, s);
    size_t i = 0;
    for (;; i++) {
        const char *w = va_arg(ap, const char *);
        if (!w)
            break;
        if (i >= got.n || got.v[i].n != strlen(w) || memcmp(s + got.v[i].off, w, got.v[i].n) != 0)
            ok = false;
    }
    va_end(ap);
    if (i != got.n)
        ok = false;
    if (!ok) {
        fprintf(stderr, "line %d: split of \"%s\" (pre %d) gave:", line, s, (int)pre);
        for (size_t k = 0; k < got.n; k++)
            fprintf(stderr, " [%.*s]", (int)got.v[k].n, s + got.v[k].off);
        fprintf(stderr, "\n");
        md_test_failures++;
    }
}
#define SPLIT(pre, s, ...) check_split(__LINE__, pre, s, __VA_ARGS__, (const char *)NULL)

int main(void)
{
    /* decoding */
    DEC("a", 1, 'a', 1);
    DEC("\xc3\xa9", 2, 0xE9, 2);
    DEC("\xe2\x96\x81", 3, 0x2581, 3);
    DEC("\xf0\x9f\x98\x80", 4, 0x1F600, 4);
    DEC("\xc3", 1, MD_CP_INVALID, 1);              /* truncated */
    DEC("\xc3(", 2, MD_CP_INVALID, 1);             /* bad continuation */
    DEC("\x80", 1, MD_CP_INVALID, 1);              /* stray continuation */
    DEC("\xc0\xaf", 2, MD_CP_INVALID, 1);          /* overlong */
    DEC("\xe0\x80\xaf", 3, MD_CP_INVALID, 1);      /* overlong */
    DEC("\xed\xa0\x80", 3, MD_CP_INVALID, 1);      /* surrogate */
    DEC("\xf4\x90\x80\x80", 4, MD_CP_INVALID, 1);  /* > U+10FFFF */
    DEC("\xff", 1, MD_CP_INVALID, 1);
    DEC("\xf0\x9f\x98", 3, MD_CP_INVALID, 1);      /* truncated 4-byte */

    uint8_t u[4];
    CHECK(md_utf8_encode(0x2581, u) == 3 && memcmp(u, "\xe2\x96\x81", 3) == 0);
    CHECK(md_utf8_encode(0x10FFFF, u) == 4);
    CHECK(md_utf8_encode(0x110000, u) == 0);
    CHECK(md_utf8_encode(0xD800, u) == 0);
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        uint32_t back;
        const size_t n = md_utf8_encode(cp, u);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            CHECK(n == 0);
            continue;
        }
        if (md_utf8_decode(u, n, &back) != n || back != cp) {
            CHECKF(0, "U+%04X does not round-trip", cp);
            break;
        }
    }

    /* classes */
    CHECK(md_cp_flags('a') == MD_CP_LETTER);
    CHECK(md_cp_flags('Z') == MD_CP_LETTER);
    CHECK(md_cp_flags('7') == MD_CP_NUMBER);
    CHECK(md_cp_flags('_') == 0);
    CHECK(md_cp_flags(' ') == MD_CP_SPACE);
    CHECK(md_cp_flags('\t') == MD_CP_SPACE);
    CHECK(md_cp_flags('\n') == MD_CP_SPACE);
    CHECK(md_cp_flags(0x0B) == MD_CP_SPACE);
    CHECK(md_cp_flags(0x1C) == 0);                 /* not White_Space */
    CHECK(md_cp_flags(0x85) == MD_CP_SPACE);
    CHECK(md_cp_flags(0xA0) == MD_CP_SPACE);
    CHECK(md_cp_flags(0x3000) == MD_CP_SPACE);
    CHECK(md_cp_flags(0x2028) == MD_CP_SPACE);
    CHECK(md_cp_flags(0x200B) == 0);               /* ZERO WIDTH SPACE is Cf */
    CHECK(md_cp_flags(0xBD) == MD_CP_NUMBER);      /* ½ (No) */
    CHECK(md_cp_flags(0x663) == MD_CP_NUMBER);     /* ARABIC-INDIC DIGIT THREE */
    CHECK(md_cp_flags(0x2167) == MD_CP_NUMBER);    /* ROMAN NUMERAL EIGHT (Nl) */
    CHECK(md_cp_flags(0xFC) == MD_CP_LETTER);      /* ü */
    CHECK(md_cp_flags(0x4E2D) == MD_CP_LETTER);    /* 中 */
    CHECK(md_cp_flags(0x1780) == MD_CP_LETTER);    /* Khmer KA */
    CHECK(md_cp_flags(0x17B6) == 0);               /* Khmer vowel sign (Mc) */
    CHECK(md_cp_flags(0x2581) == 0);               /* ▁ */
    CHECK(md_cp_flags(0x1F600) == 0);              /* emoji */
    CHECK(md_cp_flags(0xFFFD) == 0);
    CHECK(md_cp_flags(MD_CP_INVALID) == 0);
    CHECK(md_cp_flags(0x20000) == MD_CP_LETTER);   /* CJK ext. B */
    CHECK(md_cp_fold_ascii('S') == 's');
    CHECK(md_cp_fold_ascii('s') == 's');
    CHECK(md_cp_fold_ascii(0x17F) == 's');         /* ſ */
    CHECK(md_cp_fold_ascii(0x212A) == 'k');        /* Kelvin sign */
    CHECK(md_cp_fold_ascii(0xDF) == 0xDF);

    /* GPT-2 */
    SPLIT(MD_PRE_GPT2, "Hello world", "Hello", " world");
    SPLIT(MD_PRE_GPT2, "  Hello", " ", " Hello");
    SPLIT(MD_PRE_GPT2, "I've 3333 it's", "I", "'ve", " 3333", " it", "'s");
    SPLIT(MD_PRE_GPT2, "I'VE", "I", "'", "VE");
    SPLIT(MD_PRE_GPT2, "a  \n  b", "a", "  \n ", " b");
    SPLIT(MD_PRE_GPT2, "x \ty", "x", " ", "\t", "y");
    SPLIT(MD_PRE_GPT2, "end   ", "end", "   ");
    SPLIT(MD_PRE_GPT2, "hi!!! ??", "hi", "!!!", " ??");
    SPLIT(MD_PRE_GPT2, "a\xff" "b", "a", "\xff", "b");
    SPLIT(MD_PRE_GPT2, " ", " ");
    SPLIT(MD_PRE_GPT2, "\n", "\n");

    /* LLaMA-3 */
    SPLIT(MD_PRE_LLAMA3, "Hello world", "Hello", " world");
    SPLIT(MD_PRE_LLAMA3, "  Hello", " ", " Hello");
    SPLIT(MD_PRE_LLAMA3, "3333 12345", "333", "3", " ", "123", "45");
    SPLIT(MD_PRE_LLAMA3, "I'VE we'Ll 'd", "I", "'VE", " we", "'Ll", " '", "d");
    SPLIT(MD_PRE_LLAMA3, "x'\xc5\xbf", "x", "'\xc5\xbf");       /* (?i) 's matches ſ */
    SPLIT(MD_PRE_LLAMA3, "a  \n  b", "a", "  \n", " ", " b");
    SPLIT(MD_PRE_LLAMA3, "hello!!!\n\nworld", "hello", "!!!\n\n", "world");
    SPLIT(MD_PRE_LLAMA3, "(normal) \tx", "(normal", ")", " ", "\tx");
    SPLIT(MD_PRE_LLAMA3, "\n\n\n", "\n\n\n");
    SPLIT(MD_PRE_LLAMA3, " \n \n ", " \n \n", " ");
    SPLIT(MD_PRE_LLAMA3, "\r\nab", "\r\n", "ab");
    SPLIT(MD_PRE_LLAMA3, "a\xff" "b", "a", "\xff" "b");
    SPLIT(MD_PRE_LLAMA3, "\xe4\xb8\xad\xe6\x96\x87 ok", "\xe4\xb8\xad\xe6\x96\x87", " ok");
    SPLIT(MD_PRE_LLAMA3, "''''", "''''");
    SPLIT(MD_PRE_LLAMA3, "3.14", "3", ".", "14");

    /* Qwen2: single digits */
    SPLIT(MD_PRE_QWEN2, "3333 x", "3", "3", "3", "3", " x");
    SPLIT(MD_PRE_QWEN2, "I'm", "I", "'m");

    /* empty input gives no words */
    struct spans none = { .n = 0 };
    CHECK(md_bpe_split(MD_PRE_LLAMA3, (const uint8_t *)"", 0, store, &none) == 0 && none.n == 0);

    printf("unicode tables: Unicode %s, %zu ranges\n", md_unicode_version, md_unicode_n_ranges);
    return md_test_finish("text-unicode");
}
