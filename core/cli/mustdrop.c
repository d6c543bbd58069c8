/* mustdrop: answer a prompt with a GGUF model, streaming tokens as they come.
 *
 *   mustdrop [-m model.gguf] -p "prompt" [-n N] [--temp T] [--seed S] ...
 *   mustdrop [-m llm.gguf --mmproj mmproj.gguf] --image a.png [--image b.jpg]
 *            --video clip.mp4 [--frames N] [--fps F] --question "..."
 *
 * Without -m, the bundled default model (md_default_model_paths) is used.
 *
 * A question about images or a video is one md_vqa call (mustdrop-vqa.h),
 * the library's whole task, as in the GStreamer element: the video's frames
 * are decoded with FFmpeg (media.c) and offered in order to the one sampling
 * rule, the answer streams out through md_vqa's token callback. A prompt
 * without images is plain text generation on the LLM API.
 *
 * Tokens go to stdout; the frames used, load time and prefill/decode speed
 * go to stderr (so `mustdrop ... > answer.txt` keeps only the text). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "mustdrop-reduce.h"
#include "mustdrop-vision.h"
#include "mustdrop-vqa.h"
#include "mustdrop.h"
#include "progress.h"
#include "tokenizer.h"
#include "unicode.h"
#include "vqa.h"

#define CLI_MAX_IMAGES 64
/* -n -1 with an image or a video: until the end of text or of the context
 * (md_vqa stops where the context is full) */
#define CLI_VQA_UNLIMITED (1 << 30)

struct cli_args {
    const char *model;
    const char *prompt;
    const char *system;
    const char *chat;        /* NULL: raw prompt; else a template name or "auto" */
    int n_predict;
    int n_ctx;
    int n_threads;
    const char *isa;
    const char *device;      /* --device as given (NULL: auto) */
    struct cli_device dev;   /* --device parsed: where the text path's LLM runs */
    struct md_sampler_params sampling;
    bool temp_set;           /* --temp given (questions about images default to greedy) */
    bool verbose_prompt;
    enum progress_when progress;  /* --progress / --no-progress (default: stderr a terminal) */
    const char *mmproj;
    const char *images[CLI_MAX_IMAGES];
    int n_images;
    const char *video;
    int n_frames;            /* --frames N: most frames an answer takes (0: not given) */
    double fps;              /* --fps F: frames a second sampled (-1: not given) */
    const char *reduce;      /* --reduce SPEC: token reduction (mustdrop-reduce.h) */
    bool stats_json;         /* --stats json */
    char **choices;          /* --choices 'a|b|c' (md_vqa_choices_parse) */
    int32_t n_choices;
    char *json_schema;       /* --json-schema: the text, inline or read from the file */
    char default_llm[4096];  /* the default model's files, when -m is not given */
    char default_mmproj[4096];
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: mustdrop [-m MODEL.gguf] -p PROMPT [options]\n"
        "       mustdrop [-m LLM.gguf --mmproj MMPROJ.gguf] --video FILE --question TEXT [options]\n"
        "\n"
        "  -m, --model FILE     LLM in GGUF format (llama, qwen2 architectures); default:\n"
        "                       the bundled model " MD_DEFAULT_LLM_FILE ",\n"
        "                       searched in $MUSTDROP_MODEL_DIR, the installed data dir\n"
        "                       (<prefix>/share/mustdrop/models), the source tree's\n"
        "                       models/synthvqa\n"
        "  -p, --prompt TEXT    prompt text (raw, unless --chat is given)\n"
        "  -n, --n-predict N    tokens to generate (default 64; -1 = until end of text or context)\n"
        "      --chat [NAME]    wrap the prompt in a chat template: auto (default), vicuna,\n"
        "                       mistral, chatml, llama3\n"
        "  -s, --system TEXT    system prompt (with --chat, and for questions about images)\n"
        "      --temp T         temperature (default 0.8, and 0 = greedy for questions\n"
        "                       about images and video, as the element)\n"
        "      --top-k K        top-k (default 40; 0 = off)\n"
        "      --top-p P        top-p (default 0.95; 1 = off)\n"
        "      --repeat-penalty R  (default 1.0 = off)\n"
        "      --seed S         sampling seed (default 24301)\n"
        "  -c, --ctx-size N     KV cache size (default min(model, 4096))\n"
        "  -t, --threads N      CPU threads (default: all online CPUs)\n"
        "      --isa NAME       force CPU kernels: auto, scalar, avx2, avx512\n"
        "      --device D       auto (default: a CUDA GPU where built and present, else the\n"
        "                       CPU), cpu, cuda or cuda:N, as the element's device property\n"
        "      --verbose-prompt print the prompt's tokens before generating (text only)\n"
        "\n"
        "vision (LLaVA-style models: an LLM plus its mmproj), as the element answers:\n"
        "      --mmproj FILE    vision encoder + projector in GGUF format (default, when\n"
        "                       -m is not given either: " MD_DEFAULT_MMPROJ_FILE ")\n"
        "      --image FILE     an image (PNG, JPEG, ...; repeatable, in order, after the\n"
        "                       video's frames)\n"
        "      --video FILE     a video (any format FFmpeg reads), sampled as the element's\n"
        "                       windows are: --fps frames a second from its first frame,\n"
        "                       at most --frames of them, thinned uniformly\n"
        "      --frames N       the most frames an answer takes (default %d; max-frames)\n"
        "      --fps F          frames a second taken (default %g; 0 = every frame; sample-fps)\n"
        "      --progress, --no-progress  a progress line on stderr while the video\n"
        "                       is decoded and encoded (default: when stderr is a terminal)\n"
        "      --question TEXT  the question about the images/video (same as -p)\n"
        "      --reduce SPEC    visual-token reduction, e.g. mustdrop:tokens=128,\n"
        "                       hired:budget=0.2,alpha=0.5, fastv:k=2,r=0.5, dycoke:k=0.7,\n"
        "                       '+' composes stages (docs/reduction.md)\n"
        "      --choices 'A|B'  the answer is exactly one of these, the one the model\n"
        "                       scores highest (docs/structured.md)\n"
        "      --json-schema S  the answer is JSON valid for the schema S: a file, or the\n"
        "                       schema itself when it starts with '{' (docs/structured.md)\n"
        "      --stats json     print the token/FLOP/KV/time stats of the answer as one\n"
        "                       JSON line on stderr\n"
        "                       vision prompts use the model's chat template\n"
#ifdef MD_HAVE_FFMPEG
        "                       (images and video are decoded with FFmpeg; set\n"
        "                       MUSTDROP_FFMPEG_LOG=1 to see FFmpeg's own warnings)\n"
#else
        "                       NOTE: this mustdrop was built without FFmpeg, so --image\n"
        "                       and --video are not available\n"
#endif
        "\n"
        "  -h, --help           this text\n"
        "      --version        print the version\n", VQA_DEFAULT_FRAMES, VQA_DEFAULT_FPS);
}

