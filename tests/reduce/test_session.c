/* Sessions end to end on the tiny fixtures: every method's token counts
 * (FastV per layer, random, uniform, HiRED on LLaVA-NeXT tiles), video
 * (DyCoke windows incl. the last one, stmerge, the global cap as frames
 * arrive), MustDrop's decode-mode eviction, the stats JSON, and bad input
 * answered with errors, never crashes. */
#include <math.h>

#include "red_fixture.h"
#include "session.h"
#include "vision-impl.h"

struct run {
    struct md_context *ctx;
    struct md_reduce_session *s;
};

static bool open_run(struct red_fix *f, const char *spec, struct run *r)
{
    struct md_reduce_config cfg;
    char err[256];
    memset(r, 0, sizeof *r);
    if (md_reduce_parse(spec, &cfg, err, sizeof err)) {
        CHECKF(0, "%s: %s", spec, err);
        return false;
    }
    r->ctx = red_ctx(f);
    CHECK(md_reduce_session_new(r->ctx, f->vis, &cfg, &r->s, err, sizeof err) == MD_OK);
    return r->s != NULL;
}

static void close_run(struct run *r)
{
    md_reduce_session_free(r->s);
    md_context_free(r->ctx);
}

static const struct md_reduce_stats *image_prefill(struct red_fix *f, const char *spec, struct run *r)
{
    if (!open_run(f, spec, r))
        return NULL;
    CHECK(md_reduce_add_image(r->s, f->img, f->w, f->h, f->w * 3) == MD_OK);
    CHECKF(md_reduce_prefill(r->s, NULL, NULL, RED_QUESTION) == MD_OK, "%s: %s", spec,
           md_reduce_error(r->s));
    const struct md_reduce_stats *st = md_reduce_stats(r->s);
    printf("%-34s in %d, select %d, per layer %d/%d/%d/%d (avg %.2f), KV %zu B, "
           "prefill %.3g FLOP\n", spec, st->vis_in, st->vis_after_select, st->vis_per_layer[0],
           st->vis_per_layer[1], st->vis_per_layer[2], st->vis_per_layer[3], st->vis_layer_avg,
           st->kv_bytes_prefill, st->flops_prefill);
    return st;
}

static void one_call(struct red_fix *f)
{
    struct md_reduce_config cfg;
    char err[256];
    CHECK(md_reduce_parse("hired:budget=0.5", &cfg, err, sizeof err) == MD_OK);
    struct md_context *ctx = red_ctx(f);
    struct md_reduce_session *s = NULL;
    struct md_frame fr[2] = { { f->img, f->w, f->h, f->w * 3, -1 }, { f->img, f->w, f->h, f->w * 3, -1 } };
    CHECKF(md_reduce_run(ctx, f->vis, &cfg, fr, 2, false, RED_QUESTION, &s, err, sizeof err) == MD_OK,
           "%s", err);
    CHECK(s && md_reduce_logits(s) && md_reduce_n_blocks(s) == 2 && md_reduce_stats(s)->vis_final == 16);
    md_reduce_session_free(s);
    s = NULL;
    fr[1].rgb = NULL;
    CHECK(md_reduce_run(ctx, f->vis, &cfg, fr, 2, true, RED_QUESTION, &s, err, sizeof err) ==
          MD_ERR_INVALID && strstr(err, "frame 1"));
    md_reduce_session_free(s);
    md_context_free(ctx);
}

