/* Streams per machine through md_vqa alone, without GStreamer (the GPU
 * machines have none): N streams share one engine, each asking one question
 * about its latest window every PERIOD seconds, the N streams' asks spread
 * evenly over the period, for SECONDS of wall time. A benchmark, not a test
 * (docs/streams.md, docs/benchmarks/gpu/streams.sh).
 *
 *   bench_streams -m LLM.gguf --mmproj MMPROJ.gguf [--device cuda] [-t N]
 *                 [--streams 1,2,4,...] [--period 10] [--seconds 30]
 *                 [--frames 8] [--side 336] [--tokens 32] [--reduce SPEC]
 *                 [--max-batch 8]
 *
 * Each stream holds `frames` frames of side x side RGB (its own pseudo-random
 * pixels, new every window) and asks with ignore_eos for `tokens` tokens, so
 * the work per answer is fixed whatever the (random) weights say. An answer
 * is late when it ends after its stream's next ask was due. Prints one line
 * per N: answers, late, latency p50/p95/max (from the ask being due), the
 * answers' own encode/prefill/decode ms (means), batched (mean), answers/s;
 * and "real-time: yes" when no answer was late. One engine serves all N. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mustdrop-vqa.h"

#define MAX_STREAMS 256

struct opts {
    const char *model, *mmproj, *device, *reduce;
    int threads, frames, side, tokens, max_batch;
    double period, seconds;
    int streams[16], n_streams;
};

struct run {
    const struct opts *o;
    struct md_vqa *vqa;
    double t0;                          /* ms, CLOCK_MONOTONIC */
    int n;                              /* streams in this run */
    pthread_mutex_t mu;
    double *lat;                        /* latencies, ms */
    int n_lat, cap_lat, late, failed;
    double encode, prefill, decode, batched;
    char err[512];
};

struct stream_arg {
    struct run *r;
    int index;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_until(double t_ms)
{
    double d = t_ms - now_ms();
    if (d <= 0)
        return;
    struct timespec ts = { (time_t)(d / 1e3), (long)(fmod(d, 1e3) * 1e6) };
    nanosleep(&ts, NULL);
}

static void fill(uint8_t *rgb, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        rgb[i] = (uint8_t)(seed >> 56);
    }
}

static void record(struct run *r, double lat, const struct md_vqa_answer *a, int rc)
{
    pthread_mutex_lock(&r->mu);
    if (rc) {
        r->failed++;
    } else {
        if (r->n_lat == r->cap_lat) {
            int cap = r->cap_lat ? 2 * r->cap_lat : 256;
            double *p = realloc(r->lat, sizeof *p * (size_t)cap);
            if (p) {
                r->lat = p;
                r->cap_lat = cap;
            }
        }
        if (r->n_lat < r->cap_lat)
            r->lat[r->n_lat++] = lat;
        r->late += lat > r->o->period * 1e3;
        r->encode += a->timings.encode_ms;
        r->prefill += a->timings.prefill_ms;
        r->decode += a->timings.decode_ms;
        r->batched += a->batched;
    }
    pthread_mutex_unlock(&r->mu);
}

