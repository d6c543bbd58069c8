/* md_vqa answers: fit the frames into the context, encode, prefill through
 * the reduction session ("none" included), generate (free, or constrained
 * to a JSON schema), or score the choices (choices.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "tokenizer.h"
#include "unicode.h"
#include "vqa-impl.h"

struct md_vqa_ask md_vqa_default_ask(const char *question)
{
    struct md_vqa_ask a = { .question = question, .sampling = md_sampler_default_params() };
    a.sampling.temp = 0.0f;   /* greedy: the same frames give the same answer */
    return a;
}

void md_vqa_answer_clear(struct md_vqa_answer *a)
{
    if (!a)
        return;
    free(a->text);
    md_value_free(a->value);
    memset(a, 0, sizeof *a);
    a->choice = -1;
}

/* A growing text buffer, NUL-terminated. */
struct text {
    char *buf;
    size_t len, cap;
};

static int text_add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *b = realloc(t->buf, cap);
        if (!b)
            return MD_ERR_NOMEM;
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
    return MD_OK;
}

/* Whether s[i..len) is the start of a character cut off by the end of the
 * text (a token may end inside one): a lead byte and only continuations. */
static bool cut_at_end(const char *s, size_t i, size_t len)
{
    uint8_t c = (uint8_t)s[i];
    size_t need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3
                  : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (!need || i + need <= len)
        return false;
    for (size_t k = i + 1; k < len; k++)
        if (((uint8_t)s[k] & 0xc0) != 0x80)
            return false;
    return true;
}

/* s as valid UTF-8: invalid bytes become U+FFFD (a model may emit a lone byte
 * token); with `so_far`, a character cut off at the end is left out (more
 * tokens may complete it). NULL when out of memory. */
static char *repair_utf8(const char *s, size_t len, bool so_far)
{
    static const char replacement[] = "\xef\xbf\xbd";
    struct text t = { 0 };
    if (text_add(&t, "", 0))
        return NULL;
    for (size_t i = 0; i < len;) {
        if (so_far && cut_at_end(s, i, len))
            break;
        uint32_t cp;
        size_t k = md_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        k = k ? k : 1;
        bool bad = cp == MD_CP_INVALID;
        if (text_add(&t, bad ? replacement : s + i, bad ? 3 : k)) {
            free(t.buf);
            return NULL;
        }
        i += k;
    }
    return t.buf;
}

/* The answer as it is handed out: valid UTF-8, surrounding whitespace
 * removed. */
static char *finish_text(const char *s, size_t len)
{
    char *t = repair_utf8(s, len, false);
    if (!t)
        return NULL;
    size_t a = 0, b = strlen(t);
    while (a < b && strchr(" \t\r\n\f\v", t[a]))
        a++;
    while (b > a && strchr(" \t\r\n\f\v", t[b - 1]))
        b--;
    memmove(t, t + a, b - a);
    t[b - a] = '\0';
    return t;
}

/* A JSON-schema answer in progress: the matcher's state and the buffers
 * the mask needs. */
struct constraint {
    const struct md_grammar *g;
    const struct md_pieces *pieces;
    struct md_gstate st;
    bool *allowed;              /* [n_vocab] */
    float *logits;              /* [n_vocab] masked */
};

/* c->logits: every token the grammar cannot take at -inf (the end of
 * generation only once the value is complete). MD_ERR_UNSUPPORTED with err
 * when no token can continue (a vocabulary without the bytes needed). */
