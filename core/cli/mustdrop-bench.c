/* mustdrop-bench: prefill and decode throughput of a model file or of a
 * synthetic model of a given shape with random weights; or the vision
 * encoder's frames per second.
 *
 *   mustdrop-bench -m model.gguf [-p 512] [-n 128] [-r 5] [-t 2] [--json out.json]
 *   mustdrop-bench --synthetic llama-0.27b --type f16 [--write synth.gguf]
 *   mustdrop-bench --synthetic llama-0.27b --seqs 1,2,4,8,16 -n 32 -d 64
 *                  (batched decode across sequences, mustdrop-bench-multi.c)
 *   mustdrop-bench --vision mmproj.gguf [--image-size 336] [--batch 1,8] [-r 5]
 *   mustdrop-bench --synthetic-vision clip-l-336 --type f16 [--batch 1,8]
 *   mustdrop-bench --synthetic-vision clip-l-336 --proj-dim 1024 --write mmproj.gguf -r 0
 *                  (-r 0: only build and write the synthetic file)
 *   mustdrop-bench --reduce "SPEC;SPEC" -m llm.gguf --mmproj mmproj.gguf [--image x.ppm]
 *                  [--frames N] [-n 16] [--csv out.csv]   (bench-reduce.c)
 *
 * Measured like llama-bench so the two can be compared side by side: "ppN"
 * is one N-token batch into an empty cache, "tgN" is N single-token decode
 * steps from an empty cache; one untimed warm-up precedes each test, and
 * each test is repeated -r times (mean and standard deviation of tok/s). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-reduce.h"
#include "mustdrop-bench-multi.h"
#include "device.h"
#include "gguf-writer.h"
#include "mustdrop-vision.h"
#include "mustdrop.h"
#include "quant.h"

/* ---------------------------------------------------------------- options */

struct synth_shape {
    const char *arch;     /* "llama" or "qwen2" */
    int n_embd, n_layer, n_ff, n_head, n_head_kv, n_vocab;
};

struct bench_args {
    const char *model;
    const char *synthetic;    /* preset name or key=value list */
    const char *type;         /* weight type of a synthetic model */
    const char *write_path;
    const char *json_path;
    int pp[8], n_pp;
    int tg;
    int reps;
    int n_threads;
    const char *isa;
    const char *vision;       /* mmproj file */
    const char *synth_vision; /* synthetic mmproj preset */
    int image_size;           /* input frame side (0: the tower's) */
    int proj_dim;             /* synthetic projector output width (0: the preset's) */
    int batch[8], n_batch;
    int depth;                /* tokens in the cache before each tgN (-d) */
    int seqs[8], n_seqs;      /* --seqs: sequence counts of the batched decode test */
    struct cli_device dev;    /* --device (default cpu: a figure names its device) */
};

/* Synthetic vision towers (random weights): CLIP-L/336 as LLaVA-1.5 uses it
 * (23 stored layers, mlp projector to 4096), SigLIP so400m/384 as
 * LLaVA-OneVision-7B (26 layers, projector to 3584), and a tiny one. */
struct synth_vision_shape {
    const char *name;
    int image_size, patch, hidden, n_ff, n_head, n_layer, n_embd_out;
    bool siglip;
};

static const struct synth_vision_shape vision_presets[] = {
    { "clip-l-336", 336, 14, 1024, 4096, 16, 23, 4096, false },
    { "siglip-so400m-384", 384, 14, 1152, 4304, 16, 26, 3584, true },
    { "clip-tiny", 56, 14, 64, 96, 4, 2, 64, false },
};

static const struct { const char *name; struct synth_shape s; } presets[] = {
    /* 0.27B LLaMA: the shape docs/benchmarks.md compares with llama.cpp. */
    { "llama-0.27b", { "llama", 1024, 16, 2816, 16, 16, 32000 } },
    { "llama-tiny",  { "llama",  256,  4,  704,  8,  4, 32000 } },
    { "qwen2-0.5b",  { "qwen2",  896, 24, 4864, 14,  2, 151936 } },
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: mustdrop-bench (-m MODEL.gguf | --synthetic SHAPE) [options]\n"
        "\n"
        "  -m FILE            model file\n"
        "  --synthetic SHAPE  random-weight model: a preset (llama-0.27b, llama-tiny, qwen2-0.5b)\n"
        "                     or arch=llama,n_embd=1024,n_layer=16,n_ff=2816,n_head=16,\n"
        "                     n_head_kv=16,n_vocab=32000 (missing keys from llama-0.27b)\n"
        "  --type T           weight type of the synthetic model: f32, f16, bf16, q8_0 (f16)\n"
        "  --write FILE       also write the synthetic model to FILE (for other engines)\n"
        "  -p N[,N...]        prefill batch sizes (default 512)\n"
        "  -n N               decode steps (default 128; 0 = none)\n"
        "  -d N               decode steps start after N cached tokens (default 0), like\n"
        "                     llama-bench's -d: tg128 at depth 3000 is \"tg128@d3000\"\n"
        "  -r N               repetitions (default 5); 0 with --synthetic or\n"
        "                     --synthetic-vision and --write: only build and write the file\n"
        "  -t N               threads (default: all online CPUs)\n"
        "  --isa NAME         auto, scalar, avx2, avx512\n"
        "  --device D         cpu (default), cuda, cuda:N or auto\n"
        "  --json FILE        write the results as JSON\n"
        "  --seqs S[,S...]    instead: -n decode steps of S sequences (1..64) stepped\n"
        "                     together (md_decode_multi) against the same S one after\n"
        "                     another, each after -d cached tokens\n"
        "\n"
        "vision encoder (frames/s of preprocessing + tower + projector):\n"
        "  --vision FILE      an mmproj GGUF\n"
        "  --synthetic-vision NAME  random weights: clip-l-336, siglip-so400m-384, clip-tiny\n"
        "                     (--type sets the matrices' type, --write saves it)\n"
        "  --proj-dim N       projector output width of --synthetic-vision (default: the\n"
        "                     preset's, 4096 for clip-l-336); match the LLM's n_embd to pair\n"
        "                     it with a --synthetic LLM, e.g. 1024 for llama-0.27b\n"
        "  --image-size N     side of the square input frames (default: the tower's)\n"
        "  --batch B[,B...]   frames per tower call (default 1)\n"
        "token reduction (mustdrop-bench --reduce --help for its options):\n"
        "  --reduce SPEC[;SPEC...]  one CSV row per reduction spec, with --mmproj FILE\n");
}