static void images(struct red_fix *f)
{
    struct run r;
    const struct md_reduce_stats *st = image_prefill(f, "fastv:k=2,r=0.5", &r);
    /* counted after each layer's pruning (MustDrop's accounting): layer
     * K-1 = 1 already shows the cut */
    CHECK(st && st->vis_per_layer[0] == 16 && st->vis_per_layer[1] == 8);
    CHECK(st && st->vis_per_layer[2] == 8 && st->vis_per_layer[3] == 8 && st->vis_layer_avg == 10.0);
    double fastv_flops = st ? st->flops_prefill : 0;
    size_t fastv_kv = st ? st->kv_bytes_prefill : 0;
    close_run(&r);
    st = image_prefill(f, "none", &r);
    CHECK(st && st->flops_prefill > fastv_flops && st->kv_bytes_prefill > fastv_kv);
    close_run(&r);
    st = image_prefill(f, "random:keep=0.25,seed=3", &r);
    CHECK(st && st->vis_after_select == 4);
    close_run(&r);
    st = image_prefill(f, "uniform:tokens=4", &r);
    CHECK(st && st->vis_after_select == 4 && st->vis_final == 4);
    close_run(&r);
    st = image_prefill(f, "hired:budget=0.5", &r);   /* LLaVA-1.5: top int(16 * 0.5) */
    CHECK(st && st->vis_after_select == 8);
    close_run(&r);
    st = image_prefill(f, "random:keep=0", &r);      /* never an empty image */
    CHECK(st && st->vis_after_select == 1);
    close_run(&r);
    /* key tokens survive the composed selection too (a floor over the budget) */
    st = image_prefill(f, "mustdrop:tau_g=1,tau_i=1,merge=2+random:keep=0.0625", &r);
    CHECK(st && st->n_key_tokens == 2 && st->vis_after_select >= 2 && st->vis_after_select <= 3);
    CHECK(st && st->vis_final == 2);
    close_run(&r);
    st = image_prefill(f, "mustdrop:tau_g=1,tau_i=1,merge=2+uniform:tokens=1", &r);
    CHECK(st && st->vis_after_select >= 2 && st->vis_final == 2);
    close_run(&r);
    st = image_prefill(f, "mustdrop:tokens=64", &r);
    CHECK(st && st->vis_final >= st->n_key_tokens && st->n_key_tokens >= 1);
    close_run(&r);
}

/* Decode mode: with a threshold above any probability every non-key
 * vision entry goes at the first check; decoding goes on. */
static void decode_evict(struct red_fix *f)
{
    struct run r;
    const struct md_reduce_stats *st =
        image_prefill(f, "mustdrop:tau_g=0,tau_i=0,merge=2,kv=decode,evict=1,every=2", &r);
    if (!st)
        return;
    int32_t nv = md_model_n_vocab(f->model);
    CHECK(st->vis_kv_after_decode == 16);
    for (int32_t i = 0; i < 4; i++) {
        CHECK(md_reduce_decode(r.s, red_argmax(md_reduce_logits(r.s), nv)) == MD_OK);
        if (i == 0)
            CHECK(st->vis_kv_after_decode == 16);
    }
    CHECKF(st->vis_kv_after_decode == st->n_key_tokens, "after eviction %d vision entries, "
           "key %d", st->vis_kv_after_decode, st->n_key_tokens);
    CHECK(st->n_generated == 4 && st->flops_decode > 0 && st->kv_bytes_decode < st->kv_bytes_prefill + 4 * 4096);
    char json[4096];
    int n = md_reduce_stats_json(st, "a\"b", json, sizeof json);
    CHECK(n > 0 && (size_t)n < sizeof json && json[0] == '{' && json[n - 1] == '}');
    CHECK(strstr(json, "\"layer_avg\":16.000") && strstr(json, "\"spec\":\"a\\\"b\""));
    char small[16];
    CHECK(md_reduce_stats_json(st, "x", small, sizeof small) == n - 3 && strlen(small) == 15);
    printf("%s\n", json);
    close_run(&r);
}

/* Frames: the test image with the rows rolled by t (a slow pan). */
static void make_frames(struct red_fix *f, uint8_t **buf, struct md_frame *fr, int32_t n, bool still)
{
    size_t sz = (size_t)f->w * f->h * 3;
    for (int32_t t = 0; t < n; t++) {
        buf[t] = malloc(sz);
        size_t off = still ? 0 : (size_t)(t * 2 % f->h) * f->w * 3;
        memcpy(buf[t], f->img + off, sz - off);
        memcpy(buf[t] + sz - off, f->img, off);
        fr[t] = (struct md_frame){ buf[t], f->w, f->h, f->w * 3, t * 40000000LL };
    }
}

