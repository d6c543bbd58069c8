/* mustdrop-eval: run a video-QA split through the engine and print accuracy.
 *
 *   mustdrop-eval --split DIR [-m LLM.gguf --mmproj MMPROJ.gguf] [--reduce SPEC]
 *                 [--frames N] [--fps F] [--limit N] [-t THREADS] [-c N_CTX] [--out FILE]
 *                 [--json] [--choices-per-type]
 *
 * DIR/manifest.jsonl: one object per line, {"id", "video" (relative to DIR),
 * "question", "answer", "type"} (extra keys ignored). Each question is one
 * md_vqa answer (mustdrop-vqa.h), exactly as `mustdrop --video DIR/VIDEO
 * --frames N --fps F --question Q -n 16 [--reduce SPEC]` and the GStreamer
 * element answer it (the one frame-sampling rule, greedy decoding), and is
 * correct when the answer equals the expected one after trimming whitespace
 * at both ends (case-sensitive). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "device.h"
#include "mustdrop-vqa.h"
#include "progress.h"
#include "vqa.h"


#define EVAL_MAX_NEW_TOKENS 16

struct eval_args {
    const char *split;
    const char *model, *mmproj;
    const char *reduce;
    int n_frames;           /* --frames: the most frames an answer takes */
    double fps;             /* --fps: frames a second sampled (0: every frame) */
    long limit;             /* 0: all */
    int n_threads;
    const char *device;     /* --device (cpu by default: a figure names its device) */
    int n_ctx;              /* -c: KV cache size (0: min(model, 4096), as mustdrop) */
    enum progress_when progress;   /* --progress / --no-progress (default: stderr a terminal) */
    const char *out;
    bool json;
    bool choices_per_type;  /* --choices-per-type: each answer chosen among its type's */
    char default_llm[4096], default_mmproj[4096];
};

struct item {
    long line;
    char *id, *video, *question, *answer, *type;
    char **choices;         /* the line's "choices": "a|b|c" (NULL: none) */
    int32_t n_choices;
};

struct type_acc {
    char *type;
    long n, correct;
};

struct totals {
    long n, correct, n_run, n_errors;
    double vis_in, vis_kept, vis_final, flops_prefill;
    double ms_vision, ms_prefill, ms_decode;
    struct type_acc *types;
    int n_types, cap_types;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: mustdrop-eval --split DIR [options]\n"
        "\n"
        "Answers every question of DIR/manifest.jsonl about its video and prints the\n"
        "accuracy per question type, visual tokens, LLM prefill FLOPs and time per question.\n"
        "\n"
        "      --split DIR      the split: DIR/manifest.jsonl, one JSON object per line:\n"
        "                       {\"id\": ..., \"video\": PATH relative to DIR, \"question\": ...,\n"
        "                        \"answer\": ..., \"type\": ...} (type optional; extra keys ignored)\n"
        "  -m, --model FILE     LLM GGUF (with --mmproj; default: the bundled model\n"
        "                       " MD_DEFAULT_LLM_FILE " + " MD_DEFAULT_MMPROJ_FILE ",\n"
        "                       searched in $MUSTDROP_MODEL_DIR, the installed data dir, the\n"
        "                       source tree's models/synthvqa)\n"
        "      --mmproj FILE    its vision encoder + projector GGUF\n"
        "      --reduce SPEC    visual-token reduction, as mustdrop --reduce (docs/reduction.md)\n"
        "      --frames N       the most frames an answer takes (default %d), as mustdrop --frames\n"
        "      --fps F          frames a second at most, as mustdrop --fps (default 0: --frames\n"
        "                       spread over each whole clip, as the bundled model was trained)\n"
        "      --limit N        only the first N questions\n"
        "      --progress, --no-progress  a progress line on stderr: clips and questions\n"
        "                       done, accuracy so far, time left (default: when stderr is\n"
        "                       a terminal)\n"
        "  -t, --threads N      CPU threads (default: all online CPUs)\n"
        "      --device D       cpu (default), cuda, cuda:N or auto (as mustdrop --device)\n"
        "  -c, --ctx-size N     KV cache size (default min(model, 4096)), as mustdrop -c\n"
        "      --out FILE       per-question predictions as JSON lines: id, type, answer,\n"
        "                       prediction, correct, visual_tokens_kept (and error)\n"
        "      --json           one JSON summary line on stdout (the table goes to stderr)\n"
        "      --choices-per-type  answer each question with choices (docs/structured.md):\n"
        "                       its line's \"choices\" (\"a|b|c\") when it has one, else the\n"
        "                       distinct expected answers of its type in the whole manifest\n"
        "                       (a type with fewer than 2 is answered freely)\n"
        "  -h, --help           this text\n"
        "\n"
        "Answers: greedy decoding, at most %d new tokens, stopping at end of text; a\n"
        "prediction is correct when it equals the expected answer after trimming\n"
        "whitespace at both ends (case-sensitive). A video that cannot be read counts\n"
        "as wrong and the run goes on. Exit status: 0 when the split ran, 1 on a bad\n"
        "manifest or model, 2 on bad options.\n",
        VQA_DEFAULT_FRAMES, EVAL_MAX_NEW_TOKENS);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "mustdrop-eval: %s: '%s' is not an integer in %ld..%ld\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* 0 run, 1 exit 0 (help), -1 usage error. */
