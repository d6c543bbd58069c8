/* The position policy (pos=keep|renumber): the RoPE positions the LLM's
 * cache holds after a hand-made reduction. Two images of 16 rows each, the
 * scores making HiRED keep rows 3, 7, 12 and 14 of each; with pos=keep
 * those rows sit at their unreduced positions and the text after an image
 * continues after its 16 unreduced rows; with pos=renumber every row is
 * packed. Decoding continues after the last prompt position. */
#include "red_fixture.h"
#include "session.h"

static const int32_t KEPT[4] = { 3, 7, 12, 14 };

struct seen {
    int32_t n;              /* prompt rows */
    int32_t pos[512];       /* layer 0 cache position of each prompt row */
    bool vis[512];
};

static bool prefill(struct red_fix *f, const char *spec, struct seen *out, int32_t *decode_pos)
{
    struct md_reduce_config cfg;
    char err[256];
    memset(out, 0, sizeof *out);
    CHECKF(md_reduce_parse(spec, &cfg, err, sizeof err) == MD_OK, "%s: %s", spec, err);
    struct md_context *ctx = red_ctx(f);
    struct md_reduce_session *s = NULL;
    CHECK(ctx && md_reduce_session_new(ctx, f->vis, &cfg, &s, err, sizeof err) == MD_OK);
    if (!s) {
        md_context_free(ctx);
        return false;
    }
    int32_t E = md_model_n_embd(f->model);
    float *embd = calloc((size_t)16 * (size_t)E, sizeof(float)), score[16];
    for (int32_t j = 0; embd && j < 16; j++) {
        score[j] = 0.01f * (float)j;
        for (int32_t d = 0; d < E; d++)
            embd[(size_t)j * E + d] = 0.01f * (float)((j * 7 + d) % 13) - 0.06f;
    }
    for (int32_t i = 0; i < 4; i++)
        score[KEPT[i]] = 1.0f + (float)i;
    bool ok = embd && md_reduce_add_embd(s, embd, 16, 4, 4, score) == MD_OK &&
              md_reduce_add_embd(s, embd, 16, 4, 4, score) == MD_OK &&
              md_reduce_prefill(s, NULL, NULL, RED_QUESTION) == MD_OK;
    CHECKF(ok, "%s: %s", spec, md_reduce_error(s));
    struct md_kv_cache *kv = md_context_kv(ctx);
    int32_t n = ok ? md_kv_cache_len(kv, 0) : 0;
    CHECK(n > 0 && n <= 512 && n == s->n_rows_prompt);
    const int32_t *pos = md_kv_cache_pos(kv, 0);
    for (int32_t i = 0; ok && i < n && i < 512; i++) {
        CHECK(s->ent[0][i] == i);
        out->pos[i] = pos[i];
        out->vis[i] = s->row_vis[i];
    }
    out->n = n;
    if (ok) {
        CHECK(md_reduce_decode(s, 1) == MD_OK);
        *decode_pos = md_kv_cache_pos(kv, 0)[n];
    }
    free(embd);
    md_reduce_session_free(s);
    md_context_free(ctx);
    return ok;
}

/* First prompt row of visual block b (0 or 1), -1 if absent. */
static int32_t block_start(const struct seen *sn, int32_t b)
{
    for (int32_t i = 0, seen = -1; i < sn->n; i++)
        if (sn->vis[i] && (i == 0 || !sn->vis[i - 1]) && ++seen == b)
            return i;
    return -1;
}

static void keep(struct red_fix *f)
{
    struct seen sn;
    int32_t dpos = -1;
    if (!prefill(f, "hired:budget=0.25,pos=keep", &sn, &dpos))
        return;
    int32_t r0 = block_start(&sn, 0), r1 = block_start(&sn, 1);
    CHECK(r0 > 0 && r1 > r0 + 4);
    if (r0 <= 0 || r1 <= r0 + 4)
        return;
    for (int32_t i = 0; i < r0; i++)   /* the text before: 0, 1, 2, ... */
        CHECKF(sn.pos[i] == i, "row %d at %d", i, sn.pos[i]);
    for (int32_t k = 0; k < 4; k++) {   /* image 1's rows where they were unreduced */
        CHECKF(sn.vis[r0 + k] && sn.pos[r0 + k] == r0 + KEPT[k], "image 1 row %d at %d, want %d",
               k, sn.pos[r0 + k], r0 + KEPT[k]);
    }
    /* the text between the images continues after image 1's 16 rows */
    int32_t text = r1 - (r0 + 4);
    for (int32_t t = 0; t < text; t++)
        CHECKF(sn.pos[r0 + 4 + t] == r0 + 16 + t, "text row %d at %d, want %d", t,
               sn.pos[r0 + 4 + t], r0 + 16 + t);
    int32_t base1 = r0 + 16 + text;
    for (int32_t k = 0; k < 4; k++)
        CHECKF(sn.vis[r1 + k] && sn.pos[r1 + k] == base1 + KEPT[k], "image 2 row %d at %d, want %d",
               k, sn.pos[r1 + k], base1 + KEPT[k]);
    for (int32_t i = r1 + 4; i < sn.n; i++)   /* the question after image 2's 16 rows */
        CHECKF(sn.pos[i] == base1 + 16 + (i - r1 - 4), "row %d at %d", i, sn.pos[i]);
    /* unreduced, the prompt would be n + 2 * 12 rows long: decoding goes on there */
    CHECKF(dpos == sn.n + 24, "first generated token at %d, want %d", dpos, sn.n + 24);
}

static void renumber(struct red_fix *f)
{
    struct seen sn;
    int32_t dpos = -1;
    if (!prefill(f, "hired:budget=0.25,pos=renumber", &sn, &dpos))
        return;
    int32_t nv = 0;
    for (int32_t i = 0; i < sn.n; i++) {
        CHECKF(sn.pos[i] == i, "row %d at %d", i, sn.pos[i]);
        nv += sn.vis[i];
    }
    CHECK(nv == 8);
    CHECKF(dpos == sn.n, "first generated token at %d, want %d", dpos, sn.n);
}

/* Keeping everything, both policies give the plain packing. */
static void keep_all(struct red_fix *f)
{
    struct seen a, b;
    int32_t da = -1, db = -1;
    if (!prefill(f, "hired:budget=1,pos=keep", &a, &da) ||
        !prefill(f, "hired:budget=1,pos=renumber", &b, &db))
        return;
    CHECK(a.n == b.n && da == db && !memcmp(a.pos, b.pos, sizeof(int32_t) * (size_t)a.n));
}

int main(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-llava-mmproj-f32.gguf");
    keep(&f);
    renumber(&f);
    keep_all(&f);
    red_fix_free(&f);
    return md_test_finish("reduce_pos");
}
