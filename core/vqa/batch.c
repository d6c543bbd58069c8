/* Window answers of several streams decoded together (max_batch): the turn
 * holder takes waiting window answers of other clients from the line,
 * encodes and prefills each in a context of its own (the engine's for its
 * own answer, batch slots for the others), then generates them in
 * lock-step: each token of every answer still going is one multi-sequence
 * step (md_reduce_decode_multi), one pass over the weights for all. An
 * answer that ends (end of generation, max tokens, on_token, its abort, an
 * error) leaves the batch and its thread returns at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vqa-impl.h"

struct member {
    struct vqa_job *job;
    struct md_context *ctx;
    struct md_reduce_session *rs;
    struct vqa_gen g;
    bool generating;        /* g is set up */
    int32_t tok;            /* the token to decode next; -1: the answer is complete */
    int rc;
};

bool vqa_batchable(const struct md_vqa_stream *s, const struct md_vqa_ask *ask, int32_t max_new)
{
    const struct md_vqa *v = s->vqa;
    return v->params.max_batch > 1 && s->mode == MD_VQA_WINDOW && ask->n_choices == 0 &&
           !ask->json_schema && vqa_window_fits(s, ask, max_new, vqa_slot_n_ctx(v));
}

void vqa_slots_free(struct md_vqa *v)
{
    for (int32_t i = 0; i < VQA_MAX_BATCH - 1; i++) {
        md_reduce_session_free(v->slots[i].rs);
        md_context_free(v->slots[i].ctx);
        v->slots[i].rs = NULL;
        v->slots[i].ctx = NULL;
    }
}

/* Slot i's context and session, made the first time. */
static int slot_get(struct md_vqa *v, int32_t i, struct vqa_slot **out, char *err, size_t errlen)
{
    struct vqa_slot *sl = &v->slots[i];
    *out = sl;
    if (sl->rs)
        return MD_OK;
    int32_t n_ctx = vqa_slot_n_ctx(v);
    int rc = sl->ctx ? MD_OK : vqa_context_new(v, n_ctx, &sl->ctx, err, errlen);
    if (!rc)
        rc = md_reduce_session_new(sl->ctx, v->vision, &v->cfg, &sl->rs, err, errlen);
    if (!rc)
        vqa_log(v, MD_LOG_INFO, "batched answers: context %d made (n_ctx %d, its KV cache "
                "allocated whole)", i + 2, n_ctx);
    return rc;
}

/* Member i's context and session: the engine's for 0 (the holder's own),
 * a batch slot's for the others. */
static int member_place(struct md_vqa *v, struct member *m, int32_t i)
{
    struct vqa_slot *sl = NULL;
    m->tok = -1;
    m->ctx = v->ctx;
    m->rs = v->window_session;
    int rc = i ? slot_get(v, i - 1, &sl, m->job->err, m->job->errlen) : MD_OK;
    if (sl) {
        m->ctx = sl->ctx;
        m->rs = sl->rs;
    }
    return rc;
}

/* After its prefill (m->rc), member m's generation starts: its first
 * token, checking its own abort. */
static void member_begin(struct md_vqa *v, struct member *m)
{
    struct vqa_job *j = m->job;
    struct md_vqa_stream *s = j->s;
    v->turns.abort = s->abort;
    v->turns.abort_user = s->abort_user;
    int32_t n_ctx = md_context_n_ctx(m->ctx), room = 0;
    int rc = m->rc;
    if (!rc) {
        vqa_fill_stats(s, m->rs, j->out);
        room = n_ctx - j->out->prompt_tokens;
        if (room < 1) {
            snprintf(j->err, j->errlen, "the prompt (%d tokens) fills the context (%d)",
                     j->out->prompt_tokens, n_ctx);
            rc = MD_ERR_CONTEXT_FULL;
        }
    }
    if (!rc) {
        rc = vqa_gen_init(&m->g, s, m->rs, j->ask, j->max_new < room ? j->max_new : room, j->out,
                          j->err, j->errlen);
        m->generating = rc != MD_ERR_INVALID;
        m->g.own_abort = true;
    }
    if (!rc)
        rc = vqa_gen_next(&m->g, &m->tok);
    m->rc = rc;
    v->turns.abort = NULL;
    v->turns.abort_user = NULL;
}