static int32_t frames_tokens(struct red_fix *f, const char *spec, int32_t n, bool still,
                             bool one_by_one)
{
    uint8_t *buf[16];
    struct md_frame fr[16];
    make_frames(f, buf, fr, n, still);
    struct run r;
    int32_t tok = -1;
    if (open_run(f, spec, &r)) {
        for (int32_t t = 0; t < n; t += one_by_one ? 1 : n)
            CHECK(md_reduce_add_frames(r.s, fr + t, one_by_one ? 1 : n) == MD_OK);
        CHECKF(md_reduce_prefill(r.s, NULL, NULL, "What happens?") == MD_OK, "%s: %s", spec,
               md_reduce_error(r.s));
        tok = md_reduce_stats(r.s)->vis_after_select;
        CHECK(md_reduce_n_blocks(r.s) == n);
        printf("%-34s %d frames -> %d visual tokens\n", spec, n, tok);
    }
    close_run(&r);
    for (int32_t t = 0; t < n; t++)
        free(buf[t]);
    return tok;
}

static void video(struct red_fix *f)
{
    /* still video: non-anchor frames keep int(0.3 * 16) = 4 tokens */
    CHECK(frames_tokens(f, "dycoke:k=0.7,window=4", 8, true, true) == 2 * (16 + 3 * 4));
    CHECK(frames_tokens(f, "dycoke:k=0.7,window=4", 6, true, false) == 28 + 16 + 4);   /* last window */
    /* (1 - k) * 16 < 1: every row would go; each pruned frame keeps one */
    CHECK(frames_tokens(f, "dycoke:k=0.95,window=4", 8, true, true) == 2 * (16 + 3 * 1));
    CHECK(frames_tokens(f, "none", 6, false, false) == 96);
    /* one 3x3 window on 4x4: always merging leaves 16-8 and 16-9 tokens per pair */
    CHECK(frames_tokens(f, "stmerge:thresh=-1,frames=2", 4, false, true) == 2 * (8 + 7));
    CHECK(frames_tokens(f, "stmerge:thresh=-1,frames=2", 3, false, true) == 15 + 8);   /* flush */
    CHECK(frames_tokens(f, "stmerge:thresh=2", 4, false, false) == 64);
    /* global cap: shared out as frames arrive */
    CHECK(frames_tokens(f, "cap:tokens=20", 4, false, true) == 20);
    CHECK(frames_tokens(f, "cap:tokens=2", 4, false, true) == 4);   /* one row per frame minimum */
    CHECK(frames_tokens(f, "random:keep=0.5+cap:tokens=30", 8, false, true) <= 30);
    /* stage (b) composed: DyCoke first, then random on each frame's survivors */
    CHECK(frames_tokens(f, "dycoke:k=0.7,window=4+random:keep=0.5", 8, true, true) ==
          2 * (8 + 3 * 2));
}

/* FlashVID and HoliTom on the 16-token frames, alone and composed with a
 * per-frame method (docs/reduction.md, "Composition"): the counts their
 * budgets give, one block per frame, the question answered. */
static void video_methods(struct red_fix *f)
{
    /* FlashVID, keep 0.25: B = 4 = 3 ADTS + 1 merged a frame at most */
    int32_t n = frames_tokens(f, "flashvid:keep=0.25", 4, false, true);
    CHECKF(n >= 4 * 3 && n <= 4 * 4, "flashvid: %d", n);
    n = frames_tokens(f, "flashvid:keep=0.25,segs=1,pos=renumber", 4, true, false);
    CHECKF(n >= 4 * 3 && n <= 4 * 4, "flashvid, one segment: %d", n);
    /* HoliTom, nothing static (tau 2): per-frame top ceil(16 r) alone, the
     * per-frame method's budget composed */
    CHECK(frames_tokens(f, "holitom:keep=0.5,tau=2", 4, false, true) == 4 * 8);
    CHECK(frames_tokens(f, "holitom:keep=0.5,tau=2+visionzip:keep=0.25", 4, false, true) == 4 * 4);
    CHECK(frames_tokens(f, "holitom:keep=0.5,tau=2+cdpruner:keep=0.25", 4, false, true) == 4 * 4);
    /* everything static (tau -1): one window, round(16 r') rows in frame 0
     * (r' = min(0.1 * 4, 1)), a placeholder row in each other frame; the
     * per-frame method passes HoliTom's rows through */
    CHECK(frames_tokens(f, "holitom:keep=0.1,tau=-1", 4, false, true) == 6 + 3);
    CHECK(frames_tokens(f, "holitom:keep=0.1,tau=-1+visionzip:keep=0.25", 4, false, true) == 6 + 3);
    CHECK(frames_tokens(f, "holitom:keep=0.1,tau=-1+cdpruner:keep=0.25", 4, false, true) == 6 + 3);
    /* still frames at the default tau: all static as well */
    CHECK(frames_tokens(f, "holitom:keep=0.1", 4, true, true) == 6 + 3);
    /* an image is not a clip: the per-frame part alone acts on it */
    struct run r;
    if (open_run(f, "holitom+random:keep=0.5", &r)) {
        CHECK(md_reduce_add_image(r.s, f->img, f->w, f->h, f->w * 3) == MD_OK);
        CHECK(md_reduce_prefill(r.s, NULL, NULL, RED_QUESTION) == MD_OK);
        CHECK(md_reduce_stats(r.s)->vis_after_select == 8);
    }
    close_run(&r);
}

