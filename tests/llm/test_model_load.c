/* Model loading: every malformed or unsupported file gives a clear error
 * naming the key or tensor (and shapes), never a crash; a good file gives
 * the right hyperparameters and description; mmap / read / memory loads;
 * progress callback and cancel; vocab-only; the real llama.cpp fixture. */
#include <unistd.h>

#include "md_test.h"
#include "md_tiny_llm.h"

/* Build cfg, load it from memory, expect rc and a message containing
 * every string of `needles` (NULL-terminated). */
static void expect_fail(const struct tiny_cfg *cfg, int want_rc, const char *const *needles)
{
    struct tiny_model t;
    CHECK(tiny_build(&t, cfg) == 0);
    struct md_model *m = (struct md_model *)&t;   /* must be reset to NULL */
    char err[256] = "";
    int rc = tiny_load(&t, &m, err, sizeof err);
    CHECKF(rc == want_rc && m == NULL, "rc %d (want %d): %s", rc, want_rc, err);
    for (int i = 0; needles[i]; i++)
        CHECKF(strstr(err, needles[i]) != NULL, "error [%s] lacks [%s]", err, needles[i]);
    tiny_free(&t);
}

/* A GGUF with only the given keys (no tensors). */
static void expect_keys_fail(const char *arch, int n_keys, const char *want)
{
    struct md_gguf_writer *w = md_gguf_writer_new();
    if (arch)
        md_gguf_writer_add_str(w, "general.architecture", arch);
    const char *keys[] = { "llama.embedding_length", "llama.block_count",
                           "llama.feed_forward_length", "llama.attention.head_count" };
    for (int i = 0; i < n_keys && i < 4; i++)
        md_gguf_writer_add_u32(w, keys[i], i < 3 ? 64u : n_keys > 4 ? 3u : 4u);   /* 64 % 3 != 0 */
    if (n_keys > 4)
        md_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    void *buf;
    size_t size;
    char err[256] = "";
    CHECK(md_gguf_writer_write_mem(w, &buf, &size, err, sizeof err) == 0);
    md_gguf_writer_free(w);
    struct md_model *m = NULL;
    int rc = md_model_load_memory(buf, size, NULL, &m, err, sizeof err);
    CHECKF(rc != MD_OK && m == NULL && strstr(err, want), "keys %d: rc %d [%s], want [%s]", n_keys,
           rc, err, want);
    free(buf);
}

static bool progress_count(float p, void *user)
{
    int *n = user;
    CHECK(p >= 0.0f && p <= 1.0f);
    (*n)++;
    return true;
}

static bool progress_cancel(float p, void *user)
{
    return p < 0.5f;
}

/* A tensor in a type the file may carry but we cannot compute (IQ4_NL here,
 * as in an IQ4_NL or Q3_K_M file): refused by name and type at load. */
static void check_uncomputable_type(void)
{
    struct tiny_cfg c = tiny_default("llama");
    c.retype = "blk.0.ffn_up.weight";
    c.retype_type = 20;   /* IQ4_NL */
    const char *want[] = { "unsupported tensor type IQ4_NL (20) in tensor 'blk.0.ffn_up.weight'", NULL };
    expect_fail(&c, MD_ERR_UNSUPPORTED, want);
}

