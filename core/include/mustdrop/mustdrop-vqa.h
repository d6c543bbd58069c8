/* libmustdrop's whole-task call: answer a question about frames.
 *
 * An md_vqa is an engine: a language model, its vision projector and one
 * inference context on one device, loaded with the settings of an
 * md_vqa_params. Frames go into streams; a stream answers a question over
 * the frames it holds:
 *
 *     struct md_vqa_params p = md_vqa_default_params();   // bundled model, auto device
 *     p.reduce = "mustdrop:tokens=64";
 *     struct md_vqa *vqa;
 *     if (md_vqa_load(&p, &vqa, err, sizeof err)) die(err);
 *     struct md_vqa_stream *s;
 *     md_vqa_stream_new(vqa, MD_VQA_WINDOW, &s, err, sizeof err);
 *     for (each decoded frame f)
 *         if (md_vqa_stream_offer(s, f.pts_ns)) md_vqa_stream_add(s, &f);   // RGB copied
 *     struct md_vqa_ask ask = md_vqa_default_ask("What happens?");
 *     struct md_vqa_answer a;
 *     if (md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK) puts(a.text);
 *     md_vqa_answer_clear(&a);
 *     md_vqa_stream_free(s);
 *     md_vqa_free(vqa);
 *
 * Two kinds of stream, the two modes of the GStreamer element:
 *   MD_VQA_WINDOW   holds the frames of one window (RGB copies, at most
 *                   max_frames, thinned uniformly as more arrive) and encodes
 *                   them when asked; frames beyond what the context holds are
 *                   subsampled uniformly.
 *   MD_VQA_GROWING  encodes each frame as it arrives and keeps only its
 *                   reduced visual tokens, under a cap that fits the context
 *                   (max_visual_tokens): a question about everything seen so
 *                   far, with memory that does not grow with the stream.
 *
 * Frames are sampled by one rule everywhere (element, CLI, evaluator): a
 * frame is taken when its timestamp reaches the next point of a 1/sample_fps
 * grid starting at the stream's first frame; a window holding max_frames
 * keeps every other one and from then on takes every other sampled frame.
 *
 * Threading: one engine serves many threads (several cameras, one model in
 * memory). Each stream is used by one thread at a time; different streams
 * may be used at once from different threads. md_vqa_answer, a growing
 * stream's md_vqa_stream_add and md_vqa_stream_reset need the engine's
 * context, which one request holds at a time: the others wait in a fair
 * queue, taking turns by client (md_vqa_stream_set_client: a client with
 * many requests waiting gets one turn a round, its requests in the order
 * they came). A window stream only copies frames until it is answered, so
 * filling it never waits. The engine holds one KV cache: a request fills it
 * from the start, so it needs no more than one. The library never prints:
 * messages go to the log callback. No global state.
 */
#ifndef MUSTDROP_VQA_H
#define MUSTDROP_VQA_H

#include "mustdrop-reduce.h"
#include "mustdrop-vision.h"
#include "mustdrop.h"

