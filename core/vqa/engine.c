/* md_vqa engine: the files, the device, one context; the checks a question
 * gets before any work; the fair queue of the threads that share it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar.h"
#include "tokenizer.h"
#include "unicode.h"
#include "vqa-impl.h"

struct md_vqa_params md_vqa_default_params(void)
{
    struct md_vqa_params p = {
        .device = "auto", .reduce = "none", .sample_fps = 1.0, .max_frames = 8,
        .max_new_tokens = 64, .max_batch = 8,
    };
    return p;
}

void vqa_log(const struct md_vqa *v, enum md_log_level level, const char *fmt, ...)
{
    if (!v->params.log)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    v->params.log(level, text, v->params.log_user);
}

bool vqa_aborted(const struct md_vqa *v)
{
    const struct vqa_turns *t = &v->turns;
    return (v->params.abort && v->params.abort(v->params.abort_user)) ||
           (t->abort && t->abort(t->abort_user));
}

/* The context and the vision tower check this between layers: the engine's
 * abort or that of the request in hand. */
static bool engine_abort(void *user)
{
    return vqa_aborted(user);
}

/* ---- the turns ----------------------------------------------------------- */

static int turns_init(struct vqa_turns *t)
{
    if (pthread_mutex_init(&t->mu, NULL))
        return MD_ERR_NOMEM;
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    /* waiters poll their abort on a monotonic clock: a wall-clock jump must
     * not stall them */
    if (!rc)
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc) {
        pthread_mutex_destroy(&t->mu);
        return MD_ERR_NOMEM;
    }
    return MD_OK;
}

static void turns_destroy(struct vqa_turns *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

static const struct vqa_waiter *next_in_line(const struct vqa_turns *t)
{
    const struct vqa_waiter *best = NULL;
    for (const struct vqa_waiter *w = t->waiters; w; w = w->next)
        if (!best || w->key < best->key || (w->key == best->key && w->seq < best->seq))
            best = w;
    return best;
}

/* w joins the line: its key is the round in progress, or one past its
 * client's last request waiting, so that a client with many requests waiting
 * gets one turn a round, and one that comes back right after its turn queues
 * behind those already waiting (equal keys go by arrival). */
static void join_line(struct vqa_turns *t, struct vqa_waiter *w)
{
    struct vqa_waiter **tail = &t->waiters;
    w->key = t->round;
    w->seq = t->seq++;
    for (; *tail; tail = &(*tail)->next)
        if ((*tail)->client == w->client && (*tail)->key >= w->key)
            w->key = (*tail)->key + 1;
    w->next = NULL;
    *tail = w;
    t->n_waiting++;
}

static void leave_line(struct vqa_turns *t, struct vqa_waiter *w)
{
    struct vqa_waiter **p = &t->waiters;
    while (*p != w)
        p = &(*p)->next;
    *p = w->next;
    t->n_waiting--;
}

/* Sleep on the queue for at most ms (mutex held). */
static void wait_ms(struct vqa_turns *t, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&t->cv, &t->mu, &until);
}

/* How often a waiter with an abort callback looks at it: a stopping
 * element leaves the queue within this. */
#define VQA_ABORT_POLL_MS 10

const void *vqa_client(const struct md_vqa_stream *s)
{
    return s->client ? s->client : s;
}

/* A job a holder took: wait until it is done (the holder checks the
 * stream's abort while it runs it). Mutex held. */
static int wait_done(struct vqa_turns *t, struct vqa_job *job)
{
    while (!job->done)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    return VQA_JOB_DONE;
}