static void check_good(void)
{
    struct tiny_cfg c = tiny_default("qwen2");
    c.chat_template = "<|im_start|>";
    struct tiny_model t;
    CHECK(tiny_build(&t, &c) == 0);

    /* write it to a file: load with mmap and with read */
    char path[] = "/tmp/md_test_model_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, t.file, t.size) == (ssize_t)t.size);
    close(fd);
    for (int mmap = 0; mmap < 2; mmap++) {
        struct md_model_params mp = md_model_default_params();
        int calls = 0;
        mp.use_mmap = mmap;
        mp.progress_callback = progress_count;
        mp.progress_callback_user = &calls;
        struct md_model *m = NULL;
        char err[256];
        int rc = md_model_load(path, &mp, &m, err, sizeof err);
        CHECKF(rc == MD_OK, "%s", err);
        if (rc)
            continue;
        CHECK(calls > 10);
        CHECK(!strcmp(md_model_arch(m), "qwen2"));
        CHECK(md_model_n_vocab(m) == c.n_vocab && md_model_n_embd(m) == c.n_embd);
        CHECK(md_model_n_layer(m) == c.n_layer && md_model_n_head(m) == c.n_head);
        CHECK(md_model_n_head_kv(m) == c.n_head_kv && md_model_n_ctx_train(m) == c.n_ctx);
        CHECK(md_model_vocab(m) == NULL);
        CHECK(!strcmp(md_model_chat_template(m), "<|im_start|>"));
        uint64_t e = 64, q = 64, kv = 32, ff = 96, nv = 96;
        uint64_t per_layer = 2 * e + e * q + 2 * e * kv + q + 2 * kv + q * e + 3 * e * ff;
        CHECKF(md_model_n_params(m) == 2 * nv * e + e + 2 * per_layer, "n_params %llu",
               (unsigned long long)md_model_n_params(m));
        CHECK(md_model_size(m) == 4 * md_model_n_params(m));
        CHECKF(strstr(md_model_desc(m), "qwen2") && strstr(md_model_desc(m), "F32"), "desc %s",
               md_model_desc(m));
        CHECK(md_model_load_ms(m) >= 0.0);
        md_model_free(m);
    }
    /* cancel from the progress callback */
    struct md_model_params mp = md_model_default_params();
    mp.progress_callback = progress_cancel;
    struct md_model *m = NULL;
    char err[256];
    CHECK(md_model_load(path, &mp, &m, err, sizeof err) == MD_ERR_ABORTED && !m);
    /* vocab only: loads without tensors, refuses a context */
    mp = md_model_default_params();
    mp.vocab_only = true;
    CHECK(md_model_load(path, &mp, &m, err, sizeof err) == MD_OK);
    struct md_context *ctx = NULL;
    CHECK(md_context_new(m, NULL, &ctx, err, sizeof err) == MD_ERR_INVALID && !ctx);
    CHECK(strstr(err, "vocab_only") != NULL);
    md_model_free(m);
    /* unknown backend */
    mp = md_model_default_params();
    mp.backend = "tpu";
    CHECK(md_model_load(path, &mp, &m, err, sizeof err) == MD_ERR_UNSUPPORTED);
    CHECK(strstr(err, "tpu") != NULL);
    unlink(path);

    /* every truncation of the file fails cleanly */
    for (size_t cut = 0; cut < t.size; cut += t.size / 37 + 1) {
        int rc = md_model_load_memory(t.file, cut, NULL, &m, err, sizeof err);
        CHECK(rc != MD_OK && m == NULL && err[0]);
    }
    tiny_free(&t);
}

static void check_fixture(void)
{
    char path[512];
    const char *dir = getenv("MD_SHARED_DIR");
    snprintf(path, sizeof path, "%s/fixtures/gguf/llama-2-tiny-random.gguf", dir ? dir : "../shared");
    if (access(path, R_OK))
        return;   /* fixture absent: the rest of the test still counts */
    struct md_model *m = NULL;
    char err[256];
    int rc = md_model_load(path, NULL, &m, err, sizeof err);
    CHECKF(rc == MD_OK, "%s", err);
    if (rc)
        return;
    CHECK(!strcmp(md_model_arch(m), "llama") && md_model_n_vocab(m) == 32000);
    CHECK(md_model_n_embd(m) == 8 && md_model_n_layer(m) == 1 && md_model_n_head(m) == 2);
    CHECK(strstr(md_model_desc(m), "F16") != NULL);
    struct md_context_params cp = md_context_default_params();
    CHECK(cp.n_batch == 512 && cp.n_ctx == 0 && cp.n_threads >= 1);
    struct md_context *ctx;
    CHECK(md_context_new(m, &cp, &ctx, err, sizeof err) == MD_OK);
    CHECK(md_context_n_ctx(ctx) == 4096);   /* min(context_length 4096, 4096) */
    int32_t bos = 1;
    CHECK(md_decode(ctx, &bos, 1, false) == MD_OK);
    const float *lg = md_get_logits(ctx, -1);
    bool finite = true;
    for (int i = 0; i < 32000; i++)
        finite = finite && isfinite(lg[i]);
    CHECK(finite);
    md_context_free(ctx);
    md_model_free(m);
}

