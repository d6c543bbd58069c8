/* Small synthetic vocabs written with the GGUF writer (no fixtures needed):
 * loader errors and warnings, pre-tokenizer aliases, BPE merge ranks and
 * ignore_merges, SPM score order and tie-breaking, unknown-token fallback,
 * special-token priority, end-of-generation detection. */
#include "tok_common.h"
#include "gguf-writer.h"

static const char SP[] = "\xe2\x96\x81";   /* U+2581 */

struct toy {
    struct md_gguf_writer *w;
    void *mem;
    struct md_gguf *g;
};

static struct md_vocab *toy_load(struct toy *t, char *err, size_t errlen)
{
    size_t size = 0;
    char e[256];
    if (md_gguf_writer_write_mem(t->w, &t->mem, &size, e, sizeof(e))) {
        fprintf(stderr, "writer: %s (%s)\n", e, md_gguf_writer_error(t->w));
        exit(1);
    }
    if (md_gguf_open_memory(t->mem, size, &t->g, e, sizeof(e))) {
        fprintf(stderr, "open: %s\n", e);
        exit(1);
    }
    struct md_vocab *v = NULL;
    if (md_vocab_load(t->g, &v, err, errlen))
        v = NULL;
    return v;
}

static void toy_free(struct toy *t, struct md_vocab *v)
{
    md_vocab_free(v);
    md_gguf_close(t->g);
    md_gguf_writer_free(t->w);
    free(t->mem);
}

/* The 256 byte-level characters of GPT-2's bytes_to_unicode. */
static int byte_level_tokens(char tok[256][4])
{
    int next = 256;
    for (int b = 0; b < 256; b++) {
        const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        const int cp = keep ? b : next++;
        if (cp < 0x80) {
            tok[b][0] = (char)cp;
            tok[b][1] = 0;
        } else {
            tok[b][0] = (char)(0xC0 | (cp >> 6));
            tok[b][1] = (char)(0x80 | (cp & 0x3F));
            tok[b][2] = 0;
        }
    }
    return 256;
}

/* A BPE vocab: the 256 byte characters, then extra tokens, with merges. */
static struct md_vocab *bpe_toy(struct toy *t, const char *pre, const char *const *extra, int n_extra,
                                const char *const *merges, int n_merges, char *err, size_t errlen)
{
    static char bytes[256][4];
    byte_level_tokens(bytes);
    const char *toks[512];
    int n = 0;
    for (int b = 0; b < 256; b++)
        toks[n++] = bytes[b];
    for (int i = 0; i < n_extra; i++)
        toks[n++] = extra[i];
    t->w = md_gguf_writer_new();
    md_gguf_writer_add_str(t->w, "tokenizer.ggml.model", "gpt2");
    if (pre)
        md_gguf_writer_add_str(t->w, "tokenizer.ggml.pre", pre);
    md_gguf_writer_add_arr_str(t->w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    if (merges)
        md_gguf_writer_add_arr_str(t->w, "tokenizer.ggml.merges", merges, (uint64_t)n_merges);
    return toy_load(t, err, errlen);
}

static void expect_ids(int line, const struct md_vocab *v, const char *text, bool parse,
                       const int32_t *want, int64_t n)
{
    struct tok_ids got = tok_encode(v, text, strlen(text), false, parse);
    if (got.n != n || (n && memcmp(got.v, want, (size_t)n * sizeof(int32_t)) != 0)) {
        fprintf(stderr, "line %d: ", line);
        tok_print_escaped(stderr, text, strlen(text));
        fprintf(stderr, " want ");
        tok_print_ids(stderr, want, n);
        fprintf(stderr, " got ");
        tok_print_ids(stderr, got.v, got.n);
        fprintf(stderr, "\n");
        md_test_failures++;
    }
    free(got.v);
}
#define EXPECT_IDS(v, text, parse, ...) do { \
    const int32_t want_[] = { __VA_ARGS__ }; \
    expect_ids(__LINE__, v, text, parse, want_, (int64_t)(sizeof(want_) / sizeof(want_[0]))); \
} while (0)