/* Largest difference between the blocks of two sessions; -1 when their
 * shapes (blocks, rows, kept patches) differ. */
static double blocks_diff(const struct md_reduce_session *a, const struct md_reduce_session *b)
{
    if (a->n_blocks != b->n_blocks)
        return -1.0;
    double d = 0.0;
    for (int32_t i = 0; i < a->n_blocks; i++) {
        const struct md_block *x = &a->blocks[i], *y = &b->blocks[i];
        if (x->n != y->n || memcmp(x->src, y->src, sizeof(int32_t) * (size_t)x->n))
            return -1.0;
        for (size_t j = 0; j < (size_t)x->n * (size_t)a->E; j++) {
            double e = fabs((double)x->embd[j] - (double)y->embd[j]);
            d = e > d ? e : d;
        }
    }
    return d;
}

/* Three streams' frames through the tower together
 * (md_reduce_add_frames_multi) give each session the blocks, counts and
 * FLOPs it gets alone, a frame at a time, whatever the methods (mixed in one call, those with
 * a local merge run a frame at a time); a bad frame or a session named
 * twice fails that session only. */
static void frames_together(struct red_fix *f)
{
    static const char *specs[][3] = {
        { "none", "none", "none" },
        { "visionzip:keep=0.25", "hired", "random:keep=0.5" },
        { "mustdrop", "none", "mustdrop" },
        { "stmerge:thresh=2", "dycoke:k=0.7,window=4", "flashvid:keep=0.25" },
        { "holitom:keep=0.5,tau=2", "cap:tokens=20", "cdpruner:keep=0.25" },
    };
    const int32_t n[3] = { 3, 5, 8 }, at[3] = { 0, 3, 8 };
    uint8_t *buf[16];
    struct md_frame fr[16];
    make_frames(f, buf, fr, 16, false);
    for (size_t c = 0; c < sizeof specs / sizeof specs[0]; c++) {
        struct run alone[3], both[3];
        struct md_reduce_session *ss[3];
        const struct md_frame *frs[3];
        int rcs[3] = { -1, -1, -1 };
        bool ok = true;
        for (int k = 0; k < 3; k++) {
            ok &= open_run(f, specs[c][k], &alone[k]) & open_run(f, specs[c][k], &both[k]);
            ss[k] = both[k].s;
            frs[k] = fr + at[k];
        }
        if (ok) {
            CHECK(md_reduce_add_frames_multi(ss, frs, n, 3, rcs) == MD_OK);
            double worst = 0.0;
            for (int k = 0; k < 3; k++) {
                CHECKF(rcs[k] == MD_OK, "%s: %s", specs[c][k], md_reduce_error(ss[k]));
                for (int32_t t = 0; t < n[k]; t++)   /* alone: one tower run a frame */
                    CHECK(md_reduce_add_frames(alone[k].s, fr + at[k] + t, 1) == MD_OK);
                double d = blocks_diff(alone[k].s, ss[k]);
                const struct md_reduce_stats *x = md_reduce_stats(alone[k].s),
                                             *y = md_reduce_stats(ss[k]);
                CHECKF(d >= 0.0 && d <= 1e-5, "%s, %d frames together: blocks differ (%g)",
                       specs[c][k], n[k], d);
                CHECKF(x->vis_in == y->vis_in && x->vis_after_vision == y->vis_after_vision &&
                       x->n_images == y->n_images &&
                       fabs(x->flops_vision - y->flops_vision) <= 1e-9 * x->flops_vision,
                       "%s: stats differ (in %d/%d, after vision %d/%d, FLOPs %.6g/%.6g)",
                       specs[c][k], x->vis_in, y->vis_in, x->vis_after_vision,
                       y->vis_after_vision, x->flops_vision, y->flops_vision);
                CHECK(md_reduce_prefill(ss[k], NULL, NULL, "What happens?") == MD_OK);
                worst = d > worst ? d : worst;
            }
            printf("together: %s | %s | %s: blocks as alone (max |diff| %.2g)\n", specs[c][0],
                   specs[c][1], specs[c][2], worst);
        }
        for (int k = 0; k < 3; k++) {
            close_run(&alone[k]);
            close_run(&both[k]);
        }
    }
    /* a bad frame fails its own session; a session named twice fails */
    struct run r[2];
    if (open_run(f, "none", &r[0]) && open_run(f, "none", &r[1])) {
        struct md_frame bad[2] = { fr[0], fr[1] };
        bad[1].stride = 1;
        struct md_reduce_session *ss[3] = { r[0].s, r[1].s, r[0].s };
        const struct md_frame *frs[3] = { fr, bad, fr };
        const int32_t nn[3] = { 2, 2, 1 };
        int rcs[3];
        CHECK(md_reduce_add_frames_multi(ss, frs, nn, 3, rcs) == MD_ERR_INVALID);
        CHECKF(rcs[0] == MD_OK && md_reduce_n_blocks(r[0].s) == 2, "rc %d, %d blocks", rcs[0],
               md_reduce_n_blocks(r[0].s));
        CHECKF(rcs[1] == MD_ERR_INVALID && strstr(md_reduce_error(r[1].s), "frame 1 is bad") &&
               md_reduce_n_blocks(r[1].s) == 0, "rc %d: %s", rcs[1], md_reduce_error(r[1].s));
        CHECK(rcs[2] == MD_ERR_INVALID);
        CHECK(md_reduce_add_frames_multi(ss, frs, nn, 0, NULL) == MD_OK);
        CHECK(md_reduce_add_frames_multi(NULL, frs, nn, 1, NULL) == MD_ERR_INVALID);
    }
    close_run(&r[0]);
    close_run(&r[1]);
    for (int32_t t = 0; t < 16; t++)
        free(buf[t]);
}