static int constrain(struct constraint *c, const struct md_vocab *vocab, const float *logits,
                     int32_t n_vocab, char *err, size_t errlen)
{
    int64_t n = md_grammar_mask(c->g, &c->st, c->pieces, c->allowed);
    if (n < 0) {
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    bool end = md_gstate_complete(c->g, &c->st);
    for (int32_t t = 0; t < n_vocab; t++)
        c->logits[t] = c->allowed[t] || (end && md_vocab_is_eog(vocab, t)) ? logits[t]
                                                                            : -INFINITY;
    if (n == 0 && !end) {
        snprintf(err, errlen, "no token of the vocabulary continues the JSON answer");
        return MD_ERR_UNSUPPORTED;
    }
    return MD_OK;
}

/* The sampler's pick, or the first token the grammar allows when the model
 * gives every allowed token -inf (the pick is then arbitrary). */
static int32_t allowed_pick(const struct constraint *c, const struct md_vocab *vocab,
                            int32_t tok, int32_t n_vocab)
{
    bool end = md_gstate_complete(c->g, &c->st);
    if (tok >= 0 && (c->allowed[tok] || (end && md_vocab_is_eog(vocab, tok))))
        return tok;
    for (int32_t t = 0; t < n_vocab; t++)
        if (c->allowed[t] || (end && md_vocab_is_eog(vocab, t)))
            return t;
    return -1;
}

int vqa_gen_init(struct vqa_gen *g, struct md_vqa_stream *s, struct md_reduce_session *rs,
                 const struct md_vqa_ask *ask, int32_t max_new, struct md_vqa_answer *out,
                 char *err, size_t errlen)
{
    *g = (struct vqa_gen){ .s = s, .rs = rs, .ask = ask, .max_new = max_new, .out = out,
                           .err = err, .errlen = errlen };
    g->smp = md_sampler_new(&ask->sampling);
    if (!g->smp) {
        snprintf(err, errlen, "invalid sampling parameters");
        return MD_ERR_INVALID;
    }
    struct text t = { 0 };
    int rc = text_add(&t, "", 0);
    g->text = t.buf;
    g->len = t.len;
    g->cap = t.cap;
    return rc;
}

static bool gen_aborted(const struct vqa_gen *g)
{
    const struct md_vqa_stream *s = g->s;
    return vqa_aborted(s->vqa) || (g->own_abort && s->abort && s->abort(s->abort_user));
}

/* The piece of tok added to the text (and fed to the grammar). */
static int gen_add_piece(struct vqa_gen *g, int32_t tok)
{
    const struct md_vocab *vocab = md_model_vocab(g->s->vqa->model);
    struct text t = { g->text, g->len, g->cap };
    /* a piece longer than the buffer (a hostile vocab) is fetched whole,
     * never cut: the grammar's mask judged all of its bytes */
    char small[256], *piece = small;
    int32_t np = md_token_to_piece(vocab, tok, small, sizeof small, false);
    int rc = MD_OK;
    if (np > (int32_t)sizeof small) {
        piece = malloc((size_t)np);
        rc = piece ? MD_OK : MD_ERR_NOMEM;
        np = piece ? md_token_to_piece(vocab, tok, piece, np, false) : 0;
    }
    if (!rc && np > 0)
        rc = text_add(&t, piece, (size_t)np);
    if (!rc && g->c && np > 0)
        md_gstate_feed_bytes(g->c->g, &g->c->st, piece, (size_t)np);   /* the mask let it in */
    if (piece != small)
        free(piece);
    g->text = t.buf;
    g->len = t.len;
    g->cap = t.cap;
    return rc;
}

/* Up to max_new tokens, stopping at the end of generation, on_token's
 * refusal or an abort; with a constraint, only tokens the grammar takes,
 * until the value closes. */
int vqa_gen_next(struct vqa_gen *g, int32_t *tok_out)
{
    struct md_vqa *v = g->s->vqa;
    const struct md_vocab *vocab = md_model_vocab(v->model);
    int32_t n_vocab = md_model_n_vocab(v->model);
    struct constraint *c = g->c;
    *tok_out = -1;
    if (g->i >= g->max_new)
        return MD_OK;
    if (gen_aborted(g))
        return MD_ERR_ABORTED;
    if (c && md_gstate_finished(&c->st))
        return MD_OK;
    const float *logits = md_reduce_logits(g->rs);
    int rc;
    if (c && (rc = constrain(c, vocab, logits, n_vocab, g->err, g->errlen)))
        return rc;
    int32_t tok = md_sampler_sample(g->smp, c ? c->logits : logits, n_vocab);
    if (c)
        tok = allowed_pick(c, vocab, tok, n_vocab);
    if (tok < 0 || ((!g->ask->ignore_eos || c) && md_vocab_is_eog(vocab, tok)))
        return MD_OK;
    if ((rc = gen_add_piece(g, tok)))
        return rc;
    g->out->generated_tokens++;
    if (g->ask->on_token) {
        char *so_far = repair_utf8(g->text, g->len, true);
        bool go_on = !so_far || g->ask->on_token(so_far, tok, g->ask->token_user);
        free(so_far);
        if (!go_on) {
            g->out->stopped = true;
            return MD_OK;
        }
    }
    if (++g->i >= g->max_new) {
        g->out->stopped = true;
        return MD_OK;
    }
    *tok_out = tok;
    return MD_OK;
}

int vqa_gen_end(struct vqa_gen *g, int rc)
{
    md_sampler_free(g->smp);
    if (!rc && !(g->out->text = finish_text(g->text, g->len)))
        rc = MD_ERR_NOMEM;
    free(g->text);
    g->smp = NULL;
    g->text = NULL;
    return rc;
}

/* Generate after a prefill, one token decoded at a time. */
static int generate(struct md_vqa_stream *s, struct md_reduce_session *rs,
                    const struct md_vqa_ask *ask, int32_t max_new, struct constraint *c,
                    struct md_vqa_answer *out, char *err, size_t errlen)
{
    struct vqa_gen g;
    int rc = vqa_gen_init(&g, s, rs, ask, max_new, out, err, errlen);
    if (rc == MD_ERR_INVALID)
        return rc;
    g.c = c;
    for (int32_t tok; !rc && !(rc = vqa_gen_next(&g, &tok)) && tok >= 0;) {
        rc = md_reduce_decode(rs, tok);
        if (rc && rc != MD_ERR_ABORTED)
            snprintf(err, errlen, "decode: %s", md_reduce_error(rs));
    }
    return vqa_gen_end(&g, rc);
}

/* Build the engine's pieces once. */
static int ensure_pieces(struct md_vqa *v, char *err, size_t errlen)
{
    if (v->pieces)
        return MD_OK;
    int rc = md_pieces_from_vocab(md_model_vocab(v->model), &v->pieces);
    if (rc)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* Generate under the schema's grammar; the text must close the value
 * (an unfinished one is an error, never an answer), then it is parsed. */
static int generate_json(struct md_vqa_stream *s, struct md_reduce_session *rs,
                         const struct md_vqa_ask *ask, int32_t max_new,
                         struct md_vqa_answer *out, char *err, size_t errlen)
{
    struct md_vqa *v = s->vqa;
    struct md_grammar *g;
    int rc = md_grammar_compile(ask->json_schema, &g, err, errlen);
    if (rc)
        return rc;
    int32_t n_vocab = md_model_n_vocab(v->model);
    struct constraint c = { .g = g, .allowed = malloc(sizeof(bool) * (size_t)n_vocab),
                            .logits = malloc(sizeof(float) * (size_t)n_vocab) };
    rc = c.allowed && c.logits ? ensure_pieces(v, err, errlen) : MD_ERR_NOMEM;
    c.pieces = v->pieces;
    md_gstate_init(g, &c.st);
    if (!rc)
        rc = generate(s, rs, ask, max_new, &c, out, err, errlen);
    if (!rc && !md_gstate_complete(g, &c.st)) {
        snprintf(err, errlen, "the JSON answer was not complete after %d tokens: raise "
                 "max_new_tokens or lower the schema's maxLength", out->generated_tokens);
        rc = MD_ERR_INVALID;
    }
    if (!rc && !(out->value = md_value_from_json(out->text))) {
        snprintf(err, errlen, "the JSON answer does not parse: %s", out->text);
        rc = MD_ERR_INVALID;
    }
    out->stopped = rc ? out->stopped : false;
    if (rc == MD_ERR_NOMEM && !*err)
        snprintf(err, errlen, "out of memory");
    free(c.allowed);
    free(c.logits);
    md_grammar_free(g);
    return rc;
}

/* Visual tokens of a window's block. */
static int32_t block_tokens(const struct md_vqa *v, const struct vqa_block *b)
{
    return b->image ? md_vision_image_tokens(v->vision, b->width, b->height)
                    : md_vision_frame_tokens(v->vision);
}

static int32_t count_frames(const struct md_vqa_stream *s)
{
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_blocks; i++)
        n += !s->blocks[i].image;
    return n;
}

/* How many of a window's frames fit the context beside the text and an
 * answer (images always go in whole); -1 with err when not even one does,
 * or the images alone do not. */
static int32_t frames_that_fit(const struct md_vqa_stream *s, int32_t n_ctx, int64_t text,
                               int64_t q, int32_t max_new, char *err, size_t errlen)
{
    const struct md_vqa *v = s->vqa;
    int32_t n_frames = count_frames(s);
    /* OneVision: one <video> block (its marker text and newline row once);
     * the others: one <image> block a frame */
    bool one_block = md_vision_video_is_block(v->vision);
    int32_t per = md_vision_frame_tokens(v->vision) + (one_block ? 0 : VQA_BLOCK_TEXT);
    int32_t block = one_block ? 1 + VQA_BLOCK_TEXT : 0;
    int64_t images = 0;
    for (int32_t i = 0; i < s->n_blocks; i++)
        images += s->blocks[i].image ? block_tokens(v, &s->blocks[i]) + VQA_BLOCK_TEXT : 0;
    int64_t room = (int64_t)n_ctx - max_new - text - images;
    if (room < per + block)   /* leave at least one frame and a few tokens of answer */
        room = (int64_t)n_ctx - text - images - VQA_ANSWER_MIN;
    int32_t fit = room - block >= per ? (int32_t)((room - block) / per) : 0;
    if (room < 0 || (n_frames > 0 && fit == 0)) {
        if (err)
            vqa_no_room(v, q, text, images + (n_frames > 0 ? per + block : 0), err, errlen);
        return -1;
    }
    return fit;
}

static bool has_images(const struct md_vqa_stream *s)
{
    for (int32_t i = 0; i < s->n_blocks; i++)
        if (s->blocks[i].image)
            return true;
    return false;
}

/* Whether frame block f (the f-th frame of n_frames) is kept when `want`
 * of them are: the one nearest the centre of each of `want` equal parts.
 * *next counts the kept ones so far. */
static bool frame_kept(int32_t f, int32_t n_frames, int32_t want, int32_t *next)
{
    if (*next >= want)
        return false;
    int32_t k = (int32_t)(((int64_t)*next * n_frames + n_frames / (2 * want)) / want);
    if (f != k)
        return false;
    ++*next;
    return true;
}

/* The window's frames to encode when `fit` fit (all, or spread uniformly),
 * in order, into fr (room for count_frames). */
static int32_t kept_frames(struct md_vqa_stream *s, int32_t fit, struct md_frame *fr)
{
    int32_t n_frames = count_frames(s), want = n_frames < fit ? n_frames : fit, f = 0, next = 0;
    if (n_frames > fit)
        vqa_log(s->vqa, MD_LOG_INFO, "%d frames, %d fit the context: spread uniformly", n_frames,
                fit);
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_blocks; i++) {
        const struct vqa_block *b = &s->blocks[i];
        if (!b->image && frame_kept(f++, n_frames, want, &next))
            fr[n++] = (struct md_frame){ b->rgb, b->width, b->height, b->stride, b->pts_ns };
    }
    return n;
}