/* Set up every member: encode their windows' frames together, prefill
 * each in its own context, pick each one's first token. */
static void members_start(struct md_vqa *v, struct member *m, int32_t n)
{
    struct vqa_prep p[VQA_MAX_BATCH];
    int32_t at[VQA_MAX_BATCH], k = 0;
    for (int32_t i = 0; i < n; i++) {
        struct vqa_job *j = m[i].job;
        if ((m[i].rc = member_place(v, &m[i], i)))
            continue;
        p[k] = (struct vqa_prep){ j->s, m[i].rs, md_context_n_ctx(m[i].ctx), j->ask, j->max_new,
                                  j->out, j->err, j->errlen, MD_OK };
        at[k++] = i;
    }
    v->turns.abort = NULL;
    v->turns.abort_user = NULL;
    if (k)
        vqa_prepare_windows(p, k);
    for (int32_t i = 0; i < k; i++)
        m[at[i]].rc = p[i].rc;
    for (int32_t i = 0; i < n; i++)
        member_begin(v, &m[i]);
}

/* Member i's answer is complete or failed: its result, and its thread goes. */
static void member_end(struct md_vqa *v, struct member *m, int32_t i)
{
    struct vqa_job *j = m->job;
    int rc = m->generating ? vqa_gen_end(&m->g, m->rc) : m->rc;
    m->generating = false;
    m->tok = -1;
    m->rc = vqa_answer_end(j->s, m->rs, rc, j->out, j->err, j->errlen);
    if (i > 0)
        vqa_job_done(v, j, m->rc);
}

/* One token for every member still going. When the shared step fails
 * before any cache changed (one context's trouble fails it whole), each
 * decodes alone so that only the member at fault fails; a failure after
 * the step (eviction) is every member's. */
static void step(struct member *m, int32_t n)
{
    struct md_reduce_session *rs[VQA_MAX_BATCH];
    int32_t tok[VQA_MAX_BATCH], before[VQA_MAX_BATCH], k = 0;
    for (int32_t i = 0; i < n; i++)
        if (m[i].tok >= 0) {
            rs[k] = m[i].rs;
            before[i] = md_reduce_stats(m[i].rs)->n_generated;
            tok[k++] = m[i].tok;
        }
    int shared = md_reduce_decode_multi(rs, tok, k);
    for (int32_t i = 0; i < n; i++) {
        if (m[i].tok < 0)
            continue;
        struct vqa_job *j = m[i].job;
        bool stepped = md_reduce_stats(m[i].rs)->n_generated > before[i];
        int rc = stepped ? shared : md_reduce_decode(m[i].rs, m[i].tok);
        if (rc && rc != MD_ERR_ABORTED)
            snprintf(j->err, j->errlen, "decode: %s", md_reduce_error(m[i].rs));
        if (!rc)
            rc = vqa_gen_next(&m[i].g, &m[i].tok);
        m[i].rc = rc;
    }
}

int vqa_answer_batch(struct vqa_job *own, struct vqa_job **others, int32_t n_others)
{
    struct md_vqa *v = own->s->vqa;
    struct member m[VQA_MAX_BATCH];
    int32_t n = 1 + n_others;
    memset(m, 0, sizeof m);
    m[0].job = own;
    for (int32_t i = 1; i < n; i++) {
        m[i].job = others[i - 1];
        m[i].job->out->batched = n;
    }
    md_abort_callback holder_abort = v->turns.abort;
    void *holder_user = v->turns.abort_user;
    members_start(v, m, n);
    for (int32_t i = 0; i < n; i++)
        if (m[i].rc || m[i].tok < 0)
            member_end(v, &m[i], i);
    for (bool going = true; going;) {
        going = false;
        for (int32_t i = 0; i < n; i++)
            going |= m[i].tok >= 0;
        if (going)
            step(m, n);
        for (int32_t i = 0; i < n; i++)
            if (m[i].generating && (m[i].rc || m[i].tok < 0))
                member_end(v, &m[i], i);
    }
    v->turns.abort = holder_abort;
    v->turns.abort_user = holder_user;
    return m[0].rc;
}