int vqa_turn_take(struct md_vqa_stream *s, bool abortable, struct vqa_job *job)
{
    md_abort_callback abort = abortable ? s->abort : NULL;
    struct vqa_turns *t = &s->vqa->turns;
    struct vqa_waiter w = { .client = vqa_client(s), .job = job };
    int rc = MD_OK;
    pthread_mutex_lock(&t->mu);
    join_line(t, &w);
    while (t->busy || next_in_line(t) != &w) {
        if (job && job->claimed)   /* taken out of the line by a holder */
            return wait_done(t, job);
        if (abort) {
            /* the caller's callback runs without the queue's lock */
            pthread_mutex_unlock(&t->mu);
            bool stop = abort(s->abort_user);
            pthread_mutex_lock(&t->mu);
            if (job && job->claimed)
                return wait_done(t, job);
            if (stop) {
                rc = MD_ERR_ABORTED;
                break;
            }
            if (!t->busy && next_in_line(t) == &w)
                break;
            wait_ms(t, VQA_ABORT_POLL_MS);
        } else {
            pthread_cond_wait(&t->cv, &t->mu);
        }
    }
    leave_line(t, &w);
    if (rc == MD_OK) {
        t->busy = true;
        t->round = w.key;
        t->abort = s->abort;
        t->abort_user = s->abort_user;
    } else {
        pthread_cond_broadcast(&t->cv);   /* the line's head may have changed */
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* The waiting job the line would serve first, of a client not in the
 * batch yet. Mutex held. */
static struct vqa_waiter *next_job(const struct vqa_turns *t, const void *const *clients,
                                   int32_t n_clients)
{
    struct vqa_waiter *best = NULL;
    for (struct vqa_waiter *w = t->waiters; w; w = w->next) {
        bool in = !w->job;
        for (int32_t i = 0; !in && i < n_clients; i++)
            in = clients[i] == w->client;
        if (!in && (!best || w->key < best->key || (w->key == best->key && w->seq < best->seq)))
            best = w;
    }
    return best;
}

int32_t vqa_jobs_claim(struct md_vqa *v, const void *holder, struct vqa_job **jobs, int32_t max)
{
    struct vqa_turns *t = &v->turns;
    const void *clients[VQA_MAX_BATCH] = { holder };
    int32_t n = 0;
    pthread_mutex_lock(&t->mu);
    for (struct vqa_waiter *w; n < max && n + 1 < VQA_MAX_BATCH &&
                               (w = next_job(t, clients, n + 1)) != NULL;) {
        leave_line(t, w);
        w->job->claimed = true;
        clients[n + 1] = w->client;
        jobs[n++] = w->job;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

void vqa_job_done(struct md_vqa *v, struct vqa_job *job, int rc)
{
    struct vqa_turns *t = &v->turns;
    pthread_mutex_lock(&t->mu);
    job->rc = rc;
    job->done = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void vqa_turn_give(struct md_vqa *v)
{
    struct vqa_turns *t = &v->turns;
    pthread_mutex_lock(&t->mu);
    t->busy = false;
    t->abort = NULL;
    t->abort_user = NULL;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int32_t md_vqa_waiting(struct md_vqa *v)
{
    if (!v)
        return 0;
    pthread_mutex_lock(&v->turns.mu);
    int32_t n = v->turns.n_waiting;
    pthread_mutex_unlock(&v->turns.mu);
    return n;
}

int64_t vqa_text_tokens(const struct md_vqa *v, const char *text)
{
    const struct md_vocab *vocab = md_model_vocab(v->model);
    return text && *text ? md_tokenize(vocab, text, strlen(text), false, false, NULL, 0) : 0;
}

int64_t vqa_prompt_tokens(const struct md_vqa *v, const char *tmpl, const char *question,
                          const char *system, int64_t *question_tokens)
{
    int64_t q = vqa_text_tokens(v, question);
    if (question_tokens)
        *question_tokens = q;
    /* the template's own text counts as much as the question: the default
     * system prompt alone is ~90 tokens for Vicuna's */
    int need = md_chat_format(tmpl, v->model, system, question ? question : "", NULL, 0);
    char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
    int64_t n = q + vqa_text_tokens(v, system) + 64;   /* a template we cannot render */
    if (text && md_chat_format(tmpl, v->model, system, question ? question : "", text,
                               (size_t)need + 1) >= 0)
        n = md_tokenize(md_model_vocab(v->model), text, strlen(text), true, true, NULL, 0);
    free(text);
    return n;
}

void vqa_no_room(const struct md_vqa *v, int64_t question_tokens, int64_t text_tokens,
                 int64_t need, char *err, size_t errlen)
{
    int32_t n_ctx = md_context_n_ctx(v->ctx);
    if (text_tokens - question_tokens + need + VQA_ANSWER_MIN <= n_ctx)
        snprintf(err, errlen, "the question is %lld tokens and the context holds %d (with "
                 "%lld visual tokens and the prompt's text); ask a shorter question or raise "
                 "the context size", (long long)question_tokens, n_ctx, (long long)need);
    else
        snprintf(err, errlen, "the context (%d tokens) is too small for %lld visual tokens "
                 "and the prompt's text (about %lld tokens); raise the context size",
                 n_ctx, (long long)need, (long long)text_tokens);
}

struct md_reduce_config vqa_config(const struct md_vqa *v)
{
    return v->cfg;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n\f\v", *s))
            return false;
    return true;
}

int md_vqa_check_question(const struct md_vqa *v, const char *question, const char *system,
                          char *err, size_t errlen)
{
    if (!question || blank(question)) {
        snprintf(err, errlen, "the question is empty");
        return MD_ERR_INVALID;
    }
    long bad = md_utf8_first_invalid(question);
    if (bad >= 0) {
        snprintf(err, errlen, "the question is not valid UTF-8 (byte 0x%02x at offset %ld)",
                 (unsigned)(uint8_t)question[bad], bad);
        return MD_ERR_INVALID;
    }
    if (system && (bad = md_utf8_first_invalid(system)) >= 0) {
        snprintf(err, errlen, "the system prompt is not valid UTF-8 (byte 0x%02x at offset %ld)",
                 (unsigned)(uint8_t)system[bad], bad);
        return MD_ERR_INVALID;
    }
    int64_t q, text = vqa_prompt_tokens(v, NULL, question, system, &q);
    int64_t one = vqa_frame_tokens(v) + VQA_BLOCK_TEXT;
    if (text + one + VQA_ANSWER_MIN > md_context_n_ctx(v->ctx)) {
        vqa_no_room(v, q, text, one, err, errlen);
        return MD_ERR_CONTEXT_FULL;
    }
    return MD_OK;
}

/* "auto", "cpu", "cuda" or "cuda:N" into backend (NULL: auto) and index. */
static int parse_device(const char *dev, const char **backend, int32_t *index, char *err,
                        size_t errlen)
{
    *index = 0;
    *backend = NULL;
    if (!dev || !strcmp(dev, "auto"))
        return MD_OK;
    if (!strcmp(dev, "cpu")) {
        *backend = "cpu";
        return MD_OK;
    }
    if (!strncmp(dev, "cuda", 4)) {
        *backend = "cuda";
        if (!dev[4])
            return MD_OK;
        char *end = NULL;
        unsigned long n = dev[4] == ':' && dev[5] >= '0' && dev[5] <= '9' ?
                          strtoul(dev + 5, &end, 10) : 1024;
        if (n < 1024 && end && !*end) {
            *index = (int32_t)n;
            return MD_OK;
        }
    }
    snprintf(err, errlen, "invalid device '%s' (auto, cpu, cuda or cuda:N)", dev);
    return MD_ERR_INVALID;
}

/* The backend to load on: the one named, which must be usable, or for auto
 * CUDA when usable and the CPU otherwise (quietly: no GPU is the normal
 * case). */
static int choose_backend(struct md_vqa *v, const char *named, int32_t index,
                          const char **backend, char *err, size_t errlen)
{
    char why[512] = "";
    if (named && !strcmp(named, "cpu")) {
        *backend = "cpu";
        return MD_OK;
    }
    if (md_backend_check(named ? named : "cuda", index, why, sizeof why) == MD_OK) {
        *backend = named ? named : "cuda";
        return MD_OK;
    }
    if (!named) {
        vqa_log(v, MD_LOG_INFO, "device auto: using the CPU (%s)", why);
        *backend = "cpu";
        return MD_OK;
    }
    snprintf(err, errlen, "device %s:%d cannot be used: %s", named, (int)index, why);
    return MD_ERR_UNSUPPORTED;
}

/* Auto: a load on CUDA that failed because of the device (not the file)
 * is retried on the CPU. */
static bool device_failure(int rc)
{
    return rc == MD_ERR_NOMEM || rc == MD_ERR_BACKEND || rc == MD_ERR_UNSUPPORTED;
}

static int load_model(struct md_vqa *v, bool automatic, int32_t index, const char **backend,
                      char *err, size_t errlen)
{
    struct md_model_params mp = md_model_default_params();
    mp.n_threads = v->params.n_threads;
    mp.device = index;
    mp.backend = *backend;
    mp.progress_callback = v->params.on_progress;
    mp.progress_callback_user = v->params.progress_user;
    int rc = md_model_load(v->model_path, &mp, &v->model, err, errlen);
    if (rc != MD_OK && automatic && !strcmp(*backend, "cuda") && device_failure(rc)) {
        vqa_log(v, MD_LOG_WARN, "device auto: cannot load on cuda:%d (%s), using the CPU",
                (int)index, err);
        mp.backend = *backend = "cpu";
        rc = md_model_load(v->model_path, &mp, &v->model, err, errlen);
    }
    return rc;
}

static int load_vision(struct md_vqa *v, const char *backend, int32_t index, char *err,
                       size_t errlen)
{
    struct md_vision_params vp = md_vision_default_params();
    vp.n_threads = v->params.n_threads;
    vp.backend = backend;
    vp.device = index;
    vp.abort_callback = engine_abort;
    vp.abort_callback_user = v;
    int rc = md_vision_load(v->mmproj_path, &vp, &v->vision, err, errlen);
    if (rc != MD_OK)
        return rc;
    if (!md_model_vocab(v->model)) {
        snprintf(err, errlen, "%s: the language model has no tokenizer", v->model_path);
        return MD_ERR_FORMAT;
    }
    if (md_vision_frame_tokens(v->vision) <= 0) {
        snprintf(err, errlen, "%s: the vision projector gives no tokens per frame", v->mmproj_path);
        return MD_ERR_FORMAT;
    }
    if (md_vision_n_embd(v->vision) != md_model_n_embd(v->model)) {
        snprintf(err, errlen, "the vision projector gives rows of %d, the language model has "
                 "n_embd %d: %s does not belong to %s", md_vision_n_embd(v->vision),
                 md_model_n_embd(v->model), v->mmproj_path, v->model_path);
        return MD_ERR_UNSUPPORTED;
    }
    return MD_OK;
}

/* The context's size when none is given: room for max_frames frames, the
 * answer and a prompt's text, at least 4096, at most what the model was
 * trained for. */
static int32_t auto_n_ctx(const struct md_vqa *v)
{
    int64_t need = (int64_t)v->params.max_frames * (vqa_frame_tokens(v) + VQA_BLOCK_TEXT) +
                   v->params.max_new_tokens + 512;
    int64_t n = need > 4096 ? need : 4096, train = md_model_n_ctx_train(v->model);
    return (int32_t)(train > 0 && n > train ? train : n);
}

int32_t vqa_slot_n_ctx(const struct md_vqa *v)
{
    int64_t need = (int64_t)v->params.max_frames * (vqa_frame_tokens(v) + VQA_BLOCK_TEXT) +
                   v->params.max_new_tokens + 512;
    int32_t n_ctx = md_context_n_ctx(v->ctx);
    return need < n_ctx ? (int32_t)need : n_ctx;
}

int vqa_context_new(struct md_vqa *v, int32_t n_ctx, struct md_context **out, char *err,
                    size_t errlen)
{
    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = v->params.n_threads;
    cp.isa = v->params.isa;
    cp.abort_callback = engine_abort;
    cp.abort_callback_user = v;
    /* prompts go through in chunks of the default n_batch; layer-wise
     * pruning grows it to the prompt when it prefills (md_reduce_prefill) */
    return md_context_new(v->model, &cp, out, err, errlen);
}

static int new_context(struct md_vqa *v, char *err, size_t errlen)
{
    return vqa_context_new(v, v->params.n_ctx ? v->params.n_ctx : auto_n_ctx(v), &v->ctx, err,
                           errlen);
}

static int resolve_files(struct md_vqa *v, const struct md_vqa_params *p, char *err, size_t errlen)
{
    if (!p->model && !p->mmproj) {
        if (md_default_model_paths(v->model_path, sizeof v->model_path, v->mmproj_path,
                                   sizeof v->mmproj_path) == 0)
            return MD_OK;
        char dir[4096];
        int w = snprintf(err, errlen, "no model given, and the bundled default model was not "
                         "found in:");
        for (int i = 0; w > 0 && (size_t)w < errlen &&
                        md_default_model_dir(i, dir, sizeof dir) == 0; i++)
            w += snprintf(err + w, errlen - (size_t)w, "%s %s", i ? "," : "", dir);
        return MD_ERR_IO;
    }
    if (!p->model || !*p->model || !p->mmproj || !*p->mmproj) {
        snprintf(err, errlen, "set both the model and the mmproj, or neither for the bundled "
                 "default model");
        return MD_ERR_INVALID;
    }
    snprintf(v->model_path, sizeof v->model_path, "%s", p->model);
    snprintf(v->mmproj_path, sizeof v->mmproj_path, "%s", p->mmproj);
    return MD_OK;
}

static int check_params(struct md_vqa *v, char *err, size_t errlen)
{
    const struct md_vqa_params *p = &v->params;
    char why[256];
    if (md_reduce_parse(p->reduce, &v->cfg, why, sizeof why) != MD_OK) {
        snprintf(err, errlen, "invalid reduce spec '%s': %s", p->reduce, why);
        return MD_ERR_INVALID;
    }
    if (p->sample_fps < 0 || p->max_frames < 1 || p->max_new_tokens < 1 || p->n_ctx < 0 ||
        p->max_visual_tokens < 0 || p->n_threads < 0 || p->max_batch < 0 ||
        p->max_batch > VQA_MAX_BATCH) {
        snprintf(err, errlen, "invalid parameters: sample_fps %g, max_frames %d, "
                 "max_new_tokens %d, n_ctx %d, max_visual_tokens %d, n_threads %d, "
                 "max_batch %d (0..%d)", p->sample_fps, p->max_frames, p->max_new_tokens,
                 p->n_ctx, p->max_visual_tokens, p->n_threads, p->max_batch, VQA_MAX_BATCH);
        return MD_ERR_INVALID;
    }
    md_reduce_format(&v->cfg, v->spec, sizeof v->spec);
    return MD_OK;
}

/* Loads what v->params name; on failure err says why. */
static int load(struct md_vqa *v, const struct md_vqa_params *p, char *err, size_t errlen)
{
    const char *named, *backend;
    int32_t index;
    int rc = resolve_files(v, p, err, errlen);
    if (!rc)
        rc = check_params(v, err, errlen);
    if (!rc)
        rc = parse_device(p->device, &named, &index, err, errlen);
    if (!rc)
        rc = choose_backend(v, named, index, &backend, err, errlen);
    if (!rc)
        rc = load_model(v, named == NULL, index, &backend, err, errlen);
    if (!rc)
        rc = load_vision(v, backend, index, err, errlen);
    if (!rc)
        rc = new_context(v, err, errlen);
    if (!rc)
        rc = md_reduce_session_new(v->ctx, v->vision, &v->cfg, &v->window_session, err, errlen);
    if (rc)
        return rc;
    if (!strcmp(backend, "cuda"))
        snprintf(v->device, sizeof v->device, "cuda:%d", (int)index);
    else
        snprintf(v->device, sizeof v->device, "%s", backend);
    vqa_log(v, MD_LOG_INFO, "loaded %s; %s; n_ctx %d on %s", md_model_desc(v->model),
            md_vision_desc(v->vision), md_context_n_ctx(v->ctx), v->device);
    return MD_OK;
}

int md_vqa_load(const struct md_vqa_params *params, struct md_vqa **out, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    *err = '\0';
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    struct md_vqa *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    if (turns_init(&v->turns)) {
        free(v);
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    v->params = params ? *params : md_vqa_default_params();
    snprintf(v->reduce_text, sizeof v->reduce_text, "%s",
             v->params.reduce ? v->params.reduce : "none");
    v->params.reduce = v->reduce_text;
    /* the caller's other strings need not outlive the call */
    v->params.model = v->params.mmproj = v->params.device = NULL;
    snprintf(v->isa, sizeof v->isa, "%s", v->params.isa ? v->params.isa : "auto");
    v->params.isa = v->isa;
    v->params.question_hint = NULL;
    if (params && params->question_hint &&
        !(v->params.question_hint = v->question_hint = strdup(params->question_hint))) {
        turns_destroy(&v->turns);
        free(v);
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    int rc = load(v, params ? params : &v->params, err, errlen);
    v->params.model = v->model_path;
    v->params.mmproj = v->mmproj_path;
    v->params.device = v->device;
    if (rc) {
        md_vqa_free(v);
        return rc;
    }
    *out = v;
    return MD_OK;
}

void md_vqa_free(struct md_vqa *v)
{
    if (!v)
        return;
    vqa_slots_free(v);
    md_reduce_session_free(v->window_session);
    md_pieces_free(v->pieces);
    md_context_free(v->ctx);
    md_vision_free(v->vision);
    md_model_free(v->model);
    free(v->question_hint);
    turns_destroy(&v->turns);
    free(v);
}

const struct md_vqa_params *md_vqa_params(const struct md_vqa *v) { return &v->params; }
const struct md_model *md_vqa_model(const struct md_vqa *v) { return v->model; }
struct md_vision *md_vqa_vision(const struct md_vqa *v) { return v->vision; }
const char *md_vqa_device(const struct md_vqa *v) { return v->device; }
const char *md_vqa_model_path(const struct md_vqa *v) { return v->model_path; }
const char *md_vqa_mmproj_path(const struct md_vqa *v) { return v->mmproj_path; }
const char *md_vqa_reduce_spec(const struct md_vqa *v) { return v->spec; }
int32_t md_vqa_n_ctx(const struct md_vqa *v) { return md_context_n_ctx(v->ctx); }
const struct md_context *md_vqa_context(const struct md_vqa *v) { return v->ctx; }

int32_t md_vqa_frame_side(const struct md_vqa *v)
{
    int32_t side = md_vision_image_size(v->vision);
    return side > 0 ? side : 336;
}
