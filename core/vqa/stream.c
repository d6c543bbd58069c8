/* md_vqa streams: the frames an answer is about, and the one rule that
 * samples them (the element, the CLI and the evaluator all go through it,
 * so the same clip gives the same frames everywhere). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vqa-impl.h"

int32_t vqa_frame_tokens(const struct md_vqa *v)
{
    return md_vision_frame_tokens(v->vision) + (md_vision_video_is_block(v->vision) ? 1 : 0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(struct md_vqa_stream *s, int rc, const char *what)
{
    snprintf(s->err, sizeof s->err, "%s", what);
    return rc;
}

/* Growing: the cap on visual tokens, lowered until the prompt with its frame
 * blocks, the question and an answer fit the context. */
static int fit_cap(struct md_vqa_stream *s, char *err, size_t errlen)
{
    struct md_vqa *v = s->vqa;
    char typical[VQA_QUESTION_EST * 2 + 1];
    memset(typical, 'a', VQA_QUESTION_EST * 2);   /* about VQA_QUESTION_EST tokens */
    for (int i = 1; i < VQA_QUESTION_EST * 2; i += 2)
        typical[i] = ' ';
    typical[VQA_QUESTION_EST * 2] = '\0';
    int64_t q, text = vqa_prompt_tokens(v, NULL, s->question_hint ? s->question_hint : typical,
                                        NULL, &q);
    int64_t cap = s->max_visual_tokens ? s->max_visual_tokens
                  : s->cfg.max_visual_tokens > 0 ? s->cfg.max_visual_tokens
                                                 : VQA_AUTO_VISUAL_TOKENS;
    if (s->cfg.max_visual_frames <= 0)
        s->cfg.max_visual_frames = s->max_frames;
    int32_t frames = s->cfg.max_visual_frames, n_ctx = md_context_n_ctx(v->ctx);
    int64_t room = (int64_t)n_ctx - s->max_new_tokens - text - (int64_t)VQA_BLOCK_TEXT * frames;
    if (cap > room) {
        vqa_log(v, MD_LOG_INFO, "visual-token cap %lld lowered to %lld to fit the context (%d)",
                (long long)cap, (long long)room, n_ctx);
        cap = room;
    }
    if (cap < frames) {
        if (room + q >= frames)
            vqa_no_room(v, q, text, frames, err, errlen);
        else
            snprintf(err, errlen, "the context (%d tokens) leaves room for %lld visual tokens, "
                     "fewer than one per frame block (%d); raise the context size or lower "
                     "max_frames / max_new_tokens", n_ctx, (long long)room, frames);
        return MD_ERR_CONTEXT_FULL;
    }
    s->cfg.max_visual_tokens = (int32_t)cap;
    return MD_OK;
}

struct md_vqa_stream_params md_vqa_stream_default_params(const struct md_vqa *v)
{
    const struct md_vqa_params *p = &v->params;
    return (struct md_vqa_stream_params){
        .sample_fps = p->sample_fps, .max_frames = p->max_frames, .reduce = NULL,
        .max_visual_tokens = p->max_visual_tokens, .question_hint = p->question_hint,
        .max_new_tokens = p->max_new_tokens,
    };
}

