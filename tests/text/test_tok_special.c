/* Special tokens on the real vocabs: parse_special partition, BOS/EOS,
 * end-of-generation sets, Phi-3's right-strip, detokenization of specials,
 * md_tokenize_except (listed special tokens read as text), and the buffer
 * protocols of md_tokenize / md_token_to_piece / md_detokenize.
 * Usage: test_tok_special QWEN2_GGUF LLAMA_BPE_GGUF (the generated ones). */
#include "tok_common.h"

/* An expected id sequence, built piece by piece. */
struct seq { int32_t v[256]; int64_t n; };

static void seq_id(struct seq *s, int32_t id) { if (s->n < 256) s->v[s->n++] = id; }

static void seq_text(struct seq *s, const struct md_vocab *v, const char *text, bool add_special)
{
    struct tok_ids t = tok_encode(v, text, strlen(text), add_special, false);
    for (int64_t i = 0; i < t.n; i++)
        seq_id(s, t.v[i]);
    free(t.v);
}

static void expect(int line, const struct md_vocab *v, const char *text, bool add_special,
                   bool parse_special, const struct seq *want)
{
    struct tok_ids got = tok_encode(v, text, strlen(text), add_special, parse_special);
    if (got.n != want->n || memcmp(got.v, want->v, (size_t)want->n * sizeof(int32_t)) != 0) {
        fprintf(stderr, "line %d: ", line);
        tok_print_escaped(stderr, text, strlen(text));
        fprintf(stderr, "\n  want ");
        tok_print_ids(stderr, want->v, want->n);
        fprintf(stderr, "\n  got  ");
        tok_print_ids(stderr, got.v, got.n);
        fprintf(stderr, "\n");
        md_test_failures++;
    }
    free(got.v);
}
#define EXPECT(v, text, add, parse, want) expect(__LINE__, v, text, add, parse, want)

static bool contains_id(const struct md_vocab *v, const char *text, bool parse, int32_t id)
{
    struct tok_ids t = tok_encode(v, text, strlen(text), false, parse);
    bool found = false;
    for (int64_t i = 0; i < t.n; i++)
        found |= t.v[i] == id;
    free(t.v);
    return found;
}

/* md_tokenize_except(text, except one id) equals the expected sequence. */
static void expect_except(int line, const struct md_vocab *v, const char *text, int32_t id,
                          const struct seq *want)
{
    int32_t got[256];
    const int64_t n = md_tokenize_except(v, text, strlen(text), false, true, &id, 1, got, 256);
    if (n != want->n || memcmp(got, want->v, (size_t)want->n * sizeof(int32_t)) != 0) {
        fprintf(stderr, "line %d: md_tokenize_except(%d) of ", line, (int)id);
        tok_print_escaped(stderr, text, strlen(text));
        fprintf(stderr, ": %lld ids, want %lld\n", (long long)n, (long long)want->n);
        md_test_failures++;
    }
}
#define EXPECT_EXCEPT(v, text, id, want) expect_except(__LINE__, v, text, id, want)

static void expect_detok(int line, const struct md_vocab *v, const char *text, bool special,
                         const char *want)
{
    struct tok_ids t = tok_encode(v, text, strlen(text), false, true);
    size_t n = 0;
    char *s = tok_decode(v, t.v, t.n, special, &n);
    if (!s || n != strlen(want) || memcmp(s, want, n) != 0) {
        fprintf(stderr, "line %d: detokenize(special=%d) of ", line, special);
        tok_print_escaped(stderr, text, strlen(text));
        fprintf(stderr, " gave ");
        tok_print_escaped(stderr, s ? s : "", n);
        fprintf(stderr, "\n");
        md_test_failures++;
    }
    free(s);
    free(t.v);
}
#define EXPECT_DETOK(v, text, special, want) expect_detok(__LINE__, v, text, special, want)

static struct md_vocab *load_shared(const char *name)
{
    char rel[256], path[1024];
    snprintf(rel, sizeof(rel), TOK_CASES_DIR "/ggml-vocab-%s.gguf", name);
    md_test_shared(rel, path, sizeof(path));
    struct md_vocab *v = tok_load(path, NULL);
    if (!v) {
        fprintf(stderr, "cannot load %s\n", name);
        exit(1);
    }
    return v;
}

static struct md_vocab *load_generated(const char *path)
{
    if (!tok_file_exists(path))
        SKIP("%s not built", path);
    struct md_vocab *v = tok_load(path, NULL);
    if (!v) {
        fprintf(stderr, "cannot load %s\n", path);
        exit(1);
    }
    return v;
}

