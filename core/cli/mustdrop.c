/* mustdrop: answer a prompt with a GGUF model, streaming tokens as they come.
 *
 *   mustdrop [-m model.gguf] -p "prompt" [-n N] [--temp T] [--seed S] ...
 *   mustdrop [-m llm.gguf --mmproj mmproj.gguf] --image a.png [--image b.jpg]
 *            --video clip.mp4 [--frames N | --fps F] --question "..."
 *
 * Without -m, the bundled default model (md_default_model_paths) is used.
 *
 * Images and video frames are decoded with FFmpeg (media.c) when the CLI is
 * built with it; the frames used and their timestamps go to stderr.
 * Tokens go to stdout; load time and prefill/decode speed go to stderr at
 * the end (so `mustdrop ... > answer.txt` keeps only the text). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mustdrop-reduce.h"
#include "mustdrop-vision.h"
#include "mustdrop.h"
#include "tokenizer.h"
#include "vqa.h"
#include "device.h"

#define CLI_MAX_IMAGES 64
#define CLI_DEFAULT_FRAMES VQA_DEFAULT_FRAMES

struct cli_args {
    const char *model;
    const char *prompt;
    const char *system;
    const char *chat;        /* NULL: raw prompt; else a template name or "auto" */
    int n_predict;
    int n_ctx;
    int n_threads;
    const char *isa;
    struct cli_device dev;   /* --device: where the LLM and the vision tower run */
    struct md_sampler_params sampling;
    bool verbose_prompt;
    const char *mmproj;
    const char *images[CLI_MAX_IMAGES];
    int n_images;
    const char *video;
    int n_frames;            /* --frames N (0: not given) */
    float fps;               /* --fps F (0: not given) */
    const char *reduce;      /* --reduce SPEC: token reduction (mustdrop-reduce.h) */
    bool stats_json;         /* --stats json */
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
        "  -s, --system TEXT    system prompt for --chat\n"
        "      --temp T         temperature (default 0.8; 0 = greedy)\n"
        "      --top-k K        top-k (default 40; 0 = off)\n"
        "      --top-p P        top-p (default 0.95; 1 = off)\n"
        "      --repeat-penalty R  (default 1.0 = off)\n"
        "      --seed S         sampling seed (default 24301)\n"
        "  -c, --ctx-size N     KV cache size (default min(model, 4096))\n"
        "  -t, --threads N      CPU threads (default: all online CPUs)\n"
        "      --isa NAME       force CPU kernels: auto, scalar, avx2, avx512\n"
        "      --device D       auto (default: a CUDA GPU where built and present, else the\n"
        "                       CPU), cpu, cuda or cuda:N, as the element's device property\n"
        "      --verbose-prompt print the prompt's tokens before generating\n"
        "\n"
        "vision (LLaVA-style models: an LLM plus its mmproj):\n"
        "      --mmproj FILE    vision encoder + projector in GGUF format (default, when\n"
        "                       -m is not given either: " MD_DEFAULT_MMPROJ_FILE ")\n"
        "      --image FILE     an image (PNG, JPEG, ...; repeatable, in order)\n"
        "      --video FILE     a video: frames sampled uniformly (any format FFmpeg reads)\n"
        "      --frames N       take N frames spread over the video (default %d)\n"
        "      --fps F          take F frames per second instead (at most 256 frames)\n"
        "      --question TEXT  the question about the images/video (same as -p)\n"
        "      --reduce SPEC    visual-token reduction, e.g. mustdrop:tokens=128,\n"
        "                       hired:budget=0.2,alpha=0.5, fastv:k=2,r=0.5, dycoke:k=0.7,\n"
        "                       '+' composes stages (docs/reduction.md)\n"
        "      --stats json     with --reduce: print the token/FLOP/KV/time stats as one\n"
        "                       JSON line on stderr\n"
        "                       vision prompts always use the model's chat template\n"
#ifdef MD_HAVE_FFMPEG
        "                       (images and video are decoded with FFmpeg; set\n"
        "                       MUSTDROP_FFMPEG_LOG=1 to see FFmpeg's own warnings)\n"