static int parse_pos_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1 << 20) return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, struct bench_args *a)
{
    memset(a, 0, sizeof *a);
    a->type = "f16";
    a->pp[0] = 512; a->n_pp = 1;
    a->tg = 128;
    a->reps = 5;
    a->dev.backend = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        if (!v) { fprintf(stderr, "mustdrop-bench: %s needs a value (see --help)\n", o); return -1; }
        i++;
        int bad = 0;
        if (!strcmp(o, "-m")) a->model = v;
        else if (!strcmp(o, "--synthetic")) a->synthetic = v;
        else if (!strcmp(o, "--type")) a->type = v;
        else if (!strcmp(o, "--write")) a->write_path = v;
        else if (!strcmp(o, "--json")) a->json_path = v;
        else if (!strcmp(o, "--isa")) a->isa = v;
        else if (!strcmp(o, "--vision")) a->vision = v;
        else if (!strcmp(o, "--synthetic-vision")) a->synth_vision = v;
        else if (!strcmp(o, "--proj-dim")) bad = parse_pos_int(v, &a->proj_dim) || a->proj_dim < 1 || a->proj_dim > 65536;
        else if (!strcmp(o, "--image-size")) bad = parse_pos_int(v, &a->image_size) || a->image_size < 1 || a->image_size > 8192;
        else if (!strcmp(o, "--batch")) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            a->n_batch = 0;
            for (char *tok = strtok(buf, ","); tok && !bad; tok = strtok(NULL, ",")) {
                if (a->n_batch == 8) bad = 1;
                else bad = parse_pos_int(tok, &a->batch[a->n_batch++]) || a->batch[a->n_batch - 1] < 1 ||
                           a->batch[a->n_batch - 1] > 256;
            }
        }
        else if (!strcmp(o, "--seqs")) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            a->n_seqs = 0;
            for (char *tok = strtok(buf, ","); tok && !bad; tok = strtok(NULL, ",")) {
                if (a->n_seqs == 8) bad = 1;
                else bad = parse_pos_int(tok, &a->seqs[a->n_seqs++]) || a->seqs[a->n_seqs - 1] < 1 ||
                           a->seqs[a->n_seqs - 1] > 64;
            }
        }
        else if (!strcmp(o, "-n")) bad = parse_pos_int(v, &a->tg);
        else if (!strcmp(o, "-d")) bad = parse_pos_int(v, &a->depth);
        else if (!strcmp(o, "--device")) bad = cli_device_parse(v, &a->dev);
        else if (!strcmp(o, "-r")) bad = parse_pos_int(v, &a->reps);
        else if (!strcmp(o, "-t")) bad = parse_pos_int(v, &a->n_threads);
        else if (!strcmp(o, "-p")) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            a->n_pp = 0;
            for (char *tok = strtok(buf, ","); tok && !bad; tok = strtok(NULL, ",")) {
                if (a->n_pp == 8) bad = 1;
                else bad = parse_pos_int(tok, &a->pp[a->n_pp++]);
            }
        } else { fprintf(stderr, "mustdrop-bench: unknown option '%s'\n", o); return -1; }
        if (bad) { fprintf(stderr, "mustdrop-bench: bad value '%s' for %s\n", v, o); return -1; }
    }
    if (!a->n_batch) { a->batch[0] = 1; a->n_batch = 1; }
    int n_src = !!a->model + !!a->synthetic + !!a->vision + !!a->synth_vision;
    if (n_src != 1) {
        fprintf(stderr, "mustdrop-bench: give exactly one of -m FILE, --synthetic SHAPE, "
                        "--vision FILE and --synthetic-vision NAME\n");
        return -1;
    }
    if (a->reps == 0 && (!(a->synthetic || a->synth_vision) || !a->write_path)) {
        fprintf(stderr, "mustdrop-bench: -r 0 (build only) needs --synthetic or --synthetic-vision "
                        "and --write FILE\n");
        return -1;
    }
    if (a->proj_dim && !a->synth_vision) {
        fprintf(stderr, "mustdrop-bench: --proj-dim applies to --synthetic-vision only\n");
        return -1;
    }
    return 0;
}