/* Frames fr[0..n) went in: out counts them and their span. */
static void frames_added(struct md_vqa_answer *out, const struct md_frame *fr, int32_t n)
{
    if (n > 0 && out->first_pts_ns < 0)
        out->first_pts_ns = fr[0].pts_ns;
    if (n > 0)
        out->last_pts_ns = fr[n - 1].pts_ns;
    out->frames += n;
}

/* A window's blocks into the session: every image, and the frames that fit
 * (kept_frames); each run of frames between images in one call, so that
 * they share tower runs. */
static int add_blocks(struct md_vqa_stream *s, struct md_reduce_session *rs, int32_t fit,
                      struct md_vqa_answer *out)
{
    struct md_vqa *v = s->vqa;
    int32_t n_frames = count_frames(s);
    struct md_frame *fr = malloc(sizeof *fr * (size_t)(n_frames ? n_frames : 1));
    if (!fr)
        return MD_ERR_NOMEM;
    const int32_t n = kept_frames(s, fit, fr);
    int32_t done = 0, next = 0;
    int rc = MD_OK;
    out->first_pts_ns = out->last_pts_ns = -1;
    /* the kept frames before each image, then the image; a kept frame is
     * known by its pixels (every block holds its own copy) */
    for (int32_t i = 0; i <= s->n_blocks && !rc; i++) {
        const struct vqa_block *b = i < s->n_blocks ? &s->blocks[i] : NULL;
        if (b && !b->image) {
            next += next < n && fr[next].rgb == b->rgb;
            continue;
        }
        int32_t run = next - done;
        if (vqa_aborted(v))
            rc = MD_ERR_ABORTED;
        if (!rc && run > 0 && !(rc = md_reduce_add_frames(rs, fr + done, run)))
            frames_added(out, fr + done, run);
        done = next;
        if (!rc && b && !(rc = md_reduce_add_image(rs, b->rgb, b->width, b->height, b->stride)))
            out->frames++;
    }
    free(fr);
    return rc;
}