#else
        "                       NOTE: this mustdrop was built without FFmpeg, so --image\n"
        "                       and --video are not available\n"
#endif
        "\n"
        "  -h, --help           this text\n"
        "      --version        print the version\n", CLI_DEFAULT_FRAMES);
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

static int parse_float(const char *opt, const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || v != v) {
        fprintf(stderr, "mustdrop: %s: '%s' is not a valid number\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (help/version), -1 on error. */
static int parse_args(int argc, char **argv, struct cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->n_predict = 64;
    a->sampling = md_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "mustdrop: %s needs a value\n", o); return -1; } i++; } while (0)
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        else if (!strcmp(o, "--version")) { printf("mustdrop %s\n", md_version()); return 1; }
        else if (!strcmp(o, "-m") || !strcmp(o, "--model")) { NEED_VALUE(); a->model = v; }
        else if (!strcmp(o, "-p") || !strcmp(o, "--prompt") || !strcmp(o, "--question")) { NEED_VALUE(); a->prompt = v; }
        else if (!strcmp(o, "--mmproj")) { NEED_VALUE(); a->mmproj = v; }
        else if (!strcmp(o, "--image")) {
            NEED_VALUE();
            if (a->n_images == CLI_MAX_IMAGES) { fprintf(stderr, "mustdrop: at most %d --image\n", CLI_MAX_IMAGES); return -1; }
            a->images[a->n_images++] = v;
        }
        else if (!strcmp(o, "--video")) { NEED_VALUE(); a->video = v; }
        else if (!strcmp(o, "--frames")) {
            NEED_VALUE();
            if (parse_int(o, v, &a->n_frames)) return -1;
            if (a->n_frames <= 0 || a->n_frames > 4096) { fprintf(stderr, "mustdrop: --frames must be 1..4096\n"); return -1; }
        }
        else if (!strcmp(o, "--fps")) {
            NEED_VALUE();
            if (parse_float(o, v, &a->fps)) return -1;
            if (!(a->fps > 0 && a->fps <= 1000)) { fprintf(stderr, "mustdrop: --fps must be > 0 and <= 1000\n"); return -1; }
        }
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
        }
        else if (!strcmp(o, "--temp")) { NEED_VALUE(); if (parse_float(o, v, &a->sampling.temp)) return -1; }
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
        else if (!strcmp(o, "--reduce")) {
            NEED_VALUE();
            struct md_reduce_config rc_;
            char rerr[256];
            if (md_reduce_parse(v, &rc_, rerr, sizeof rerr)) { fprintf(stderr, "mustdrop: --reduce: %s\n", rerr); return -1; }
            a->reduce = v;
        }
        else if (!strcmp(o, "--stats")) {
            NEED_VALUE();
            if (strcmp(v, "json")) { fprintf(stderr, "mustdrop: --stats: only 'json' is supported, got '%s'\n", v); return -1; }
            a->stats_json = true;
        }
        else { fprintf(stderr, "mustdrop: unknown option '%s' (see --help)\n", o); return -1; }
#undef NEED_VALUE
    }
    if (!a->prompt) { fprintf(stderr, "mustdrop: no prompt given (-p TEXT)\n"); return -1; }
    if ((a->n_images || a->video) && !a->mmproj && a->model) {
        /* without -m the default pair is used; an explicit LLM needs its own mmproj */
        fprintf(stderr, "mustdrop: --image and --video need --mmproj FILE.gguf (with -m)\n");
        return -1;
    }
    if (a->mmproj && !a->model) {
        fprintf(stderr, "mustdrop: --mmproj needs -m FILE.gguf (its LLM)\n");
        return -1;
    }
    if (a->mmproj && !a->n_images && !a->video) {
        fprintf(stderr, "mustdrop: --mmproj needs --image FILE or --video FILE\n");
        return -1;
    }
    if (a->n_frames && a->fps > 0) {
        fprintf(stderr, "mustdrop: give --frames or --fps, not both\n");
        return -1;
    }
    if ((a->reduce || a->stats_json) && !a->n_images && !a->video) {
        fprintf(stderr, "mustdrop: --reduce and --stats need --mmproj and --image/--video\n");
        return -1;
    }
    if ((a->n_frames || a->fps > 0) && !a->video) {
        fprintf(stderr, "mustdrop: --frames and --fps need --video FILE\n");
        return -1;
    }