static int parse_args(int argc, char **argv, struct eval_args *a)
{
    memset(a, 0, sizeof *a);
    a->n_frames = VQA_DEFAULT_FRAMES;
    /* the clip's stated duration spreads --frames over all of it, one frame
     * per slot of the bundled task (a rate would leave short clips fewer) */
    a->fps = 0;
    a->device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "mustdrop-eval: %s needs a value\n", o); return -1; } i++; } while (0)
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        else if (!strcmp(o, "--split")) { NEED_VALUE(); a->split = v; }
        else if (!strcmp(o, "-m") || !strcmp(o, "--model")) { NEED_VALUE(); a->model = v; }
        else if (!strcmp(o, "--mmproj")) { NEED_VALUE(); a->mmproj = v; }
        else if (!strcmp(o, "--reduce")) {
            NEED_VALUE();
            struct md_reduce_config cfg;
            char err[256];
            if (md_reduce_parse(v, &cfg, err, sizeof err)) {
                fprintf(stderr, "mustdrop-eval: --reduce: %s\n", err);
                return -1;
            }
            a->reduce = v;
        }
        else if (!strcmp(o, "--frames")) { NEED_VALUE(); if (parse_long(o, v, 1, 4096, &x)) return -1; a->n_frames = (int)x; }
        else if (!strcmp(o, "--fps")) {
            NEED_VALUE();
            char *end;
            errno = 0;
            a->fps = strtod(v, &end);
            if (errno || *end || end == v || !(a->fps >= 0 && a->fps <= 1000)) {
                fprintf(stderr, "mustdrop-eval: --fps: '%s' is not a number in 0..1000\n", v);
                return -1;
            }
        }
        else if (!strcmp(o, "--limit")) { NEED_VALUE(); if (parse_long(o, v, 1, 1000000000L, &x)) return -1; a->limit = x; }
        else if (!strcmp(o, "--device")) {
            NEED_VALUE();
            struct cli_device d;
            if (cli_device_parse(v, &d)) {
                fprintf(stderr, "mustdrop-eval: invalid --device '%s' (auto, cpu, cuda or cuda:N)\n", v);
                return -1;
            }
            a->device = v;
        }
        else if (!strcmp(o, "--progress")) a->progress = PROGRESS_ALWAYS;
        else if (!strcmp(o, "--no-progress")) a->progress = PROGRESS_NEVER;
        else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) { NEED_VALUE(); if (parse_long(o, v, 0, 4096, &x)) return -1; a->n_threads = (int)x; }
        else if (!strcmp(o, "-c") || !strcmp(o, "--ctx-size")) { NEED_VALUE(); if (parse_long(o, v, 0, 1000000000L, &x)) return -1; a->n_ctx = (int)x; }
        else if (!strcmp(o, "--out")) { NEED_VALUE(); a->out = v; }
        else if (!strcmp(o, "--json")) a->json = true;
        else if (!strcmp(o, "--choices-per-type")) a->choices_per_type = true;
        else { fprintf(stderr, "mustdrop-eval: unknown option '%s' (see --help)\n", o); return -1; }