void vqa_fill_stats(const struct md_vqa_stream *s, const struct md_reduce_session *rs,
                    struct md_vqa_answer *out)
{
    const struct md_reduce_stats *st = md_reduce_stats(rs);
    out->stats = *st;
    out->visual_tokens = st->vis_in > 0 ? st->vis_in : 0;
    out->visual_tokens_kept = st->vis_after_select > 0 ? st->vis_after_select : 0;
    out->visual_tokens_final = st->vis_final > 0 ? st->vis_final : 0;
    out->prompt_tokens = st->n_prompt > 0 ? st->n_prompt : 0;
    out->timings.encode_ms = s->mode == MD_VQA_GROWING ? s->encode_ms
                                                       : st->ms_vision + st->ms_select;
    out->timings.prefill_ms = st->ms_prefill;
    out->timings.decode_ms = st->ms_decode;
    snprintf(out->reduce, sizeof out->reduce, "%s", s->spec);
}

static int prefill_encoded(struct md_reduce_session *rs, const struct md_vqa_ask *ask, char *err,
                           size_t errlen)
{
    int rc = md_reduce_prefill(rs, ask->chat_template, ask->system, ask->question);
    if (rc && rc != MD_ERR_ABORTED)
        snprintf(err, errlen, "%s", md_reduce_error(rs));
    return rc;
}