#ifndef MD_HAVE_FFMPEG
    if (a->n_images || a->video) {
        fprintf(stderr, "mustdrop: this mustdrop was built without FFmpeg: --image and --video "
                        "are not available\n");
        return -1;
    }
#endif
    return 0;
}

/* A load failure, once: "mustdrop: m.gguf: truncated: ...". */
static void print_load_error(const char *path, const char *err)
{
    char buf[8192];
    fprintf(stderr, "mustdrop: %s\n", vqa_load_error(path, err, buf, sizeof buf));
}

/* The texts must be UTF-8 (the tokenizers take bytes, so a prompt in
 * another encoding would be answered as garbage rather than refused); a
 * question about images must say something. */
static int check_texts(const struct cli_args *a)
{
    char err[256];
    bool vision = a->n_images || a->video;
    if (vision && vqa_check_question(NULL, a->prompt, 0, err, sizeof err)) {
        fprintf(stderr, "mustdrop: %s\n", err);
        return -1;
    }
    const char *names[2] = { vision ? "the question" : "the prompt", "the system prompt" };
    const char *texts[2] = { a->prompt, a->system };
    for (int i = 0; i < 2; i++) {
        long bad = texts[i] ? vqa_utf8_bad_offset(texts[i]) : -1;
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
    fprintf(stderr, "mustdrop: load %.1f ms | prefill %d tokens in %.1f ms (%.1f tok/s) | "
                    "decode %d tokens in %.1f ms (%.1f tok/s) | %s, %d threads%s%s\n",
            md_model_load_ms(model),
            t.n_prefill, t.prefill_ms, t.prefill_ms > 0 ? 1000.0 * t.n_prefill / t.prefill_ms : 0.0,
            t.n_decode, t.decode_ms, t.decode_ms > 0 ? 1000.0 * t.n_decode / t.decode_ms : 0.0,
            device, md_context_n_threads(ctx), *md_context_isa(ctx) ? ", kernels " : "",
            md_context_isa(ctx));   /* no CPU ISA to name on a GPU */
}

static void on_token(void *user, const struct md_vocab *vocab, int32_t token)
{
    stream_piece(user, vocab, token);
}

static struct vqa_gen gen_params(const struct cli_args *a, struct utf8_stream *out)
{
    struct vqa_gen g = { a->sampling, a->n_predict, on_token, out };
    return g;
}

/* Prefill the batch (text ids and MD_TOKEN_EMBD rows), then sample. */
static int generate(struct md_context *ctx, const struct md_model *model, const struct cli_args *a,
                    const struct md_batch *batch)
{
    char err[1024];
    struct utf8_stream out = { .n_pending = 0 };
    struct vqa_gen g = gen_params(a, &out);
    int rc = vqa_generate(ctx, model, &g, batch, err, sizeof err);
    stream_flush(&out);
    if (rc != VQA_GEN_OK) {   /* the last two come mid-answer: on a line of their own */
        bool mid = rc == VQA_GEN_CONTEXT_FULL || !strncmp(err, "decode", 6);
        fprintf(stderr, "%smustdrop: %s\n", mid ? "\n" : "", err);
    }
    return rc < 0 ? -1 : 0;
}

#ifdef MD_HAVE_FFMPEG
static int encode_images(struct md_vision *vis, const struct cli_args *a, struct vqa_input *in)
{
    char err[512];
    for (int i = 0; i < a->n_images; i++) {
        struct media_frame f;
        if (media_load_image(a->images[i], &f, err, sizeof err)) {
            fprintf(stderr, "mustdrop: image: %s\n", err);
            return -1;
        }
        int64_t before = in->n_total;
        int rc = vqa_encode_image(vis, &f, in, err, sizeof err);
        if (!rc)
            fprintf(stderr, "mustdrop: image '%s': %dx%d -> %d embedding rows\n",
                    a->images[i], (int)f.width, (int)f.height, (int)(in->n_total - before));
        else
            fprintf(stderr, "mustdrop: cannot encode image '%s': %s\n", a->images[i], err);
        media_frame_free(&f);
        if (rc) return -1;
    }
    return 0;
}

/* Decode the frames --frames N (or --fps F) selects from --video. */
static int load_video(const struct cli_args *a, struct media_frames *v)
{
    char err[512];
    if (vqa_load_video(a->video, a->n_frames, a->fps, v, err, sizeof err)) {
        fprintf(stderr, "mustdrop: video: %s\n", err);
        return -1;
    }
    return 0;
}

static int encode_video(struct md_vision *vis, const struct cli_args *a, struct vqa_input *in)
{
    char err[512];
    struct media_frames v;
    if (load_video(a, &v))
        return -1;
    fprintf(stderr, "mustdrop: video '%s': %s %dx%d, %lld frames, %.3f s; using %d frame(s):\n",
            a->video, v.codec, (int)v.frame[0].width, (int)v.frame[0].height,
            (long long)v.n_decoded, v.duration_ns / 1e9, (int)v.n);
    if (v.n_damaged)
        fprintf(stderr, "mustdrop: video '%s': %lld damaged packet(s) or frame(s) skipped\n",
                a->video, (long long)v.n_damaged);
    for (int32_t i = 0; i < v.n; i++)
        fprintf(stderr, "mustdrop:   frame %lld at %.6f s (pts %lld ns)\n", (long long)v.frame[i].index,
                v.frame[i].pts_ns / 1e9, (long long)v.frame[i].pts_ns);
    int64_t before = in->n_total;
    int rc = vqa_encode_video(vis, &v, in, err, sizeof err);
    if (!rc)
        fprintf(stderr, "mustdrop: video -> %d embedding rows (%d per frame%s)\n",
                (int)(in->n_total - before), (int)md_vision_frame_tokens(vis),
                md_vision_video_is_block(vis) ? ", one <video> block" : "");
    else
        fprintf(stderr, "mustdrop: cannot encode the video frames: %s\n", err);
    media_frames_free(&v);
    return rc ? -1 : 0;
}

/* --reduce: images and video frames go through a reduction session
 * (mustdrop-reduce.h), which keeps only their reduced tokens, prefills with
 * the reduction's LLM-side stages and decodes with its KV policy. */
static int reduce_add_media(struct md_reduce_session *s, const struct cli_args *a)
{
    char err[512];
    for (int i = 0; i < a->n_images; i++) {
        struct media_frame f;
        if (media_load_image(a->images[i], &f, err, sizeof err)) {
            fprintf(stderr, "mustdrop: image: %s\n", err);
            return -1;
        }
        int rc = md_reduce_add_image(s, f.rgb, f.width, f.height, f.stride);
        media_frame_free(&f);
        if (rc) {
            fprintf(stderr, "mustdrop: image '%s': %s\n", a->images[i], md_reduce_error(s));
            return -1;
        }
    }
    if (!a->video)
        return 0;
    struct media_frames v;
    if (load_video(a, &v))
        return -1;
    fprintf(stderr, "mustdrop: video '%s': using %d frame(s)\n", a->video, (int)v.n);
    int rc = vqa_reduce_add_video(s, &v, err, sizeof err);
    media_frames_free(&v);
    if (rc)
        fprintf(stderr, "mustdrop: video frames: %s\n", err);
    return rc ? -1 : 0;
}

static int reduce_generate(struct md_reduce_session *s, const struct md_model *model,
                           const struct cli_args *a, int n_ctx)
{
    char err[1024];
    struct utf8_stream out = { .n_pending = 0 };
    struct vqa_gen g = gen_params(a, &out);
    int rc = vqa_reduce_generate(s, model, &g, n_ctx, err, sizeof err);
    stream_flush(&out);
    if (rc < 0 && !strncmp(err, "bad sampling", 12)) {
        fprintf(stderr, "mustdrop: %s\n", err);
        return -1;
    }
    if (rc < 0)
        fprintf(stderr, "\nmustdrop: %s\n", err);
    return 0;
}

static void reduce_report(const struct md_reduce_session *s, const struct cli_args *a)
{
    const struct md_reduce_stats *st = md_reduce_stats(s);
    fprintf(stderr, "\n\nmustdrop: reduce '%s': visual tokens %d -> %d (vision) -> %d (select) -> "
                    "%d (final), layer average %.1f | prefill %.1f ms, decode %d tokens in %.1f ms\n",
            a->reduce, st->vis_in, st->vis_after_vision, st->vis_after_select, st->vis_final,
            st->vis_layer_avg, st->ms_prefill, st->n_generated, st->ms_decode);
    if (!a->stats_json)
        return;
    int n = md_reduce_stats_json(st, a->reduce, NULL, 0);
    char *buf = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && md_reduce_stats_json(st, a->reduce, buf, (size_t)n + 1) == n)
        fprintf(stderr, "%s\n", buf);
    free(buf);
}

