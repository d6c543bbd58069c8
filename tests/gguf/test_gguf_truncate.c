/* A valid GGUF (every value type, string arrays, several tensors; no
 * trailing padding, so that every shorter prefix is invalid) is cut at
 * every length 0..size-1: each prefix, in an exact-size heap buffer so that
 * ASan sees any overread, must be rejected with an error message; the full
 * file must open. Done for v3/alignment 32 and v2/alignment 64. */
#include <stdint.h>

#include "md_test.h"
#include "gguf.h"
#include "gguf-writer.h"

static void run(uint32_t version, uint32_t alignment)
{
    struct md_gguf_writer *w = md_gguf_writer_new();
    md_gguf_writer_set_version(w, version);
    md_gguf_writer_set_alignment(w, alignment);
    md_gguf_writer_add_str(w, "general.architecture", "llama");
    md_gguf_writer_add_u8(w, "a", 1);
    md_gguf_writer_add_i8(w, "b", -1);
    md_gguf_writer_add_u16(w, "c", 2);
    md_gguf_writer_add_i16(w, "d", -2);
    md_gguf_writer_add_u32(w, "e", 3);
    md_gguf_writer_add_i32(w, "f", -3);
    md_gguf_writer_add_f32(w, "g", 0.5f);
    md_gguf_writer_add_bool(w, "h", true);
    md_gguf_writer_add_u64(w, "i", 4);
    md_gguf_writer_add_i64(w, "j", -4);
    md_gguf_writer_add_f64(w, "k", 0.25);
    const char *toks[] = { "<unk>", "", "hello", "\xe2\x96\x81world" };
    md_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    float sc[] = { 0, 1, 2, 3 };
    md_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", sc, 4);
    uint8_t bools[] = { 0, 1, 1 };
    md_gguf_writer_add_arr(w, "bools", MD_GGUF_BOOL, bools, 3);
    uint8_t data[512];
    for (int i = 0; i < 512; i++) data[i] = (uint8_t)(i * 7);
    data[0] = 0; data[1] = 0x3c;                           /* Q8_0 scale 1.0 */
    int64_t ne_q[] = { 32 }, ne_a[] = { 8, 2 }, ne_last[] = { 16 };
    md_gguf_writer_add_tensor(w, "q", MD_TYPE_Q8_0, 1, ne_q, data);
    md_gguf_writer_add_tensor(w, "a", MD_TYPE_F16, 2, ne_a, data + 64);
    md_gguf_writer_add_tensor(w, "last", MD_TYPE_F32, 1, ne_last, data + 128);  /* 64 bytes */
    void *buf = NULL;
    size_t size = 0;
    char err[512];
    CHECKF(md_gguf_writer_write_mem(w, &buf, &size, err, sizeof err) == 0, "%s", err);
    md_gguf_writer_free(w);
    if (!buf) return;

    struct md_gguf *g = NULL;
    CHECKF(md_gguf_open_memory(buf, size, &g, err, sizeof err) == 0, "full file: %s", err);
    if (g) {
        const struct md_gguf_tensor *t = md_gguf_find_tensor(g, "last");
        CHECK(t && g->data_offset + t->offset + t->nbytes == size);   /* no trailing padding */
        md_gguf_close(g);
    }
    int failures = 0;
    for (size_t len = 0; len < size; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        if (!cut) { CHECK(0); break; }
        memcpy(cut, buf, len);
        g = NULL;
        memset(err, 0, sizeof err);
        int rc = md_gguf_open_memory(cut, len, &g, err, sizeof err);
        if ((rc == 0 || g != NULL || err[0] == 0) && failures++ < 10)
            CHECKF(0, "v%u align %u: prefix of %zu bytes: rc %d err '%s'", version, alignment, len, rc, err);
        if (g) md_gguf_close(g);
        free(cut);
    }
    printf("v%u alignment %u: all %zu prefixes rejected\n", version, alignment, size);
    free(buf);
}

int main(void)
{
    run(3, 32);
    run(2, 64);
    return md_test_finish("gguf_truncate");
}