/* A window's answer starts: the engine's session (or a batch slot's) empty,
 * reducing as the stream's settings say. */
static void begin_window(const struct md_vqa_stream *s, struct md_reduce_session *rs)
{
    md_reduce_reset(rs);
    md_reduce_session_configure(rs, &s->cfg);   /* cannot fail once reset */
}

/* Window: the session starts empty and takes the blocks that fit (at most
 * `fit` frames), then the prompt is prefilled. */
static int prefill_window(struct md_vqa_stream *s, struct md_reduce_session *rs,
                          const struct md_vqa_ask *ask, int32_t fit, struct md_vqa_answer *out,
                          char *err, size_t errlen)
{
    begin_window(s, rs);
    out->frames = 0;
    int rc = add_blocks(s, rs, fit, out);
    if (rc && rc != MD_ERR_ABORTED)
        snprintf(err, errlen, "encode: %s", md_reduce_error(rs));
    return rc ? rc : prefill_encoded(rs, ask, err, errlen);
}

/* How many of p's frames fit its context; -1 with p->err when none. */
static int32_t prep_fit(struct vqa_prep *p)
{
    int64_t q, text = vqa_prompt_tokens(p->s->vqa, p->ask->chat_template, p->ask->question,
                                        p->ask->system, &q);
    return frames_that_fit(p->s, p->n_ctx, text, q, p->max_new, p->err, p->errlen);
}