#undef NEED_VALUE
    }
    if (!a->split) { fprintf(stderr, "mustdrop-eval: no split given (--split DIR)\n"); return -1; }
    if (!a->model != !a->mmproj) {
        fprintf(stderr, "mustdrop-eval: give both -m and --mmproj, or neither (the default model)\n");
        return -1;
    }
    return 0;
}

/* ---- manifest ---- */

static void item_free(struct item *it)
{
    free(it->id); free(it->video); free(it->question); free(it->answer); free(it->type);
    md_vqa_choices_free(it->choices);
}

/* The optional "choices" field, a '|'-separated list, parsed. */
static int take_choices(const struct json_object *o, struct item *it, char *err, size_t errlen)
{
    const struct json_field *f = json_get(o, "choices");
    if (!f) return 0;
    if (f->type != JSON_STRING) {
        snprintf(err, errlen, "\"choices\" must be a string");
        return -1;
    }
    char why[256];
    if (md_vqa_choices_parse(f->str, &it->choices, &it->n_choices, why, sizeof why)) {
        snprintf(err, errlen, "\"choices\": %s", why);
        return -1;
    }
    return 0;
}

/* A required (or optional) string field into *out (copied). */
static int take_string(const struct json_object *o, const char *key, bool required, char **out,
                       char *err, size_t errlen)
{
    const struct json_field *f = json_get(o, key);
    if (!f) {
        if (!required) { *out = strdup("-"); return *out ? 0 : -1; }
        snprintf(err, errlen, "missing key \"%s\"", key);
        return -1;
    }
    if (f->type != JSON_STRING) {
        snprintf(err, errlen, "\"%s\" must be a string", key);
        return -1;
    }
    if (required && !f->str[0] && strcmp(key, "answer")) {
        snprintf(err, errlen, "\"%s\" is empty", key);
        return -1;
    }
    *out = strdup(f->str);
    return *out ? 0 : -1;
}

/* Read every line; blank lines are skipped. On a malformed line, every
 * such line is reported (up to 20) and -1 is returned. */
static int read_manifest(const char *path, struct item **items_out, long *n_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mustdrop-eval: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    struct item *items = NULL;
    long n = 0, cap = 0, line_no = 0, bad = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        size_t l = (size_t)len;
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r')) l--;
        size_t k = 0;
        while (k < l && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == l) continue;   /* blank */
        char err[512] = "";
        struct json_object o;
        struct item it = { .line = line_no };
        int rc = memchr(line, '\0', l) ? (snprintf(err, sizeof err, "NUL byte in the line"), -1)
                                        : json_parse_object(line, l, &o, err, sizeof err);
        if (rc == 0) {
            rc = take_string(&o, "id", true, &it.id, err, sizeof err) ||
                 take_string(&o, "video", true, &it.video, err, sizeof err) ||
                 take_string(&o, "question", true, &it.question, err, sizeof err) ||
                 take_string(&o, "answer", true, &it.answer, err, sizeof err) ||
                 take_string(&o, "type", false, &it.type, err, sizeof err) ||
                 take_choices(&o, &it, err, sizeof err) ? -1 : 0;
            if (rc && !err[0]) snprintf(err, sizeof err, "out of memory");
            json_object_free(&o);
        }
        if (rc == 0 && n == cap) {
            long nc = cap ? cap * 2 : 64;
            struct item *ni = realloc(items, sizeof *ni * (size_t)nc);
            if (ni) { items = ni; cap = nc; }
            else { rc = -1; snprintf(err, sizeof err, "out of memory"); }
        }
        if (rc) {
            item_free(&it);
            if (bad++ < 20)
                fprintf(stderr, "mustdrop-eval: %s:%ld: %s\n", path, line_no, err);
            continue;
        }
        items[n++] = it;
    }
    bool read_err = ferror(f);
    free(line);
    fclose(f);
    if (read_err) {
        fprintf(stderr, "mustdrop-eval: error reading '%s'\n", path);
        bad++;
    }
    if (!bad && n == 0) {
        fprintf(stderr, "mustdrop-eval: '%s' holds no questions\n", path);
        bad++;
    }
    if (bad) {
        if (bad > 20) fprintf(stderr, "mustdrop-eval: ... %ld malformed line(s) in all\n", bad);
        for (long i = 0; i < n; i++) item_free(&items[i]);
        free(items);
        return -1;
    }
    *items_out = items;
    *n_out = n;
    return 0;
}