static void test_llama_spm(void)
{
    struct md_vocab *v = load_shared("llama-spm");
    CHECK(md_vocab_kind(v) == MD_VOCAB_SPM);
    CHECK(md_vocab_bos(v) == 1 && md_vocab_eos(v) == 2 && md_vocab_unk(v) == 0);
    CHECK(md_vocab_add_bos(v) && !md_vocab_add_eos(v) && md_vocab_add_space_prefix(v));
    CHECK(md_vocab_is_eog(v, 2) && !md_vocab_is_eog(v, 1) && !md_vocab_is_eog(v, 0));
    CHECK(md_vocab_pretokenizer(v) == NULL);
    CHECK(md_vocab_warning(v) == NULL);
    CHECK(md_vocab_token_type(v, 0) == MD_TOKEN_UNKNOWN);
    CHECK(md_vocab_token_type(v, 1) == MD_TOKEN_CONTROL);
    CHECK(md_vocab_token_type(v, 3) == MD_TOKEN_BYTE);
    CHECK(md_vocab_find(v, "<0x0A>") == 13);
    CHECK(md_vocab_find(v, "\xe2\x96\x81hi") == 7251);

    /* the Llama-2 chat prompt: known ids */
    struct seq w = { .n = 0 };
    const int32_t inst[] = { 518, 25580, 29962, 7251, 518, 29914, 25580, 29962 };
    for (size_t i = 0; i < 8; i++)
        seq_id(&w, inst[i]);
    EXPECT(v, "[INST] hi [/INST]", false, false, &w);
    struct seq ws = { .n = 0 };
    seq_id(&ws, 1);
    for (size_t i = 0; i < 8; i++)
        seq_id(&ws, inst[i]);
    EXPECT(v, "<s>[INST] hi [/INST]", false, true, &ws);
    EXPECT(v, "[INST] hi [/INST]", true, false, &ws);            /* BOS added */
    CHECK(!contains_id(v, "<s>[INST] hi [/INST]", false, 1));   /* <s> as text */
    struct seq two = { .n = 0 };
    seq_id(&two, 1);
    seq_id(&two, 1);
    for (size_t i = 0; i < 8; i++)
        seq_id(&two, inst[i]);
    EXPECT(v, "<s>[INST] hi [/INST]", true, true, &two);          /* BOS + parsed <s> */
    /* after a special token the next text gets the space prefix again */
    struct seq mid = { .n = 0 };
    seq_text(&mid, v, "a", false);
    seq_id(&mid, 2);
    seq_text(&mid, v, "b", false);
    EXPECT(v, "a</s>b", false, true, &mid);
    /* an excepted control token is text; the others are still matched */
    struct seq ex = { .n = 0 };
    seq_text(&ex, v, "a</s>b", false);
    EXPECT_EXCEPT(v, "a</s>b", 2, &ex);
    struct seq ex2 = { .n = 0 };
    seq_id(&ex2, 1);
    seq_text(&ex2, v, "a</s>b", false);
    EXPECT_EXCEPT(v, "<s>a</s>b", 2, &ex2);
    EXPECT_EXCEPT(v, "a</s>b", 99999, &mid);   /* not a token: nothing excepted */
    {
        int32_t one = 2;
        CHECK(md_tokenize_except(v, "a", 1, false, true, NULL, 1, NULL, 0) == -1);
        CHECK(md_tokenize_except(v, "a", 1, false, true, &one, -1, NULL, 0) == -1);
        CHECK(md_tokenize_except(v, "a", 1, false, true, NULL, 0, NULL, 0) ==
              md_tokenize(v, "a", 1, false, true, NULL, 0));
    }
    /* literal spans: control text inside one is text, outside it a token,
     * and without control text in the spans nothing changes */
    {
        const char *text = "a</s>b</s>c";
        struct md_text_span first = { 1, 4 }, tail = { 10, 1 }, across = { 0, 3 };
        int32_t got[64];
        int64_t n = md_tokenize_literal(v, text, strlen(text), false, true, NULL, 0, &first, 1,
                                        got, 64);
        struct seq want = { .n = 0 };
        seq_text(&want, v, "a</s>b", false);
        seq_id(&want, 2);
        seq_text(&want, v, "c", false);
        CHECK(n == want.n && !memcmp(got, want.v, sizeof(int32_t) * (size_t)n));
        struct seq all = { .n = 0 };
        seq_text(&all, v, "a", false);
        seq_id(&all, 2);
        seq_text(&all, v, "b", false);
        seq_id(&all, 2);
        seq_text(&all, v, "c", false);
        n = md_tokenize_literal(v, text, strlen(text), false, true, NULL, 0, &tail, 1, got, 64);
        CHECK(n == all.n && !memcmp(got, all.v, sizeof(int32_t) * (size_t)n));
        /* a span that only overlaps the control text still keeps it text */
        n = md_tokenize_literal(v, text, strlen(text), false, true, NULL, 0, &across, 1, got, 64);
        CHECK(n == want.n && !memcmp(got, want.v, sizeof(int32_t) * (size_t)n));
        CHECK(md_tokenize_literal(v, text, 3, false, true, NULL, 0, NULL, 1, NULL, 0) == -1);
        CHECK(md_tokenize_literal(v, text, 3, false, true, NULL, 0, &first, -1, NULL, 0) == -1);
    }
    EXPECT_DETOK(v, "<s>[INST] hi [/INST]", false, "[INST] hi [/INST]");
    EXPECT_DETOK(v, "<s>[INST] hi [/INST]", true, "<s>[INST] hi [/INST]");
    EXPECT_DETOK(v, "<unk>", true, "<unk>");
    EXPECT_DETOK(v, "<unk>", false, "");

    /* a character outside the vocab: byte tokens, each piece one byte of
     * its UTF-8, whole again when concatenated */
    struct tok_ids em = tok_encode(v, "\xf0\x9f\xa6\x99", 4, false, false);
    CHECK(em.n == 5 && em.v[0] == 29871 && em.v[1] == 243 && em.v[4] == 156);
    for (int64_t i = 1; i < em.n; i++) {
        char b[4];
        CHECK(md_token_to_piece(v, em.v[i], b, 4, false) == 1);
        CHECK(md_vocab_token_type(v, em.v[i]) == MD_TOKEN_BYTE);
    }
    EXPECT_DETOK(v, "\xf0\x9f\xa6\x99", false, "\xf0\x9f\xa6\x99");
    free(em.v);

    /* add_special on an empty text gives just BOS */
    int32_t ids[4];
    CHECK(md_tokenize(v, "", 0, true, false, ids, 4) == 1 && ids[0] == 1);
    CHECK(md_tokenize(v, "", 0, false, false, ids, 4) == 0);

    /* byte pieces */
    char buf[16];
    CHECK(md_token_to_piece(v, 13, buf, sizeof(buf), false) == 1 && buf[0] == '\n');
    CHECK(md_token_to_piece(v, 7251, buf, sizeof(buf), false) == 3 && memcmp(buf, " hi", 3) == 0);
    CHECK(md_token_to_piece(v, 1, buf, sizeof(buf), false) == 0);
    CHECK(md_token_to_piece(v, 1, buf, sizeof(buf), true) == 3 && memcmp(buf, "<s>", 3) == 0);
    CHECK(md_token_to_piece(v, -1, buf, sizeof(buf), true) == -1);
    CHECK(md_token_to_piece(v, 32000, buf, sizeof(buf), true) == -1);

    /* buffer protocols */
    memset(buf, 'X', sizeof(buf));
    CHECK(md_token_to_piece(v, 7251, buf, 2, false) == 3);   /* too small: nothing written */
    CHECK(buf[0] == 'X' && buf[1] == 'X');
    CHECK(md_token_to_piece(v, 7251, NULL, 0, false) == 3);
    struct tok_ids t = tok_encode(v, "Hello world", 11, false, false);
    memset(buf, 'X', sizeof(buf));
    CHECK(md_detokenize(v, t.v, t.n, buf, 6, false) == 11);
    CHECK(memcmp(buf, "Hello", 5) == 0 && buf[5] == '\0' && buf[6] == 'X');
    CHECK(md_detokenize(v, t.v, t.n, buf, 1, false) == 11 && buf[0] == '\0');
    CHECK(md_detokenize(v, t.v, t.n, NULL, 0, false) == 11);
    int32_t small[3] = { -7, -7, -7 };
    const int64_t need = md_tokenize(v, "Hello world, again", 18, false, false, small, 2);
    CHECK(need > 2 && small[2] == -7);
    const int32_t bad_ids[] = { -5, 15043, 99999 };
    CHECK(md_detokenize(v, bad_ids, 3, buf, sizeof(buf), false) == 5);   /* invalid ids skipped */
    free(t.v);
    md_vocab_free(v);
}