/* p's prefill (its frames already in when `encoded`), with fewer frames
 * when the prompt still came out longer than the context (the count of the
 * template's text is an estimate around the blocks). */
static int prefill_fitting(struct vqa_prep *p, int32_t fit, bool encoded)
{
    int rc = encoded ? prefill_encoded(p->rs, p->ask, p->err, p->errlen)
                     : prefill_window(p->s, p->rs, p->ask, fit, p->out, p->err, p->errlen);
    for (int tries = 0; rc == MD_ERR_CONTEXT_FULL && fit > 1 && tries < 3; tries++) {
        fit = fit * 3 / 4;
        vqa_log(p->s->vqa, MD_LOG_INFO, "the prompt did not fit the context: %d frames", fit);
        rc = prefill_window(p->s, p->rs, p->ask, fit, p->out, p->err, p->errlen);
    }
    return rc;
}

/* The frames of the windows in p that hold no still image, through the
 * tower together; encoded[i] marks those that went in. While they share
 * the tower only the engine's abort stops it: one stream's abort must not
 * fail the others' frames (each prefill checks its own). */
static void encode_together(struct vqa_prep *p, int32_t n, const int32_t *fit, bool *encoded)
{
    struct md_vqa *v = p[0].s->vqa;
    struct md_reduce_session *ss[VQA_MAX_BATCH];
    struct md_frame *fr[VQA_MAX_BATCH];
    const struct md_frame *frs[VQA_MAX_BATCH];
    int32_t nf[VQA_MAX_BATCH], at[VQA_MAX_BATCH], k = 0;
    int rcs[VQA_MAX_BATCH];
    for (int32_t i = 0; i < n; i++) {
        encoded[i] = false;
        if (p[i].rc || has_images(p[i].s))
            continue;
        int32_t n_frames = count_frames(p[i].s);
        if (!(fr[k] = malloc(sizeof(struct md_frame) * (size_t)(n_frames ? n_frames : 1)))) {
            snprintf(p[i].err, p[i].errlen, "out of memory");
            p[i].rc = MD_ERR_NOMEM;
            continue;
        }
        begin_window(p[i].s, p[i].rs);
        p[i].out->frames = 0;
        p[i].out->first_pts_ns = p[i].out->last_pts_ns = -1;
        nf[k] = kept_frames(p[i].s, fit[i], fr[k]);
        frs[k] = fr[k];
        ss[k] = p[i].rs;
        at[k++] = i;
    }
    md_abort_callback abort = v->turns.abort;
    void *abort_user = v->turns.abort_user;
    v->turns.abort = NULL;
    v->turns.abort_user = NULL;
    if (k)
        md_reduce_add_frames_multi(ss, frs, nf, k, rcs);
    v->turns.abort = abort;
    v->turns.abort_user = abort_user;
    for (int32_t j = 0; j < k; j++) {
        struct vqa_prep *q = &p[at[j]];
        if ((q->rc = rcs[j]) && q->rc != MD_ERR_ABORTED)
            snprintf(q->err, q->errlen, "encode: %s", md_reduce_error(q->rs));
        if (!q->rc)
            frames_added(q->out, fr[j], nf[j]);
        encoded[at[j]] = !q->rc;
        free(fr[j]);
    }
}