/* cap:tokens=N,frames=M over a long stream, frame by frame: never more
 * than M blocks and N rows after any frame, the held bytes stop growing,
 * the blocks together stand for every frame, and questions can be asked
 * between frames (the prefill keeps the blocks). */
static void capped_stream(struct red_fix *f)
{
    uint8_t *buf[16];
    struct md_frame fr[16];
    make_frames(f, buf, fr, 16, false);
    struct run r;
    const int32_t N = 24, M = 4, n = 200;
    if (open_run(f, "dycoke:k=0.5+cap:tokens=24,frames=4", &r)) {
        size_t max_bytes = 0, bytes_at_50 = 0;
        for (int32_t t = 0; t < n; t++) {
            CHECK(md_reduce_add_frames(r.s, &fr[t % 16], 1) == MD_OK);
            CHECKF(md_reduce_n_blocks(r.s) <= M && md_reduce_n_visual(r.s) <= N,
                   "frame %d: %d blocks, %d rows", t, md_reduce_n_blocks(r.s),
                   md_reduce_n_visual(r.s));
            size_t b = md_reduce_held_bytes(r.s);
            max_bytes = b > max_bytes ? b : max_bytes;
            if (t == 49)
                bytes_at_50 = max_bytes;
            if (t == 99)
                CHECKF(md_reduce_prefill(r.s, NULL, NULL, "What happens?") == MD_OK, "%s",
                       md_reduce_error(r.s));
        }
        int32_t covered = 0;
        for (int32_t i = 0; i < r.s->n_blocks; i++)
            covered += r.s->blocks[i].n_src > 0 ? r.s->blocks[i].n_src : 1;
        CHECKF(covered == n, "blocks stand for %d frames of %d", covered, n);
        CHECKF(max_bytes == bytes_at_50, "held bytes grew from %zu to %zu", bytes_at_50, max_bytes);
        CHECK(md_reduce_prefill(r.s, NULL, NULL, "And now?") == MD_OK);
        CHECK(md_reduce_stats(r.s)->n_images == n);
        printf("cap:tokens=24,frames=4: %d frames -> %d blocks, %d rows, %zu bytes held\n", n,
               md_reduce_n_blocks(r.s), md_reduce_n_visual(r.s), max_bytes);
    }
    close_run(&r);
    for (int32_t t = 0; t < 16; t++)
        free(buf[t]);
}