static void test_phi3(void)
{
    struct md_vocab *v = load_shared("phi-3");
    CHECK(md_vocab_eos(v) == 32000 && md_vocab_bos(v) == 1);
    CHECK(md_vocab_is_eog(v, 32000));    /* <|endoftext|> */
    CHECK(md_vocab_is_eog(v, 32007));    /* <|end|> */
    CHECK(md_vocab_is_eog(v, 2));        /* </s>, user-defined in the file */
    CHECK(md_vocab_token_type(v, 2) == MD_TOKEN_CONTROL);
    CHECK(md_vocab_eot(v) == 32007);
    CHECK(!md_vocab_is_eog(v, 32010));   /* <|user|> */
    /* Phi-3 special tokens swallow the whitespace after them */
    struct seq w = { .n = 0 };
    seq_id(&w, 32010);
    seq_text(&w, v, "hi", false);
    seq_id(&w, 32007);
    seq_id(&w, 32001);
    EXPECT(v, "<|user|>\nhi<|end|>\n<|assistant|>", false, true, &w);
    CHECK(!contains_id(v, "<|user|>\nhi", false, 32010));
    EXPECT_DETOK(v, "<|user|>\nhi<|end|>\n<|assistant|>", true, "<|user|> hi<|end|><|assistant|>");
    EXPECT_DETOK(v, "<|user|>\nhi<|end|>\n<|assistant|>", false, " hi");
    md_vocab_free(v);
}