/* ---- the answers of each type (--choices-per-type) ---- */

struct choice_set {
    char *type;
    char **answers;              /* trimmed, distinct, in manifest order */
    int32_t n;
};

struct choice_sets {
    struct choice_set *v;
    int n;
};

static void choice_sets_free(struct choice_sets *cs)
{
    for (int i = 0; i < cs->n; i++) {
        for (int32_t k = 0; k < cs->v[i].n; k++) free(cs->v[i].answers[k]);
        free(cs->v[i].answers);
        free(cs->v[i].type);
    }
    free(cs->v);
    memset(cs, 0, sizeof *cs);
}

static struct choice_set *choice_set_slot(struct choice_sets *cs, const char *type)
{
    for (int i = 0; i < cs->n; i++)
        if (!strcmp(cs->v[i].type, type)) return &cs->v[i];
    struct choice_set *v = realloc(cs->v, sizeof *v * (size_t)(cs->n + 1));
    if (!v) return NULL;
    cs->v = v;
    memset(&v[cs->n], 0, sizeof v[0]);
    if (!(v[cs->n].type = strdup(type))) return NULL;
    return &v[cs->n++];
}

/* The distinct expected answers of each type, over every line read
 * without "choices" of its own (all of them, not only the --limit ones, so
 * the sets do not depend on it). */
static int build_choice_sets(const struct item *items, long n, struct choice_sets *cs)
{
    for (long i = 0; i < n; i++) {
        if (items[i].choices) continue;   /* the line brings its own */
        struct choice_set *set = choice_set_slot(cs, items[i].type);
        if (!set) return -1;
        const char *a = items[i].answer;
        size_t len = strlen(a);
        while (len && strchr(" \t\r\n\f\v", *a)) { a++; len--; }
        while (len && strchr(" \t\r\n\f\v", a[len - 1])) len--;
        bool seen = len == 0;
        for (int32_t k = 0; !seen && k < set->n; k++)
            seen = strlen(set->answers[k]) == len && !memcmp(set->answers[k], a, len);
        if (seen) continue;
        char **v = realloc(set->answers, sizeof *v * (size_t)(set->n + 1));
        if (!v) return -1;
        set->answers = v;
        if (!(v[set->n] = strndup(a, len))) return -1;
        set->n++;
    }
    for (int i = 0; i < cs->n; i++)
        fprintf(stderr, "mustdrop-eval: --choices-per-type: %s: %d answer(s)%s\n", cs->v[i].type,
                (int)cs->v[i].n, cs->v[i].n < 2 ? ", answered freely" : "");
    return 0;
}

/* The choices of a question of this type, NULL to answer freely. */
static const struct choice_set *choices_of(const struct choice_sets *cs, const char *type)
{
    for (int i = 0; cs && i < cs->n; i++)
        if (!strcmp(cs->v[i].type, type)) return cs->v[i].n >= 2 ? &cs->v[i] : NULL;
    return NULL;
}

/* ---- answers ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* a and b equal after trimming whitespace at both ends. */
static bool same_answer(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la && is_space(*a)) { a++; la--; }
    while (la && is_space(a[la - 1])) la--;
    while (lb && is_space(*b)) { b++; lb--; }
    while (lb && is_space(b[lb - 1])) lb--;
    return la == lb && !memcmp(a, b, la);
}