/* The session's prefill message counts rows; when the question is most of
 * them, say so, as it is what the user can change. */
static void note_long_question(const struct md_model *model, const char *q, int n_ctx)
{
    int64_t n_q = vqa_count_tokens(model, q);
    if (2 * n_q >= n_ctx)
        fprintf(stderr, "mustdrop: the question alone is %lld tokens of the %d the context "
                "holds; ask a shorter question or raise -c\n", (long long)n_q, n_ctx);
}

static int run_reduce(struct md_context *ctx, const struct md_model *model, struct md_vision *vis,
                      const struct cli_args *a)
{
    struct md_reduce_config cfg;
    char err[512];
    if (md_reduce_parse(a->reduce, &cfg, err, sizeof err)) {
        fprintf(stderr, "mustdrop: --reduce: %s\n", err);
        return -1;
    }
    struct md_reduce_session *s = NULL;
    if (md_reduce_session_new(ctx, vis, &cfg, &s, err, sizeof err)) {
        fprintf(stderr, "mustdrop: --reduce: %s\n", err);
        return -1;
    }
    int status = -1;
    if (reduce_add_media(s, a) == 0) {
        if (md_reduce_prefill(s, a->chat, a->system, a->prompt) != MD_OK) {
            fprintf(stderr, "mustdrop: %s\n", md_reduce_error(s));   /* "prefill: ..." */
            note_long_question(model, a->prompt, md_context_n_ctx(ctx));
        } else if (reduce_generate(s, model, a, md_context_n_ctx(ctx)) == 0) {
            reduce_report(s, a);
            status = 0;
        }
    }
    fputc('\n', stdout);
    md_reduce_session_free(s);
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
        struct md_batch batch = { .n = (int32_t)n_prompt, .tokens = toks, .embd = NULL,
                                  .pos = NULL, .all_logits = false };
        if (generate(ctx, model, a, &batch) == 0) {
            print_timings(ctx, model, a->dev.used);
            status = 0;
        }
    }
    fputc('\n', stdout);
    free(toks);
    free(text);
    return status;
}