/* HiRED keeping every token packs like HF's AnyRes (base, then the tile
 * grid unpadded, row-major) minus the image_newline rows. */
static void hired_packing(struct red_fix *f)
{
    struct md_anyres_plan p;
    CHECK(md_anyres_plan(&f->vis->hp, true, f->w, f->h, &p) == MD_OK);
    int32_t n = md_vision_image_tokens(f->vis, f->w, f->h), E = md_vision_n_embd(f->vis), got = 0;
    float *ref = malloc(sizeof(float) * (size_t)n * E);
    CHECK(md_vision_encode_image(f->vis, f->img, f->w, f->h, f->w * 3, ref, n, &got) == MD_OK);
    struct run r;
    if (!open_run(f, "hired:budget=1,alpha=0.5,map=geometric", &r)) {
        free(ref);
        return;
    }
    CHECK(md_reduce_add_image(r.s, f->img, f->w, f->h, f->w * 3) == MD_OK);
    const struct md_block *b = &r.s->blocks[0];
    int32_t np = md_vision_n_pos(f->vis) - 1, want = got - (p.r1 - p.r0);
    CHECKF(b->n == want, "%d rows, want %d", b->n, want);
    double worst = 0, mx = 0;
    int32_t o = 0, i = 0;
    for (; i < got && o < b->n; i++) {
        bool newline = i >= np && (i - np) % (p.c1 - p.c0 + 1) == p.c1 - p.c0;
        if (newline)
            continue;
        for (int32_t e = 0; e < E; e++) {
            worst = fmax(worst, fabs(b->embd[(size_t)o * E + e] - ref[(size_t)i * E + e]));
            mx = fmax(mx, fabs(ref[(size_t)i * E + e]));
        }
        o++;
    }
    printf("HiRED keep-all packing vs HF AnyRes without newlines: %d rows, rel err %.3g\n", o,
           worst / mx);
    CHECK(o == want && worst <= 1e-4 * mx);
    close_run(&r);
    free(ref);
}

static void next_tiles(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-llava-next-mmproj-f32.gguf");
    hired_packing(&f);
    struct run r;
    const struct md_reduce_stats *st = image_prefill(&f, "hired:budget=0.2,alpha=0.5", &r);
    int32_t plain = md_vision_image_tokens(f.vis, f.w, f.h);
    if (st) {
        int32_t P = st->vis_in / 16, total = (int32_t)(P * 16 * 0.2f);
        CHECK(st->n_parts == P && st->n_images == 1);
        CHECK(fabs(st->vis_layer_avg_per_part - st->vis_layer_avg / P) < 1e-9);
        CHECKF(st->vis_after_select <= total + P && st->vis_after_select >= P, "P %d: %d kept of budget %d",
               P, st->vis_after_select, total);
        printf("LLaVA-NeXT HiRED: %d partitions, %d tokens (HF packing: %d)\n", P, st->vis_after_select,
               plain);
    }
    close_run(&r);
    st = image_prefill(&f, "hired:budget=0.2,alpha=0.5,map=geometric", &r);
    close_run(&r);
    st = image_prefill(&f, "mustdrop:tokens=128", &r);
    CHECK(st && st->vis_after_select <= st->vis_in);
    close_run(&r);
    st = image_prefill(&f, "none", &r);
    CHECK(st && st->vis_after_select == plain);
    close_run(&r);
    red_fix_free(&f);
}

/* SigLIP (no class token): MustDrop's key set and HiRED's scores come from
 * the sampled-rows attention (docs/reduction.md); frames are pooled 2x2. */