static int parse_int(const char *opt, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -1 || v > 1000000000) {
        fprintf(stderr, "mustdrop: %s: '%s' is not a valid integer\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || v != v) {
        fprintf(stderr, "mustdrop: %s: '%s' is not a valid number\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out)
{
    double v;
    if (parse_double(opt, s, &v))
        return -1;
    *out = (float)v;
    return 0;
}

/* A file's text, NUL-terminated (at most 1 MiB); NULL with err. */
static char *read_text_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > cap;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : n > cap ? "larger than 1 MiB"
                                                                              : "read error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* --choices and --json-schema, checked now (a bad one is a usage error). */
static int parse_constraint(const char *o, const char *v, struct cli_args *a)
{
    char err[1024];
    if (!strcmp(o, "--choices")) {
        md_vqa_choices_free(a->choices);
        if (md_vqa_choices_parse(v, &a->choices, &a->n_choices, err, sizeof err)) {
            fprintf(stderr, "mustdrop: --choices: %s\n", err);
            return -1;
        }
        return 0;
    }
    free(a->json_schema);
    a->json_schema = v[strspn(v, " \t\r\n")] == '{' ? strdup(v) : read_text_file(v, err, sizeof err);
    if (!a->json_schema) {
        fprintf(stderr, "mustdrop: --json-schema: %s\n", err);
        return -1;
    }
    if (md_vqa_check_schema(a->json_schema, err, sizeof err)) {
        fprintf(stderr, "mustdrop: --json-schema: %s\n", err);
        return -1;
    }
    return 0;
}

/* The options about images and video; 1 when o is not one of them, 0 when
 * taken, -1 on a bad value. *i moves past the value. */
static int parse_vision_option(const char *o, const char *v, int *i, struct cli_args *a)
{
    if (strcmp(o, "--mmproj") && strcmp(o, "--image") && strcmp(o, "--video") &&
        strcmp(o, "--frames") && strcmp(o, "--fps") && strcmp(o, "--reduce") && strcmp(o, "--stats") &&
        strcmp(o, "--choices") && strcmp(o, "--json-schema"))
        return 1;
    if (!v) {
        fprintf(stderr, "mustdrop: %s needs a value\n", o);
        return -1;
    }
    (*i)++;
    if (!strcmp(o, "--mmproj")) {
        a->mmproj = v;
    } else if (!strcmp(o, "--image")) {
        if (a->n_images == CLI_MAX_IMAGES) { fprintf(stderr, "mustdrop: at most %d --image\n", CLI_MAX_IMAGES); return -1; }
        a->images[a->n_images++] = v;
    } else if (!strcmp(o, "--video")) {
        a->video = v;
    } else if (!strcmp(o, "--frames")) {
        if (parse_int(o, v, &a->n_frames)) return -1;
        if (a->n_frames <= 0 || a->n_frames > 4096) { fprintf(stderr, "mustdrop: --frames must be 1..4096\n"); return -1; }
    } else if (!strcmp(o, "--fps")) {
        if (parse_double(o, v, &a->fps)) return -1;
        if (!(a->fps >= 0 && a->fps <= 1000)) { fprintf(stderr, "mustdrop: --fps must be >= 0 and <= 1000 (0: every frame)\n"); return -1; }
    } else if (!strcmp(o, "--reduce")) {
        struct md_reduce_config rc_;
        char rerr[256];
        if (md_reduce_parse(v, &rc_, rerr, sizeof rerr)) { fprintf(stderr, "mustdrop: --reduce: %s\n", rerr); return -1; }
        a->reduce = v;
    } else if (!strcmp(o, "--choices") || !strcmp(o, "--json-schema")) {
        return parse_constraint(o, v, a);
    } else {
        if (strcmp(v, "json")) { fprintf(stderr, "mustdrop: --stats: only 'json' is supported, got '%s'\n", v); return -1; }
        a->stats_json = true;
    }
    return 0;
}

/* What goes together: the files, the media and the options about them. */
static int check_args(const struct cli_args *a)
{
    bool vision = a->n_images || a->video;
    if (!a->prompt) { fprintf(stderr, "mustdrop: no prompt given (-p TEXT)\n"); return -1; }
    if (vision && !a->mmproj && a->model) {
        /* without -m the default pair is used; an explicit LLM needs its own mmproj */
        fprintf(stderr, "mustdrop: --image and --video need --mmproj FILE.gguf (with -m)\n");
        return -1;
    }
    if (a->mmproj && !a->model) { fprintf(stderr, "mustdrop: --mmproj needs -m FILE.gguf (its LLM)\n"); return -1; }
    if (a->mmproj && !vision) { fprintf(stderr, "mustdrop: --mmproj needs --image FILE or --video FILE\n"); return -1; }
    if ((a->reduce || a->stats_json) && !vision) {
        fprintf(stderr, "mustdrop: --reduce and --stats need --mmproj and --image/--video\n");
        return -1;
    }
    if ((a->choices || a->json_schema) && !vision) {
        fprintf(stderr, "mustdrop: --choices and --json-schema need --image/--video\n");
        return -1;
    }
    if (a->choices && a->json_schema) { fprintf(stderr, "mustdrop: --choices or --json-schema, not both\n"); return -1; }
    if ((a->n_frames || a->fps >= 0) && !a->video) { fprintf(stderr, "mustdrop: --frames and --fps need --video FILE\n"); return -1; }
    /* md_vqa builds the prompt itself: its tokens are not shown */
    if (vision && a->verbose_prompt) {
        fprintf(stderr, "mustdrop: --verbose-prompt applies to text prompts only\n");
        return -1;
    }
    if (vision && a->n_predict == 0) { fprintf(stderr, "mustdrop: -n 0: a question needs an answer of at least one token\n"); return -1; }
#ifndef MD_HAVE_FFMPEG
    if (vision) {
        fprintf(stderr, "mustdrop: this mustdrop was built without FFmpeg: --image and --video "
                        "are not available\n");
        return -1;
    }
#endif
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (help/version), -1 on error. */
static int parse_args(int argc, char **argv, struct cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->n_predict = 64;
    a->fps = -1;
    a->sampling = md_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int vr = parse_vision_option(o, v, &i, a);
        if (vr <= 0) {
            if (vr < 0) return -1;
            continue;
        }
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "mustdrop: %s needs a value\n", o); return -1; } i++; } while (0)
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        else if (!strcmp(o, "--version")) { printf("mustdrop %s\n", md_version()); return 1; }
        else if (!strcmp(o, "-m") || !strcmp(o, "--model")) { NEED_VALUE(); a->model = v; }
        else if (!strcmp(o, "-p") || !strcmp(o, "--prompt") || !strcmp(o, "--question")) { NEED_VALUE(); a->prompt = v; }
        else if (!strcmp(o, "-s") || !strcmp(o, "--system")) { NEED_VALUE(); a->system = v; }
        else if (!strcmp(o, "--chat")) {
            if (v && v[0] != '-') { a->chat = v; i++; } else a->chat = "auto";
        }
        else if (!strcmp(o, "-n") || !strcmp(o, "--n-predict")) { NEED_VALUE(); if (parse_int(o, v, &a->n_predict)) return -1; }
        else if (!strcmp(o, "-c") || !strcmp(o, "--ctx-size")) { NEED_VALUE(); if (parse_int(o, v, &a->n_ctx)) return -1; }
        else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) { NEED_VALUE(); if (parse_int(o, v, &a->n_threads)) return -1; }
        else if (!strcmp(o, "--isa")) { NEED_VALUE(); a->isa = v; }
        else if (!strcmp(o, "--device")) {
            NEED_VALUE();
            if (cli_device_parse(v, &a->dev)) {
                fprintf(stderr, "mustdrop: invalid --device '%s' (auto, cpu, cuda or cuda:N)\n", v);
                return -1;
            }
            a->device = v;
        }
        else if (!strcmp(o, "--temp")) { NEED_VALUE(); if (parse_float(o, v, &a->sampling.temp)) return -1; a->temp_set = true; }
        else if (!strcmp(o, "--top-p")) { NEED_VALUE(); if (parse_float(o, v, &a->sampling.top_p)) return -1; }
        else if (!strcmp(o, "--repeat-penalty")) { NEED_VALUE(); if (parse_float(o, v, &a->sampling.repeat_penalty)) return -1; }
        else if (!strcmp(o, "--top-k")) { NEED_VALUE(); if (parse_int(o, v, &a->sampling.top_k)) return -1; }
        else if (!strcmp(o, "--seed")) {
            NEED_VALUE();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || *end || end == v) { fprintf(stderr, "mustdrop: --seed: '%s' is not a valid seed\n", v); return -1; }
            a->sampling.seed = s;
        }
        else if (!strcmp(o, "--verbose-prompt")) a->verbose_prompt = true;
        else if (!strcmp(o, "--progress")) a->progress = PROGRESS_ALWAYS;
        else if (!strcmp(o, "--no-progress")) a->progress = PROGRESS_NEVER;
        else { fprintf(stderr, "mustdrop: unknown option '%s' (see --help)\n", o); return -1; }
