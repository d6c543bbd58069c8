/* mustdrop-bench --reduce: run one VLM prompt under a list of reduction
 * specs and write one CSV row per spec (docs/reduction.md).
 *
 *   mustdrop-bench --reduce "none;mustdrop:tokens=128;fastv:k=2,r=0.5" \
 *       -m llm.gguf --mmproj mmproj.gguf [--image img.ppm] [--frames N] \
 *       [--question TEXT] [-n 16] [-r 1] [--warmup 0] [-t THREADS] [--csv out.csv]
 *
 * Every spec answers greedily through md_vqa (mustdrop-vqa.h), the call
 * the CLIs and the element answer with, one engine per spec (the spec is
 * the engine's): up to -n tokens, ending at end of text as any answer does
 * (-n 0: the prefill only). "agree" is the share of its answer tokens
 * equal to the unreduced answer (the first spec "none" is always run first
 * as the reference), "top1" whether the first answer token matches.
 * Counts, FLOPs and KV bytes are those of the last repetition (they do not
 * change between repetitions); the ms_* columns are means over the -r
 * timed repetitions. --warmup N runs the reference spec N times untimed
 * first (page faults of the weights, first allocations). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-reduce.h"
#include "device.h"
#include "mustdrop-vqa.h"

#define MAX_SPECS 32
#define MAX_GEN 256

struct rb_args {
    const char *specs, *llm, *mmproj, *image, *question, *csv;
    int n_predict, reps, warmup, threads, frames;
    const char *device;      /* --device (cpu by default, as for the other benchmarks) */
};

static void rb_usage(FILE *f)
{
    fprintf(f,
        "usage: mustdrop-bench --reduce SPEC[;SPEC...] -m LLM.gguf --mmproj MMPROJ.gguf [options]\n"
        "  --image FILE.ppm   binary PPM (P6) image (default: a synthetic gradient)\n"
        "  --frames N         feed the image N times as video frames (slowly panned)\n"
        "  --question TEXT    (default \"Describe the image.\")\n"
        "  -n N               answer tokens (16)\n"
        "  -r N               timed repetitions; ms_* columns are their means (1)\n"
        "  --warmup N         untimed runs of the reference spec (none) before any timing (0)\n"
        "  -t N               threads (0 = all)\n"
        "  --device D         cpu (default), cuda, cuda:N or auto\n"
        "  --csv FILE         write the CSV there (default stdout)\n");
}

static int rb_parse(int argc, char **argv, struct rb_args *a)
{
    memset(a, 0, sizeof *a);
    a->question = "Describe the image.";
    a->n_predict = 16;
    a->reps = 1;
    a->device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { rb_usage(stdout); return 1; }
        if (!v) { fprintf(stderr, "mustdrop-bench: %s needs a value\n", o); return -1; }
        i++;
        if (!strcmp(o, "--reduce")) a->specs = v;
        else if (!strcmp(o, "-m")) a->llm = v;
        else if (!strcmp(o, "--mmproj")) a->mmproj = v;
        else if (!strcmp(o, "--image")) a->image = v;
        else if (!strcmp(o, "--question")) a->question = v;
        else if (!strcmp(o, "--csv")) a->csv = v;
        else if (!strcmp(o, "-n")) a->n_predict = atoi(v);
        else if (!strcmp(o, "-r")) a->reps = atoi(v);
        else if (!strcmp(o, "--warmup")) a->warmup = atoi(v);
        else if (!strcmp(o, "-t")) a->threads = atoi(v);
        else if (!strcmp(o, "--frames")) a->frames = atoi(v);
        else if (!strcmp(o, "--device")) {
            struct cli_device d;
            a->device = v;
            if (cli_device_parse(v, &d)) {
                fprintf(stderr, "mustdrop-bench: bad value '%s' for --device\n", v);
                return -1;
            }
        } else { fprintf(stderr, "mustdrop-bench: unknown option '%s' with --reduce\n", o); return -1; }
    }
    if (!a->specs || !a->llm || !a->mmproj || a->n_predict < 0 || a->n_predict > MAX_GEN ||
        a->reps < 1 || a->reps > 1000 || a->warmup < 0 || a->warmup > 100 || a->frames < 0 ||
        a->frames > 256) {
        fprintf(stderr, "mustdrop-bench: --reduce needs -m, --mmproj, -n in [0, %d], -r in "
                        "[1, 1000], --warmup in [0, 100], --frames in [0, 256]\n", MAX_GEN);
        return -1;
    }
    return 0;
}

/* Binary PPM (P6, maxval 255); NULL on anything else. */
static uint8_t *read_ppm(const char *path, int32_t *w, int32_t *h)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int maxv = 0;
    uint8_t *px = NULL;
    if (fscanf(f, "P6 %d %d %d", w, h, &maxv) == 3 && maxv == 255 && *w > 0 && *h > 0 &&
        *w <= 16384 && *h <= 16384 && fgetc(f) != EOF) {
        size_t n = (size_t)*w * (size_t)*h * 3;
        px = malloc(n);
        if (px && fread(px, 1, n, f) != n) {
            free(px);
            px = NULL;
        }
    }
    fclose(f);
    return px;
}