static void onevision(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-onevision-mmproj-f32.gguf");
    char path[512], err[256];
    md_model_free(f.model);
    f.model = NULL;
    struct md_model_params mp = md_model_default_params();
    if (md_model_load(md_test_data(RED_DIR "tiny-onevision-llm-f32.gguf", path, sizeof path), &mp,
                      &f.model, err, sizeof err)) {
        CHECKF(0, "onevision LLM: %s", err);
        red_fix_free(&f);
        return;
    }
    CHECK(!md_vision_has_class_token(f.vis));
    struct run r;
    const struct md_reduce_stats *st = image_prefill(&f, "mustdrop:tau_g=1,tau_i=1", &r);
    CHECK(st && st->n_key_tokens > 0 && st->vis_final == st->n_key_tokens);
    close_run(&r);
    st = image_prefill(&f, "hired:budget=0.25", &r);
    CHECK(st && st->vis_after_select < st->vis_in);
    close_run(&r);
    CHECK(frames_tokens(&f, "dycoke:k=0.5,window=2", 4, true, true) == 2 * (4 + 2) + 1);
    CHECK(frames_tokens(&f, "mustdrop:tau_g=1,tau_i=1", 3, false, false) > 0);
    red_fix_free(&f);
}

/* Logits of the last prompt row of a session over the fixture's image,
 * with n_batch rows a pass, under spec. */
static int prefill_logits(struct red_fix *f, int32_t n_batch, const char *spec, float *out,
                          char *why, size_t n)
{
    struct md_reduce_config cfg = md_reduce_default_config();
    struct md_context_params cp = md_context_default_params();
    struct md_context *ctx = NULL;
    struct md_reduce_session *s = NULL;
    cp.n_batch = n_batch;
    int rc = md_reduce_parse(spec, &cfg, why, n);
    if (!rc)
        rc = md_context_new(f->model, &cp, &ctx, why, n);
    if (!rc)
        rc = md_reduce_session_new(ctx, f->vis, &cfg, &s, why, n);
    if (!rc)
        rc = md_reduce_add_image(s, f->img, f->w, f->h, f->w * 3);
    if (!rc)
        rc = md_reduce_prefill(s, NULL, NULL, "q");
    if (!rc)
        memcpy(out, md_reduce_logits(s), sizeof(float) * (size_t)md_model_n_vocab(f->model));
    else if (s)
        snprintf(why, n, "%s", md_reduce_error(s));
    md_reduce_session_free(s);
    md_context_free(ctx);
    return rc;
}

/* A prompt longer than n_batch: without a stage-(c) method it goes through
 * in chunks, with the logits of one batch; layer-wise pruning needs it in
 * one pass, so the context grows its batch to the prompt and gives what a
 * context made that large gives. */
static void prompt_longer_than_batch(struct red_fix *f)
{
    int32_t V = md_model_n_vocab(f->model);
    float *whole = calloc((size_t)V, sizeof(float)), *chunks = calloc((size_t)V, sizeof(float));
    char why[512] = "";
    CHECK(whole && chunks);
    CHECKF(prefill_logits(f, 4096, "none", whole, why, sizeof why) == MD_OK, "%s", why);
    CHECKF(prefill_logits(f, 16, "none", chunks, why, sizeof why) == MD_OK, "%s", why);
    double max_diff = 0;
    for (int32_t i = 0; i < V; i++)
        max_diff = fmax(max_diff, fabs((double)whole[i] - chunks[i]));
    CHECKF(max_diff < 1e-4, "chunked prefill differs from one batch by %g", max_diff);
    CHECKF(prefill_logits(f, 4096, "fastv:k=1,r=0.5", whole, why, sizeof why) == MD_OK, "%s",
           why);
    CHECKF(prefill_logits(f, 16, "fastv:k=1,r=0.5", chunks, why, sizeof why) == MD_OK, "%s", why);
    CHECK(!memcmp(whole, chunks, sizeof(float) * (size_t)V));
    free(whole);
    free(chunks);
}