static int parse_shape(const char *spec, struct synth_shape *s)
{
    *s = presets[0].s;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(spec, presets[i].name)) { *s = presets[i].s; return 0; }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *kv = strtok(buf, ","); kv; kv = strtok(NULL, ",")) {
        char *eq = strchr(kv, '=');
        if (!eq) { fprintf(stderr, "mustdrop-bench: '%s' in --synthetic is not key=value\n", kv); return -1; }
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        int *dst = !strcmp(k, "n_embd") ? &s->n_embd : !strcmp(k, "n_layer") ? &s->n_layer :
                   !strcmp(k, "n_ff") ? &s->n_ff : !strcmp(k, "n_head") ? &s->n_head :
                   !strcmp(k, "n_head_kv") ? &s->n_head_kv : !strcmp(k, "n_vocab") ? &s->n_vocab : NULL;
        if (!strcmp(k, "arch")) {
            if (strcmp(v, "llama") && strcmp(v, "qwen2")) { fprintf(stderr, "mustdrop-bench: arch must be llama or qwen2\n"); return -1; }
            s->arch = !strcmp(v, "llama") ? "llama" : "qwen2";
        } else if (!dst || parse_pos_int(v, dst) || *dst == 0) {
            fprintf(stderr, "mustdrop-bench: bad --synthetic key or value '%s=%s'\n", k, v);
            return -1;
        }
    }
    if (s->n_embd % s->n_head || s->n_head % s->n_head_kv || (s->n_embd / s->n_head) % 2 ||
        s->n_embd % 256 || s->n_ff % 32 || s->n_vocab < 260) {
        fprintf(stderr, "mustdrop-bench: inconsistent shape (n_embd %% 256, n_embd %% n_head, "
                        "n_head %% n_head_kv, n_ff %% 32 and n_vocab >= 260 are required)\n");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------- synthetic model */

/* splitmix64: a tiny seeded generator so synthetic files are reproducible. */
static uint64_t next_u64(uint64_t *st)
{
    uint64_t z = (*st += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float next_uniform(uint64_t *st)   /* in [-1, 1) */
{
    return (float)((next_u64(st) >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

struct synth {
    struct md_gguf_writer *w;
    void **blobs;          /* tensor data the writer borrows until written */
    int n_blobs, cap_blobs;
    char **vocab;          /* token texts */
    float *scores;
    int32_t *ttypes;
    uint64_t seed;
};

static void *keep_blob(struct synth *s, size_t bytes)
{
    if (s->n_blobs == s->cap_blobs) {
        int cap = s->cap_blobs ? 2 * s->cap_blobs : 64;
        void **nb = realloc(s->blobs, sizeof(void *) * (size_t)cap);
        if (!nb) return NULL;
        s->blobs = nb;
        s->cap_blobs = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) s->blobs[s->n_blobs++] = p;
    return p;
}

/* Random weights with a small spread (uniform ±scale), converted to `type`. */
static int add_weight(struct synth *s, const char *name, uint32_t type, int64_t n_in, int64_t n_out,
                      float scale, float offset)
{
    int64_t row = md_type_row_bytes(type, n_in);
    float *tmp = malloc(sizeof(float) * (size_t)n_in);
    uint8_t *data = row > 0 ? keep_blob(s, (size_t)row * (size_t)n_out) : NULL;
    if (!tmp || !data) { free(tmp); return -1; }
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) tmp[i] = offset + scale * next_uniform(&s->seed);
        uint8_t *dst = data + r * row;
        switch (type) {
        case MD_TYPE_F32: memcpy(dst, tmp, sizeof(float) * (size_t)n_in); break;
        case MD_TYPE_F16: for (int64_t i = 0; i < n_in; i++) ((uint16_t *)dst)[i] = md_fp32_to_fp16(tmp[i]); break;
        case MD_TYPE_BF16: for (int64_t i = 0; i < n_in; i++) ((uint16_t *)dst)[i] = md_fp32_to_bf16(tmp[i]); break;
        case MD_TYPE_Q8_0: md_quantize_row_q8_0(tmp, dst, n_in); break;
        default: free(tmp); return -1;
        }
    }
    free(tmp);
    int64_t ne[2] = { n_in, n_out };
    return md_gguf_writer_add_tensor(s->w, name, type, n_out > 1 ? 2 : 1, ne, data);
}

/* Words of the default (Vicuna) chat prompt and of the usual questions. The
 * vocabulary holds "\u2581" + every prefix of each (SPM merges them left to
 * right), so a VLM prompt over a synthetic model has about as many text rows
 * as with LLaMA's real tokenizer (~50, not ~200 byte tokens). */
static const char *const prompt_words[] = {
    "A", "chat", "between", "a", "curious", "human", "and", "an", "artificial",
    "intelligence", "assistant", "The", "gives", "helpful", "detailed", "polite",
    "answers", "to", "the", "human's", "questions", "USER", "ASSISTANT", "Describe",
    "image", "video", "What", "is", "shown", "in", "this", "picture", "happens",
};

/* Piece k (k = 0, 1, ...) of that prefix list, or -1 past its end. */
static int prompt_piece(int k, char *buf, size_t n)
{
    for (size_t w = 0; w < sizeof prompt_words / sizeof prompt_words[0]; w++) {
        size_t len = strlen(prompt_words[w]);
        for (size_t p = 1; p <= len; p++) {
            snprintf(buf, n, "\xe2\x96\x81%.*s", (int)p, prompt_words[w]);
            bool seen = false;   /* a prefix shared with an earlier word */
            for (size_t w2 = 0; w2 < w && !seen; w2++)
                seen = strlen(prompt_words[w2]) >= p && !strncmp(prompt_words[w2], prompt_words[w], p);
            if (!seen && k-- == 0) return 0;
        }
    }
    return -1;
}

/* An SPM vocabulary llama.cpp accepts: <unk> <s> </s>, the 256 byte tokens,
 * the prompt pieces above, then filler pieces. Only the ids matter for a
 * throughput benchmark. */
static int add_vocab(struct synth *s, int n_vocab)
{
    s->vocab = calloc((size_t)n_vocab, sizeof(char *));
    s->scores = calloc((size_t)n_vocab, sizeof(float));
    s->ttypes = calloc((size_t)n_vocab, sizeof(int32_t));
    if (!s->vocab || !s->scores || !s->ttypes) return -1;
    bool pieces = true;
    for (int i = 0; i < n_vocab; i++) {
        char buf[64];
        if (i < 3) snprintf(buf, sizeof buf, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else if (!(pieces = pieces && !prompt_piece(i - 259, buf, sizeof buf)))
            snprintf(buf, sizeof buf, "\xe2\x96\x81t%d", i);
        if (!(s->vocab[i] = strdup(buf))) return -1;
        s->scores[i] = i < 259 ? 0.0f : -(float)i;
        s->ttypes[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    struct md_gguf_writer *w = s->w;
    md_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    md_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default");
    md_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)s->vocab, (uint64_t)n_vocab);
    md_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", s->scores, (uint64_t)n_vocab);
    md_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", s->ttypes, (uint64_t)n_vocab);
    md_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    md_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    md_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    return 0;
}

static int add_hparams(struct synth *s, const struct synth_shape *sh, uint32_t ftype)
{
    struct md_gguf_writer *w = s->w;
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, sh->arch), key)
    md_gguf_writer_add_str(w, "general.architecture", sh->arch);
    md_gguf_writer_add_str(w, "general.name", "mustdrop-bench synthetic");
    md_gguf_writer_add_u32(w, "general.file_type", ftype);
    md_gguf_writer_add_u32(w, KEY("context_length"), 4096);
    md_gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)sh->n_embd);
    md_gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)sh->n_layer);
    md_gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)sh->n_ff);
    md_gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)sh->n_head);
    md_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)sh->n_head_kv);
    md_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    md_gguf_writer_add_f32(w, KEY("rope.freq_base"), 10000.0f);
    md_gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)(sh->n_embd / sh->n_head));