static void test_gpt2(void)
{
    struct md_vocab *v = load_shared("gpt-2");
    CHECK(md_vocab_kind(v) == MD_VOCAB_BPE);
    CHECK(md_vocab_pretokenizer(v) && strcmp(md_vocab_pretokenizer(v), "gpt2") == 0);
    CHECK(md_vocab_warning(v) == NULL);
    CHECK(md_vocab_bos(v) == 50256 && md_vocab_eos(v) == 50256 && md_vocab_is_eog(v, 50256));
    CHECK(!md_vocab_add_bos(v) && !md_vocab_add_space_prefix(v));
    struct seq w = { .n = 0 };
    seq_text(&w, v, "Hello", false);
    seq_id(&w, 50256);
    seq_text(&w, v, " world", false);
    EXPECT(v, "Hello<|endoftext|> world", false, true, &w);
    CHECK(!contains_id(v, "Hello<|endoftext|> world", false, 50256));
    struct seq hw = { .n = 0 };
    seq_id(&hw, 15496);     /* Hello */
    seq_id(&hw, 995);       /* Ġworld */
    EXPECT(v, "Hello world", true, false, &hw);   /* gpt-2 adds no BOS */
    EXPECT_DETOK(v, "Hello<|endoftext|> world", false, "Hello world");
    EXPECT_DETOK(v, "Hello<|endoftext|> world", true, "Hello<|endoftext|> world");
    char buf[8];
    CHECK(md_token_to_piece(v, 995, buf, sizeof(buf), false) == 6 && memcmp(buf, " world", 6) == 0);
    md_vocab_free(v);
}