/* What one question gave. */
struct result {
    char err[1024];
    char *prediction;            /* md_vqa's answer (NULL when none) */
    int32_t vis_in, vis_kept, vis_final;
    double flops_prefill, ms_vision, ms_prefill, ms_decode;
};

/* The engine and the frames of the video in hand, kept while consecutive
 * lines share it. */
struct engine {
    struct md_vqa *vqa;
    struct md_vqa_stream *frames;
    char *video;                 /* the path the frames are of */
    bool video_ok;
    char video_err[1000];        /* fits a result's err after "video: " */
    struct progress *progress;   /* cleared before a line about a question */
};

/* The frames of path in e->frames, by the one sampling rule: decoded only
 * when the line before asked about another video. */
static bool load_frames(struct engine *e, const char *path)
{
    if (e->video && !strcmp(e->video, path))
        return e->video_ok;
    free(e->video);
    e->video = strdup(path);
    md_vqa_stream_reset(e->frames);
    e->video_ok = vqa_add_video(e->vqa, e->frames, path, NULL, NULL, e->video_err,
                                sizeof e->video_err) == 0;
    return e->video_ok;
}

/* One question over the frames, as `mustdrop --video` answers it (with
 * --choices when choices are given). */
static void answer(struct engine *e, const char *question, char *const *choices,
                   int32_t n_choices, struct result *r)
{
    struct md_vqa_ask ask = md_vqa_default_ask(question);   /* greedy */
    ask.max_new_tokens = EVAL_MAX_NEW_TOKENS;
    ask.choices = (const char *const *)choices;
    ask.n_choices = n_choices;
    struct md_vqa_answer a;
    int rc = md_vqa_answer(e->frames, &ask, &a, r->err, sizeof r->err);
    if (rc != MD_OK) {   /* an error always counts (and is said) */
        if (!r->err[0])
            snprintf(r->err, sizeof r->err, "%s", md_status_str(rc));
        return;
    }
    r->err[0] = '\0';
    r->prediction = a.text;
    a.text = NULL;
    r->vis_in = a.visual_tokens;
    r->vis_kept = a.visual_tokens_kept;
    r->vis_final = a.visual_tokens_final;
    r->flops_prefill = a.stats.flops_prefill;
    r->ms_vision = a.timings.encode_ms;
    r->ms_prefill = a.timings.prefill_ms;
    r->ms_decode = a.timings.decode_ms;
    md_vqa_answer_clear(&a);
}

/* An item's question, with the choices --choices-per-type gives it. */
static void answer_item(struct engine *e, const struct eval_args *a, const struct choice_sets *cs,
                        const struct item *it, struct result *r)
{
    const struct choice_set *set = a->choices_per_type ? choices_of(cs, it->type) : NULL;
    if (a->choices_per_type && it->choices)
        answer(e, it->question, it->choices, it->n_choices, r);
    else
        answer(e, it->question, set ? set->answers : NULL, set ? set->n : 0, r);
}

static struct type_acc *type_slot(struct totals *t, const char *type)
{
    for (int i = 0; i < t->n_types; i++)
        if (!strcmp(t->types[i].type, type))
            return &t->types[i];
    if (t->n_types == t->cap_types) {
        int nc = t->cap_types ? t->cap_types * 2 : 16;
        struct type_acc *nt = realloc(t->types, sizeof *nt * (size_t)nc);
        if (!nt) return NULL;
        t->types = nt;
        t->cap_types = nc;
    }
    struct type_acc *s = &t->types[t->n_types];
    s->type = strdup(type);
    if (!s->type) return NULL;
    s->n = s->correct = 0;
    t->n_types++;
    return s;
}