static void test_bpe(void)
{
    char err[256];
    struct toy t = { 0 };
    struct md_vocab *v;
    /* ids: 256 "ab" 257 "bc" 258 "abc" 259 "xyz" */
    const char *extra[] = { "ab", "bc", "abc", "xyz" };

    /* rank order: b c (0) before a b (1) */
    const char *m1[] = { "b c", "a b", "a bc" };
    v = bpe_toy(&t, "gpt-2", extra, 4, m1, 3, err, sizeof(err));
    CHECK(v && md_vocab_warning(v) == NULL);
    if (v) {
        EXPECT_IDS(v, "abc", false, 258);
        EXPECT_IDS(v, "ab", false, 256);
        EXPECT_IDS(v, "xyz", false, 'x' , 'y', 'z');   /* gpt2: no ignore_merges */
        CHECK(md_vocab_bos(v) == -1 && md_vocab_eos(v) == -1 && !md_vocab_add_bos(v));
    }
    toy_free(&t, v);

    /* a merge whose result is not in the vocab falls back to the bytes */
    const char *m2[] = { "x y" };
    t = (struct toy){ 0 };
    v = bpe_toy(&t, "qwen2", extra, 4, m2, 1, err, sizeof(err));
    CHECK(v != NULL);
    if (v) {
        EXPECT_IDS(v, "xy", false, 'x', 'y');
        EXPECT_IDS(v, "abab", false, 'a', 'b', 'a', 'b');
    }
    toy_free(&t, v);

    /* llama3: ignore_merges, add_bos default */
    t = (struct toy){ 0 };
    v = bpe_toy(&t, "llama3", extra, 4, m1, 3, err, sizeof(err));
    CHECK(v && md_vocab_warning(v) == NULL);
    if (v) {
        CHECK(strcmp(md_vocab_pretokenizer(v), "llama3") == 0);
        CHECK(md_vocab_add_bos(v));
        EXPECT_IDS(v, "xyz", false, 259);
        EXPECT_IDS(v, "xyzxyz", false, 'x', 'y', 'z', 'x', 'y', 'z');
    }
    toy_free(&t, v);

    /* aliases and fallbacks of tokenizer.ggml.pre */
    static const struct { const char *pre; const char *kind; bool warns; } pres[] = {
        { "deepseek-r1-qwen", "qwen2", false }, { "qwen2", "qwen2", false },
        { "llama-bpe", "llama3", false }, { "default", "gpt2", false },
        { "gpt2", "gpt2", false }, { "no-such-pre", "gpt2", true }, { NULL, "gpt2", true },
    };
    for (size_t i = 0; i < sizeof(pres) / sizeof(pres[0]); i++) {
        t = (struct toy){ 0 };
        v = bpe_toy(&t, pres[i].pre, extra, 4, m1, 3, err, sizeof(err));
        CHECK(v != NULL);
        if (v) {
            CHECKF(strcmp(md_vocab_pretokenizer(v), pres[i].kind) == 0, "pre %s", pres[i].pre);
            const char *w = md_vocab_warning(v);
            CHECKF((w != NULL) == pres[i].warns, "pre %s: warning %s", pres[i].pre, w ? w : "(none)");
            if (w && pres[i].pre)
                CHECK(strstr(w, pres[i].pre) != NULL);
            if (w && !pres[i].pre)
                CHECK(strstr(w, "missing") != NULL);
            EXPECT_IDS(v, "abc", false, 258);
        }
        toy_free(&t, v);
    }

    /* BPE without merges is an error naming the key */
    t = (struct toy){ 0 };
    v = bpe_toy(&t, "gpt2", extra, 4, NULL, 0, err, sizeof(err));
    CHECK(v == NULL && strstr(err, "tokenizer.ggml.merges") != NULL);
    toy_free(&t, v);

    /* malformed merges are skipped with a warning */
    const char *m3[] = { "abc", "", " ", "q zz", "a b" };
    t = (struct toy){ 0 };
    v = bpe_toy(&t, "gpt2", extra, 4, m3, 5, err, sizeof(err));
    CHECK(v && md_vocab_warning(v) && strstr(md_vocab_warning(v), "merges"));
    if (v)
        EXPECT_IDS(v, "ab", false, 256);
    toy_free(&t, v);
}

/* An SPM vocab from (text, score, type) rows. */
struct row { const char *text; float score; int32_t type; };