static uint8_t *gradient(int32_t w, int32_t h)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int32_t y = 0; px && y < h; y++)
        for (int32_t x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(255 * x / w);
            p[1] = (uint8_t)(255 * y / h);
            p[2] = (uint8_t)((x / 24 + y / 24) % 2 ? 200 : 40);
        }
    return px;
}

struct rb_env {
    uint8_t *img;
    int32_t w, h;
    int32_t n_ctx;           /* 0 until the reference engine has sized it */
    const struct rb_args *a;
};

/* The image, or (--frames N) N frames of it slowly panned, into a window
 * that keeps every one of them. */
static int add_visuals(const struct rb_env *e, struct md_vqa_stream *s)
{
    if (!e->a->frames)
        return md_vqa_stream_add_image(s, e->img, e->w, e->h, e->w * 3);
    size_t sz = (size_t)e->w * e->h * 3;
    uint8_t *buf = malloc(sz);
    int rc = buf ? MD_OK : MD_ERR_NOMEM;
    for (int32_t t = 0; !rc && t < e->a->frames; t++) {   /* a slow vertical pan */
        size_t off = (size_t)(t % e->h) * e->w * 3;
        memcpy(buf, e->img + off, sz - off);
        memcpy(buf + sz - off, e->img, off);
        struct md_frame fr = { buf, e->w, e->h, e->w * 3, t * 40000000LL };
        if (md_vqa_stream_offer(s, fr.pts_ns))
            rc = md_vqa_stream_add(s, &fr);
    }
    free(buf);
    return rc;
}

static void log_cb(enum md_log_level level, const char *text, void *user)
{
    (void)user;
    if (level <= MD_LOG_WARN)
        fprintf(stderr, "mustdrop-bench: %s\n", text);
}

static int load_engine(const struct rb_env *e, const char *spec, int32_t n_ctx,
                       struct md_vqa **out)
{
    char err[1024];
    struct md_vqa_params p = md_vqa_default_params();
    p.model = e->a->llm;
    p.mmproj = e->a->mmproj;
    p.device = e->a->device;
    p.n_threads = e->a->threads;
    p.n_ctx = n_ctx;
    p.reduce = spec;
    p.sample_fps = 0;   /* every frame given */
    p.max_frames = e->a->frames > 0 ? e->a->frames : 1;
    p.max_new_tokens = e->a->n_predict > 0 ? e->a->n_predict : 1;
    p.log = log_cb;
    int rc = md_vqa_load(&p, out, err, sizeof err);
    if (rc)
        fprintf(stderr, "mustdrop-bench: %s: %s\n", spec, err);
    return rc;
}

/* The reference engine; md_vqa sizes its context for every frame (no frame
 * is left out to fit), and the other specs get the same context. */
static int load_reference(struct rb_env *e, const char *spec, struct md_vqa **out)
{
    int rc = load_engine(e, spec, 0, out);
    if (rc)
        return rc;
    e->n_ctx = md_vqa_n_ctx(*out);
    fprintf(stderr, "mustdrop-bench: device %s\n", md_vqa_device(*out));
    return MD_OK;
}

/* The answer's tokens; -n 0 stops at the first (prefill only). */
struct tokens {
    int32_t *ids;
    int32_t n, max;
};

static bool on_token(const char *text, int32_t token, void *user)
{
    struct tokens *t = user;
    (void)text;
    if (t->n < t->max)
        t->ids[t->n++] = token;
    return t->n < t->max;
}

/* answers (warmup + reps) of one engine: the tokens and stats of the last,
 * the wall times averaged over the timed ones. */
static int answer_reps(const struct rb_env *e, struct md_vqa_stream *s, int warmup,
                       struct tokens *tok, struct md_reduce_stats *st)
{
    struct md_vqa_ask ask = md_vqa_default_ask(e->a->question);   /* greedy */
    ask.max_new_tokens = e->a->n_predict > 0 ? e->a->n_predict : 1;
    ask.on_token = on_token;
    ask.token_user = tok;
    double ms[4] = { 0, 0, 0, 0 };
    char err[1024];
    int rc = MD_OK;
    for (int r = 0; !rc && r < warmup + e->a->reps; r++) {
        struct md_vqa_answer ans;
        tok->n = 0;
        rc = md_vqa_answer(s, &ask, &ans, err, sizeof err);
        if (rc) {
            fprintf(stderr, "mustdrop-bench: %s\n", err);
            break;
        }
        *st = ans.stats;
        md_vqa_answer_clear(&ans);
        if (r >= warmup) {
            ms[0] += st->ms_vision;
            ms[1] += st->ms_select;
            ms[2] += st->ms_prefill;
            ms[3] += st->ms_decode;
        }
    }
    st->ms_vision = ms[0] / e->a->reps;
    st->ms_select = ms[1] / e->a->reps;
    st->ms_prefill = ms[2] / e->a->reps;
    st->ms_decode = ms[3] / e->a->reps;
    return rc;
}