static void write_prediction(FILE *f, const struct item *it, const char *prediction, bool correct,
                             const struct result *r)
{
    fputs("{\"id\":", f);
    json_write_string(f, it->id);
    fputs(",\"type\":", f);
    json_write_string(f, it->type);
    fputs(",\"question\":", f);
    json_write_string(f, it->question);
    fputs(",\"answer\":", f);
    json_write_string(f, it->answer);
    fputs(",\"prediction\":", f);
    json_write_string(f, prediction);
    fprintf(f, ",\"correct\":%s,\"visual_tokens_in\":%d,\"visual_tokens_kept\":%d",
            correct ? "true" : "false", (int)r->vis_in, (int)r->vis_kept);
    if (r->err[0]) {
        fputs(",\"error\":", f);
        json_write_string(f, r->err);
    }
    fputs("}\n", f);
}

static void print_report(FILE *f, const struct totals *t, const struct eval_args *a,
                         const char *device, double wall_ms)
{
    int w = 4;
    for (int i = 0; i < t->n_types; i++) {
        int l = (int)strlen(t->types[i].type);
        if (l > w) w = l;
    }
    fprintf(f, "%-*s %8s %8s %9s\n", w, "type", "n", "correct", "accuracy");
    for (int i = 0; i < t->n_types; i++) {
        const struct type_acc *s = &t->types[i];
        fprintf(f, "%-*s %8ld %8ld %8.1f%%\n", w, s->type, s->n, s->correct,
                s->n ? 100.0 * s->correct / s->n : 0.0);
    }
    fprintf(f, "%-*s %8ld %8ld %8.1f%%\n", w, "all", t->n, t->correct,
            t->n ? 100.0 * t->correct / t->n : 0.0);
    double m = t->n_run ? 1.0 / t->n_run : 0.0;
    fprintf(f, "\nn %ld, accuracy %.2f%% (%ld correct)", t->n, t->n ? 100.0 * t->correct / t->n : 0.0,
            t->correct);
    if (t->n_errors)
        fprintf(f, ", %ld question(s) not run (errors above; counted wrong)", t->n_errors);
    fprintf(f, "\nreduction: %s | frames per video: at most %d, %g a second | device: %s\n",
            a->reduce ? a->reduce : "none", a->n_frames, a->fps, device);
    if (a->choices_per_type)
        fprintf(f, "answers: chosen among the expected answers of their type (--choices-per-type)\n");
    fprintf(f, "visual tokens per question: %.1f given to the LLM (%.1f before reduction, "
               "%.1f after prefill pruning)\n", t->vis_kept * m, t->vis_in * m, t->vis_final * m);
    fprintf(f, "LLM prefill: %.4g GFLOPs per question\n", t->flops_prefill * m / 1e9);
    fprintf(f, "time per question: vision encode %.1f ms, prefill %.1f ms, decode %.1f ms\n",
            t->ms_vision * m, t->ms_prefill * m, t->ms_decode * m);
    fprintf(f, "total wall time: %.2f s\n", wall_ms / 1e3);
}

static void print_json(const struct totals *t, const struct eval_args *a, const char *device,
                       double wall_ms)
{
    double m = t->n_run ? 1.0 / t->n_run : 0.0;
    printf("{\"n\":%ld,\"correct\":%ld,\"accuracy\":%.6f,\"spec\":", t->n, t->correct,
           t->n ? (double)t->correct / t->n : 0.0);
    json_write_string(stdout, a->reduce ? a->reduce : "none");
    printf(",\"device\":\"%s\",\"sample_fps\":%g,\"choices_per_type\":%s", device, a->fps,
           a->choices_per_type ? "true" : "false");
    printf(",\"frames\":%d,\"n_run\":%ld,\"n_errors\":%ld,\"visual_tokens_in\":%.3f,"
           "\"visual_tokens_kept\":%.3f,\"visual_tokens_final\":%.3f,\"flops_prefill\":%.6g,"
           "\"t_vision_ms\":%.3f,\"t_prefill_ms\":%.3f,\"t_decode_ms\":%.3f,\"wall_s\":%.3f,"
           "\"per_type\":{",
           a->n_frames, t->n_run, t->n_errors, t->vis_in * m, t->vis_kept * m, t->vis_final * m,
           t->flops_prefill * m, t->ms_vision * m, t->ms_prefill * m, t->ms_decode * m, wall_ms / 1e3);
    for (int i = 0; i < t->n_types; i++) {
        if (i) putchar(',');
        json_write_string(stdout, t->types[i].type);
        printf(":{\"n\":%ld,\"correct\":%ld}", t->types[i].n, t->types[i].correct);
    }
    printf("}}\n");
    fflush(stdout);
}


