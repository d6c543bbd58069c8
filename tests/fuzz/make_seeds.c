/* Writes the seed corpus of the GGUF fuzzer (tests/fuzz/corpus) with the
 * GGUF writer: small valid files covering every value type, string arrays,
 * every supported tensor type, v2 and v3, and three alignments. Run by hand:
 *   build/tests/fuzz/make_seeds tests/fuzz/corpus
 * The output is deterministic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf-writer.h"

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* Random bytes whose fp16 fields (where the type has them) are small finite scales. */
static void fill_random(uint64_t *s, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd(s);
}

static int add_tensor(struct md_gguf_writer *w, uint64_t *s, const char *name, uint32_t type,
                      uint32_t n_dims, const int64_t *ne, uint8_t *buf)
{
    int64_t n = 1;
    for (uint32_t j = 1; j < n_dims; j++) n *= ne[j];
    size_t bytes = (size_t)(md_type_row_bytes(type, ne[0]) * n);
    fill_random(s, buf, bytes);
    if (type == MD_TYPE_F32)
        for (size_t i = 0; i < bytes / 4; i++) {
            float f = (float)((int)rnd(s) % 2000 - 1000) / 256.0f;
            memcpy(buf + 4 * i, &f, 4);
        }
    return md_gguf_writer_add_tensor(w, name, type, n_dims, ne, buf);
}

static int write(struct md_gguf_writer *w, const char *dir, const char *name)
{
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = md_gguf_writer_write_file(w, path, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", path, err);
    md_gguf_writer_free(w);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: %s OUTDIR\n", argv[0]); return 2; }
    const char *dir = argv[1];
    uint64_t s = 12345;
    static uint8_t buf[8][2048];
    int rc = 0;

    /* 1. every scalar type, a string array, a few arrays, 2 small tensors, v3 */
    struct md_gguf_writer *w = md_gguf_writer_new();
    md_gguf_writer_add_str(w, "general.architecture", "llama");
    md_gguf_writer_add_u8(w, "t.u8", 200);
    md_gguf_writer_add_i8(w, "t.i8", -100);
    md_gguf_writer_add_u16(w, "t.u16", 60000);
    md_gguf_writer_add_i16(w, "t.i16", -30000);
    md_gguf_writer_add_u32(w, "llama.embedding_length", 32);
    md_gguf_writer_add_i32(w, "t.i32", -7);
    md_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    md_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    md_gguf_writer_add_u64(w, "t.u64", 1ull << 40);
    md_gguf_writer_add_i64(w, "t.i64", -(1ll << 40));
    md_gguf_writer_add_f64(w, "t.f64", 3.25);
    const char *toks[] = { "<unk>", "<s>", "</s>", "a", "b", "\xe2\x96\x81hello", "" };
    md_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 7);
    float sc[] = { 0, -1, -2, -3.5f, 4, 5, 6 };
    md_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", sc, 7);
    int32_t tt[] = { 2, 3, 3, 1, 1, 1, 1 };
    md_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", tt, 7);
    int64_t ne1[] = { 32 }, ne2[] = { 32, 2 };
    add_tensor(w, &s, "output_norm.weight", MD_TYPE_F32, 1, ne1, buf[0]);
    add_tensor(w, &s, "token_embd.weight", MD_TYPE_F16, 2, ne2, buf[1]);
    rc |= write(w, dir, "seed_scalars_v3.gguf");

    /* 2. every supported tensor type, v2, alignment 64 */
    w = md_gguf_writer_new();
    md_gguf_writer_set_version(w, 2);
    md_gguf_writer_set_alignment(w, 64);
    md_gguf_writer_add_str(w, "general.name", "types");
    static const uint32_t types[] = { MD_TYPE_F32, MD_TYPE_F16, MD_TYPE_BF16, MD_TYPE_Q4_0,
        MD_TYPE_Q4_1, MD_TYPE_Q5_0, MD_TYPE_Q5_1, MD_TYPE_Q8_0 };
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", md_type_name(types[i]));
        int64_t ne[] = { 32, 1 + i % 2 };
        add_tensor(w, &s, name, types[i], 2, ne, buf[i]);
    }
    rc |= write(w, dir, "seed_types_v2_align64.gguf");

    /* 3. K quants, alignment 16 (non-default), 3-D and 4-D shapes */
    w = md_gguf_writer_new();
    md_gguf_writer_set_alignment(w, 16);
    int64_t k1[] = { 256 }, k3[] = { 256, 1, 2 }, k4[] = { 256, 1, 1, 1 };
    add_tensor(w, &s, "q4k", MD_TYPE_Q4_K, 1, k1, buf[0]);
    add_tensor(w, &s, "q5k", MD_TYPE_Q5_K, 3, k3, buf[1]);
    add_tensor(w, &s, "q6k", MD_TYPE_Q6_K, 4, k4, buf[2]);
    int64_t z[] = { 0, 4 };
    md_gguf_writer_add_tensor(w, "empty", MD_TYPE_F32, 2, z, NULL);
    rc |= write(w, dir, "seed_kquants_align16.gguf");

    /* 4. arrays of every scalar type, no tensors */
    w = md_gguf_writer_new();
    static const uint32_t at[] = { MD_GGUF_UINT8, MD_GGUF_INT8, MD_GGUF_UINT16, MD_GGUF_INT16,
        MD_GGUF_UINT32, MD_GGUF_INT32, MD_GGUF_FLOAT32, MD_GGUF_BOOL, MD_GGUF_UINT64,
        MD_GGUF_INT64, MD_GGUF_FLOAT64 };
    uint8_t vals[64];
    for (int i = 0; i < 11; i++) {
        char key[32];
        snprintf(key, sizeof key, "arr.%s", md_gguf_vtype_name(at[i]));
        fill_random(&s, vals, sizeof vals);
        if (at[i] == MD_GGUF_BOOL) for (int j = 0; j < 64; j++) vals[j] &= 1;
        if (at[i] == MD_GGUF_FLOAT32 || at[i] == MD_GGUF_FLOAT64) memset(vals, 0x3f, sizeof vals);
        md_gguf_writer_add_arr(w, key, at[i], vals, 4);
    }
    const char *empty[] = { NULL };
    md_gguf_writer_add_arr_str(w, "arr.str.empty", empty, 0);
    md_gguf_writer_add_arr(w, "arr.u8.empty", MD_GGUF_UINT8, vals, 0);
    rc |= write(w, dir, "seed_arrays_no_tensors.gguf");

    /* 5. minimal: no kv, no tensor */
    w = md_gguf_writer_new();
    rc |= write(w, dir, "seed_empty.gguf");
    return rc ? 1 : 0;
}