/* One spec: its engine (the reference's first, which sizes the context),
 * the visuals, the answers. */
static int run_spec(struct rb_env *e, const char *spec, int warmup, int32_t *ans,
                    int32_t *n_ans, struct md_reduce_stats *st)
{
    struct md_vqa *vqa = NULL;
    struct md_vqa_stream *s = NULL;
    char err[512];
    int rc = e->n_ctx ? load_engine(e, spec, e->n_ctx, &vqa) : load_reference(e, spec, &vqa);
    if (!rc && (rc = md_vqa_stream_new(vqa, MD_VQA_WINDOW, &s, err, sizeof err)))
        fprintf(stderr, "mustdrop-bench: %s: %s\n", spec, err);
    if (!rc && (rc = add_visuals(e, s)))
        fprintf(stderr, "mustdrop-bench: %s: %s\n", spec, md_vqa_stream_error(s));
    struct tokens tok = { ans, 0, e->a->n_predict };
    if (!rc)
        rc = answer_reps(e, s, warmup, &tok, st);
    *n_ans = tok.n;
    md_vqa_stream_free(s);
    md_vqa_free(vqa);
    return rc;
}

static void csv_header(FILE *f)
{
    fprintf(f, "spec,images,parts,tokens_in,after_vision,after_select,final,layer_avg,"
               "layer_avg_per_part,key,"
               "kv_vision_after_decode,prompt_rows,generated,gflops_vision,gflops_prefill,"
               "gflops_decode,kv_mib_prefill,kv_mib_decode,ms_vision,ms_prefill,ms_decode,"
               "agree,top1,ms_select,kv_bytes_prefill,kv_bytes_decode,reps\n");
}

static void csv_row(FILE *f, const char *spec, const struct md_reduce_stats *s, double agree,
                    int top1, int reps)
{
    fprintf(f, "\"%s\",%d,%d,%d,%d,%d,%d,%.2f,%.2f,%d,%d,%d,%d,%.4f,%.4f,%.4f,%.3f,%.3f,%.2f,"
               "%.2f,%.2f,%.3f,%d,%.3f,%zu,%zu,%d\n", spec, s->n_images, s->n_parts, s->vis_in,
            s->vis_after_vision, s->vis_after_select, s->vis_final, s->vis_layer_avg,
            s->vis_layer_avg_per_part, s->n_key_tokens,
            s->vis_kv_after_decode, s->n_prompt, s->n_generated, s->flops_vision / 1e9,
            s->flops_prefill / 1e9, s->flops_decode / 1e9, s->kv_bytes_prefill / 1048576.0,
            s->kv_bytes_decode / 1048576.0, s->ms_vision, s->ms_prefill, s->ms_decode, agree,
            top1, s->ms_select, s->kv_bytes_prefill, s->kv_bytes_decode, reps);
    fflush(f);
}

static int run_all(struct rb_env *e, FILE *out)
{
    char *list = malloc(strlen(e->a->specs) + 6);
    if (!list)
        return 1;
    sprintf(list, "none;%s", e->a->specs);
    int32_t ref[MAX_GEN], n_ref = 0, ans[MAX_GEN], n_ans = 0, status = 0, n_specs = 0;
    csv_header(out);
    char *save = NULL;
    for (char *sp = strtok_r(list, ";", &save); sp && n_specs < MAX_SPECS;
         sp = strtok_r(NULL, ";", &save)) {
        bool is_ref = n_specs++ == 0;
        if (!is_ref && !strcmp(sp, "none"))
            continue;
        struct md_reduce_stats st;
        memset(&st, 0, sizeof st);
        if (run_spec(e, sp, is_ref ? e->a->warmup : 0, is_ref ? ref : ans, is_ref ? &n_ref : &n_ans,
                     &st)) {
            status = 1;
            continue;
        }
        const int32_t *a = is_ref ? ref : ans;
        int32_t n = is_ref ? n_ref : n_ans, same = 0;
        for (int32_t i = 0; i < n && i < n_ref; i++)
            same += a[i] == ref[i];
        csv_row(out, sp, &st, n_ref ? (double)same / n_ref : 1.0, n && n_ref ? a[0] == ref[0] : 1,
                e->a->reps);
    }
    free(list);
    return status;
}

int md_bench_reduce_main(int argc, char **argv)
{
    struct rb_args a;
    int pr = rb_parse(argc, argv, &a);
    if (pr)
        return pr > 0 ? 0 : 2;
    struct rb_env e = { .a = &a };
    e.img = a.image ? read_ppm(a.image, &e.w, &e.h) : gradient(e.w = 336, e.h = 336);
    if (!e.img) {
        fprintf(stderr, "mustdrop-bench: cannot read '%s' (binary PPM P6 expected)\n", a.image);
        return 1;
    }
    FILE *out = a.csv ? fopen(a.csv, "w") : stdout;
    int status = out ? run_all(&e, out) : 1;
    if (!out)
        fprintf(stderr, "mustdrop-bench: cannot write '%s'\n", a.csv);
    if (out && out != stdout)
        fclose(out);
    free(e.img);
    return status;
}