void vqa_prepare_windows(struct vqa_prep *p, int32_t n)
{
    struct md_vqa *v = p[0].s->vqa;
    int32_t fit[VQA_MAX_BATCH];
    bool encoded[VQA_MAX_BATCH] = { false };
    for (int32_t i = 0; i < n; i++) {
        fit[i] = prep_fit(&p[i]);
        p[i].rc = fit[i] < 0 ? MD_ERR_CONTEXT_FULL : MD_OK;
    }
    if (n > 1)
        encode_together(p, n, fit, encoded);
    md_abort_callback abort = v->turns.abort;
    void *abort_user = v->turns.abort_user;
    for (int32_t i = 0; i < n; i++) {
        if (p[i].rc)
            continue;
        v->turns.abort = p[i].s->abort;   /* each prefill stops on its own stream's abort */
        v->turns.abort_user = p[i].s->abort_user;
        p[i].rc = prefill_fitting(&p[i], fit[i], encoded[i]);
    }
    v->turns.abort = abort;
    v->turns.abort_user = abort_user;
}

int vqa_prepare_window(struct md_vqa_stream *s, struct md_reduce_session *rs, int32_t n_ctx,
                       const struct md_vqa_ask *ask, int32_t max_new, struct md_vqa_answer *out,
                       char *err, size_t errlen)
{
    struct vqa_prep p = { s, rs, n_ctx, ask, max_new, out, err, errlen, MD_OK };
    vqa_prepare_windows(&p, 1);
    return p.rc;
}

/* Room the template's text may take beyond the count (its text around the
 * blocks is an estimate): a window joins a batch only with this to spare,
 * so that its prompt never needs the retry above. */
#define VQA_BATCH_MARGIN 64

bool vqa_window_fits(const struct md_vqa_stream *s, const struct md_vqa_ask *ask, int32_t max_new,
                     int32_t n_ctx)
{
    int64_t q, text = vqa_prompt_tokens(s->vqa, ask->chat_template, ask->question, ask->system,
                                        &q);
    /* max_new counted as text: the count never gives the answer's room
     * away (frames_that_fit does when little is left) */
    return frames_that_fit(s, n_ctx, text + VQA_BATCH_MARGIN + max_new, q, 0, NULL, 0) >=
           count_frames(s);
}

/* The ask's constraint, checked before any work: choices are texts a
 * answer can be (not empty, valid UTF-8, no surrounding whitespace, no
 * repeats), a schema is of the subset. */
static int check_constraints(const struct md_vqa_ask *ask, char *err, size_t errlen)
{
    if (ask->n_choices < 0 || (ask->n_choices > 0 && !ask->choices)) {
        snprintf(err, errlen, "n_choices is %d with %s choices", ask->n_choices,
                 ask->choices ? "some" : "no");
        return MD_ERR_INVALID;
    }
    if (ask->n_choices > 0 && ask->json_schema) {
        snprintf(err, errlen, "choices and a JSON schema together (at most one)");
        return MD_ERR_INVALID;
    }
    for (int32_t i = 0; i < ask->n_choices; i++) {
        const char *c = ask->choices[i];
        size_t n = c ? strlen(c) : 0;
        const char *why = !n ? "is empty" : md_utf8_first_invalid(c) >= 0 ? "is not valid UTF-8"
                          : strchr(" \t\r\n\f\v", c[0]) || strchr(" \t\r\n\f\v", c[n - 1])
                              ? "has surrounding whitespace" : NULL;
        for (int32_t k = 0; !why && k < i; k++)
            why = strcmp(ask->choices[k], c) ? NULL : "repeats an earlier one";
        if (why) {
            snprintf(err, errlen, "choice %d %s", i, why);
            return MD_ERR_INVALID;
        }
    }
    return ask->json_schema ? md_vqa_check_schema(ask->json_schema, err, errlen) : MD_OK;
}

