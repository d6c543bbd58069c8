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

/* A request waiting for the engine's turn (engine.c): served by the
 * smallest key, then by arrival; a client's requests get rising keys, so
 * clients take turns and each client's requests keep their order. */
struct vqa_waiter {
    const void *client;
    uint64_t key, seq;
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
    struct md_vqa_grid grid;            /* the sampling rule */
    /* window: the blocks held, thinned to keep_every-th of the sampled */
    struct vqa_block *blocks;
    int32_t n_blocks, cap_blocks;
    int32_t keep_every, seen;
    /* growing: the reduction session holding the reduced tokens */
    struct md_reduce_session *session;
    struct md_reduce_config cfg;        /* with the cap in force */
    char spec[256];
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
 * fires first. */
int vqa_turn_take(struct md_vqa_stream *s, bool abortable);
void vqa_turn_give(struct md_vqa *v);
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
/* The reduction config of the engine's spec, as a session needs it. */
struct md_reduce_config vqa_config(const struct md_vqa *v);

/* choices.c: after the prefill, the choice the model gives the highest
 * probability (out->text, choice, value, generated_tokens). */
int vqa_answer_choices(struct md_vqa_stream *s, struct md_reduce_session *rs,
                       const struct md_vqa_ask *ask, struct md_vqa_answer *out, char *err,
                       size_t errlen);

/* stream.c */
int32_t vqa_frame_tokens(const struct md_vqa *v);   /* one frame (+ its newline row) */

#endif