#undef KEY
    return 0;
}

static int add_tensors(struct synth *s, const struct synth_shape *sh, uint32_t type)
{
    const int64_t E = sh->n_embd, F = sh->n_ff, V = sh->n_vocab;
    const int64_t KV = (int64_t)sh->n_embd / sh->n_head * sh->n_head_kv;
    const float ws = 0.05f;
    int rc = 0;
    rc |= add_weight(s, "token_embd.weight", type, E, V, 1.0f, 0.0f);
    for (int l = 0; l < sh->n_layer && !rc; l++) {
        char n[64];
#define W(name, ty, in, out, sc, off) (snprintf(n, sizeof n, "blk.%d." name, l), add_weight(s, n, ty, in, out, sc, off))
        rc |= W("attn_norm.weight", MD_TYPE_F32, E, 1, 0.1f, 1.0f);
        rc |= W("attn_q.weight", type, E, E, ws, 0.0f);
        rc |= W("attn_k.weight", type, E, KV, ws, 0.0f);
        rc |= W("attn_v.weight", type, E, KV, ws, 0.0f);
        if (!strcmp(sh->arch, "qwen2")) {
            rc |= W("attn_q.bias", MD_TYPE_F32, E, 1, ws, 0.0f);
            rc |= W("attn_k.bias", MD_TYPE_F32, KV, 1, ws, 0.0f);
            rc |= W("attn_v.bias", MD_TYPE_F32, KV, 1, ws, 0.0f);
        }
        rc |= W("attn_output.weight", type, E, E, ws, 0.0f);
        rc |= W("ffn_norm.weight", MD_TYPE_F32, E, 1, 0.1f, 1.0f);
        rc |= W("ffn_gate.weight", type, E, F, ws, 0.0f);
        rc |= W("ffn_up.weight", type, E, F, ws, 0.0f);
        rc |= W("ffn_down.weight", type, F, E, ws, 0.0f);
#undef W
    }
    rc |= add_weight(s, "output_norm.weight", MD_TYPE_F32, E, 1, 0.1f, 1.0f);
    rc |= add_weight(s, "output.weight", type, E, V, ws, 0.0f);
    return rc;
}

static void synth_free(struct synth *s, int n_vocab)
{
    for (int i = 0; i < s->n_blobs; i++) free(s->blobs[i]);
    free(s->blobs);
    if (s->vocab) for (int i = 0; i < n_vocab; i++) free(s->vocab[i]);
    free(s->vocab);
    free(s->scores);
    free(s->ttypes);
    md_gguf_writer_free(s->w);
}