static struct md_vocab *spm_toy(struct toy *t, const struct row *rows, int n,
                                void (*extra)(struct md_gguf_writer *), char *err, size_t errlen)
{
    const char *toks[64];
    float scores[64];
    int32_t types[64];
    for (int i = 0; i < n; i++) {
        toks[i] = rows[i].text;
        scores[i] = rows[i].score;
        types[i] = rows[i].type;
    }
    t->w = md_gguf_writer_new();
    md_gguf_writer_add_str(t->w, "general.name", "toy");
    md_gguf_writer_add_str(t->w, "tokenizer.ggml.model", "llama");
    md_gguf_writer_add_arr_str(t->w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    md_gguf_writer_add_arr_f32(t->w, "tokenizer.ggml.scores", scores, (uint64_t)n);
    md_gguf_writer_add_arr_i32(t->w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    if (extra)
        extra(t->w);
    return toy_load(t, err, errlen);
}

static char spm_text[16][16];

static const struct row *spm_rows(int *n)
{
    static struct row rows[16];
    int k = 0;
    rows[k++] = (struct row){ "<unk>", 0, MD_TOKEN_UNKNOWN };       /* 0 */
    rows[k++] = (struct row){ "<s>", 0, MD_TOKEN_CONTROL };         /* 1 */
    rows[k++] = (struct row){ "</s>", 0, MD_TOKEN_CONTROL };        /* 2 */
    snprintf(spm_text[0], 16, "%s", SP);
    rows[k++] = (struct row){ spm_text[0], -1, MD_TOKEN_NORMAL };   /* 3 ▁ */
    rows[k++] = (struct row){ "a", -2, MD_TOKEN_NORMAL };           /* 4 */
    rows[k++] = (struct row){ "b", -2, MD_TOKEN_NORMAL };           /* 5 */
    rows[k++] = (struct row){ "c", -2, MD_TOKEN_NORMAL };           /* 6 */
    rows[k++] = (struct row){ "aa", -3, MD_TOKEN_NORMAL };          /* 7 */
    rows[k++] = (struct row){ "ab", -5, MD_TOKEN_NORMAL };          /* 8 */
    rows[k++] = (struct row){ "bc", -1, MD_TOKEN_NORMAL };          /* 9 */
    rows[k++] = (struct row){ "<|im_end|>", 0, MD_TOKEN_CONTROL };  /* 10 */
    rows[k++] = (struct row){ "bcd", 0, MD_TOKEN_CONTROL };         /* 11 */
    rows[k++] = (struct row){ "d", -2, MD_TOKEN_NORMAL };           /* 12 */
    rows[k++] = (struct row){ "", 0, MD_TOKEN_CONTROL };            /* 13 empty */
    rows[k++] = (struct row){ "a", 0, MD_TOKEN_NORMAL };            /* 14 duplicate */
    *n = k;
    return rows;
}

static void no_prefix(struct md_gguf_writer *w)
{
    md_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false);
    md_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", true);
    md_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1000);   /* out of range */
}

