/* md_vqa internals shared by engine.c (load, device, checks), stream.c
 * (frames, the sampling rule) and answer.c (prompt, generation). */
#ifndef MD_VQA_IMPL_H
#define MD_VQA_IMPL_H

#include <pthread.h>
#include <stdarg.h>

#include "mustdrop-vqa.h"

/* Text a frame or image block adds to the prompt besides its rows (the
 * newline after its marker, a piece the tokenizer may split off): an
 * allowance for fitting. */
#define VQA_BLOCK_TEXT 3
/* A question assumed when fitting before any is known (tokens). */
#define VQA_QUESTION_EST 16
/* Fewest answer tokens a prompt must leave room for. */
#define VQA_ANSWER_MIN 8
/* A growing stream's cap when neither max_visual_tokens nor the spec sets one. */
#define VQA_AUTO_VISUAL_TOKENS 1024

/* Most answers one turn decodes together (md_vqa_params.max_batch's cap). */
#define VQA_MAX_BATCH 64

/* A window answer that the turn holder may take into its batch (batch.c):
 * the request's arguments, and its result once done. */
struct vqa_job {
    struct md_vqa_stream *s;
    const struct md_vqa_ask *ask;
    int32_t max_new;
    struct md_vqa_answer *out;
    char *err;
    size_t errlen;
    int rc;
    bool claimed, done;                 /* under the turns' mutex */
};

/* A request waiting for the engine's turn (engine.c): served by the
 * smallest key, then by arrival; a client's requests get rising keys, so
 * clients take turns and each client's requests keep their order. */
struct vqa_waiter {
    const void *client;
    uint64_t key, seq;
    struct vqa_job *job;                /* NULL: it cannot join a batch */
    struct vqa_waiter *next;
};

/* Who uses the engine's context and vision tower now: one request at a time,
 * the others wait in a fair queue. */
struct vqa_turns {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool busy;
    uint64_t round;                     /* the key last served */
    uint64_t seq;                       /* arrivals so far */
    int32_t n_waiting;
    struct vqa_waiter *waiters;         /* in arrival order */
    /* the holder's abort (read by the holder's thread only) */
    md_abort_callback abort;
    void *abort_user;
};

/* An extra context for a batch's second and later answers, made when a
 * batch first needs it and kept, with the session over it. */
struct vqa_slot {
    struct md_context *ctx;
    struct md_reduce_session *rs;
};

struct md_vqa {
    struct md_vqa_params params;        /* strings point into the fields below */
    char model_path[4096], mmproj_path[4096];
    char reduce_text[256];              /* the spec as given */
    char spec[256];                     /* canonical */
    char device[32];                    /* "cpu", "cuda:0" */
    char isa[16];                       /* params.isa's copy */
    char *question_hint;                /* params.question_hint's copy */
    struct md_reduce_config cfg;
    struct md_model *model;
    struct md_vision *vision;
    struct md_context *ctx;
    /* the session window streams answer through (they take turns) */
    struct md_reduce_session *window_session;
    /* the vocabulary's pieces in byte order, built by the first answer
     * constrained to a JSON schema (grammar.h) */
    struct md_pieces *pieces;
    struct vqa_turns turns;
    /* batch.c: contexts for answers decoded beside the window session's */
    struct vqa_slot slots[VQA_MAX_BATCH - 1];
};

/* A frame or still image a window stream holds (its own RGB copy). */
struct vqa_block {
    uint8_t *rgb;
    int32_t width, height, stride;
    int64_t pts_ns;
    bool image;
};

struct md_vqa_stream {
    struct md_vqa *vqa;
    enum md_vqa_mode mode;
    /* its own settings (md_vqa_stream_params; question_hint owned) */
    double sample_fps;
    int32_t max_frames, max_visual_tokens, max_new_tokens;
    char *question_hint;
    struct md_vqa_grid grid;            /* the sampling rule */
    /* window: the blocks held, thinned to keep_every-th of the sampled */
    struct vqa_block *blocks;
    int32_t n_blocks, cap_blocks;
    int32_t keep_every, seen;
    /* growing: the reduction session holding the reduced tokens; window
     * streams answer through the engine's sessions, configured with cfg */
    struct md_reduce_session *session;
    struct md_reduce_config cfg;        /* the stream's spec (growing: with the cap in force) */
    char spec[256];                     /* cfg, canonical */
    int32_t n_added;
    int64_t first_pts, last_pts;
    double encode_ms;
    /* whose turn it takes (NULL: the stream's own) and its abort */
    const void *client;
    md_abort_callback abort;
    void *abort_user;
    char err[512];
};