static int type_from_name(const char *name, uint32_t *type, uint32_t *ftype)
{
    /* general.file_type values from llama.cpp's LlamaFileType. */
    if (!strcmp(name, "f32")) { *type = MD_TYPE_F32; *ftype = 0; return 0; }
    if (!strcmp(name, "f16")) { *type = MD_TYPE_F16; *ftype = 1; return 0; }
    if (!strcmp(name, "q8_0")) { *type = MD_TYPE_Q8_0; *ftype = 7; return 0; }
    if (!strcmp(name, "bf16")) { *type = MD_TYPE_BF16; *ftype = 32; return 0; }
    return -1;
}

/* Build the synthetic model as a GGUF image in memory (*buf, malloc'd). */
static int make_synthetic(const struct bench_args *a, void **buf, size_t *size)
{
    struct synth_shape sh;
    uint32_t type, ftype;
    if (parse_shape(a->synthetic, &sh)) return -1;
    if (type_from_name(a->type, &type, &ftype)) {
        fprintf(stderr, "mustdrop-bench: --type must be f32, f16, bf16 or q8_0\n");
        return -1;
    }
    struct synth s = { .seed = 42 };
    char err[256] = "";
    int rc = -1;
    if (!(s.w = md_gguf_writer_new())) goto out;
    if (add_hparams(&s, &sh, ftype) || add_vocab(&s, sh.n_vocab) || add_tensors(&s, &sh, type)) {
        snprintf(err, sizeof err, "%s", md_gguf_writer_error(s.w)[0] ? md_gguf_writer_error(s.w) : "out of memory");
        goto out;
    }
    if (a->write_path && md_gguf_writer_write_file(s.w, a->write_path, err, sizeof err)) goto out;
    if (md_gguf_writer_write_mem(s.w, buf, size, err, sizeof err)) goto out;
    if (a->write_path) fprintf(stderr, "mustdrop-bench: wrote %s (%zu bytes)\n", a->write_path, *size);
    rc = 0;
out:
    if (rc) fprintf(stderr, "mustdrop-bench: cannot build the synthetic model: %s\n", err);
    synth_free(&s, sh.n_vocab);
    return rc;
}

/* -------------------------------------------------------------- measuring */

struct result {
    char test[16];
    int n_tokens;
    double ts_mean, ts_std;
    double ms[64];
    int reps;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void random_tokens(int32_t *t, int n, int n_vocab, uint64_t *st)
{
    for (int i = 0; i < n; i++) t[i] = 3 + (int32_t)(next_u64(st) % (uint64_t)(n_vocab - 3));
}

/* One timed run, in milliseconds (-1 on error): ppN (a batch into an empty
 * cache) or tgN (N single-token steps after depth untimed cached tokens).
 * md_decode returns after the logits reached the host, so on a GPU the clock
 * stops when the work is done. */
static double run_once(struct md_context *ctx, int n_vocab, bool prefill, int n, int depth,
                       uint64_t *st)
{
    int pre = prefill ? 0 : depth;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(n + pre));
    if (!all) return -1;
    random_tokens(all, n + pre, n_vocab, st);
    md_kv_clear(ctx);
    int rc = pre > 0 ? md_decode(ctx, all, pre, false) : MD_OK;
    const int32_t *toks = all + pre;
    double t0 = now_ms();
    if (prefill) rc = md_decode(ctx, toks, n, false);
    else for (int i = 0; i < n && rc == MD_OK; i++) rc = md_decode(ctx, &toks[i], 1, false);
    double dt = now_ms() - t0;
    free(all);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop-bench: decode failed: %s: %s\n", md_status_str(rc), md_context_error(ctx));
        return -1;
    }
    return dt;
}

static int measure(struct md_context *ctx, int n_vocab, bool prefill, int n, int depth, int reps,
                   struct result *r)
{
    uint64_t st = 1234;
    memset(r, 0, sizeof *r);
    if (!prefill && depth > 0)
        snprintf(r->test, sizeof r->test, "tg%d@d%d", n, depth);
    else
        snprintf(r->test, sizeof r->test, "%s%d", prefill ? "pp" : "tg", n);
    r->n_tokens = n;
    r->reps = reps > 64 ? 64 : reps;
    if (run_once(ctx, n_vocab, prefill, prefill ? n : (n < 8 ? n : 8), depth, &st) < 0) return -1;  /* warm-up */
    double sum = 0, sum2 = 0;
    for (int i = 0; i < r->reps; i++) {
        double ms = run_once(ctx, n_vocab, prefill, n, depth, &st);
        if (ms < 0) return -1;
        r->ms[i] = ms;
        double ts = 1000.0 * n / ms;
        sum += ts;
        sum2 += ts * ts;
    }
    r->ts_mean = sum / r->reps;
    r->ts_std = r->reps > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / r->reps) / (r->reps - 1))) : 0.0;
    return 0;
}