/* The answer's work, in the stream's turn on the engine's context. */
static int answer_in_turn(struct md_vqa_stream *s, const struct md_vqa_ask *ask, int32_t max_new,
                          struct md_vqa_answer *out, char *err, size_t errlen)
{
    struct md_vqa *v = s->vqa;
    int rc;
    struct md_reduce_session *rs = s->mode == MD_VQA_WINDOW ? v->window_session : s->session;
    if (s->mode == MD_VQA_WINDOW) {
        rc = vqa_prepare_window(s, rs, md_context_n_ctx(v->ctx), ask, max_new, out, err, errlen);
    } else {
        out->frames = s->n_added;
        out->first_pts_ns = s->first_pts;
        out->last_pts_ns = s->last_pts;
        rc = md_reduce_prefill(rs, ask->chat_template, ask->system, ask->question);
        if (rc && rc != MD_ERR_ABORTED)
            snprintf(err, errlen, "%s", md_reduce_error(rs));
    }
    if (!rc) {
        vqa_fill_stats(s, rs, out);
        int32_t room = md_context_n_ctx(v->ctx) - out->prompt_tokens;
        if (room < 1) {
            snprintf(err, errlen, "the prompt (%d tokens) fills the context (%d)",
                     out->prompt_tokens, md_context_n_ctx(v->ctx));
            rc = MD_ERR_CONTEXT_FULL;
        } else if (ask->n_choices > 0) {
            rc = vqa_answer_choices(s, rs, ask, out, err, errlen);
        } else if (ask->json_schema) {
            rc = generate_json(s, rs, ask, max_new < room ? max_new : room, out, err, errlen);
        } else {
            rc = generate(s, rs, ask, max_new < room ? max_new : room, NULL, out, err, errlen);
        }
    }
    return vqa_answer_end(s, rs, rc, out, err, errlen);
}

int vqa_answer_end(struct md_vqa_stream *s, struct md_reduce_session *rs, int rc,
                   struct md_vqa_answer *out, char *err, size_t errlen)
{
    if (!rc) {
        vqa_fill_stats(s, rs, out);
    } else {
        if (rc == MD_ERR_ABORTED)
            snprintf(err, errlen, "aborted");
        md_vqa_answer_clear(out);
    }
    return rc;
}

int md_vqa_answer(struct md_vqa_stream *s, const struct md_vqa_ask *ask,
                  struct md_vqa_answer *out, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    *err = '\0';
    if (!s || !ask || !out)
        return MD_ERR_INVALID;
    memset(out, 0, sizeof *out);
    out->choice = -1;
    struct md_vqa *v = s->vqa;
    int rc = md_vqa_check_question(v, ask->question, ask->system, err, errlen);
    if (!rc)
        rc = check_constraints(ask, err, errlen);
    if (rc)
        return rc;
    if (md_vqa_stream_n_frames(s) == 0) {
        snprintf(err, errlen, "no frames to answer about");
        return MD_ERR_INVALID;
    }
    int32_t max_new = ask->max_new_tokens > 0 ? ask->max_new_tokens : v->params.max_new_tokens;
    struct vqa_job job = { .s = s, .ask = ask, .max_new = max_new, .out = out, .err = err,
                           .errlen = errlen };
    bool batchable = vqa_batchable(s, ask, max_new);
    rc = vqa_turn_take(s, true, batchable ? &job : NULL);
    if (rc == VQA_JOB_DONE)   /* another request's turn answered it */
        return job.rc;
    if (rc) {
        snprintf(err, errlen, "aborted");
        return rc;
    }
    struct vqa_job *others[VQA_MAX_BATCH];
    int32_t n = batchable ? vqa_jobs_claim(v, vqa_client(s), others, v->params.max_batch - 1) : 0;
    out->batched = 1 + n;
    rc = n ? vqa_answer_batch(&job, others, n) : answer_in_turn(s, ask, max_new, out, err, errlen);
    vqa_turn_give(v);
    return rc;
}