#undef NEED_VALUE
    }
    return check_args(a);
}

static void print_speed(double load_ms, int n_prefill, double prefill_ms, int n_decode,
                        double decode_ms, const char *device, int threads, const char *isa)
{
    fprintf(stderr, "mustdrop: load %.1f ms | prefill %d tokens in %.1f ms (%.1f tok/s) | "
                    "decode %d tokens in %.1f ms (%.1f tok/s) | %s, %d threads%s%s\n",
            load_ms, n_prefill, prefill_ms, prefill_ms > 0 ? 1000.0 * n_prefill / prefill_ms : 0.0,
            n_decode, decode_ms, decode_ms > 0 ? 1000.0 * n_decode / decode_ms : 0.0,
            device, threads, isa && *isa ? ", kernels " : "", isa ? isa : "");
}

/* ---- text: the plain LLM API ------------------------------------------------ */

/* A load failure, once: "mustdrop: m.gguf: truncated: ...". The loader's
 * message names the file for every file defect, and a device that cannot be
 * used ("--device cuda:1: ...") is not the file's fault; anything else gets
 * the path in front. */
static void print_load_error(const char *path, const char *err)
{
    size_t k = strlen(path);
    bool named = !strncmp(err, path, k) && err[k] == ':' && err[k + 1] == ' ';
    if (named || !strncmp(err, "--device ", 9))
        fprintf(stderr, "mustdrop: %s\n", err);
    else
        fprintf(stderr, "mustdrop: %s: %s\n", path, err);
}