static void write_json(const char *path, const struct bench_args *a, const struct md_model *model,
                       const struct md_context *ctx, const struct result *res, int n_res)
{
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "mustdrop-bench: cannot write %s: %s\n", path, strerror(errno)); return; }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"engine\": \"mustdrop %s\",\n  \"date\": \"%s\",\n", md_version(), date);
    fprintf(f, "  \"model\": \"%s\",\n", a->model ? a->model : a->synthetic);
    fprintf(f, "  \"model_desc\": \"%s\",\n", md_model_desc(model));
    fprintf(f, "  \"model_size\": %llu,\n  \"model_n_params\": %llu,\n",
            (unsigned long long)md_model_size(model), (unsigned long long)md_model_n_params(model));
    fprintf(f, "  \"device\": \"%s\",\n", a->dev.used);
    fprintf(f, "  \"n_threads\": %d,\n  \"isa\": \"%s\",\n  \"results\": [\n",
            md_context_n_threads(ctx), md_context_isa(ctx));
    for (int i = 0; i < n_res; i++) {
        fprintf(f, "    {\"test\": \"%s\", \"n_tokens\": %d, \"reps\": %d, \"avg_ts\": %.3f, \"stddev_ts\": %.3f, \"samples_ms\": [",
                res[i].test, res[i].n_tokens, res[i].reps, res[i].ts_mean, res[i].ts_std);
        for (int j = 0; j < res[i].reps; j++) fprintf(f, "%s%.3f", j ? ", " : "", res[i].ms[j]);
        fprintf(f, "]}%s\n", i + 1 < n_res ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

/* ---------------------------------------------------------------- vision */

static int add_raw(struct synth *s, const char *name, uint32_t type, int nd, const int64_t *ne,
                   float scale, float offset)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= ne[i];
    int64_t bytes = md_type_row_bytes(type, n);
    uint8_t *data = bytes > 0 ? keep_blob(s, (size_t)bytes) : NULL;
    if (!data) return -1;
    for (int64_t i = 0; i < n; i++) {
        float x = offset + scale * next_uniform(&s->seed);
        if (type == MD_TYPE_F32) ((float *)data)[i] = x;
        else ((uint16_t *)data)[i] = type == MD_TYPE_BF16 ? md_fp32_to_bf16(x) : md_fp32_to_fp16(x);
    }
    return md_gguf_writer_add_tensor(s->w, name, type, nd, ne, data);
}

/* A synthetic mmproj with the given shape, as a GGUF image in memory. */
static int make_synthetic_vision(const struct bench_args *a, void **buf, size_t *size)
{
    const struct synth_vision_shape *sh = NULL;
    for (size_t i = 0; i < sizeof vision_presets / sizeof vision_presets[0]; i++)
        if (!strcmp(a->synth_vision, vision_presets[i].name)) sh = &vision_presets[i];
    if (!sh) {
        fprintf(stderr, "mustdrop-bench: bad --synthetic-vision '%s' (clip-l-336, siglip-so400m-384, clip-tiny)\n",
                a->synth_vision);
        return -1;
    }
    uint32_t type, ftype;
    if (type_from_name(a->type, &type, &ftype) || type == MD_TYPE_Q8_0) {
        fprintf(stderr, "mustdrop-bench: --type for a synthetic vision tower must be f32, f16 or bf16\n");
        return -1;
    }
    struct synth s = { .seed = 7 };
    char err[256] = "";
    int rc = -1;
    const int64_t D = sh->hidden, F = sh->n_ff, P = sh->patch;
    const int64_t E = a->proj_dim > 0 ? a->proj_dim : sh->n_embd_out;
    const int64_t np = (int64_t)(sh->image_size / sh->patch) * (sh->image_size / sh->patch);
    const float ws = 0.03f;
    static const float mean[3] = { 0.5f, 0.5f, 0.5f }, std[3] = { 0.5f, 0.5f, 0.5f };
    if (!(s.w = md_gguf_writer_new())) goto out;
    struct md_gguf_writer *w = s.w;
    md_gguf_writer_add_str(w, "general.architecture", "clip");
    md_gguf_writer_add_str(w, "general.name", sh->name);
    md_gguf_writer_add_u32(w, "general.file_type", ftype);
    md_gguf_writer_add_bool(w, "clip.has_vision_encoder", true);
    md_gguf_writer_add_bool(w, "clip.has_text_encoder", false);
    md_gguf_writer_add_str(w, "clip.projector_type", "mlp");
    md_gguf_writer_add_bool(w, "clip.use_gelu", false);
    md_gguf_writer_add_u32(w, "clip.vision.image_size", (uint32_t)sh->image_size);
    md_gguf_writer_add_u32(w, "clip.vision.patch_size", (uint32_t)sh->patch);
    md_gguf_writer_add_u32(w, "clip.vision.embedding_length", (uint32_t)D);
    md_gguf_writer_add_u32(w, "clip.vision.feed_forward_length", (uint32_t)F);
    md_gguf_writer_add_u32(w, "clip.vision.projection_dim", (uint32_t)E);
    md_gguf_writer_add_u32(w, "clip.vision.attention.head_count", (uint32_t)sh->n_head);
    md_gguf_writer_add_f32(w, "clip.vision.attention.layer_norm_epsilon", sh->siglip ? 1e-6f : 1e-5f);
    md_gguf_writer_add_u32(w, "clip.vision.block_count", (uint32_t)sh->n_layer);
    md_gguf_writer_add_arr_f32(w, "clip.vision.image_mean", mean, 3);
    md_gguf_writer_add_arr_f32(w, "clip.vision.image_std", std, 3);
    md_gguf_writer_add_str(w, "clip.vision.hidden_act", sh->siglip ? "gelu_pytorch_tanh" : "quick_gelu");
    if (sh->siglip) md_gguf_writer_add_str(w, "clip.vision.llava_family", "onevision");
    int64_t conv[4] = { P, P, 3, D }, pos[2] = { D, np + (sh->siglip ? 0 : 1) }, vec[1] = { D };
    rc = add_raw(&s, "v.patch_embd.weight", type, 4, conv, ws, 0.0f);
    rc |= add_raw(&s, "v.position_embd.weight", MD_TYPE_F32, 2, pos, 0.02f, 0.0f);
    if (sh->siglip) {
        rc |= add_raw(&s, "v.patch_embd.bias", MD_TYPE_F32, 1, vec, ws, 0.0f);
    } else {
        rc |= add_raw(&s, "v.class_embd", MD_TYPE_F32, 1, vec, 0.02f, 0.0f);
        rc |= add_raw(&s, "v.pre_ln.weight", MD_TYPE_F32, 1, vec, 0.1f, 1.0f);
        rc |= add_raw(&s, "v.pre_ln.bias", MD_TYPE_F32, 1, vec, 0.02f, 0.0f);
    }
    for (int l = 0; l < sh->n_layer && !rc; l++) {
        char n[64];
#define W(name, ty, in, out, sc, off) (snprintf(n, sizeof n, "v.blk.%d." name, l), add_weight(&s, n, ty, in, out, sc, off))
        rc |= W("ln1.weight", MD_TYPE_F32, D, 1, 0.1f, 1.0f);
        rc |= W("ln1.bias", MD_TYPE_F32, D, 1, 0.02f, 0.0f);
        rc |= W("ln2.weight", MD_TYPE_F32, D, 1, 0.1f, 1.0f);
        rc |= W("ln2.bias", MD_TYPE_F32, D, 1, 0.02f, 0.0f);
        rc |= W("attn_q.weight", type, D, D, ws, 0.0f);
        rc |= W("attn_q.bias", MD_TYPE_F32, D, 1, ws, 0.0f);
        rc |= W("attn_k.weight", type, D, D, ws, 0.0f);
        rc |= W("attn_k.bias", MD_TYPE_F32, D, 1, ws, 0.0f);
        rc |= W("attn_v.weight", type, D, D, ws, 0.0f);
        rc |= W("attn_v.bias", MD_TYPE_F32, D, 1, ws, 0.0f);
        rc |= W("attn_out.weight", type, D, D, ws, 0.0f);
        rc |= W("attn_out.bias", MD_TYPE_F32, D, 1, ws, 0.0f);
        rc |= W("ffn_up.weight", type, D, F, ws, 0.0f);
        rc |= W("ffn_up.bias", MD_TYPE_F32, F, 1, ws, 0.0f);
        rc |= W("ffn_down.weight", type, F, D, ws, 0.0f);
        rc |= W("ffn_down.bias", MD_TYPE_F32, D, 1, ws, 0.0f);
#undef W
    }
    rc |= add_weight(&s, "mm.0.weight", type, D, E, ws, 0.0f);
    rc |= add_weight(&s, "mm.0.bias", MD_TYPE_F32, E, 1, ws, 0.0f);
    rc |= add_weight(&s, "mm.2.weight", type, E, E, ws, 0.0f);
    rc |= add_weight(&s, "mm.2.bias", MD_TYPE_F32, E, 1, ws, 0.0f);
    if (rc) {
        snprintf(err, sizeof err, "%s", md_gguf_writer_error(w)[0] ? md_gguf_writer_error(w) : "out of memory");
        rc = -1;
        goto out;
    }
    rc = -1;
    if (a->write_path && md_gguf_writer_write_file(w, a->write_path, err, sizeof err)) goto out;
    if (md_gguf_writer_write_mem(w, buf, size, err, sizeof err)) goto out;
    if (a->write_path) fprintf(stderr, "mustdrop-bench: wrote %s (%zu bytes)\n", a->write_path, *size);
    rc = 0;
out:
    if (rc) fprintf(stderr, "mustdrop-bench: cannot build the synthetic vision tower: %s\n", err);
    synth_free(&s, 0);
    return rc;
}

/* Frames/s of preprocessing + tower + projector for batches of B frames. */
static int bench_vision(const struct bench_args *a)
{
    void *image = NULL;
    size_t image_size = 0;
    if (a->synth_vision && make_synthetic_vision(a, &image, &image_size)) return 1;
    if (a->reps == 0) { free(image); return 0; }   /* build only (--write) */
    char err[512] = "";
    struct md_vision_params vp = md_vision_default_params();
    vp.n_threads = a->n_threads;
    struct md_vision *v = NULL;
    struct cli_device dev = a->dev;
    int rc = cli_vision_load(&dev, a->vision, image, image_size, &vp, &v, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop-bench: cannot load the vision tower: %s\n", err);
        free(image);
        return 1;
    }
    int S = a->image_size > 0 ? a->image_size : md_vision_image_size(v);
    int max_b = 1;
    for (int i = 0; i < a->n_batch; i++) if (a->batch[i] > max_b) max_b = a->batch[i];
    int32_t per = md_vision_frame_tokens(v), E = md_vision_n_embd(v);
    size_t stride = 3 * (size_t)S;
    uint8_t *rgb = malloc(stride * (size_t)S * (size_t)max_b);
    struct md_frame *fr = calloc((size_t)max_b, sizeof *fr);
    float *out = malloc(sizeof(float) * (size_t)max_b * (size_t)per * (size_t)E);
    int status = rgb && fr && out ? 0 : 1;
    uint64_t st = 99;
    for (size_t i = 0; !status && i < stride * (size_t)S * (size_t)max_b; i++)
        rgb[i] = (uint8_t)(next_u64(&st) >> 56);
    for (int i = 0; !status && i < max_b; i++)
        fr[i] = (struct md_frame){ rgb + stride * (size_t)S * (size_t)i, S, S, (int32_t)stride, i * 40000000LL };
    printf("| vision | threads | input | batch | tokens/frame | frames/s | ms/batch |\n"
           "|---|---:|---:|---:|---:|---:|---:|\n");
    for (int bi = 0; !status && bi < a->n_batch; bi++) {
        int B = a->batch[bi], reps = a->reps > 64 ? 64 : a->reps, got = 0;
        double sum = 0, sum2 = 0, ms_sum = 0;
        if (md_vision_encode_frames(v, fr, B, out, B * per, &got) != MD_OK) { status = 1; break; }  /* warm-up */
        for (int r = 0; r < reps && !status; r++) {
            double t0 = now_ms();
            if (md_vision_encode_frames(v, fr, B, out, B * per, &got) != MD_OK) status = 1;
            double ms = now_ms() - t0, fps = 1000.0 * B / ms;
            sum += fps;
            sum2 += fps * fps;
            ms_sum += ms;
        }
        if (status) { fprintf(stderr, "mustdrop-bench: encoding failed\n"); break; }
        double mean = sum / reps, sd = reps > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / reps) / (reps - 1))) : 0.0;
        char th[16];
        snprintf(th, sizeof th, vp.n_threads > 0 ? "%d" : "all", vp.n_threads);
        printf("| %s | %s | %dx%d | %d | %d | %.2f ± %.2f | %.1f |\n",
               a->vision ? a->vision : a->synth_vision, th, S, S, B, (int)per, mean, sd,
               ms_sum / reps);
        fflush(stdout);
    }
    printf("\n%s\ndevice: %s\n", md_vision_desc(v), dev.used);
    free(rgb);
    free(fr);
    free(out);
    md_vision_free(v);
    free(image);
    return status;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)   /* --reduce is its own mode (bench-reduce.c) */
        if (!strcmp(argv[i], "--reduce"))
            return md_bench_reduce_main(argc, argv);
    struct bench_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr > 0 ? 0 : 2;
    if (a.vision || a.synth_vision) return bench_vision(&a);

    void *image = NULL;
    size_t image_size = 0;
    if (a.synthetic && make_synthetic(&a, &image, &image_size)) return 1;
    if (a.reps == 0) { free(image); return 0; }   /* build only (--write) */

    char err[512];
    struct md_model_params mp = md_model_default_params();
    mp.n_threads = a.n_threads;
    struct md_model *model = NULL;
    int rc = cli_model_load(&a.dev, a.model, image, image_size, &mp, &model, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop-bench: cannot load the model: %s\n", err);
        free(image);
        return 1;
    }
    if (a.n_seqs) {
        struct md_context_params cp = md_context_default_params();
        cp.n_threads = a.n_threads;
        cp.isa = a.isa;
        if (cp.n_threads <= 0) cp.n_threads = md_context_default_params().n_threads;
        struct bench_multi_opts o = { a.seqs, a.n_seqs, a.tg > 0 ? a.tg : 1, a.depth,
                                      a.reps > 0 ? a.reps : 1, &cp };
        int st = md_bench_multi(model, &o, stdout);
        printf("\ndevice: %s\n", a.dev.used);
        md_model_free(model);
        free(image);
        return st;
    }
    int max_pp = a.tg;
    for (int i = 0; i < a.n_pp; i++) if (a.pp[i] > max_pp) max_pp = a.pp[i];
    struct md_context_params cp = md_context_default_params();
    cp.n_threads = a.n_threads;
    cp.isa = a.isa;
    cp.n_ctx = (max_pp > a.depth + a.tg ? max_pp : a.depth + a.tg) + 8;
    cp.n_batch = max_pp > a.depth ? max_pp : a.depth;
    if (cp.n_batch < 1) cp.n_batch = 1;
    struct md_context *ctx = NULL;
    if (md_context_new(model, &cp, &ctx, err, sizeof err) != MD_OK) {
        fprintf(stderr, "mustdrop-bench: cannot create a context: %s\n", err);
        md_model_free(model);
        free(image);
        return 1;
    }

    struct result res[9];
    int n_res = 0, status = 0;
    printf("| model | size | params | threads | isa | test | t/s |\n|---|---:|---:|---:|---|---:|---:|\n");
    for (int i = 0; i <= a.n_pp && status == 0; i++) {
        bool prefill = i < a.n_pp;
        int n = prefill ? a.pp[i] : a.tg;
        if (n == 0) continue;
        if (measure(ctx, md_model_n_vocab(model), prefill, n, a.depth, a.reps, &res[n_res])) { status = 1; break; }
        printf("| %s | %.2f MiB | %.2f M | %d | %s | %s | %.2f ± %.2f |\n",
               md_model_arch(model), md_model_size(model) / 1048576.0, md_model_n_params(model) / 1e6,
               md_context_n_threads(ctx), md_context_isa(ctx), res[n_res].test,
               res[n_res].ts_mean, res[n_res].ts_std);
        fflush(stdout);
        n_res++;
    }
    printf("\n%s\ndevice: %s\n", md_model_desc(model), a.dev.used);
    if (a.json_path && status == 0) write_json(a.json_path, &a, model, ctx, res, n_res);
    md_context_free(ctx);
    md_model_free(model);
    free(image);
    return status;
}
