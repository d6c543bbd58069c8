/* The reader on real GGUF files from shared/fixtures (skipped when absent):
 * llama-2-tiny-random.gguf (written by llama.cpp's converter) and the
 * vocab-only ggml-vocab-*.gguf files of llama.cpp's tokenizer tests. */
#include <stdint.h>

#include "md_test.h"
#include "gguf.h"

static int exists(const char *rel, char *buf, size_t n)
{
    const char *dir = getenv("MD_SHARED_DIR");
    snprintf(buf, n, "%s/%s", dir ? dir : "../shared", rel);
    FILE *f = fopen(buf, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static void same_parse(const struct md_gguf *a, const struct md_gguf *b)
{
    CHECK(a->version == b->version && a->n_kv == b->n_kv && a->n_tensors == b->n_tensors);
    CHECK(a->alignment == b->alignment && a->data_offset == b->data_offset && a->size == b->size);
    for (uint64_t i = 0; i < a->n_kv && i < b->n_kv; i++) {
        CHECK(a->kv[i].key.len == b->kv[i].key.len && a->kv[i].type == b->kv[i].type);
        CHECK(a->kv[i].n == b->kv[i].n && a->kv[i].data - a->base == b->kv[i].data - b->base);
    }
    for (uint64_t i = 0; i < a->n_tensors && i < b->n_tensors; i++)
        CHECK(a->tensors[i].offset == b->tensors[i].offset && a->tensors[i].nbytes == b->tensors[i].nbytes);
}

/* Reads the whole file into an exact-size buffer. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = sz > 0 ? malloc((size_t)sz) : NULL;
    *n = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    return b;
}

static void check_token_array(const struct md_gguf *g, const char *key, uint64_t n, int all_utf8)
{
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, key);
    CHECKF(kv && kv->type == MD_GGUF_ARRAY && kv->arr_type == MD_GGUF_STRING && kv->n == n,
           "%s: n %llu", key, kv ? (unsigned long long)kv->n : 0ull);
    if (!kv) return;
    uint64_t bad_utf8 = 0;
    for (uint64_t i = 0; i < kv->n; i++) {
        struct md_str s;
        CHECK(md_gguf_arr_str(kv, i, &s) == 0);
        CHECK((const uint8_t *)s.ptr >= g->base && (const uint8_t *)s.ptr + s.len <= g->base + g->size);
        if (!md_utf8_valid(s.ptr, s.len)) bad_utf8++;
    }
    if (all_utf8) CHECKF(bad_utf8 == 0, "%s: %llu strings not UTF-8", key, (unsigned long long)bad_utf8);
}

static void check_tiny(const char *path)
{
    struct md_gguf *g = NULL, *gm = NULL;
    char err[512];
    CHECKF(md_gguf_open(path, &g, err, sizeof err) == 0, "%s", err);
    if (!g) return;
    CHECK(g->version == 3 && g->n_kv == 18 && g->n_tensors == 12 && g->alignment == 32);
    CHECK(g->data_offset == 724416);
    struct md_str s;
    uint32_t u;
    float f;
    CHECK(md_gguf_get_str(g, "general.architecture", &s) == 0 && md_str_eq(s, "llama"));
    CHECK(md_gguf_get_u32(g, "llama.embedding_length", &u) == 0 && u == 8);
    CHECK(md_gguf_get_u32(g, "llama.block_count", &u) == 0 && u == 1);
    CHECK(md_gguf_get_u32(g, "llama.attention.head_count", &u) == 0 && u == 2);
    CHECK(md_gguf_get_u32(g, "llama.feed_forward_length", &u) == 0 && u == 32);
    CHECK(md_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f) == 0 && f > 0 && f < 1e-3f);
    CHECK(md_gguf_get_str(g, "tokenizer.ggml.model", &s) == 0 && md_str_eq(s, "llama"));
    CHECK(md_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u) == 0 && u == 1);
    CHECK(md_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u) == 0 && u == 2);
    check_token_array(g, "tokenizer.ggml.tokens", 32000, 1);
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (kv) {
        CHECK(md_gguf_arr_str(kv, 0, &s) == 0 && md_str_eq(s, "<unk>"));
        CHECK(md_gguf_arr_str(kv, 1, &s) == 0 && md_str_eq(s, "<s>"));
        CHECK(md_gguf_arr_str(kv, 2, &s) == 0 && md_str_eq(s, "</s>"));
        CHECK(md_gguf_arr_str(kv, 3, &s) == 0 && md_str_eq(s, "<0x00>"));
        CHECK(md_gguf_arr_str(kv, 31999, &s) == 0 && s.len > 0);
    }
    kv = md_gguf_find_kv(g, "tokenizer.ggml.scores");
    CHECK(kv && kv->arr_type == MD_GGUF_FLOAT32 && kv->n == 32000 && md_gguf_arr_f32(kv, 31999, &f) == 0);
    kv = md_gguf_find_kv(g, "tokenizer.ggml.token_type");
    int64_t tt;
    CHECK(kv && kv->arr_type == MD_GGUF_INT32 && kv->n == 32000);
    CHECK(kv && md_gguf_arr_i64(kv, 0, &tt) == 0 && tt == 2);   /* <unk>: UNKNOWN */
    CHECK(kv && md_gguf_arr_i64(kv, 1, &tt) == 0 && tt == 3);   /* <s>: CONTROL */
    CHECK(kv && md_gguf_arr_i64(kv, 3, &tt) == 0 && tt == 6);   /* <0x00>: BYTE */

    const struct md_gguf_tensor *t = md_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == MD_TYPE_F16 && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 32000);
    CHECK(t && t->offset == 0 && t->nbytes == 512000);
    t = md_gguf_find_tensor(g, "output_norm.weight");
    CHECK(t && t->type == MD_TYPE_F32 && t->ne[0] == 8);
    t = md_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->type == MD_TYPE_F16 && t->ne[0] == 32 && t->ne[1] == 8);
    t = md_gguf_find_tensor(g, "output.weight");
    CHECK(t && t->offset + t->nbytes + g->data_offset == g->size);
    /* every weight dequantizes to finite values */
    float row[32];
    uint64_t nonfinite = 0, total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        t = &g->tensors[i];
        int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        size_t rb = (size_t)md_type_row_bytes(t->type, t->ne[0]);
        CHECK(t->ne[0] <= 32);
        if (t->ne[0] > 32) continue;
        for (int64_t r = 0; r < rows; r++) {
            md_dequantize_row(t->type, (const uint8_t *)t->data + r * rb, row, t->ne[0]);
            for (int64_t k = 0; k < t->ne[0]; k++, total++) nonfinite += !isfinite(row[k]);
        }
    }
    CHECK(nonfinite == 0 && total == 8 * 32000 * 2 + 4 * 64 + 3 * 256 + 3 * 8);

    /* the memory path parses the same; truncations fail cleanly */
    size_t n = 0;
    uint8_t *buf = slurp(path, &n);
    CHECK(buf && n == g->size);
    if (buf) {
        CHECKF(md_gguf_open_memory(buf, n, &gm, err, sizeof err) == 0, "%s", err);
        if (gm) { same_parse(g, gm); md_gguf_close(gm); }
        uint32_t seed = 1;
        for (int k = 0; k < 400; k++) {
            size_t len;
            if (k < 200) len = (size_t)k * 37;                     /* header and early kvs */
            else if (k < 264) len = n - 1 - (size_t)(k - 200);     /* the end of the data */
            else { seed = seed * 1664525u + 1013904223u; len = seed % n; }
            uint8_t *cut = malloc(len ? len : 1);
            if (!cut) continue;
            memcpy(cut, buf, len);
            gm = NULL;
            err[0] = 0;
            int rc = md_gguf_open_memory(cut, len, &gm, err, sizeof err);
            CHECKF(rc != 0 && gm == NULL && err[0], "truncated to %zu: rc %d", len, rc);
            if (gm) md_gguf_close(gm);
            free(cut);
        }
        free(buf);
    }
    md_gguf_close(g);
    printf("llama-2-tiny-random.gguf: ok\n");
}