/* The texts must be UTF-8: the tokenizers take bytes, so a prompt in
 * another encoding would be answered as garbage rather than refused. (A
 * question about images is checked by md_vqa_check_question.) */
static int check_texts(const struct cli_args *a)
{
    const char *names[2] = { "the prompt", "the system prompt" };
    const char *texts[2] = { a->prompt, a->system };
    for (int i = 0; i < 2; i++) {
        long bad = texts[i] ? md_utf8_first_invalid(texts[i]) : -1;
        if (bad >= 0) {
            fprintf(stderr, "mustdrop: %s is not valid UTF-8 (byte 0x%02x at offset %ld)\n",
                    names[i], (unsigned)(unsigned char)texts[i][bad], bad);
            return -1;
        }
    }
    return 0;
}

static char *build_prompt(const struct cli_args *a, const struct md_model *model)
{
    if (!a->chat)
        return strdup(a->prompt);
    int need = md_chat_format(a->chat, model, a->system, a->prompt, NULL, 0);
    if (need < 0) {
        fprintf(stderr, "mustdrop: unknown chat template '%s' (vicuna, mistral, chatml, llama3, auto)\n", a->chat);
        return NULL;
    }
    char *buf = malloc((size_t)need + 1);
    if (buf)
        md_chat_format(a->chat, model, a->system, a->prompt, buf, (size_t)need + 1);
    return buf;
}