/* One stream: every period, a window of new frames and one answer. */
static void *stream_main(void *user)
{
    struct stream_arg *sa = user;
    struct run *r = sa->r;
    const struct opts *o = r->o;
    size_t bytes = (size_t)o->side * (size_t)o->side * 3;
    uint8_t *rgb = malloc(bytes);
    struct md_vqa_stream *s = NULL;
    char err[512] = "";
    if (!rgb || md_vqa_stream_new(r->vqa, MD_VQA_WINDOW, &s, err, sizeof err)) {
        pthread_mutex_lock(&r->mu);
        r->failed++;
        snprintf(r->err, sizeof r->err, "%s", rgb ? err : "out of memory");
        pthread_mutex_unlock(&r->mu);
        free(rgb);
        return NULL;
    }
    md_vqa_stream_set_client(s, sa, NULL, NULL);
    double offset = o->period * 1e3 * sa->index / r->n, period = o->period * 1e3;
    for (int k = 0;; k++) {
        double due = r->t0 + offset + period * k;
        if (due + period > r->t0 + o->seconds * 1e3)
            break;
        md_vqa_stream_reset(s);
        for (int f = 0; f < o->frames; f++) {
            fill(rgb, bytes, (uint64_t)sa->index * 1000003u + (uint64_t)k * 131u + (uint64_t)f);
            struct md_frame fr = { rgb, o->side, o->side, o->side * 3, (int64_t)f * 1000000000 };
            if (md_vqa_stream_offer(s, fr.pts_ns))
                md_vqa_stream_add(s, &fr);
        }
        sleep_until(due);
        struct md_vqa_ask ask = md_vqa_default_ask("What happens in the video?");
        ask.max_new_tokens = o->tokens;
        ask.ignore_eos = true;
        struct md_vqa_answer a;
        memset(&a, 0, sizeof a);
        int rc = md_vqa_answer(s, &ask, &a, err, sizeof err);
        record(r, now_ms() - due, &a, rc);
        if (rc) {
            pthread_mutex_lock(&r->mu);
            snprintf(r->err, sizeof r->err, "%s", err);
            pthread_mutex_unlock(&r->mu);
        } else {
            md_vqa_answer_clear(&a);
        }
    }
    md_vqa_stream_free(s);
    free(rgb);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_n(struct md_vqa *vqa, const struct opts *o, int n)
{
    struct run r = { .o = o, .vqa = vqa, .n = n };
    pthread_mutex_init(&r.mu, NULL);
    pthread_t th[MAX_STREAMS];
    struct stream_arg sa[MAX_STREAMS];
    r.t0 = now_ms() + 200;   /* every thread started before the first ask */
    int started = 0;
    for (int i = 0; i < n; i++) {
        sa[i] = (struct stream_arg){ &r, i };
        if (pthread_create(&th[i], NULL, stream_main, &sa[i]) == 0)
            started++;
        else
            break;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double wall = (now_ms() - r.t0) / 1e3;
    qsort(r.lat, (size_t)r.n_lat, sizeof(double), cmp_d);
    double p50 = r.n_lat ? r.lat[r.n_lat / 2] : 0, p95 = r.n_lat ? r.lat[(r.n_lat * 95) / 100] : 0;
    double mx = r.n_lat ? r.lat[r.n_lat - 1] : 0, k = r.n_lat ? r.n_lat : 1;
    printf("streams %3d  answers %4d  late %3d  failed %d  latency ms p50 %8.1f p95 %8.1f max "
           "%8.1f  encode %7.1f prefill %7.1f decode %7.1f  batched %.2f  answers/s %.2f  "
           "real-time: %s\n", n, r.n_lat, r.late, r.failed + (n - started), p50, p95, mx,
           r.encode / k, r.prefill / k, r.decode / k, r.batched / k, r.n_lat / wall,
           !r.late && !r.failed && started == n && r.n_lat ? "yes" : "no");
    if (r.err[0])
        printf("  last error: %s\n", r.err);
    fflush(stdout);
    free(r.lat);
    pthread_mutex_destroy(&r.mu);
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){ .device = "auto", .frames = 8, .side = 336, .tokens = 32, .max_batch = 8,
                        .period = 10, .seconds = 30, .n_streams = 0 };
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        i++;
        if (!strcmp(k, "-m")) o->model = v;
        else if (!strcmp(k, "--mmproj")) o->mmproj = v;
        else if (!strcmp(k, "--device")) o->device = v;
        else if (!strcmp(k, "--reduce")) o->reduce = v;
        else if (!strcmp(k, "-t")) o->threads = atoi(v);
        else if (!strcmp(k, "--frames")) o->frames = atoi(v);
        else if (!strcmp(k, "--side")) o->side = atoi(v);
        else if (!strcmp(k, "--tokens")) o->tokens = atoi(v);
        else if (!strcmp(k, "--max-batch")) o->max_batch = atoi(v);
        else if (!strcmp(k, "--period")) o->period = atof(v);
        else if (!strcmp(k, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(k, "--streams")) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t && o->n_streams < 16; t = strtok(NULL, ","))
                o->streams[o->n_streams++] = atoi(t);
        } else {
            return -1;
        }
    }
    if (!o->n_streams)
        o->streams[o->n_streams++] = 1;
    for (int i = 0; i < o->n_streams; i++)
        if (o->streams[i] < 1 || o->streams[i] > MAX_STREAMS)
            return -1;
    return (o->frames >= 1 && o->side >= 1 && o->tokens >= 1 && o->period > 0 &&
            o->seconds >= o->period) ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: bench_streams -m LLM.gguf --mmproj MMPROJ.gguf [--device D] [-t N] "
                "[--streams 1,2,4] [--period S] [--seconds S] [--frames N] [--side PX] "
                "[--tokens N] [--reduce SPEC] [--max-batch N]\n");
        return 2;
    }
    struct md_vqa_params p = md_vqa_default_params();
    p.model = o.model;
    p.mmproj = o.mmproj;
    p.device = o.device;
    p.n_threads = o.threads;
    p.reduce = o.reduce;
    p.sample_fps = 0;           /* every frame offered is taken */
    p.max_frames = o.frames;
    p.max_new_tokens = o.tokens;
    p.max_batch = o.max_batch;
    struct md_vqa *vqa = NULL;
    char err[1024];
    double t = now_ms();
    if (md_vqa_load(&p, &vqa, err, sizeof err)) {
        fprintf(stderr, "bench_streams: %s\n", err);
        return 1;
    }
    printf("engine: %s, %s, on %s, n_ctx %d, reduce %s, max-batch %d, loaded in %.1f s\n",
           md_model_desc(md_vqa_model(vqa)), md_vision_desc(md_vqa_vision(vqa)),
           md_vqa_device(vqa), md_vqa_n_ctx(vqa), md_vqa_reduce_spec(vqa), o.max_batch,
           (now_ms() - t) / 1e3);
    printf("each stream: %d frames of %dx%d a window, one answer of %d tokens every %.1f s, "
           "%.0f s a run\n", o.frames, o.side, o.side, o.tokens, o.period, o.seconds);
    fflush(stdout);
    for (int i = 0; i < o.n_streams; i++)
        run_n(vqa, &o, o.streams[i]);
    md_vqa_free(vqa);
    return 0;
}