static void test_spm(void)
{
    char err[256];
    int n;
    const struct row *rows = spm_rows(&n);
    struct toy t = { 0 };
    struct md_vocab *v = spm_toy(&t, rows, n, NULL, err, sizeof(err));
    CHECK(v != NULL);
    if (v) {
        const char *w = md_vocab_warning(v);
        CHECK(w && strstr(w, "duplicate") && strstr(w, "empty"));
        CHECK(md_vocab_find(v, "a") == 4);
        CHECK(md_vocab_bos(v) == 1 && md_vocab_eos(v) == 2 && md_vocab_unk(v) == 0);
        EXPECT_IDS(v, "aaa", false, 3, 7, 4);      /* equal scores: leftmost pair first */
        EXPECT_IDS(v, "abc", false, 3, 4, 9);      /* bc (-1) beats ab (-5) */
        EXPECT_IDS(v, "ab", false, 3, 8);
        EXPECT_IDS(v, "x", false, 3, 0);           /* no byte tokens: <unk> */
        EXPECT_IDS(v, "\xc3\xa9", false, 3, 0);    /* one <unk> per character */
        EXPECT_IDS(v, "\xff", false, 3, 0);
        /* a control token splits the text only with parse_special, and
         * merges never form one */
        EXPECT_IDS(v, "abcd", true, 3, 4, 11);
        EXPECT_IDS(v, "abcd", false, 3, 4, 9, 12);
        EXPECT_IDS(v, "a<|im_end|>b", true, 3, 4, 10, 3, 5);
        CHECK(md_vocab_eot(v) == 10 && md_vocab_is_eog(v, 10) && md_vocab_is_eog(v, 2));
        CHECK(!md_vocab_is_eog(v, 1) && !md_vocab_is_eog(v, 11));
        CHECK(md_vocab_token_text(v, 13) && md_vocab_token_text(v, 13)[0] == '\0');
        CHECK(md_vocab_token_text(v, 15) == NULL);
        int32_t ids[8];
        CHECK(md_tokenize(v, "a", 1, true, false, ids, 8) == 3 && ids[0] == 1 && ids[2] == 4);
    }
    toy_free(&t, v);

    t = (struct toy){ 0 };
    v = spm_toy(&t, rows, n, no_prefix, err, sizeof(err));
    CHECK(v != NULL);
    if (v) {
        CHECK(!md_vocab_add_space_prefix(v) && md_vocab_add_eos(v));
        CHECK(md_vocab_bos(v) == 1);   /* bad key ignored */
        CHECK(md_vocab_warning(v) && strstr(md_vocab_warning(v), "bos_token_id"));
        EXPECT_IDS(v, "ab", false, 8);
        int32_t ids[8];
        CHECK(md_tokenize(v, "ab", 2, true, false, ids, 8) == 3 && ids[0] == 1 && ids[1] == 8 && ids[2] == 2);
        char buf[16];
        const int32_t seq[] = { 3, 4 };
        CHECK(md_detokenize(v, seq, 2, buf, sizeof(buf), false) == 2 && strcmp(buf, " a") == 0);
    }
    toy_free(&t, v);
}

static void test_errors(void)
{
    char err[256];
    struct toy t = { 0 };
    struct md_vocab *v;

    /* no model key */
    t.w = md_gguf_writer_new();
    md_gguf_writer_add_str(t.w, "general.name", "x");
    v = toy_load(&t, err, sizeof(err));
    CHECK(v == NULL && strstr(err, "tokenizer.ggml.model"));
    toy_free(&t, v);

    /* unsupported model */
    t = (struct toy){ 0 };
    t.w = md_gguf_writer_new();
    md_gguf_writer_add_str(t.w, "tokenizer.ggml.model", "bert");
    v = toy_load(&t, err, sizeof(err));
    CHECK(v == NULL && strstr(err, "bert"));
    toy_free(&t, v);

    /* tokens of the wrong type */
    t = (struct toy){ 0 };
    t.w = md_gguf_writer_new();
    md_gguf_writer_add_str(t.w, "tokenizer.ggml.model", "llama");
    const int32_t ints[3] = { 1, 2, 3 };
    md_gguf_writer_add_arr_i32(t.w, "tokenizer.ggml.tokens", ints, 3);
    v = toy_load(&t, err, sizeof(err));
    CHECK(v == NULL && strstr(err, "tokenizer.ggml.tokens"));
    toy_free(&t, v);

    /* scores shorter than tokens */
    t = (struct toy){ 0 };
    t.w = md_gguf_writer_new();
    md_gguf_writer_add_str(t.w, "tokenizer.ggml.model", "llama");
    const char *toks[] = { "<unk>", "a", "b" };
    const float sc[] = { 0, 0 };
    md_gguf_writer_add_arr_str(t.w, "tokenizer.ggml.tokens", toks, 3);
    md_gguf_writer_add_arr_f32(t.w, "tokenizer.ggml.scores", sc, 2);
    v = toy_load(&t, err, sizeof(err));
    CHECK(v == NULL && strstr(err, "tokenizer.ggml.scores"));
    toy_free(&t, v);

    /* NULL arguments */
    CHECK(md_vocab_load(NULL, &v, err, sizeof(err)) == -1);
    CHECK(md_tokenize(NULL, "a", 1, false, false, NULL, 0) == -1);
    CHECK(md_detokenize(NULL, NULL, 0, NULL, 0, false) == -1);
    CHECK(md_token_to_piece(NULL, 0, NULL, 0, false) == -1);
    md_vocab_free(NULL);
}

int main(void)
{
    test_bpe();
    test_spm();
    test_errors();
    return md_test_finish("text-synth");
}