static int load_engine(struct engine *e, const struct eval_args *a, struct progress *pr)
{
    char err[8192];
    memset(e, 0, sizeof *e);
    e->progress = pr;
    struct md_vqa_params p = md_vqa_default_params();
    p.model = a->model;
    p.mmproj = a->mmproj;
    p.device = a->device;
    p.n_threads = a->n_threads;
    p.n_ctx = a->n_ctx;
    p.reduce = a->reduce;
    p.sample_fps = a->fps;
    p.max_frames = a->n_frames;
    p.max_new_tokens = EVAL_MAX_NEW_TOKENS;
    p.abort = progress_tick;     /* the line's times go on during long answers */
    p.abort_user = pr;
    p.log = progress_log;
    p.log_user = pr;
    int rc = md_vqa_load(&p, &e->vqa, err, sizeof err);
    if (rc == MD_OK)
        rc = md_vqa_stream_new(e->vqa, MD_VQA_WINDOW, &e->frames, err, sizeof err);
    if (rc != MD_OK) {
        fprintf(stderr, "mustdrop-eval: %s\n", err);
        return -1;
    }
    fprintf(stderr, "mustdrop-eval: model %s\nmustdrop-eval: vision %s\n",
            md_model_desc(md_vqa_model(e->vqa)), md_vision_desc(md_vqa_vision(e->vqa)));
    return 0;
}

static void free_engine(struct engine *e)
{
    md_vqa_stream_free(e->frames);
    md_vqa_free(e->vqa);
    free(e->video);
}

/* The video's path: relative to the split's directory unless absolute. */
static char *video_path(const char *split, const char *video)
{
    size_t pl = strlen(split) + strlen(video) + 2;
    char *path = malloc(pl);
    if (path && video[0] == '/')
        snprintf(path, pl, "%s", video);
    else if (path)
        snprintf(path, pl, "%s/%s", split, video);
    return path;
}

/* One manifest line: its answer, its place in the totals, its report. */
static int run_item(struct engine *e, const struct eval_args *a, const struct choice_sets *cs,
                    const struct item *it, long i, long n_items, struct totals *t, FILE *out)
{
    struct result r;
    memset(&r, 0, sizeof r);
    char *path = video_path(a->split, it->video);
    if (!path)
        return -1;
    if (!load_frames(e, path))
        snprintf(r.err, sizeof r.err, "video: %s", e->video_err);
    else
        answer_item(e, a, cs, it, &r);
    free(path);
    const char *prediction = r.prediction ? r.prediction : "";
    bool ok = !r.err[0] && same_answer(prediction, it->answer);
    struct type_acc *ts = type_slot(t, it->type);
    if (!ts) {
        free(r.prediction);
        return -1;
    }
    ts->n++;
    ts->correct += ok;
    t->n++;
    t->correct += ok;
    progress_clear(e->progress);
    if (r.err[0]) {
        t->n_errors++;
        fprintf(stderr, "mustdrop-eval: line %ld (id %s): %s; counted wrong\n", it->line, it->id, r.err);
    } else {
        t->n_run++;
        t->vis_in += r.vis_in;
        t->vis_kept += r.vis_kept;
        t->vis_final += r.vis_final;
        t->flops_prefill += r.flops_prefill;
        t->ms_vision += r.ms_vision;
        t->ms_prefill += r.ms_prefill;
        t->ms_decode += r.ms_decode;
        fprintf(stderr, "mustdrop-eval: [%ld/%ld] %s: %s\n", i + 1, n_items, it->id,
                ok ? "correct" : "wrong");
    }
    if (out) write_prediction(out, it, prediction, ok, &r);
    free(r.prediction);
    return 0;
}

/* Where the run is: a clip is the run of consecutive lines about one video
 * (its frames are decoded once); the time left is the mean time a question
 * took so far times the questions left. */