#ifdef __cplusplus
extern "C" {
#endif

enum md_log_level {
    MD_LOG_ERROR = 0,
    MD_LOG_WARN = 1,   /* something the caller should know: a fallback, a subsample */
    MD_LOG_INFO = 2,   /* what was chosen: the device, the cap, the context */
    MD_LOG_DEBUG = 3,
};

/* One message, without a trailing newline. */
typedef void (*md_log_callback)(enum md_log_level level, const char *text, void *user);

struct md_vqa_params {
    /* files; both NULL: the bundled default model (md_default_model_paths) */
    const char *model;              /* language model GGUF */
    const char *mmproj;             /* vision projector GGUF */
    /* "auto" (default: CUDA when its module loads and sees device 0, else the
     * CPU; a model the GPU cannot take falls back to the CPU with a warning),
     * "cpu", "cuda" or "cuda:N" (which must be usable) */
    const char *device;
    int32_t n_threads;              /* CPU threads; 0 = online CPUs */
    /* KV tokens; 0 = min(model context, the larger of 4096 and what
     * max_frames frames, a prompt and max_new_tokens need) */
    int32_t n_ctx;
    const char *reduce;             /* reduction spec (docs/reduction.md); NULL = "none" */
    const char *isa;                /* CPU kernels: NULL/"auto", "scalar", "avx2", "avx512" */
    /* growing streams: most visual tokens held; 0 = the spec's cap:tokens=N,
     * else 1024; lowered to fit n_ctx with the prompt and an answer */
    int32_t max_visual_tokens;
    /* frames per answer and how they are sampled */
    double sample_fps;              /* frames a second taken (1.0); 0 = every frame */
    int32_t max_frames;             /* most frames a window keeps (8); growing: frame blocks */
    /* prompt size the context must leave room for, for fitting the cap of
     * growing streams (the question may change per answer) */
    const char *question_hint;      /* NULL: a typical 16-token question */
    int32_t max_new_tokens;         /* 64: also reserved when fitting */
    /* callbacks */
    md_progress_callback on_progress;   /* model load, [0,1]; false cancels */
    void *progress_user;
    /* checked between frames, inside the vision tower between layers, in the
     * LLM between layers and between tokens: the call returns MD_ERR_ABORTED.
     * It applies to every request of the engine; one stream's own abort:
     * md_vqa_stream_set_client. */
    md_abort_callback abort;
    void *abort_user;
    md_log_callback log;            /* NULL: messages are dropped */
    void *log_user;
    /* Window answers from different clients waiting at once are decoded
     * together, up to this many (8; 0 or 1: one at a time): the turn holder
     * takes them from the queue, encodes and prefills each in turn, then
     * decodes them in lock-step, one pass over the weights per token for
     * all (md_decode_multi), each in a context of its own, made when first
     * needed and kept (sized for max_frames frames, the prompt and the
     * answer; its KV cache is allocated whole). A window joins only when
     * all its frames fit that context; answers constrained to choices or a
     * JSON schema, and growing streams, go one at a time. A batched
     * answer's on_token runs on the thread of the request holding the
     * turn. With quantized weights batching changes no answer bit for bit;
     * with F16/F32 weights logits may differ in the last bits
     * (docs/streams.md). */
    int32_t max_batch;
};

struct md_vqa_params md_vqa_default_params(void);

struct md_vqa;

/* Load the engine. On failure *out is NULL and err names the cause first:
 * a file's message from md_model_load / md_vision_load ("<path>: truncated:
 * ..."), "device cuda:1: CUDA device 1 does not exist (1 found)", "the
 * vision projector gives rows of 1024, the language model has n_embd 4096",
 * "invalid reduce spec 'x': ...". */
int md_vqa_load(const struct md_vqa_params *params, struct md_vqa **out, char *err, size_t errlen);
void md_vqa_free(struct md_vqa *vqa);

/* The parameters in force (the files and the device as resolved). */
const struct md_vqa_params *md_vqa_params(const struct md_vqa *vqa);
const struct md_model *md_vqa_model(const struct md_vqa *vqa);
struct md_vision *md_vqa_vision(const struct md_vqa *vqa);
/* Where it runs: "cpu" or "cuda:N". */
const char *md_vqa_device(const struct md_vqa *vqa);
/* The model and mmproj paths loaded (the default model's when none given). */
const char *md_vqa_model_path(const struct md_vqa *vqa);
const char *md_vqa_mmproj_path(const struct md_vqa *vqa);
/* The reduction spec in canonical form; growing streams answer with the cap
 * in force appended (md_vqa_answer.reduce). */
const char *md_vqa_reduce_spec(const struct md_vqa *vqa);
int32_t md_vqa_n_ctx(const struct md_vqa *vqa);
/* Requests waiting for their turn on the engine now (not the one in hand). */
int32_t md_vqa_waiting(struct md_vqa *vqa);
/* The context answers run in (for its thread count, ISA, timings). */
const struct md_context *md_vqa_context(const struct md_vqa *vqa);
/* The side of the square the vision tower sees: frames larger than it can be
 * shrunk (aspect kept) before md_vqa_stream_add, which is all it needs. */
int32_t md_vqa_frame_side(const struct md_vqa *vqa);

/* Whether question can be asked at all: not empty, valid UTF-8, and leaving
 * the context room for one frame and a few answer tokens. MD_OK, or
 * MD_ERR_INVALID ("the question is empty", "the question is not valid UTF-8
 * (byte 0xe9 at offset 3)") or MD_ERR_CONTEXT_FULL ("the question is 20000
 * tokens and the context holds 4096") with the cause in err. */
int md_vqa_check_question(const struct md_vqa *vqa, const char *question, const char *system,
                          char *err, size_t errlen);

/* -------------------------------------------------------------------------
 * The sampling rule
 * ------------------------------------------------------------------------- */

/* A frame is taken when its timestamp reaches the next point of a grid
 * that starts at the first frame offered (or at the start of a known span):
 * points 1/sample_fps apart (sample_fps 0: every frame), and when the span
 * the frames will cover is known (a window's bounds, a file's duration) at
 * least span/max_frames apart, so that at most max_frames points fall in it,
 * spread over all of it. Streams apply the rule themselves; a caller that
 * decides on one thread and adds on another (the element's growing window)
 * holds a grid. */
struct md_vqa_grid {
    int64_t origin_ns, next_ns;     /* -1 before the first frame */
    int64_t step_ns;                /* 0: every frame */
    int32_t max_points, taken;      /* with a span: at most max_points frames */
};

void md_vqa_grid_init(struct md_vqa_grid *g, double sample_fps);
/* The frames will cover [start_ns, start_ns + span_ns): the grid starts at
 * start_ns with points at least ceil(span_ns / max_frames) apart, and takes
 * at most max_frames frames (a span stated short, e.g. a file's duration up
 * to its last frame's start, loses that frame rather than crowding). */
void md_vqa_grid_span(struct md_vqa_grid *g, int64_t start_ns, int64_t span_ns,
                      int32_t max_frames);
/* Whether the frame at pts_ns is taken (pts_ns < 0, or before the first
 * frame: never). Offer frames in timestamp order. */
bool md_vqa_grid_take(struct md_vqa_grid *g, int64_t pts_ns);

/* -------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------- */

enum md_vqa_mode {
    MD_VQA_WINDOW = 0,
    MD_VQA_GROWING = 1,
};

struct md_vqa_stream;

/* A stream of the engine (which must outlive it), with the engine's
 * sampling and reduction settings. Growing streams fit their visual-token
 * cap into the context here (MD_ERR_CONTEXT_FULL when not even one token
 * per frame block fits). */
int md_vqa_stream_new(struct md_vqa *vqa, enum md_vqa_mode mode, struct md_vqa_stream **out,
                      char *err, size_t errlen);

/* What may differ between the streams of one engine (several cameras, each
 * sampled and reduced its own way, one model in memory). The engine's
 * md_vqa_params give the defaults (md_vqa_stream_default_params). */
struct md_vqa_stream_params {
    double sample_fps;              /* as md_vqa_params */
    int32_t max_frames;             /* as md_vqa_params; a window holding more frames than
                                     * the context fits is subsampled when answered */
    const char *reduce;             /* reduction spec; NULL: the engine's */
    int32_t max_visual_tokens;      /* growing: as md_vqa_params */
    const char *question_hint;      /* growing: as md_vqa_params */
    int32_t max_new_tokens;         /* growing: the answer's room kept when fitting the cap */
};

struct md_vqa_stream_params md_vqa_stream_default_params(const struct md_vqa *vqa);
/* md_vqa_stream_new with a stream's own settings: MD_ERR_INVALID with the
 * cause in err for a bad value or spec ("invalid reduce spec 'x': ..."). */
int md_vqa_stream_new_with(struct md_vqa *vqa, enum md_vqa_mode mode,
                           const struct md_vqa_stream_params *params,
                           struct md_vqa_stream **out, char *err, size_t errlen);
/* The reduction spec the stream answers with, canonical (growing: with the
 * cap in force). */
const char *md_vqa_stream_reduce_spec(const struct md_vqa_stream *s);
void md_vqa_stream_free(struct md_vqa_stream *s);
/* Forget every frame (a new video); the sampling grid restarts (without a
 * span). A growing stream waits for its turn (not abortable). */
void md_vqa_stream_reset(struct md_vqa_stream *s);
/* Who the stream's requests are for, when threads share the engine: requests
 * of one client (NULL: the stream itself) are served in order, clients take
 * turns, so a client asking often cannot starve the others. abort (NULL:
 * none), checked while the request waits for its turn (every 10 ms) and
 * while it runs, ends it with MD_ERR_ABORTED: a stopping caller leaves the
 * queue promptly. Copies (md_vqa_stream_clone) keep both. Set it while no
 * request of the stream runs. */
void md_vqa_stream_set_client(struct md_vqa_stream *s, const void *client,
                              md_abort_callback abort, void *abort_user);
/* Window streams, before the first frame: the frames will cover
 * [start_ns, start_ns + span_ns) (a window's bounds, a file's duration).
 * The stream then takes at most max_frames frames spread over the whole span
 * (the grid above) instead of thinning a full window as frames come, which
 * keeps the front of the span over-represented. Unknown span: don't call. */
void md_vqa_stream_set_span(struct md_vqa_stream *s, int64_t start_ns, int64_t span_ns);

/* The sampling rule: offer every frame's timestamp (in order; pts_ns < 0,
 * no timestamp, is never taken); true when the stream takes that frame, to
 * be converted and given to md_vqa_stream_add. A window stream counts the
 * offer even when it declines (that is how a full window thins its intake),
 * so offer each frame once. */
bool md_vqa_stream_offer(struct md_vqa_stream *s, int64_t pts_ns);
/* Add a frame md_vqa_stream_offer took. Window: the RGB is copied (a full
 * window first drops every other frame it holds). Growing: the frame is
 * encoded and reduced now. MD_OK, MD_ERR_ABORTED, or an error with
 * md_vqa_stream_error. */
int md_vqa_stream_add(struct md_vqa_stream *s, const struct md_frame *frame);
/* A still image (AnyRes for LLaVA-NeXT): window streams only, no sampling. */
int md_vqa_stream_add_image(struct md_vqa_stream *s, const uint8_t *rgb, int32_t width,
                            int32_t height, int32_t stride);

/* A window stream's copy (its frames and sampling state): an answer about
 * the frames so far while the window goes on. Window streams only. */
int md_vqa_stream_clone(const struct md_vqa_stream *s, struct md_vqa_stream **out, char *err,
                        size_t errlen);

int32_t md_vqa_stream_n_frames(const struct md_vqa_stream *s);   /* held / encoded */
/* Window: the timestamp of the i-th frame or image held (-1 for an image). */
int64_t md_vqa_stream_frame_pts(const struct md_vqa_stream *s, int32_t i);
int64_t md_vqa_stream_first_pts(const struct md_vqa_stream *s);  /* ns, -1 if none */
int64_t md_vqa_stream_last_pts(const struct md_vqa_stream *s);
/* Growing: visual tokens held, their host bytes, and the cap in force. */
int32_t md_vqa_stream_visual_tokens(const struct md_vqa_stream *s);
size_t md_vqa_stream_held_bytes(const struct md_vqa_stream *s);
int32_t md_vqa_stream_visual_cap(const struct md_vqa_stream *s);
const char *md_vqa_stream_error(const struct md_vqa_stream *s);

/* -------------------------------------------------------------------------
 * Answers
 * ------------------------------------------------------------------------- */

/* Each generated piece as it comes (the text so far ends inside a UTF-8
 * character at times: `text` is the answer so far cut to valid UTF-8).
 * Return false to stop generating (the answer keeps what came). */
typedef bool (*md_vqa_token_callback)(const char *text, int32_t token, void *user);

struct md_vqa_ask {
    const char *question;
    const char *system;             /* NULL: the chat template's default, "": none */
    const char *chat_template;      /* NULL: the model's (md_chat_format's names) */
    int32_t max_new_tokens;         /* 0: the engine's */
    struct md_sampler_params sampling;   /* temp 0: greedy */
    md_vqa_token_callback on_token; /* NULL: none */
    void *token_user;
    bool ignore_eos;                /* generate max_new_tokens whatever (benchmarks) */
    /* Constrained answers, at most one of the two (docs/structured.md).
     * choices[0..n_choices): the answer is exactly one of these texts, the
     * one whose tokens followed by the end of the answer the model gives the
     * highest probability (every choice scored in full by the model, not
     * string-matched afterwards; ties: the first). Each must be non-empty
     * UTF-8 without surrounding whitespace, none repeated. Sampling
     * settings, on_token and ignore_eos do not apply; generated_tokens
     * counts the tokens decoded to score them. */
    const char *const *choices;
    int32_t n_choices;
    /* A JSON schema (the subset docs/structured.md lists), compiled to a
     * grammar that constrains every sampled token: the answer is always a
     * compact JSON text valid for it, or an error (MD_ERR_INVALID when
     * max_new_tokens or on_token ends it before the value closes,
     * MD_ERR_UNSUPPORTED when no token of the vocabulary can continue it);
     * ignore_eos does not apply. NULL: free text. */
    const char *json_schema;
};

struct md_vqa_ask md_vqa_default_ask(const char *question);

/* A constrained answer, parsed: a choice is a string; a JSON schema's answer
 * has the schema's types (objects keep the schema's property order). */
enum md_value_type {
    MD_VALUE_BOOL = 1,
    MD_VALUE_INT = 2,
    MD_VALUE_STRING = 3,
    MD_VALUE_OBJECT = 4,
};

struct md_value {
    enum md_value_type type;
    bool boolean;                   /* MD_VALUE_BOOL */
    int64_t integer;                /* MD_VALUE_INT */
    char *string;                   /* MD_VALUE_STRING: UTF-8, owned */
    int32_t n_members;              /* MD_VALUE_OBJECT */
    char **keys;                    /* owned */
    struct md_value *members;       /* owned, n_members of them */
};

/* Whether schema is a JSON schema md_vqa can constrain answers to: MD_OK, or
 * MD_ERR_INVALID with the cause and where (a JSON pointer) in err, e.g.
 * "/properties/n: type \"number\" is not supported (integer is)". */
int md_vqa_check_schema(const char *schema, char *err, size_t errlen);

/* "yes|no" -> {"yes", "no"}: the choices of a '|'-separated list (each
 * trimmed of surrounding spaces; empty or duplicate choices are an error).
 * *out is one allocation (md_vqa_choices_free). MD_OK or MD_ERR_INVALID /
 * MD_ERR_NOMEM with err. */
int md_vqa_choices_parse(const char *list, char ***out, int32_t *n, char *err, size_t errlen);
void md_vqa_choices_free(char **choices);

struct md_vqa_timings {
    double encode_ms;               /* vision tower (+ stage (a)/(b) selection) */
    double prefill_ms, decode_ms;
};

struct md_vqa_answer {
    char *text;                     /* UTF-8, no leading or trailing whitespace */
    int32_t frames;                 /* frames (or images) the answer saw */
    int64_t first_pts_ns, last_pts_ns;
    int32_t visual_tokens;          /* before reduction */
    int32_t visual_tokens_kept;     /* entering the LLM */
    int32_t visual_tokens_final;    /* after the last pruning layer */
    int32_t prompt_tokens;
    int32_t generated_tokens;
    bool stopped;                   /* generation ended by max_new_tokens or on_token */
    int32_t batched;                /* answers generated together with it, itself included
                                       (1: alone; md_vqa_params.max_batch) */
    char reduce[256];               /* the spec in force (growing: with its cap) */
    struct md_vqa_timings timings;
    struct md_reduce_stats stats;   /* the reduction session's figures */
    /* constrained answers: the choice's index (-1 otherwise) and the answer
     * parsed (NULL for free text); text is the choice, or the JSON text */
    int32_t choice;
    struct md_value *value;
};

/* Answer ask->question over the frames s holds. MD_OK; MD_ERR_ABORTED;
 * MD_ERR_INVALID (no frames, a bad question); MD_ERR_CONTEXT_FULL (the
 * question leaves no room for a frame); an engine error. err names the
 * cause. The stream keeps its frames (ask again, or add more). */
int md_vqa_answer(struct md_vqa_stream *s, const struct md_vqa_ask *ask,
                  struct md_vqa_answer *out, char *err, size_t errlen);
void md_vqa_answer_clear(struct md_vqa_answer *a);

#ifdef __cplusplus
}
#endif

#endif