int main(void)
{
    check_uncomputable_type();
    struct tiny_cfg c = tiny_default("gpt9");
    expect_fail(&c, MD_ERR_UNSUPPORTED,
                (const char *[]){ "unsupported architecture 'gpt9' (llama and qwen2 are supported)", NULL });
    c = tiny_default("llama");
    c.omit = "blk.1.ffn_up.weight";
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "missing tensor 'blk.1.ffn_up.weight'", NULL });
    c.omit = "token_embd.weight";
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "'token_embd.weight'", NULL });
    c.omit = "output_norm.weight";
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "'output_norm.weight'", NULL });
    c = tiny_default("qwen2");
    c.omit = "blk.0.attn_k.bias";   /* required for qwen2 */
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "missing tensor 'blk.0.attn_k.bias'", NULL });
    c = tiny_default("llama");
    c.reshape = "blk.0.attn_k.weight";
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "tensor 'blk.0.attn_k.weight'",
                                                    "shape {64, 16}, expected {64, 32}", NULL });
    c.reshape = "blk.1.ffn_norm.weight";
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "'blk.1.ffn_norm.weight'",
                                                    "shape {32}, expected {64}", NULL });
    c.reshape = "output.weight";
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "'output.weight'", "expected {64, 96}", NULL });
    c = tiny_default("llama");
    c.rope_type = "yarn";
    expect_fail(&c, MD_ERR_UNSUPPORTED, (const char *[]){ "unsupported rope scaling 'yarn'", NULL });
    c = tiny_default("llama");
    c.n_head_kv = 3;   /* 4 heads do not split into 3 groups */
    expect_fail(&c, MD_ERR_FORMAT, (const char *[]){ "head_count_kv 3", NULL });
    c = tiny_default("llama");
    c.biases = 1;      /* optional biases on llama are accepted */
    struct tiny_model t;
    CHECK(tiny_build(&t, &c) == 0);
    struct md_model *m;
    char err[256];
    CHECKF(tiny_load(&t, &m, err, sizeof err) == MD_OK, "%s", err);
    md_model_free(m);
    tiny_free(&t);

    expect_keys_fail(NULL, 0, "missing key 'general.architecture'");
    expect_keys_fail("llama", 0, "missing key 'llama.embedding_length'");
    expect_keys_fail("llama", 2, "missing key 'llama.feed_forward_length'");
    expect_keys_fail("llama", 4, "missing key 'llama.attention.layer_norm_rms_epsilon'");
    expect_keys_fail("llama", 5, "not a multiple of head_count 3");

    CHECK(md_model_load("/nonexistent/dir/model.gguf", NULL, &m, err, sizeof err) == MD_ERR_IO);
    CHECK(m == NULL && strstr(err, "/nonexistent/dir/model.gguf"));
    const char junk[] = "this is not a gguf file at all, just some text...";
    CHECK(md_model_load_memory(junk, sizeof junk, NULL, &m, err, sizeof err) == MD_ERR_FORMAT);
    CHECK(md_model_load(NULL, NULL, &m, err, sizeof err) == MD_ERR_INVALID);
    md_model_free(NULL);
    CHECK(md_model_n_vocab(NULL) == 0 && md_model_vocab(NULL) == NULL);
    CHECK(!strcmp(md_status_str(MD_ERR_CONTEXT_FULL), "context full"));
    CHECK(!strcmp(md_version(), MD_VERSION_STRING));

    check_good();
    check_fixture();
    return md_test_finish("model_load");
}