/* engine.c */
void vqa_log(const struct md_vqa *v, enum md_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The engine's abort or the turn holder's (the holder's thread only). */
bool vqa_aborted(const struct md_vqa *v);
/* Wait for the stream's turn on the engine: MD_OK (give it back with
 * vqa_turn_give), or, when abortable, MD_ERR_ABORTED if the stream's abort
 * fires first. With a job, a turn holder may take it into its batch while it
 * waits: then VQA_JOB_DONE once the holder has finished it (job->rc). */
#define VQA_JOB_DONE 1
int vqa_turn_take(struct md_vqa_stream *s, bool abortable, struct vqa_job *job);
void vqa_turn_give(struct md_vqa *v);
/* The holder takes up to max waiting jobs into its batch, in the order the
 * line would serve them, one per client (its own client's are left): they
 * leave the line. Returns how many. */
int32_t vqa_jobs_claim(struct md_vqa *v, const void *holder, struct vqa_job **jobs, int32_t max);
/* A claimed job is finished: its thread returns with rc. */
void vqa_job_done(struct md_vqa *v, struct vqa_job *job, int rc);
/* The client a stream's requests queue as. */
const void *vqa_client(const struct md_vqa_stream *s);
/* Tokens of text alone (no BOS, no special tokens). */
int64_t vqa_text_tokens(const struct md_vqa *v, const char *text);
/* The prompt's text tokens: the chat template (tmpl: NULL = the model's)
 * around system and question, counted; *question_tokens the question's. */
int64_t vqa_prompt_tokens(const struct md_vqa *v, const char *tmpl, const char *question,
                          const char *system, int64_t *question_tokens);
/* The words for a prompt leaving no room for `need` visual tokens: the
 * question when the rest would fit without it, else the context. */
void vqa_no_room(const struct md_vqa *v, int64_t question_tokens, int64_t text_tokens,
                 int64_t need, char *err, size_t errlen);
/* A context on the engine's model with its settings (threads, isa, abort,
 * n_batch), of n_ctx entries. */
int vqa_context_new(struct md_vqa *v, int32_t n_ctx, struct md_context **out, char *err,
                    size_t errlen);
/* The size of a batch slot's context: max_frames frames, max_new_tokens and
 * a prompt's text (the engine's own size when that is smaller). */
int32_t vqa_slot_n_ctx(const struct md_vqa *v);
/* The reduction config of the engine's spec, as a session needs it. */
struct md_reduce_config vqa_config(const struct md_vqa *v);

/* answer.c: the pieces of an answer batch.c runs for several streams. */
/* One window to encode and prefill into its session (vqa_prepare_windows). */
struct vqa_prep {
    struct md_vqa_stream *s;
    struct md_reduce_session *rs;
    int32_t n_ctx;
    const struct md_vqa_ask *ask;
    int32_t max_new;
    struct md_vqa_answer *out;
    char *err;
    size_t errlen;
    int rc;                             /* out: MD_OK or why not, in err */
};
/* Encode and prefill n (<= VQA_MAX_BATCH) windows of one engine, each into
 * its session (the frames that fit its n_ctx): the frames of all go through
 * the vision tower together, each prefill checks its stream's abort. */
void vqa_prepare_windows(struct vqa_prep *p, int32_t n);
/* Encode and prefill a window's frames into rs (the frames that fit
 * n_ctx); err says why not. */
int vqa_prepare_window(struct md_vqa_stream *s, struct md_reduce_session *rs, int32_t n_ctx,
                       const struct md_vqa_ask *ask, int32_t max_new, struct md_vqa_answer *out,
                       char *err, size_t errlen);
/* Whether every frame a window holds fits a context of n_ctx with the
 * prompt, an answer of max_new and a margin, so no frame is left out. */
bool vqa_window_fits(const struct md_vqa_stream *s, const struct md_vqa_ask *ask, int32_t max_new,
                     int32_t n_ctx);
void vqa_fill_stats(const struct md_vqa_stream *s, const struct md_reduce_session *rs,
                    struct md_vqa_answer *out);
/* The end of an answer: stats on success, else the words and a clean out. */
int vqa_answer_end(struct md_vqa_stream *s, struct md_reduce_session *rs, int rc,
                   struct md_vqa_answer *out, char *err, size_t errlen);

/* Free generation after a prefill, one token at a time (answer.c). */
struct vqa_gen {
    struct md_vqa_stream *s;
    struct md_reduce_session *rs;
    const struct md_vqa_ask *ask;
    struct constraint *c;               /* NULL: free text */
    struct md_sampler *smp;
    char *text;
    size_t len, cap;
    int32_t i, max_new;
    bool own_abort;                     /* check the stream's abort too (a batch member) */
    struct md_vqa_answer *out;
    char *err;
    size_t errlen;
};
int vqa_gen_init(struct vqa_gen *g, struct md_vqa_stream *s, struct md_reduce_session *rs,
                 const struct md_vqa_ask *ask, int32_t max_new, struct md_vqa_answer *out,
                 char *err, size_t errlen);
/* Pick the next token from rs's logits and add it to the text: *tok is
 * the token to decode next, or -1 when the answer is complete. */
int vqa_gen_next(struct vqa_gen *g, int32_t *tok);
/* out->text from what was generated (when rc is MD_OK); frees g. */
int vqa_gen_end(struct vqa_gen *g, int rc);

/* batch.c: answer the holder's job together with n others it claimed from
 * the line (each finished with vqa_job_done); returns the holder's rc. */
int vqa_answer_batch(struct vqa_job *own, struct vqa_job **others, int32_t n);
/* Whether a request may join a batch (a window, free text, max_batch > 1). */
bool vqa_batchable(const struct md_vqa_stream *s, const struct md_vqa_ask *ask, int32_t max_new);
void vqa_slots_free(struct md_vqa *v);

/* choices.c: after the prefill, the choice the model gives the highest
 * probability (out->text, choice, value, generated_tokens). */
int vqa_answer_choices(struct md_vqa_stream *s, struct md_reduce_session *rs,
                       const struct md_vqa_ask *ask, struct md_vqa_answer *out, char *err,
                       size_t errlen);

/* stream.c */
int32_t vqa_frame_tokens(const struct md_vqa *v);   /* one frame (+ its newline row) */

#endif