static void bad_input(struct red_fix *f)
{
    char err[256] = "";
    struct md_reduce_session *s = NULL;
    CHECK(md_reduce_session_new(NULL, f->vis, NULL, &s, err, sizeof err) == MD_ERR_INVALID && !s);
    CHECK(md_reduce_add_image(NULL, f->img, 1, 1, 3) == MD_ERR_INVALID);
    CHECK(md_reduce_prefill(NULL, NULL, NULL, "q") == MD_ERR_INVALID);
    CHECK(md_reduce_decode(NULL, 1) == MD_ERR_INVALID);
    CHECK(md_reduce_logits(NULL) == NULL && md_reduce_stats(NULL) == NULL);
    struct run r;
    if (!open_run(f, "mustdrop", &r))
        return;
    CHECK(md_reduce_prefill(r.s, NULL, NULL, "q") == MD_ERR_INVALID);
    CHECK(strstr(md_reduce_error(r.s), "no image"));
    CHECK(md_reduce_decode(r.s, 1) == MD_ERR_INVALID && md_reduce_logits(r.s) == NULL);
    CHECK(md_reduce_add_image(r.s, NULL, f->w, f->h, f->w * 3) == MD_ERR_INVALID);
    CHECK(md_reduce_add_image(r.s, f->img, 0, f->h, f->w * 3) == MD_ERR_INVALID);
    CHECK(md_reduce_add_image(r.s, f->img, f->w, f->h, 2) == MD_ERR_INVALID);
    struct md_frame fr = { NULL, 4, 4, 12, 0 };
    CHECK(md_reduce_add_frames(r.s, &fr, 1) == MD_ERR_INVALID);
    CHECK(md_reduce_add_frames(r.s, &fr, 0) == MD_OK);
    float row[64] = { 0 };
    CHECK(md_reduce_add_embd(r.s, row, 0, 0, 0, NULL) == MD_ERR_INVALID);
    CHECK(md_reduce_add_embd(r.s, row, 1, 1, 1, NULL) == MD_OK);   /* a zero row works */
    CHECK(md_reduce_prefill(r.s, NULL, NULL, NULL) == MD_OK);
    CHECK(md_reduce_decode(r.s, -5) != MD_OK && md_reduce_decode(r.s, 1) == MD_OK);
    md_reduce_reset(r.s);
    CHECK(md_reduce_n_visual(r.s) == 0 && md_reduce_prefill(r.s, NULL, NULL, "q") == MD_ERR_INVALID);
    close_run(&r);
    prompt_longer_than_batch(f);
}

/* VisionZip and CDPruner on the fixture: per-image counts, the stats, a
 * CDPruner session re-asked with another question re-selects from the
 * whole image (the blocks keep every row until the prefill). */
static void new_methods(struct red_fix *f)
{
    struct run r;
    const struct md_reduce_stats *st = image_prefill(f, "visionzip:keep=0.5", &r);
    CHECK(st && st->vis_in == 16 && st->vis_after_select == 8 && st->vis_final == 8);
    close_run(&r);
    st = image_prefill(f, "visionzip:tokens=5,dominant=0.6+fastv:k=2,r=0.4", &r);
    CHECK(st && st->vis_after_select == 5 && st->vis_final == 3);
    close_run(&r);
    st = image_prefill(f, "cdpruner:tokens=5", &r);
    CHECK(st && st->vis_after_select == 5 && md_reduce_n_visual(r.s) == 16);
    if (st) {
        CHECK(md_reduce_prefill(r.s, NULL, NULL, "Which colour is the sky above the house?") == MD_OK);
        CHECK(md_reduce_stats(r.s)->vis_after_select == 5);
        CHECK(md_reduce_prefill(r.s, NULL, NULL, "") == MD_OK);   /* no instruction: diversity */
        CHECK(md_reduce_stats(r.s)->vis_after_select == 5);
    }
    close_run(&r);
    st = image_prefill(f, "cdpruner:keep=0.25,pos=keep", &r);
    CHECK(st && st->vis_after_select == 4);
    close_run(&r);
}

int main(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-llava-mmproj-f32.gguf");
    images(&f);
    one_call(&f);
    decode_evict(&f);
    video(&f);
    capped_stream(&f);
    frames_together(&f);
    video_methods(&f);
    new_methods(&f);
    bad_input(&f);
    red_fix_free(&f);
    next_tiles();
    onevision();
    return md_test_finish("reduce_session");
}