/* The stream's settings, checked; its reduction config parsed. */
static int take_params(struct md_vqa_stream *s, const struct md_vqa_stream_params *p, char *err,
                       size_t errlen)
{
    struct md_vqa *v = s->vqa;
    if (!(p->sample_fps >= 0) || p->max_frames < 1 || p->max_visual_tokens < 0 ||
        p->max_new_tokens < 1) {
        snprintf(err, errlen, "invalid stream parameters: sample_fps %g, max_frames %d, "
                 "max_visual_tokens %d, max_new_tokens %d", p->sample_fps, p->max_frames,
                 p->max_visual_tokens, p->max_new_tokens);
        return MD_ERR_INVALID;
    }
    s->sample_fps = p->sample_fps;
    s->max_frames = p->max_frames;
    s->max_visual_tokens = p->max_visual_tokens;
    s->max_new_tokens = p->max_new_tokens;
    if (p->question_hint && !(s->question_hint = strdup(p->question_hint))) {
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    s->cfg = vqa_config(v);
    char why[256];
    if (p->reduce && md_reduce_parse(p->reduce, &s->cfg, why, sizeof why) != MD_OK) {
        snprintf(err, errlen, "invalid reduce spec '%s': %s", p->reduce, why);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

int md_vqa_stream_new_with(struct md_vqa *v, enum md_vqa_mode mode,
                           const struct md_vqa_stream_params *params,
                           struct md_vqa_stream **out, char *err, size_t errlen)
{
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    if (!v || !params || (mode != MD_VQA_WINDOW && mode != MD_VQA_GROWING)) {
        snprintf(err, errlen, "stream: no engine, no parameters or an unknown mode");
        return MD_ERR_INVALID;
    }
    struct md_vqa_stream *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    s->vqa = v;
    s->mode = mode;
    int rc = take_params(s, params, err, errlen);
    if (!rc && mode == MD_VQA_GROWING) {
        rc = fit_cap(s, err, errlen);
        if (!rc)
            rc = md_reduce_session_new(v->ctx, v->vision, &s->cfg, &s->session, err, errlen);
    }
    if (rc) {
        md_vqa_stream_free(s);
        return rc;
    }
    md_reduce_format(&s->cfg, s->spec, sizeof s->spec);
    md_vqa_stream_reset(s);
    *out = s;
    return MD_OK;
}

int md_vqa_stream_new(struct md_vqa *v, enum md_vqa_mode mode, struct md_vqa_stream **out,
                      char *err, size_t errlen)
{
    if (!v) {
        if (out)
            *out = NULL;
        snprintf(err, errlen, "stream: no engine");
        return MD_ERR_INVALID;
    }
    struct md_vqa_stream_params p = md_vqa_stream_default_params(v);
    return md_vqa_stream_new_with(v, mode, &p, out, err, errlen);
}

const char *md_vqa_stream_reduce_spec(const struct md_vqa_stream *s) { return s->spec; }

static void free_blocks(struct md_vqa_stream *s)
{
    for (int32_t i = 0; i < s->n_blocks; i++)
        free(s->blocks[i].rgb);
    s->n_blocks = 0;
}

void md_vqa_stream_free(struct md_vqa_stream *s)
{
    if (!s)
        return;
    free_blocks(s);
    free(s->blocks);
    md_reduce_session_free(s->session);
    free(s->question_hint);
    free(s);
}

void md_vqa_stream_reset(struct md_vqa_stream *s)
{
    free_blocks(s);
    md_vqa_grid_init(&s->grid, s->sample_fps);
    s->keep_every = 1;
    s->seen = 0;
    s->n_added = 0;
    s->first_pts = s->last_pts = -1;
    s->encode_ms = 0;
    s->err[0] = '\0';
    if (s->session) {
        /* the reset clears the engine's KV cache: not under another's answer */
        vqa_turn_take(s, false, NULL);
        md_reduce_reset(s->session);
        vqa_turn_give(s->vqa);
    }
}

void md_vqa_stream_set_client(struct md_vqa_stream *s, const void *client,
                              md_abort_callback abort, void *abort_user)
{
    s->client = client;
    s->abort = abort;
    s->abort_user = abort_user;
}

void md_vqa_grid_init(struct md_vqa_grid *g, double sample_fps)
{
    /* 1 ns .. 1e6 s between samples */
    double dt = sample_fps > 0 ? 1e9 / sample_fps : 0;
    g->step_ns = sample_fps <= 0 ? 0 : dt < 1 ? 1 : dt > 1e15 ? (int64_t)1e15 : (int64_t)dt;
    g->origin_ns = g->next_ns = -1;
    g->max_points = g->taken = 0;
}

void md_vqa_grid_span(struct md_vqa_grid *g, int64_t start_ns, int64_t span_ns,
                      int32_t max_frames)
{
    if (span_ns <= 0 || max_frames <= 0)
        return;
    int64_t step = (span_ns + max_frames - 1) / max_frames;
    g->step_ns = step > g->step_ns ? step : g->step_ns;
    g->origin_ns = g->next_ns = start_ns < 0 ? 0 : start_ns;
    g->max_points = max_frames;
}

bool md_vqa_grid_take(struct md_vqa_grid *g, int64_t pts_ns)
{
    if (pts_ns < 0 || (g->origin_ns >= 0 && pts_ns < g->origin_ns))
        return false;
    if (g->origin_ns < 0)
        g->origin_ns = g->next_ns = pts_ns;
    if (g->max_points && g->taken >= g->max_points)
        return false;
    if (g->step_ns && pts_ns < g->next_ns)
        return false;
    if (g->step_ns)
        g->next_ns = g->origin_ns + ((pts_ns - g->origin_ns) / g->step_ns + 1) * g->step_ns;
    g->taken++;
    return true;
}

void md_vqa_stream_set_span(struct md_vqa_stream *s, int64_t start_ns, int64_t span_ns)
{
    if (s->mode == MD_VQA_WINDOW)
        md_vqa_grid_span(&s->grid, start_ns, span_ns, s->max_frames);
}

bool md_vqa_stream_offer(struct md_vqa_stream *s, int64_t pts_ns)
{
    if (!md_vqa_grid_take(&s->grid, pts_ns))
        return false;
    /* a full window takes only every keep_every-th sampled frame */
    return s->mode == MD_VQA_GROWING || s->seen++ % s->keep_every == 0;
}

static int32_t count_frames(const struct md_vqa_stream *s)
{
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_blocks; i++)
        n += !s->blocks[i].image;
    return n;
}

/* A full window (no span known) keeps every other frame and halves its
 * intake, so the kept frames stay spread over what came so far. Images stay. */
static void thin(struct md_vqa_stream *s)
{
    int32_t k = 0, f = 0;
    for (int32_t i = 0; i < s->n_blocks; i++) {
        if (s->blocks[i].image || f++ % 2 == 0)
            s->blocks[k++] = s->blocks[i];
        else
            free(s->blocks[i].rgb);
    }
    s->n_blocks = k;
    s->keep_every *= 2;
    s->seen = 1;
}

static int hold(struct md_vqa_stream *s, const uint8_t *rgb, int32_t w, int32_t h, int32_t stride,
                int64_t pts, bool image)
{
    if (!rgb || w <= 0 || h <= 0 || stride < w * 3)
        return fail(s, MD_ERR_INVALID, "a frame without pixels or with a bad size");
    if (!image && count_frames(s) >= s->max_frames)
        thin(s);
    if (s->n_blocks == s->cap_blocks) {
        int32_t cap = s->cap_blocks ? 2 * s->cap_blocks : 8;
        struct vqa_block *b = realloc(s->blocks, sizeof *b * (size_t)cap);
        if (!b)
            return fail(s, MD_ERR_NOMEM, "out of memory for a frame");
        s->blocks = b;
        s->cap_blocks = cap;
    }
    size_t row = (size_t)w * 3;
    uint8_t *copy = malloc(row * (size_t)h);
    if (!copy)
        return fail(s, MD_ERR_NOMEM, "out of memory for a frame");
    for (int32_t y = 0; y < h; y++)
        memcpy(copy + row * (size_t)y, rgb + (size_t)stride * (size_t)y, row);
    s->blocks[s->n_blocks++] = (struct vqa_block){ copy, w, h, (int32_t)row, pts, image };
    return MD_OK;
}

static void note_pts(struct md_vqa_stream *s, int64_t pts)
{
    if (pts < 0)
        return;
    if (s->first_pts < 0)
        s->first_pts = pts;
    s->last_pts = pts;
}

int md_vqa_stream_add(struct md_vqa_stream *s, const struct md_frame *f)
{
    if (!s || !f)
        return MD_ERR_INVALID;
    int rc;
    if (s->mode == MD_VQA_WINDOW) {
        rc = hold(s, f->rgb, f->width, f->height, f->stride, f->pts_ns, false);
    } else {
        if (vqa_turn_take(s, true, NULL))
            return fail(s, MD_ERR_ABORTED, "aborted");
        double t0 = now_ms();
        rc = vqa_aborted(s->vqa) ? MD_ERR_ABORTED : md_reduce_add_frames(s->session, f, 1);
        s->encode_ms += now_ms() - t0;
        vqa_turn_give(s->vqa);
        if (rc == MD_ERR_ABORTED)
            return fail(s, rc, "aborted");
        if (rc)
            return fail(s, rc, md_reduce_error(s->session));
    }
    if (!rc) {
        s->n_added++;
        note_pts(s, f->pts_ns);
    }
    return rc;
}

int md_vqa_stream_add_image(struct md_vqa_stream *s, const uint8_t *rgb, int32_t width,
                            int32_t height, int32_t stride)
{
    if (!s)
        return MD_ERR_INVALID;
    if (s->mode != MD_VQA_WINDOW)
        return fail(s, MD_ERR_INVALID, "still images go to window streams");
    int rc = hold(s, rgb, width, height, stride, -1, true);
    if (!rc)
        s->n_added++;
    return rc;
}

int md_vqa_stream_clone(const struct md_vqa_stream *s, struct md_vqa_stream **out, char *err,
                        size_t errlen)
{
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    if (!s || s->mode != MD_VQA_WINDOW) {
        snprintf(err, errlen, "only window streams can be copied");
        return MD_ERR_INVALID;
    }
    struct md_vqa_stream *c;
    struct md_vqa_stream_params p = {
        .sample_fps = s->sample_fps, .max_frames = s->max_frames, .reduce = NULL,
        .max_visual_tokens = s->max_visual_tokens, .question_hint = s->question_hint,
        .max_new_tokens = s->max_new_tokens,
    };
    int rc = md_vqa_stream_new_with(s->vqa, MD_VQA_WINDOW, &p, &c, err, errlen);
    if (!rc) {   /* the same reduction, without a round trip through its text */
        c->cfg = s->cfg;
        memcpy(c->spec, s->spec, sizeof c->spec);
    }
    for (int32_t i = 0; !rc && i < s->n_blocks; i++) {
        const struct vqa_block *b = &s->blocks[i];
        /* blocks copy as they are: no thinning on the way */
        rc = hold(c, b->rgb, b->width, b->height, b->stride, b->pts_ns, true);
        if (!rc)
            c->blocks[c->n_blocks - 1].image = b->image;
    }
    if (rc) {
        snprintf(err, errlen, "%s", c && c->err[0] ? c->err : "out of memory");
        md_vqa_stream_free(c);
        return rc;
    }
    c->grid = s->grid;
    md_vqa_stream_set_client(c, s->client, s->abort, s->abort_user);
    c->keep_every = s->keep_every;
    c->seen = s->seen;
    c->n_added = s->n_added;
    c->first_pts = s->first_pts;
    c->last_pts = s->last_pts;
    *out = c;
    return MD_OK;
}

int32_t md_vqa_stream_n_frames(const struct md_vqa_stream *s)
{
    return s->mode == MD_VQA_WINDOW ? s->n_blocks : s->n_added;
}

int64_t md_vqa_stream_frame_pts(const struct md_vqa_stream *s, int32_t i)
{
    if (s->mode != MD_VQA_WINDOW || i < 0 || i >= s->n_blocks || s->blocks[i].image)
        return -1;
    return s->blocks[i].pts_ns;
}

int64_t md_vqa_stream_first_pts(const struct md_vqa_stream *s) { return s->first_pts; }
int64_t md_vqa_stream_last_pts(const struct md_vqa_stream *s) { return s->last_pts; }

int32_t md_vqa_stream_visual_tokens(const struct md_vqa_stream *s)
{
    return s->session ? md_reduce_n_visual(s->session) : 0;
}

size_t md_vqa_stream_held_bytes(const struct md_vqa_stream *s)
{
    if (s->session)
        return md_reduce_held_bytes(s->session);
    size_t n = 0;
    for (int32_t i = 0; i < s->n_blocks; i++)
        n += (size_t)s->blocks[i].stride * (size_t)s->blocks[i].height;
    return n;
}

int32_t md_vqa_stream_visual_cap(const struct md_vqa_stream *s)
{
    return s->mode == MD_VQA_GROWING ? s->cfg.max_visual_tokens : 0;
}

const char *md_vqa_stream_error(const struct md_vqa_stream *s) { return s->err; }