/* The vision path: encode, build the multi-block prompt, generate. */
static int run_vision(struct md_context *ctx, const struct md_model *model, const struct cli_args *a)
{
    char err[512] = "";
    if (vqa_check_question(model, a->prompt, md_context_n_ctx(ctx), err, sizeof err)) {
        fprintf(stderr, "mustdrop: %s\n", err);   /* before loading or encoding anything */
        return -1;
    }
    struct md_vision_params vp = md_vision_default_params();
    vp.n_threads = a->n_threads;
    struct md_vision *vis = NULL;
    struct cli_device dev = a->dev;   /* same --device as the LLM */
    int rc = cli_vision_load(&dev, a->mmproj, NULL, 0, &vp, &vis, err, sizeof err);
    if (rc != MD_OK) {
        print_load_error(a->mmproj, err);
        return -1;
    }
    int status = -1;
    struct vqa_input in = { NULL, NULL, NULL, 0, 0 };
    struct md_vision_prompt pr;
    memset(&pr, 0, sizeof pr);
    if (md_vision_n_embd(vis) != md_model_n_embd(model)) {
        fprintf(stderr, "mustdrop: the mmproj gives rows of %d but the model takes %d: not a pair\n",
                (int)md_vision_n_embd(vis), (int)md_model_n_embd(model));
        goto done;
    }
    fprintf(stderr, "mustdrop: vision: %s\n", md_vision_desc(vis));
    if (a->reduce) {
        status = run_reduce(ctx, model, vis, a);
        goto done;
    }
    if (encode_images(vis, a, &in) || (a->video && encode_video(vis, a, &in)))
        goto done;
    rc = md_vision_prompt_build_multi(model, a->chat, a->system, a->prompt, in.embd, in.rows,
                                      in.kinds, in.n_blocks, md_model_n_embd(model), &pr, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop: cannot build the prompt: %s\n", err[0] ? err : md_status_str(rc));
        goto done;
    }
    fprintf(stderr, "mustdrop: prompt: %d rows, %d of them image rows in %d block(s)\n",
            (int)pr.n, (int)pr.n_image, (int)in.n_blocks);
    if (pr.n >= md_context_n_ctx(ctx)) {
        vqa_prompt_too_long(model, a->prompt, pr.n, pr.n_image, md_context_n_ctx(ctx), err,
                            sizeof err);
        fprintf(stderr, "mustdrop: %s\n", err);
        goto done;
    }
    if (a->verbose_prompt) {
        fprintf(stderr, "prompt: %d tokens:", (int)pr.n);
        for (int32_t i = 0; i < pr.n; i++) fprintf(stderr, " %d", pr.tokens[i]);
        fprintf(stderr, "\n");
    }
    if (generate(ctx, model, a, &pr.batch) == 0) {
        print_timings(ctx, model, a->dev.used);
        status = 0;
    }
    fputc('\n', stdout);
done:
    md_vision_prompt_free(&pr);
    vqa_input_free(&in);
    md_vision_free(vis);
    return status;
}
#endif