static void check_vocab(const char *path, const char *model, uint64_t n_tokens, uint64_t n_merges)
{
    struct md_gguf *g = NULL;
    char err[512];
    CHECKF(md_gguf_open(path, &g, err, sizeof err) == 0, "%s: %s", path, err);
    if (!g) return;
    CHECK(g->version == 3 && g->n_tensors == 0 && g->alignment == 32);
    struct md_str s;
    CHECK(md_gguf_get_str(g, "tokenizer.ggml.model", &s) == 0 && md_str_eq(s, model));
    check_token_array(g, "tokenizer.ggml.tokens", n_tokens, 1);
    if (n_merges) check_token_array(g, "tokenizer.ggml.merges", n_merges, 1);
    else CHECK(md_gguf_find_kv(g, "tokenizer.ggml.merges") == NULL);
    uint32_t u;
    CHECK(md_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u) == 0 && u < n_tokens);
    md_gguf_close(g);
    printf("%s: ok\n", path);
}

int main(void)
{
    char p[1024];
    int any = 0;
    if (exists("fixtures/gguf/llama-2-tiny-random.gguf", p, sizeof p)) { any = 1; check_tiny(p); }
    static const struct { const char *file, *model; uint64_t n, merges; } vocabs[] = {
        { "ggml-vocab-llama-spm.gguf", "llama", 32000, 0 },
        { "ggml-vocab-phi-3.gguf", "llama", 32064, 0 },
        { "ggml-vocab-gpt-2.gguf", "gpt2", 50257, 50000 },
    };
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "fixtures/tokenizer/llama.cpp-vocab/%s", vocabs[i].file);
        if (exists(rel, p, sizeof p)) {
            any = 1;
            check_vocab(p, vocabs[i].model, vocabs[i].n, vocabs[i].merges);
        }
    }
    if (!any) SKIP("shared/fixtures GGUF files absent");
    return md_test_finish("gguf_fixtures");
}