static void test_qwen2(const char *path)
{
    struct md_vocab *v = load_generated(path);
    CHECK(md_vocab_pretokenizer(v) && strcmp(md_vocab_pretokenizer(v), "qwen2") == 0);
    CHECK(md_vocab_warning(v) == NULL);
    CHECK(md_vocab_n_tokens(v) == 151669);
    CHECK(md_vocab_bos(v) == -1);
    CHECK(md_vocab_eos(v) == 151645 && md_vocab_pad(v) == 151643);
    CHECK(!md_vocab_add_bos(v));
    CHECK(md_vocab_eot(v) == 151645);
    CHECK(md_vocab_is_eog(v, 151645) && md_vocab_is_eog(v, 151643));
    CHECK(!md_vocab_is_eog(v, 151644) && !md_vocab_is_eog(v, 151667));
    CHECK(md_vocab_token_type(v, 151644) == MD_TOKEN_CONTROL);
    CHECK(md_vocab_token_type(v, 151667) == MD_TOKEN_USER_DEFINED);   /* <think> */

    struct seq w = { .n = 0 };
    seq_id(&w, 151644);
    seq_id(&w, md_vocab_find(v, "user"));
    seq_id(&w, md_vocab_find(v, "\xc4\x8a"));   /* Ċ = "\n" */
    seq_id(&w, md_vocab_find(v, "hi"));
    seq_id(&w, 151645);
    CHECK(w.v[1] == 872 && w.v[2] == 198);
    EXPECT(v, "<|im_start|>user\nhi<|im_end|>", false, true, &w);
    EXPECT(v, "<|im_start|>user\nhi<|im_end|>", true, true, &w);   /* no BOS for Qwen */
    CHECK(!contains_id(v, "<|im_start|>user\nhi<|im_end|>", false, 151644));
    CHECK(!contains_id(v, "<|im_start|>user\nhi<|im_end|>", false, 151645));
    /* user-defined added tokens are matched even without parse_special */
    struct seq th = { .n = 0 };
    seq_id(&th, 151667);
    seq_text(&th, v, "\nok", false);
    seq_id(&th, 151668);
    EXPECT(v, "<think>\nok</think>", false, false, &th);
    EXPECT(v, "<think>\nok</think>", false, true, &th);
    /* excepted, a user-defined token (matched even without parse_special)
     * is text too, and the text before the next special is one fragment */
    struct seq tx = { .n = 0 };
    int32_t think = 151667;
    tx.n = md_tokenize_except(v, "<think>\nok", 10, false, true, &think, 1, tx.v, 256);
    CHECK(tx.n > 2);
    for (int64_t i = 0; i < tx.n; i++)
        CHECK(tx.v[i] != 151667);
    seq_id(&tx, 151668);
    EXPECT_EXCEPT(v, "<think>\nok</think>", 151667, &tx);
    struct seq cx = { .n = 0 };
    seq_text(&cx, v, "<|im_start|>user\nhi", false);
    seq_id(&cx, 151645);
    EXPECT_EXCEPT(v, "<|im_start|>user\nhi<|im_end|>", 151644, &cx);
    EXPECT_DETOK(v, "<|im_start|>user\nhi<|im_end|>", true, "<|im_start|>user\nhi<|im_end|>");
    EXPECT_DETOK(v, "<|im_start|>user\nhi<|im_end|>", false, "user\nhi");
    EXPECT_DETOK(v, "<think>x</think>", false, "<think>x</think>");
    /* digits one by one */
    struct seq d = { .n = 0 };
    for (int i = 0; i < 4; i++)
        seq_id(&d, md_vocab_find(v, "3"));
    EXPECT(v, "3333", false, false, &d);
    md_vocab_free(v);
}

static void test_llama_bpe(const char *path)
{
    struct md_vocab *v = load_generated(path);
    CHECK(md_vocab_pretokenizer(v) && strcmp(md_vocab_pretokenizer(v), "llama3") == 0);
    CHECK(md_vocab_warning(v) == NULL);
    CHECK(md_vocab_bos(v) == 128000 && md_vocab_eos(v) == 128001);
    CHECK(md_vocab_add_bos(v));           /* llama-bpe default */
    CHECK(md_vocab_eot(v) == 128009);     /* <|eot_id|> */
    CHECK(md_vocab_is_eog(v, 128001) && md_vocab_is_eog(v, 128009));
    CHECK(!md_vocab_is_eog(v, 128000) && !md_vocab_is_eog(v, 128006));
    CHECK(!md_vocab_is_eog(v, 128008));   /* Llama-3.0: reserved (3.1: <|eom_id|>) */
    struct seq w = { .n = 0 };
    seq_id(&w, 128000);
    seq_id(&w, 128006);
    seq_id(&w, md_vocab_find(v, "user"));
    seq_id(&w, 128007);
    seq_id(&w, md_vocab_find(v, "\xc4\x8a\xc4\x8a"));
    seq_id(&w, md_vocab_find(v, "hi"));
    seq_id(&w, 128009);
    EXPECT(v, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
           false, true, &w);
    struct seq b = { .n = 0 };
    seq_id(&b, 128000);
    seq_id(&b, md_vocab_find(v, "hi"));
    EXPECT(v, "hi", true, false, &b);
    EXPECT_DETOK(v, "<|begin_of_text|>hi<|eot_id|>", false, "hi");
    EXPECT_DETOK(v, "<|begin_of_text|>hi<|eot_id|>", true, "<|begin_of_text|>hi<|eot_id|>");
    md_vocab_free(v);
}

int main(int argc, char **argv)
{
    test_llama_spm();
    test_phi3();
    test_gpt2();
    if (argc > 2) {
        test_qwen2(argv[1]);
        test_llama_bpe(argv[2]);
    } else {
        printf("generated vocab paths not given: qwen2 / llama-bpe part not run\n");
    }
    return md_test_finish("text-special");
}