int main(int argc, char **argv)
{
    struct cli_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr > 0 ? 0 : 2;

    char err[8192];
    if (!a.model) {
        if (vqa_default_model(a.default_llm, sizeof a.default_llm, a.default_mmproj,
                              sizeof a.default_mmproj, err, sizeof err)) {
            fprintf(stderr, "mustdrop: no model given (-m FILE.gguf) and %s\n", err);
            return 1;
        }
        a.model = a.default_llm;
        if (a.n_images || a.video)
            a.mmproj = a.default_mmproj;
    }
    if (check_texts(&a)) return 2;

    struct md_model_params mp = md_model_default_params();
    mp.n_threads = a.n_threads;
    struct md_model *model = NULL;
    int rc = cli_model_load(&a.dev, a.model, NULL, 0, &mp, &model, err, sizeof err);
    if (rc != MD_OK) {
        print_load_error(a.model, err);
        return 1;
    }
    const struct md_vocab *vocab = md_model_vocab(model);
    if (!vocab) {
        fprintf(stderr, "mustdrop: '%s' has no tokenizer (tokenizer.ggml.model missing)\n", a.model);
        md_model_free(model);
        return 1;
    }

    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = a.n_ctx;
    cp.n_threads = a.n_threads;
    if (a.reduce)   /* layer-wise pruning needs the whole prompt in one batch */
        cp.n_batch = a.n_ctx > 0 ? a.n_ctx : 4096;
    cp.isa = a.isa;
    struct md_context *ctx = NULL;
    rc = md_context_new(model, &cp, &ctx, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop: cannot create a context: %s\n", err);
        md_model_free(model);
        return 1;
    }

#ifdef MD_HAVE_FFMPEG
    if (a.mmproj) {
        media_set_verbose(getenv("MUSTDROP_FFMPEG_LOG") != NULL);
        int vs = run_vision(ctx, model, &a);
        md_context_free(ctx);
        md_model_free(model);
        return vs ? 1 : 0;
    }
#endif
    int status = run_text(ctx, model, &a) ? 1 : 0;
    md_context_free(ctx);
    md_model_free(model);
    return status;
}
