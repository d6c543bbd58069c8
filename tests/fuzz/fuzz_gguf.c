/* libFuzzer target for the GGUF reader.
 *
 * Opens the input with md_gguf_open_memory; on success touches every kv
 * through the lookup and typed getters, reads every element of every array,
 * checks that every tensor lies inside the buffer, and dequantizes (a bounded
 * prefix of) the first row of each tensor. Invariant violations abort, so the
 * fuzzer reports them like crashes. A failed open must leave an error text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROW_CAP 4096   /* floats dequantized per tensor, at most */

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_gguf: invariant violated: %s\n", what);
        abort();
    }
}

static int inside(const struct md_gguf *g, const void *p, uint64_t n)
{
    const uint8_t *b = p;
    return b >= g->base && (uint64_t)(b - g->base) <= g->size && n <= g->size - (uint64_t)(b - g->base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct md_gguf *g = NULL;
    char err[512];
    if (md_gguf_open_memory(data, size, &g, err, sizeof err) != 0) {
        require(g == NULL, "failed open returned a context");
        require(err[0] != 0, "failed open left no error text");
        require(memchr(err, 0, sizeof err) != NULL, "error text not terminated");
        return 0;
    }
    require(g->version == 2 || g->version == 3, "version");
    require(g->alignment && !(g->alignment & (g->alignment - 1)), "alignment");
    volatile float fsink = 0;
    volatile uint64_t usink = 0;
    char key[256];

    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct md_gguf_kv *kv = &g->kv[i];
        require(inside(g, kv->key.ptr, kv->key.len), "key inside buffer");
        require(md_utf8_valid(kv->key.ptr, kv->key.len), "key is UTF-8");
        if (kv->key.len < sizeof key) {
            memcpy(key, kv->key.ptr, (size_t)kv->key.len);
            key[kv->key.len] = 0;
            require(md_gguf_find_kv(g, key) == kv, "find_kv finds the kv");
            uint32_t u32; int64_t i64; float f; bool b; struct md_str s;
            if (md_gguf_get_u32(g, key, &u32) == 0) usink += u32;
            if (md_gguf_get_i64(g, key, &i64) == 0) usink += (uint64_t)i64;
            if (md_gguf_get_f32(g, key, &f) == 0) fsink += f;
            if (md_gguf_get_bool(g, key, &b) == 0) usink += b;
            if (md_gguf_get_str(g, key, &s) == 0) {
                require(inside(g, s.ptr, s.len), "string value inside buffer");
                if (s.len) usink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
            }
        }
        if (kv->type != MD_GGUF_ARRAY) continue;
        for (uint64_t j = 0; j < kv->n; j++) {
            struct md_str s;
            float f;
            int64_t v;
            if (md_gguf_arr_str(kv, j, &s) == 0) {
                require(inside(g, s.ptr, s.len), "array string inside buffer");
                if (s.len) usink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
            }
            if (md_gguf_arr_f32(kv, j, &f) == 0) fsink += f;
            if (md_gguf_arr_i64(kv, j, &v) == 0) usink += (uint64_t)v;
        }
        require(md_gguf_arr_str(kv, kv->n, NULL) == -2, "index n out of range");
    }

    float row[ROW_CAP];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct md_gguf_tensor *t = &g->tensors[i];
        require(t->n_dims >= 1 && t->n_dims <= MD_GGUF_MAX_DIMS, "n_dims");
        require(md_type_supported(t->type), "tensor type");
        require(inside(g, t->data, t->nbytes), "tensor inside buffer");
        require(t->offset % g->alignment == 0, "tensor offset aligned");
        if (t->name.len < sizeof key) {
            memcpy(key, t->name.ptr, (size_t)t->name.len);
            key[t->name.len] = 0;
            require(md_gguf_find_tensor(g, key) == t, "find_tensor finds the tensor");
        }
        int64_t nel = 1;
        for (int j = 0; j < MD_GGUF_MAX_DIMS; j++) nel *= t->ne[j];
        if (nel == 0) continue;
        int64_t blck = md_type_block_elems(t->type);
        int64_t n = t->ne[0] < ROW_CAP ? t->ne[0] : ROW_CAP;
        n -= n % blck;
        if (n <= 0) continue;
        int64_t rb = md_type_row_bytes(t->type, n);
        require(rb >= 0 && (uint64_t)rb <= t->nbytes, "row inside tensor");
        md_dequantize_row(t->type, t->data, row, n);
        fsink += row[0] + row[n - 1];
    }
    (void)fsink;
    (void)usink;
    md_gguf_close(g);
    return 0;
}