struct run_pace {
    long n_clips, clips_done;
    double start_s;
};

static long count_clips(const struct item *items, long n)
{
    long c = 0;
    for (long i = 0; i < n; i++)
        c += i == 0 || strcmp(items[i].video, items[i - 1].video) != 0;
    return c;
}

static void show_progress(struct progress *pr, const struct run_pace *rp, const struct totals *t,
                          long n_items)
{
    double spent = progress_now() - rp->start_s;
    progress_set(pr, true, t->n ? spent / t->n * (n_items - t->n) : -1,
                 "clips %ld/%ld | questions %ld/%ld | accuracy %.1f%%", rp->clips_done,
                 rp->n_clips, t->n, n_items, t->n ? 100.0 * t->correct / t->n : 0.0);
}

int main(int argc, char **argv)
{
    struct eval_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr > 0 ? 0 : 2;
    double t_start = now_ms();

    char err[8192];
    if (!a.model) {
        if (vqa_default_model(a.default_llm, sizeof a.default_llm, a.default_mmproj,
                              sizeof a.default_mmproj, err, sizeof err)) {
            fprintf(stderr, "mustdrop-eval: no model given (-m, --mmproj) and %s\n", err);
            return 1;
        }
        a.model = a.default_llm;
        a.mmproj = a.default_mmproj;
    }

    size_t dl = strlen(a.split);
    char *manifest = malloc(dl + 32);
    if (!manifest) return 1;
    snprintf(manifest, dl + 32, "%s/manifest.jsonl", a.split);
    struct item *items = NULL;
    long n_items = 0;
    int status = read_manifest(manifest, &items, &n_items);
    free(manifest);
    if (status) return 1;
    struct choice_sets cs = { NULL, 0 };
    if (a.choices_per_type && build_choice_sets(items, n_items, &cs)) {
        fprintf(stderr, "mustdrop-eval: out of memory\n");
        status = 1;
    }
    if (a.limit > 0 && a.limit < n_items) {
        for (long i = a.limit; i < n_items; i++) item_free(&items[i]);
        n_items = a.limit;
    }

    FILE *out = NULL;
    struct progress progress;
    progress_init(&progress, a.progress, "mustdrop-eval");
    struct engine e;
    struct totals t;
    memset(&t, 0, sizeof t);
    memset(&e, 0, sizeof e);
    if (status || load_engine(&e, &a, &progress)) {
        status = 1;
        goto done;
    }
    status = 1;
    if (a.out && !(out = fopen(a.out, "w"))) {
        fprintf(stderr, "mustdrop-eval: cannot write '%s': %s\n", a.out, strerror(errno));
        goto done;
    }
    media_set_verbose(getenv("MUSTDROP_FFMPEG_LOG") != NULL);
    struct run_pace rp = { count_clips(items, n_items), 0, progress_now() };
    show_progress(&progress, &rp, &t, n_items);
    for (long i = 0; i < n_items; i++) {
        if (run_item(&e, &a, &cs, &items[i], i, n_items, &t, out))
            goto done;
        rp.clips_done += i + 1 == n_items || strcmp(items[i + 1].video, items[i].video) != 0;
        show_progress(&progress, &rp, &t, n_items);
    }
    progress_end(&progress);
    status = 0;
    if (out && (fflush(out) || ferror(out))) {
        fprintf(stderr, "mustdrop-eval: error writing '%s'\n", a.out);
        status = 1;
    }
    double wall = now_ms() - t_start;
    print_report(a.json ? stderr : stdout, &t, &a, md_vqa_device(e.vqa), wall);
    if (a.json) print_json(&t, &a, md_vqa_device(e.vqa), wall);
done:
    progress_end(&progress);
    if (out) fclose(out);
    free_engine(&e);
    for (long i = 0; i < n_items; i++) item_free(&items[i]);
    free(items);
    for (int i = 0; i < t.n_types; i++) free(t.types[i].type);
    free(t.types);
    choice_sets_free(&cs);
    return status;
}