static int32_t *tokenize_prompt(const struct md_vocab *vocab, const char *text, bool chat, int64_t *n_out)
{
    size_t len = strlen(text);
    int64_t n = md_tokenize(vocab, text, len, true, chat, NULL, 0);
    if (n < 0) return NULL;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!toks) return NULL;
    md_tokenize(vocab, text, len, true, chat, toks, n);
    *n_out = n;
    return toks;
}

/* Streams token bytes to stdout without splitting a UTF-8 character: byte
 * tokens (SPM byte fallback, BPE pieces) may end mid-character, so the tail
 * of an incomplete sequence waits for the next token. */
struct utf8_stream {
    char pending[8];
    int n_pending;
};

/* Length of the incomplete UTF-8 sequence at the end of buf (0 if none). */
static int utf8_incomplete_tail(const char *buf, int n)
{
    for (int back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)buf[n - back];
        if ((c & 0xC0) == 0x80) continue;            /* continuation byte */
        int need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

static void stream_piece(struct utf8_stream *st, const struct md_vocab *vocab, int32_t tok)
{
    char buf[256 + 8];
    memcpy(buf, st->pending, (size_t)st->n_pending);
    int32_t n = md_token_to_piece(vocab, tok, buf + st->n_pending, 256, false);
    if (n < 0 || n > 256) n = 0;
    n += st->n_pending;
    int tail = utf8_incomplete_tail(buf, n);
    fwrite(buf, 1, (size_t)(n - tail), stdout);
    memcpy(st->pending, buf + n - tail, (size_t)tail);
    st->n_pending = tail;
    fflush(stdout);
}

static void stream_flush(struct utf8_stream *st)
{
    fwrite(st->pending, 1, (size_t)st->n_pending, stdout);
    st->n_pending = 0;
    fflush(stdout);
}

static void print_timings(const struct md_context *ctx, const struct md_model *model,
                          const char *device)
{
    struct md_timings t = md_get_timings(ctx);
    fprintf(stderr, "\n\nmustdrop: %s\n", md_model_desc(model));
    print_speed(md_model_load_ms(model), t.n_prefill, t.prefill_ms, t.n_decode, t.decode_ms,
                device, md_context_n_threads(ctx), md_context_isa(ctx));
}

/* Sample up to n_predict tokens (-1: until the end of text or a full
 * context) after the prompt's prefill, streaming them; 0, or -1 with the
 * cause on stderr. */
static int sample_tokens(struct md_context *ctx, const struct md_model *model,
                         const struct cli_args *a, struct md_sampler *smp, struct utf8_stream *out)
{
    const struct md_vocab *vocab = md_model_vocab(model);
    int n_ctx = md_context_n_ctx(ctx), limit = a->n_predict < 0 ? n_ctx : a->n_predict;
    for (int i = 0; i < limit; i++) {
        int32_t t = md_sampler_sample(smp, md_get_logits(ctx, -1), md_model_n_vocab(model));
        if (t < 0 || md_vocab_is_eog(vocab, t))
            break;
        stream_piece(out, vocab, t);
        if (i + 1 == limit)
            break;
        if (md_context_n_past(ctx) >= n_ctx) {   /* the text so far stands */
            stream_flush(out);
            fprintf(stderr, "\nmustdrop: context full (%d tokens)\n", n_ctx);
            break;
        }
        int rc = md_decode(ctx, &t, 1, false);
        if (rc != MD_OK) {
            stream_flush(out);
            fprintf(stderr, "\nmustdrop: decode failed: %s: %s\n", md_status_str(rc),
                    md_context_error(ctx));
            return -1;
        }
    }
    return 0;
}

/* Prefill the prompt's tokens, then sample. */
static int generate(struct md_context *ctx, const struct md_model *model, const struct cli_args *a,
                    const int32_t *toks, int64_t n)
{
    struct md_batch batch = { .n = (int32_t)n, .tokens = (int32_t *)toks, .embd = NULL,
                              .pos = NULL, .all_logits = false };
    int rc = md_decode_batch(ctx, &batch);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop: prefill failed: %s: %s\n", md_status_str(rc), md_context_error(ctx));
        return -1;
    }
    struct md_sampler *smp = md_sampler_new(&a->sampling);
    if (!smp) {
        fprintf(stderr, "mustdrop: bad sampling parameters\n");
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        md_sampler_accept(smp, toks[i]);
    struct utf8_stream out = { .n_pending = 0 };
    int status = sample_tokens(ctx, model, a, smp, &out);
    stream_flush(&out);
    md_sampler_free(smp);
    return status;
}

/* The text path: the prompt (raw, echoed, or in the chat template), then
 * the answer. */
static int run_text(struct md_context *ctx, const struct md_model *model, const struct cli_args *a)
{
    int status = -1, n_ctx = md_context_n_ctx(ctx);
    int64_t n_prompt = 0;
    int32_t *toks = NULL;
    char *text = build_prompt(a, model);
    if (text)
        toks = tokenize_prompt(md_model_vocab(model), text, a->chat != NULL, &n_prompt);
    if (!toks) {
        if (text) fprintf(stderr, "mustdrop: cannot tokenize the prompt\n");
    } else if (n_prompt == 0) {
        fprintf(stderr, "mustdrop: the prompt is empty and the model adds no BOS token\n");
    } else if (n_prompt >= n_ctx) {   /* before echoing it */
        fprintf(stderr, "mustdrop: the prompt is %lld tokens and the context holds %d; shorten "
                "it or raise -c\n", (long long)n_prompt, n_ctx);
    } else {
        if (a->verbose_prompt) {
            fprintf(stderr, "prompt: %lld tokens:", (long long)n_prompt);
            for (int64_t i = 0; i < n_prompt; i++) fprintf(stderr, " %d", toks[i]);
            fprintf(stderr, "\n");
        }
        if (!a->chat) fputs(a->prompt, stdout);
        fflush(stdout);
        if (generate(ctx, model, a, toks, n_prompt) == 0) {
            print_timings(ctx, model, a->dev.used);
            status = 0;
        }
    }
    fputc('\n', stdout);
    free(toks);
    free(text);
    return status;
}

/* Load the LLM on --device and run the text path; the exit status. */
static int main_text(struct cli_args *a)
{
    char err[8192];
    struct md_model_params mp = md_model_default_params();
    mp.n_threads = a->n_threads;
    struct md_model *model = NULL;
    int rc = cli_model_load(&a->dev, a->model, NULL, 0, &mp, &model, err, sizeof err);
    if (rc != MD_OK) {
        print_load_error(a->model, err);
        return 1;
    }
    if (!md_model_vocab(model)) {
        fprintf(stderr, "mustdrop: '%s' has no tokenizer (tokenizer.ggml.model missing)\n", a->model);
        md_model_free(model);
        return 1;
    }
    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = a->n_ctx;
    cp.n_threads = a->n_threads;
    cp.isa = a->isa;
    struct md_context *ctx = NULL;
    rc = md_context_new(model, &cp, &ctx, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop: cannot create a context: %s\n", err);
        md_model_free(model);
        return 1;
    }
    int status = run_text(ctx, model, a) ? 1 : 0;
    md_context_free(ctx);
    md_model_free(model);
    return status;
}

/* ---- images and video: md_vqa ----------------------------------------------- */

#ifdef MD_HAVE_FFMPEG
#define ANSWER_SPACE " \t\r\n\f\v"

/* The answer streamed to stdout as md_vqa hands it out, and exactly as its
 * final text reads: without the whitespace around it, so leading whitespace
 * is skipped and trailing whitespace held back until text follows it. */
struct answer_out {
    size_t begin, done;     /* offsets in the text so far: where it starts, printed up to */
    bool begun;
    struct progress *pr;    /* ended by the first piece: the answer takes the terminal */
};

static bool print_so_far(const char *text, int32_t token, void *user)
{
    struct answer_out *o = user;
    size_t n = strlen(text);
    (void)token;
    progress_end(o->pr);
    if (!o->begun) {
        size_t b = strspn(text, ANSWER_SPACE);
        if (b == n)
            return true;
        o->begun = true;
        o->begin = o->done = b;
    }
    size_t end = n;
    while (end > o->done && strchr(ANSWER_SPACE, text[end - 1]))
        end--;
    if (end > o->done) {
        fwrite(text + o->done, 1, end - o->done, stdout);
        fflush(stdout);
        o->done = end;
    }
    return true;
}

/* What of the final answer the callback has not printed: a character cut
 * off by the last token, which the final text ends with repaired. */
static void print_rest(const struct answer_out *o, const char *text)
{
    size_t printed = o->begun ? o->done - o->begin : 0, n = strlen(text);
    if (n > printed)
        fwrite(text + printed, 1, n - printed, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static struct md_vqa_params vqa_params(const struct cli_args *a)
{
    struct md_vqa_params p = md_vqa_default_params();
    p.model = a->model;
    p.mmproj = a->mmproj;
    if (a->device)
        p.device = a->device;
    p.n_threads = a->n_threads;
    p.n_ctx = a->n_ctx;
    p.isa = a->isa;
    p.reduce = a->reduce;
    p.sample_fps = a->fps >= 0 ? a->fps : VQA_DEFAULT_FPS;
    p.max_frames = a->n_frames ? a->n_frames : VQA_DEFAULT_FRAMES;
    p.max_new_tokens = a->n_predict < 0 ? CLI_VQA_UNLIMITED : a->n_predict;
    p.log = vqa_log_stderr;
    p.log_user = "mustdrop";
    return p;
}

static struct md_vqa_ask vqa_ask(const struct cli_args *a, struct answer_out *out)
{
    struct md_vqa_ask ask = md_vqa_default_ask(a->prompt);
    ask.system = a->system;
    ask.chat_template = a->chat;
    ask.sampling = a->sampling;
    if (!a->temp_set)   /* greedy, as the element: the same clip, the same answer */
        ask.sampling.temp = 0.0f;
    ask.on_token = print_so_far;
    ask.token_user = out;
    ask.choices = (const char *const *)a->choices;
    ask.n_choices = a->n_choices;
    ask.json_schema = a->json_schema;
    return ask;
}

static int add_images(struct md_vqa *vqa, struct md_vqa_stream *s, const struct cli_args *a)
{
    char err[512];
    for (int i = 0; i < a->n_images; i++) {
        struct media_frame f;
        if (media_load_image(a->images[i], &f, err, sizeof err)) {
            fprintf(stderr, "mustdrop: image: %s\n", err);
            return -1;
        }
        int rc = md_vqa_stream_add_image(s, f.rgb, f.width, f.height, f.stride);
        if (rc == MD_OK)
            fprintf(stderr, "mustdrop: image '%s': %dx%d -> %d embedding rows\n", a->images[i],
                    (int)f.width, (int)f.height,
                    (int)md_vision_image_tokens(md_vqa_vision(vqa), f.width, f.height));
        else
            fprintf(stderr, "mustdrop: image '%s': %s\n", a->images[i], md_vqa_stream_error(s));
        media_frame_free(&f);
        if (rc)
            return -1;
    }
    return 0;
}

static int add_video(struct md_vqa *vqa, struct md_vqa_stream *s, const struct cli_args *a,
                     struct progress *pr)
{
    char err[1024], rate[64] = "every frame";
    struct vqa_video v;
    const struct md_vqa_params p = vqa_params(a);
    int rc = vqa_add_video(vqa, s, a->video, pr, &v, err, sizeof err);
    progress_clear(pr);
    if (rc) {
        fprintf(stderr, "mustdrop: video: %s\n", err);
        return -1;
    }
    if (p.sample_fps > 0)
        snprintf(rate, sizeof rate, "%g fps", p.sample_fps);
    fprintf(stderr, "mustdrop: video '%s': %s %dx%d, %lld frames, %.3f s; %s, at most %d: "
            "using %d frame(s), %.6f s to %.6f s\n", a->video, v.info.codec,
            (int)v.info.width, (int)v.info.height, (long long)v.info.n_decoded,
            v.info.duration_ns / 1e9, rate, (int)p.max_frames,
            (int)md_vqa_stream_n_frames(s), md_vqa_stream_first_pts(s) / 1e9,
            md_vqa_stream_last_pts(s) / 1e9);
    if (v.info.n_damaged)
        fprintf(stderr, "mustdrop: video '%s': %lld damaged packet(s) or frame(s) skipped\n",
                a->video, (long long)v.info.n_damaged);
    return 0;
}

/* What the answer was made of, and how fast (stderr). */
static void report_answer(struct md_vqa *vqa, const struct md_vqa_stream *s,
                          const struct md_vqa_answer *ans, const struct cli_args *a)
{
    const struct md_vision *vis = md_vqa_vision(vqa);
    int32_t held = md_vqa_stream_n_frames(s), frames = ans->frames - a->n_images;
    int32_t blocks = a->n_images + (md_vision_video_is_block(vis) && frames > 0 ? 1 : frames);
    if (ans->frames < held)
        fprintf(stderr, "mustdrop: %d of the %d frame(s) fit the context (spread uniformly; -c "
                "raises it)\n", (int)frames, (int)(held - a->n_images));
    fprintf(stderr, "mustdrop: prompt: %d rows, %d of them image rows in %d block(s)\n",
            (int)ans->prompt_tokens, (int)ans->visual_tokens_kept, (int)blocks);
    if (a->reduce)
        fprintf(stderr, "mustdrop: reduce '%s': visual tokens %d -> %d (vision) -> %d (select) "
                "-> %d (final), layer average %.1f\n", a->reduce, ans->stats.vis_in,
                ans->stats.vis_after_vision, ans->stats.vis_after_select, ans->stats.vis_final,
                ans->stats.vis_layer_avg);
    fprintf(stderr, "\nmustdrop: %s\nmustdrop: vision encode %.1f ms\n",
            md_model_desc(md_vqa_model(vqa)), ans->timings.encode_ms);
    const struct md_context *ctx = md_vqa_context(vqa);
    print_speed(md_model_load_ms(md_vqa_model(vqa)), ans->prompt_tokens, ans->timings.prefill_ms,
                ans->stats.n_generated, ans->timings.decode_ms, md_vqa_device(vqa),
                md_context_n_threads(ctx), md_context_isa(ctx));
}

static void print_stats_json(const struct md_vqa_answer *ans, const char *spec)
{
    int n = md_reduce_stats_json(&ans->stats, spec, NULL, 0);
    char *buf = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && md_reduce_stats_json(&ans->stats, spec, buf, (size_t)n + 1) == n)
        fprintf(stderr, "%s\n", buf);
    free(buf);
}

/* The question's check, the frames and the answer; 0, 1 for a failure, 2
 * for a question that cannot be asked. */
static int answer(struct md_vqa *vqa, struct md_vqa_stream *s, const struct cli_args *a,
                  struct progress *pr)
{
    char err[1024];
    int rc = md_vqa_check_question(vqa, a->prompt, a->system, err, sizeof err);
    if (rc != MD_OK) {   /* before decoding anything */
        fprintf(stderr, "mustdrop: %s\n", err);
        return rc == MD_ERR_INVALID ? 2 : 1;
    }
    /* The video goes in before the images: a window counts still images
     * among its max_frames and thins them with the frames, so frames after
     * images would drop some of them. */
    if ((a->video && add_video(vqa, s, a, pr)) || add_images(vqa, s, a))
        return 1;
    struct answer_out out = { 0, 0, false, pr };
    struct md_vqa_ask ask = vqa_ask(a, &out);
    struct md_vqa_answer ans;
    /* a window stream encodes its frames inside md_vqa_answer: the abort
     * hook (progress_tick) keeps the time on this line going meanwhile */
    progress_set(pr, true, -1, "encoding %d frame(s) and the prompt",
                 (int)md_vqa_stream_n_frames(s));
    rc = md_vqa_answer(s, &ask, &ans, err, sizeof err);
    progress_end(pr);
    if (rc != MD_OK) {
        if (out.begun)
            fputc('\n', stdout);
        fprintf(stderr, "mustdrop: %s\n", err);
        return 1;
    }
    print_rest(&out, ans.text);
    if (ans.choice >= 0)
        fprintf(stderr, "mustdrop: choice %d of %d, %d token(s) scored\n", (int)ans.choice + 1,
                (int)a->n_choices, (int)ans.generated_tokens);
    report_answer(vqa, s, &ans, a);
    if (a->stats_json)
        print_stats_json(&ans, a->reduce ? a->reduce : ans.reduce);
    md_vqa_answer_clear(&ans);
    return 0;
}

/* The question about images and video, as one md_vqa task; the exit status. */
static int main_vision(const struct cli_args *a)
{
    char err[8192];
    media_set_verbose(getenv("MUSTDROP_FFMPEG_LOG") != NULL);
    struct progress pr;
    progress_init(&pr, a->progress, "mustdrop");
    struct md_vqa_params p = vqa_params(a);
    p.abort = progress_tick;
    p.abort_user = &pr;
    p.log = progress_log;
    p.log_user = &pr;
    struct md_vqa *vqa = NULL;
    int rc = md_vqa_load(&p, &vqa, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop: %s\n", err);
        return rc == MD_ERR_INVALID ? 2 : 1;
    }
    fprintf(stderr, "mustdrop: vision: %s\n", md_vision_desc(md_vqa_vision(vqa)));
    struct md_vqa_stream *s = NULL;
    int status = 1;
    if (md_vqa_stream_new(vqa, MD_VQA_WINDOW, &s, err, sizeof err) != MD_OK)
        fprintf(stderr, "mustdrop: %s\n", err);
    else
        status = answer(vqa, s, a, &pr);
    md_vqa_stream_free(s);
    md_vqa_free(vqa);
    return status;
}
#endif

static int run(struct cli_args *ap)
{
    struct cli_args a = *ap;   /* the default model's paths are filled in here */
    char err[8192];
    bool vision = a.n_images || a.video;
    if (!a.model) {
        if (vqa_default_model(a.default_llm, sizeof a.default_llm, a.default_mmproj,
                              sizeof a.default_mmproj, err, sizeof err)) {
            fprintf(stderr, "mustdrop: no model given (-m FILE.gguf) and %s\n", err);
            return 1;
        }
        a.model = a.default_llm;
        if (vision)
            a.mmproj = a.default_mmproj;
    }
#ifdef MD_HAVE_FFMPEG
    if (vision)
        return main_vision(&a);
#endif
    if (check_texts(&a)) return 2;
    return main_text(&a);
}

int main(int argc, char **argv)
{
    struct cli_args a;
    int pr = parse_args(argc, argv, &a);
    int status = pr ? (pr > 0 ? 0 : 2) : run(&a);
    md_vqa_choices_free(a.choices);
    free(a.json_schema);
    return status;
}
