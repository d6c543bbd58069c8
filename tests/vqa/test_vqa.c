/* md_vqa, the whole-task call, on the tiny LLaVA fixture (random weights:
 * the words are nonsense, every step is real): loading and its errors, the
 * sampling rule, window and growing streams, the checks a question gets,
 * answers (deterministic, streamed, stopped, aborted), the log callback;
 * many threads sharing one engine (the same answers, fair turns, leaving the
 * queue on abort). */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "grammar.h"
#include "md_test.h"
#include "mustdrop-vqa.h"

static char llm[1024], mmproj[1024];
static uint8_t pixels[32 * 24 * 3];

struct log_seen {
    int n_info;
    char last[512];
};

static void log_cb(enum md_log_level level, const char *text, void *user)
{
    struct log_seen *l = user;
    l->n_info += level == MD_LOG_INFO;
    snprintf(l->last, sizeof l->last, "%s", text);
}

/* The tiny fixture's engine, one thread, with a context of n_ctx (0: auto). */
static struct md_vqa *load_with(double fps, const char *reduce, int32_t n_ctx, struct log_seen *l)
{
    struct md_vqa_params p = md_vqa_default_params();
    struct md_vqa *v = NULL;
    char err[512];
    p.model = llm;
    p.mmproj = mmproj;
    p.n_threads = 1;
    p.sample_fps = fps;
    p.reduce = reduce;
    p.n_ctx = n_ctx;
    p.max_new_tokens = 6;
    p.log = l ? log_cb : NULL;
    p.log_user = l;
    CHECKF(md_vqa_load(&p, &v, err, sizeof err) == MD_OK, "load: %s", err);
    return v;
}

static struct md_vqa *load(double fps, const char *reduce, struct log_seen *l)
{
    return load_with(fps, reduce, 0, l);
}

/* frames at 10 fps into s; returns how many it took */
static int feed(struct md_vqa_stream *s, int n)
{
    int taken = 0;
    for (int i = 0; i < n; i++) {
        memset(pixels, 37 * i, sizeof pixels);
        struct md_frame f = { pixels, 32, 24, 32 * 3, (int64_t)i * 100000000 };
        if (md_vqa_stream_offer(s, f.pts_ns)) {
            CHECK(md_vqa_stream_add(s, &f) == MD_OK);
            taken++;
        }
    }
    return taken;
}

static void load_errors(void)
{
    struct md_vqa_params p = md_vqa_default_params();
    struct md_vqa *v = (struct md_vqa *)1;
    char err[512];
    p.model = "/nonexistent/llm.gguf";
    p.mmproj = mmproj;
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_IO && v == NULL);
    CHECKF(strstr(err, "/nonexistent/llm.gguf: no such file"), "%s", err);
    p.model = llm;
    p.mmproj = NULL;
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_INVALID);
    CHECKF(strstr(err, "both"), "%s", err);
    p.mmproj = mmproj;
    p.reduce = "fastv:q=1";
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_INVALID);
    CHECKF(strstr(err, "invalid reduce spec 'fastv:q=1'"), "%s", err);
    p.reduce = "none";
    p.device = "tpu";
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_INVALID);
    CHECKF(strstr(err, "invalid device 'tpu'"), "%s", err);
    p.device = "cpu";
    p.max_frames = 0;
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_INVALID);
    p.max_frames = 8;
    p.mmproj = llm;   /* an LLM as the projector */
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_UNSUPPORTED);
    CHECKF(strstr(err, "not a vision projector"), "%s", err);
}

/* The one sampling rule: a 1/fps grid from the first frame; a window of
 * max_frames 8 thins (10 offered at every-frame sampling keep 5). */
static void sampling(void)
{
    struct md_vqa *v = load(5.0, "none", NULL);
    struct md_vqa_stream *s;
    char err[256];
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &s, err, sizeof err) == MD_OK);
    CHECK(feed(s, 10) == 5 && md_vqa_stream_n_frames(s) == 5);
    CHECK(md_vqa_stream_first_pts(s) == 0 && md_vqa_stream_last_pts(s) == 800000000);
    CHECK(!md_vqa_stream_offer(s, -1));
    md_vqa_stream_reset(s);
    CHECK(md_vqa_stream_n_frames(s) == 0 && md_vqa_stream_first_pts(s) == -1);
    md_vqa_stream_free(s);
    md_vqa_free(v);

    v = load(0.0, "none", NULL);
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &s, err, sizeof err) == MD_OK);
    CHECK(feed(s, 10) == 9 && md_vqa_stream_n_frames(s) == 5);
    struct md_vqa_stream *c;
    CHECK(md_vqa_stream_clone(s, &c, err, sizeof err) == MD_OK);
    CHECK(c && md_vqa_stream_n_frames(c) == 5);
    md_vqa_stream_free(c);
    md_vqa_stream_free(s);

    struct md_vqa_grid g;
    md_vqa_grid_init(&g, 2.0);
    int taken = 0;
    for (int i = 0; i < 20; i++)
        taken += md_vqa_grid_take(&g, (int64_t)i * 100000000);
    CHECKF(taken == 4, "grid took %d of 2 s at 2 fps", taken);
    md_vqa_free(v);
}

/* One answer of s about 10 frames at 10 fps: its text and reduce spec. */
static void answer_of(struct md_vqa_stream *s, char *text, size_t n, char *reduce, size_t rn,
                      int32_t *visual)
{
    struct md_vqa_answer a;
    char err[512];
    struct md_vqa_ask ask = md_vqa_default_ask("What is it?");
    md_vqa_stream_reset(s);
    feed(s, 10);
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    snprintf(text, n, "%s", a.text);
    snprintf(reduce, rn, "%s", a.reduce);
    *visual = a.visual_tokens;
    md_vqa_answer_clear(&a);
}

/* Streams of one engine with their own sampling and reduction (elements
 * sharing an engine): each answers as an engine loaded with its settings
 * does, in any order with the engine's other streams; a copy keeps them; a
 * bad value or spec is refused, naming it; a spec that prunes inside the
 * prefill works on any engine. */
static void own_settings(void)
{
    struct md_vqa *v = load(5.0, "none", NULL);
    struct md_vqa *vr = load(0.0, "random:keep=0.5", NULL);
    struct md_vqa_stream *s, *d, *r, *c;
    char err[512], text[3][256], spec[3][256];
    int32_t vis[3];
    struct md_vqa_stream_params sp = md_vqa_stream_default_params(v);
    CHECK(sp.sample_fps == 5.0 && sp.max_frames == 8 && sp.reduce == NULL &&
          sp.max_new_tokens == 6);
    sp.sample_fps = 0.0;
    sp.max_frames = 4;
    sp.reduce = "random:keep=0.5";
    CHECKF(md_vqa_stream_new_with(v, MD_VQA_WINDOW, &sp, &s, err, sizeof err) == MD_OK, "%s",
           err);
    CHECK(!strncmp(md_vqa_stream_reduce_spec(s), "random:keep=0.5", 15));
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &d, err, sizeof err) == MD_OK);
    CHECK(!strcmp(md_vqa_stream_reduce_spec(d), "none"));
    /* the reference: an engine loaded with s's settings */
    struct md_vqa_stream_params rp = md_vqa_stream_default_params(vr);
    rp.max_frames = 4;
    CHECK(md_vqa_stream_new_with(vr, MD_VQA_WINDOW, &rp, &r, err, sizeof err) == MD_OK);
    answer_of(r, text[0], sizeof text[0], spec[0], sizeof spec[0], &vis[0]);
    int32_t held = md_vqa_stream_n_frames(r);   /* every frame, thinned to at most 4 */
    CHECKF(held >= 2 && held <= 4, "%d frames held", held);
    answer_of(d, text[2], sizeof text[2], spec[2], sizeof spec[2], &vis[2]);
    for (int round = 0; round < 2; round++) {   /* the engine's session goes back and forth */
        answer_of(s, text[1], sizeof text[1], spec[1], sizeof spec[1], &vis[1]);
        CHECKF(!strcmp(text[0], text[1]) && !strcmp(spec[0], spec[1]) && vis[0] == vis[1],
               "own settings: '%s' %s %d, loaded with them: '%s' %s %d", text[1], spec[1],
               vis[1], text[0], spec[0], vis[0]);
        char t[256], sp2[256];
        int32_t n;
        answer_of(d, t, sizeof t, sp2, sizeof sp2, &n);
        CHECK(!strcmp(t, text[2]) && !strcmp(sp2, "none") && n == vis[2] && n > vis[1]);
    }
    CHECK(md_vqa_stream_n_frames(s) == held);   /* sampled as r, not as the engine says */
    CHECK(md_vqa_stream_clone(s, &c, err, sizeof err) == MD_OK);
    CHECK(!strcmp(md_vqa_stream_reduce_spec(c), md_vqa_stream_reduce_spec(s)));
    answer_of(c, text[1], sizeof text[1], spec[1], sizeof spec[1], &vis[1]);
    CHECK(!strcmp(text[0], text[1]) && !strcmp(spec[0], spec[1]) && vis[0] == vis[1]);
    md_vqa_stream_free(c);

    struct md_vqa_stream *bad = (struct md_vqa_stream *)1;
    sp = md_vqa_stream_default_params(v);
    sp.reduce = "fastv:q=1";
    CHECK(md_vqa_stream_new_with(v, MD_VQA_WINDOW, &sp, &bad, err, sizeof err) ==
          MD_ERR_INVALID && bad == NULL);
    CHECKF(strstr(err, "invalid reduce spec 'fastv:q=1'"), "%s", err);
    sp.reduce = NULL;
    sp.max_frames = 0;
    CHECK(md_vqa_stream_new_with(v, MD_VQA_WINDOW, &sp, &bad, err, sizeof err) ==
          MD_ERR_INVALID);
    CHECKF(strstr(err, "max_frames 0"), "%s", err);
    sp.max_frames = 8;
    sp.sample_fps = -1;
    CHECK(md_vqa_stream_new_with(v, MD_VQA_WINDOW, &sp, &bad, err, sizeof err) ==
          MD_ERR_INVALID);
    /* growing: its own cap */
    sp = md_vqa_stream_default_params(v);
    sp.max_visual_tokens = 12;
    CHECK(md_vqa_stream_new_with(v, MD_VQA_GROWING, &sp, &bad, err, sizeof err) == MD_OK);
    CHECK(md_vqa_stream_visual_cap(bad) == 12);
    CHECK(strstr(md_vqa_stream_reduce_spec(bad), "cap:tokens=12"));
    md_vqa_stream_free(bad);
    md_vqa_stream_free(s);
    md_vqa_stream_free(d);
    md_vqa_stream_free(r);
    md_vqa_free(vr);
    md_vqa_free(v);

    /* layer-wise pruning in the prefill, on an engine loaded without it
     * (its context prefills in chunks until such a prompt comes) and on one
     * loaded with it; each also answers without reduction */
    struct md_vqa *e[2] = { load_with(5.0, "none", 2048, NULL),
                            load_with(5.0, "fastv:k=1", 2048, NULL) };
    for (int i = 0; i < 2; i++) {
        sp = md_vqa_stream_default_params(e[i]);
        sp.reduce = "fastv:k=1";
        CHECK(md_vqa_stream_new_with(e[i], MD_VQA_WINDOW, &sp, &s, err, sizeof err) == MD_OK);
        answer_of(s, text[i], sizeof text[i], spec[i], sizeof spec[i], &vis[i]);
        CHECKF(!strncmp(spec[i], "fastv:k=1", 9), "%s", spec[i]);
        md_vqa_stream_free(s);
        sp.reduce = "none";
        CHECK(md_vqa_stream_new_with(e[i], MD_VQA_WINDOW, &sp, &s, err, sizeof err) == MD_OK);
        answer_of(s, text[2], sizeof text[2], spec[2], sizeof spec[2], &vis[2]);
        CHECK(!strcmp(spec[2], "none"));
        md_vqa_stream_free(s);
    }
    CHECK(!strcmp(text[0], text[1]) && vis[0] == vis[1]);
    md_vqa_free(e[0]);
    md_vqa_free(e[1]);
}

static bool stop_after_two(const char *text, int32_t token, void *user)
{
    int *n = user;
    CHECK(text != NULL);
    return ++*n < 2;
}

static void answers(void)
{
    struct log_seen seen = { 0 };
    struct md_vqa *v = load(5.0, "none", &seen);
    CHECK(seen.n_info > 0);   /* what was loaded, on which device */
    struct md_vqa_stream *s;
    struct md_vqa_answer a, b;
    char err[512];
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &s, err, sizeof err) == MD_OK);
    struct md_vqa_ask ask = md_vqa_default_ask("What is it?");
    CHECK(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_ERR_INVALID);
    CHECKF(strstr(err, "no frames"), "%s", err);
    feed(s, 10);
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    CHECKF(md_vqa_answer(s, &ask, &b, err, sizeof err) == MD_OK, "%s", err);
    CHECK(a.text && b.text && !strcmp(a.text, b.text));   /* greedy: the same */
    CHECK(a.frames == 5 && a.visual_tokens > 0 && a.prompt_tokens > a.visual_tokens);
    CHECK(a.generated_tokens <= 6 && !strcmp(a.reduce, "none"));
    size_t n = strlen(a.text);
    CHECK(n == 0 || (a.text[0] != ' ' && a.text[n - 1] != ' '));
    md_vqa_answer_clear(&a);
    md_vqa_answer_clear(&b);

    int calls = 0;
    ask.on_token = stop_after_two;
    ask.token_user = &calls;
    ask.max_new_tokens = 50;
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    CHECK(calls <= 2 && a.generated_tokens == calls && (calls < 2 || a.stopped));
    md_vqa_answer_clear(&a);

    static const char *bad[] = { "", "  \n", "caf\xe9?" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ask = md_vqa_default_ask(bad[i]);
        CHECK(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_ERR_INVALID);
        CHECKF(strstr(err, i < 2 ? "empty" : "not valid UTF-8"), "%s", err);
    }
    char *long_q = malloc(20001);
    memset(long_q, 'a', 20000);
    long_q[20000] = '\0';
    ask = md_vqa_default_ask(long_q);
    CHECK(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_ERR_CONTEXT_FULL);
    CHECKF(strstr(err, "the question is") && strstr(err, "the context holds"), "%s", err);
    free(long_q);
    md_vqa_stream_free(s);
    md_vqa_free(v);
}

/* Constrained answers on random weights: whatever the logits, a JSON answer
 * is valid for its schema (or an error, never an invalid answer), a choice
 * is one of the list and does not depend on the list's order; the checks
 * before any work; a growing stream answers with choices too. */
static void constrained(void)
{
    struct md_vqa *v = load(5.0, "fastv:k=1,r=0.5", NULL);
    struct md_vqa_stream *s;
    struct md_vqa_answer a, b;
    char err[512];
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &s, err, sizeof err) == MD_OK);
    feed(s, 10);
    static const char *const fwd[] = { "red", "green square", "top left", "7" };
    static const char *const rev[] = { "7", "top left", "green square", "red" };
    struct md_vqa_ask ask = md_vqa_default_ask("What is it?");
    ask.choices = fwd;
    ask.n_choices = 4;
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    ask.choices = rev;
    CHECKF(md_vqa_answer(s, &ask, &b, err, sizeof err) == MD_OK, "%s", err);
    CHECK(a.choice >= 0 && a.choice < 4 && !strcmp(a.text, fwd[a.choice]));
    CHECK(b.choice == 3 - a.choice && !strcmp(a.text, b.text));
    CHECK(a.value && a.value->type == MD_VALUE_STRING && !strcmp(a.value->string, a.text));
    CHECK(a.generated_tokens >= 4 && a.generated_tokens == b.generated_tokens && !a.stopped);
    md_vqa_answer_clear(&a);
    CHECK(a.choice == -1 && !a.value && !a.text);
    md_vqa_answer_clear(&b);

    /* free answers: no choice, no value */
    ask = md_vqa_default_ask("What is it?");
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    CHECK(a.choice == -1 && !a.value);
    md_vqa_answer_clear(&a);

    static const char *schemas[] = {
        "{\"type\":\"object\",\"properties\":{\"person\":{\"type\":\"boolean\"},"
        "\"count\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":300}}}",
        "{\"type\":\"string\",\"maxLength\":4}",
        "{\"enum\":[\"yes\",\"no\",12]}",
    };
    for (size_t i = 0; i < sizeof schemas / sizeof *schemas; i++) {
        ask = md_vqa_default_ask("What is it?");
        ask.json_schema = schemas[i];
        ask.max_new_tokens = 64;
        int rc = md_vqa_answer(s, &ask, &a, err, sizeof err);
        CHECKF(rc == MD_OK || (rc == MD_ERR_INVALID && strstr(err, "not complete after")),
               "%s: %s", schemas[i], err);
        if (rc == MD_OK) {
            CHECKF(a.value && a.choice == -1, "%s", a.text);
            struct md_grammar *g;
            CHECK(md_grammar_compile(schemas[i], &g, err, sizeof err) == MD_OK);
            struct md_gstate st;
            md_gstate_init(g, &st);
            CHECKF(md_gstate_feed_bytes(g, &st, a.text, strlen(a.text)) &&
                   md_gstate_complete(g, &st), "%s: '%s'", schemas[i], a.text);
            md_grammar_free(g);
            printf("schema %zu: %s\n", i, a.text);
        }
        CHECK(rc != MD_OK || !a.stopped);
        md_vqa_answer_clear(&a);
    }
    /* too few tokens to close an object: an error, not a cut answer */
    ask = md_vqa_default_ask("What is it?");
    ask.json_schema = schemas[0];
    ask.max_new_tokens = 2;
    CHECK(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_ERR_INVALID && !a.text && !a.value);
    CHECKF(strstr(err, "not complete after 2 tokens"), "%s", err);

    /* checked before any work */
    static const char *const spaced[] = { "a", " b" }, *const dup[] = { "a", "a" };
    static const char *const empty[] = { "a", "" };
    struct { const char *const *c; int32_t n; const char *schema, *msg; } bad[] = {
        { spaced, 2, NULL, "choice 1 has surrounding whitespace" },
        { dup, 2, NULL, "choice 1 repeats an earlier one" },
        { empty, 2, NULL, "choice 1 is empty" },
        { NULL, 2, NULL, "n_choices is 2 with no choices" },
        { dup, 1, "{\"type\":\"boolean\"}", "choices and a JSON schema together" },
        { NULL, 0, "{\"type\":\"number\"}", "(root): type \"number\" is not supported" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ask = md_vqa_default_ask("What is it?");
        ask.choices = bad[i].c;
        ask.n_choices = bad[i].n;
        ask.json_schema = bad[i].schema;
        CHECK(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_ERR_INVALID);
        CHECKF(strstr(err, bad[i].msg), "%s", err);
    }
    md_vqa_stream_free(s);
    md_vqa_free(v);

    v = load(5.0, "cap:tokens=40", NULL);
    CHECK(md_vqa_stream_new(v, MD_VQA_GROWING, &s, err, sizeof err) == MD_OK);
    feed(s, 10);
    ask = md_vqa_default_ask("What happened?");
    ask.choices = fwd;
    ask.n_choices = 4;
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    CHECKF(md_vqa_answer(s, &ask, &b, err, sizeof err) == MD_OK, "%s", err);
    CHECK(a.choice >= 0 && a.choice == b.choice);   /* the growing session rewound */
    md_vqa_answer_clear(&a);
    md_vqa_answer_clear(&b);
    md_vqa_stream_free(s);
    md_vqa_free(v);
}

/* A growing stream keeps its reduced tokens under a cap that fits the
 * context, and answers about everything seen. */
static void growing(void)
{
    struct md_vqa *v = load(5.0, "cap:tokens=40", NULL);
    struct md_vqa_stream *s;
    struct md_vqa_answer a;
    char err[512];
    CHECKF(md_vqa_stream_new(v, MD_VQA_GROWING, &s, err, sizeof err) == MD_OK, "%s", err);
    CHECK(md_vqa_stream_visual_cap(s) == 40);
    CHECK(feed(s, 30) == 15 && md_vqa_stream_n_frames(s) == 15);
    CHECK(md_vqa_stream_visual_tokens(s) > 0 && md_vqa_stream_visual_tokens(s) <= 40);
    struct md_vqa_ask ask = md_vqa_default_ask("What happened?");
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    CHECK(a.frames == 15 && a.visual_tokens_kept <= 40 && strstr(a.reduce, "cap:tokens=40"));
    md_vqa_answer_clear(&a);
    md_vqa_stream_free(s);
    md_vqa_free(v);
}

static int abort_after;

static bool abort_cb(void *user)
{
    return abort_after-- <= 0;
}

static void aborted(void)
{
    struct md_vqa_params p = md_vqa_default_params();
    struct md_vqa *v = NULL;
    struct md_vqa_stream *s;
    struct md_vqa_answer a;
    char err[512];
    p.model = llm;
    p.mmproj = mmproj;
    p.n_threads = 1;
    p.abort = abort_cb;
    abort_after = 1 << 30;
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_OK);
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &s, err, sizeof err) == MD_OK);
    feed(s, 10);
    struct md_vqa_ask ask = md_vqa_default_ask("What is it?");
    int n_aborted = 0;
    for (int after = 0; after < 40; after += 3) {
        abort_after = after;   /* inside the tower, the prefill or the decode */
        int rc = md_vqa_answer(s, &ask, &a, err, sizeof err);
        CHECKF(rc == MD_ERR_ABORTED || rc == MD_OK, "rc %d (%s)", rc, err);
        CHECK(rc != MD_ERR_ABORTED || a.text == NULL);
        n_aborted += rc == MD_ERR_ABORTED;
        md_vqa_answer_clear(&a);
    }
    CHECKF(n_aborted >= 3, "%d of 14 answers aborted", n_aborted);
    abort_after = 1 << 30;
    CHECK(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK);   /* usable after */
    md_vqa_answer_clear(&a);
    md_vqa_stream_free(s);
    md_vqa_free(v);
}

/* ---- many threads, one engine ---------------------------------------- */

/* One thread's request: a stream, whose client it asks for, and what came. */
struct asker {
    struct md_vqa *v;
    struct md_vqa_stream *s;
    char tag;                   /* written to `order` when its turn starts */
    int rc;
    char text[256];
    /* the first request holds its turn until this many wait behind it */
    volatile int hold_for;
    volatile int started;
    volatile int stop;          /* its abort */
    int batched;                /* the answer's batched */
    pthread_t thread;
};

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static char order[64];
static int n_order;

static bool asker_token(const char *text, int32_t token, void *user)
{
    struct asker *a = user;
    (void)text;
    (void)token;
    if (a->started)
        return true;
    pthread_mutex_lock(&order_mu);
    order[n_order++] = a->tag;
    pthread_mutex_unlock(&order_mu);
    a->started = 1;
    /* the turn is this request's: the others queue up behind it */
    for (int i = 0; i < 20000 && md_vqa_waiting(a->v) < a->hold_for; i++)
        usleep(1000);
    return true;
}

static bool asker_abort(void *user)
{
    return ((struct asker *)user)->stop;
}

static void *asker_main(void *user)
{
    struct asker *a = user;
    struct md_vqa_ask ask = md_vqa_default_ask("What is it?");
    struct md_vqa_answer out;
    char err[256];
    ask.max_new_tokens = 3;
    ask.ignore_eos = true;      /* at least one token: the turn is seen */
    ask.on_token = asker_token;
    ask.token_user = a;
    a->rc = md_vqa_answer(a->s, &ask, &out, err, sizeof err);
    a->batched = out.batched;
    snprintf(a->text, sizeof a->text, "%s", a->rc == MD_OK ? out.text : err);
    md_vqa_answer_clear(&out);
    return NULL;
}

static void asker_init(struct asker *a, struct md_vqa *v, char tag, int shade, const void *client)
{
    char err[256];
    memset(a, 0, sizeof *a);
    a->v = v;
    a->tag = tag;
    CHECKF(md_vqa_stream_new(v, MD_VQA_WINDOW, &a->s, err, sizeof err) == MD_OK, "%s", err);
    memset(pixels, shade, sizeof pixels);
    struct md_frame f = { pixels, 32, 24, 32 * 3, 0 };
    CHECK(md_vqa_stream_offer(a->s, 0) && md_vqa_stream_add(a->s, &f) == MD_OK);
    md_vqa_stream_set_client(a->s, client, asker_abort, a);
}

static void asker_start(struct asker *a)
{
    CHECK(pthread_create(&a->thread, NULL, asker_main, a) == 0);
}

static void wait_until(bool (*cond)(struct md_vqa *, int), struct md_vqa *v, int n)
{
    for (int i = 0; i < 20000 && !cond(v, n); i++)
        usleep(1000);
}

static bool waiting_is(struct md_vqa *v, int n)
{
    return md_vqa_waiting(v) == n;
}

/* Threads answering at once on one engine get the answers each gets alone
 * (greedy: the shared context must not leak between requests). */
static void threads_same_answers(void)
{
    struct md_vqa *v = load(5.0, "none", NULL);
    struct asker a[4];
    char alone[4][256];
    for (int i = 0; i < 4; i++) {
        asker_init(&a[i], v, (char)('a' + i), 40 + 50 * i, NULL);
        asker_main(&a[i]);
        CHECKF(a[i].rc == MD_OK, "%s", a[i].text);
        snprintf(alone[i], sizeof alone[i], "%s", a[i].text);
        a[i].started = 0;
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++)
            asker_start(&a[i]);
        for (int i = 0; i < 4; i++) {
            pthread_join(a[i].thread, NULL);
            CHECKF(a[i].rc == MD_OK && !strcmp(a[i].text, alone[i]),
                   "stream %d together: \"%s\", alone: \"%s\"", i, a[i].text, alone[i]);
            a[i].started = 0;
        }
    }
    CHECK(md_vqa_waiting(v) == 0);
    for (int i = 0; i < 4; i++)
        md_vqa_stream_free(a[i].s);
    md_vqa_free(v);
}

/* Window answers of four clients waiting behind a turn are taken by the
 * next holder into one batch (decoded in lock-step on four contexts), and
 * each gets the text it gets alone; with max_batch 1 they go one by one. */
static void batched_round(struct md_vqa *v, int want_batched)
{
    struct asker hold, a[4];
    char alone[4][256];
    asker_init(&hold, v, 'H', 10, NULL);
    for (int i = 0; i < 4; i++) {
        asker_init(&a[i], v, (char)('a' + i), 40 + 50 * i, NULL);
        asker_main(&a[i]);
        CHECKF(a[i].rc == MD_OK && a[i].batched == 1 && a[i].text[0], "alone %d: rc %d, batched %d: %s",
               i, a[i].rc, a[i].batched, a[i].text);
        snprintf(alone[i], sizeof alone[i], "%s", a[i].text);
        a[i].started = 0;
    }
    n_order = 0;
    memset(order, 0, sizeof order);
    hold.hold_for = 4;
    asker_start(&hold);
    for (int i = 0; i < 20000 && !hold.started; i++)
        usleep(1000);
    for (int i = 0; i < 4; i++) {
        asker_start(&a[i]);
        if (i < 3)   /* the fourth lets the holder go: the line empties at once */
            wait_until(waiting_is, v, i + 1);
    }
    pthread_join(hold.thread, NULL);
    CHECK(hold.rc == MD_OK && hold.batched == 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(a[i].thread, NULL);
        CHECKF(a[i].rc == MD_OK && !strcmp(a[i].text, alone[i]),
               "stream %d batched: \"%s\", alone: \"%s\"", i, a[i].text, alone[i]);
        CHECKF(a[i].batched == want_batched, "stream %d: batched %d, want %d", i, a[i].batched,
               want_batched);
        md_vqa_stream_free(a[i].s);
    }
    printf("batched %d: \"%s\" \"%s\" \"%s\" \"%s\"\n", want_batched, alone[0], alone[1], alone[2], alone[3]);
    /* the batch's first tokens come in line order, after the holder's */
    CHECKF(!strcmp(order, "Habcd"), "first tokens in the order \"%s\"", order);
    CHECK(md_vqa_waiting(v) == 0);
    md_vqa_stream_free(hold.s);
}

static void threads_batched(void)
{
    struct md_vqa *v = load(5.0, "none", NULL);
    CHECK(md_vqa_params(v)->max_batch == 8);
    batched_round(v, 4);
    batched_round(v, 4);   /* the contexts made for the first batch serve again */
    md_vqa_free(v);
    struct md_vqa_params p = md_vqa_default_params();
    char err[512];
    p.model = llm;
    p.mmproj = mmproj;
    p.n_threads = 1;
    p.sample_fps = 5.0;
    p.max_new_tokens = 6;
    p.max_batch = 1;
    v = NULL;
    CHECKF(md_vqa_load(&p, &v, err, sizeof err) == MD_OK, "%s", err);
    if (v)
        batched_round(v, 1);
    md_vqa_free(v);
    p.max_batch = 65;
    CHECK(md_vqa_load(&p, &v, err, sizeof err) == MD_ERR_INVALID);
    CHECKF(strstr(err, "max_batch 65 (0..64)"), "%s", err);
    /* the bundled model (F16 weights: the float GEMV's sums may differ in
     * the last bits between one row and several, the greedy text must not) */
    char llm16[1024], mmproj16[1024];
    p = md_vqa_default_params();
    p.model = md_test_data("../models/synthvqa/synthvqa-llm-f16.gguf", llm16, sizeof llm16);
    p.mmproj = md_test_data("../models/synthvqa/synthvqa-mmproj-f16.gguf", mmproj16, sizeof mmproj16);
    p.n_threads = 1;
    p.sample_fps = 5.0;
    v = NULL;
    CHECKF(md_vqa_load(&p, &v, err, sizeof err) == MD_OK, "%s", err);
    if (v)
        batched_round(v, 4);
    md_vqa_free(v);
}

/* A client with four requests queued (one flooding stream) and two clients
 * with one each: the turns go round the clients, each client's requests in
 * the order they came. */
static void threads_fair_turns(void)
{
    struct md_vqa *v = load(5.0, "none", NULL);
    static const char flood_client = 'F';
    struct asker hold, flood[4], x, y;
    asker_init(&hold, v, 'H', 10, NULL);
    for (int i = 0; i < 4; i++)
        asker_init(&flood[i], v, (char)('1' + i), 60 + i, &flood_client);
    asker_init(&x, v, 'A', 120, NULL);
    asker_init(&y, v, 'B', 180, NULL);
    n_order = 0;
    memset(order, 0, sizeof order);
    hold.hold_for = 6;
    asker_start(&hold);
    for (int i = 0; i < 20000 && !hold.started; i++)
        usleep(1000);
    CHECK(hold.started);
    for (int i = 0; i < 4; i++) {
        asker_start(&flood[i]);
        wait_until(waiting_is, v, i + 1);   /* arrival order fixed */
    }
    asker_start(&x);
    wait_until(waiting_is, v, 5);
    asker_start(&y);
    pthread_join(hold.thread, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(flood[i].thread, NULL);
    pthread_join(x.thread, NULL);
    pthread_join(y.thread, NULL);
    CHECKF(!strcmp(order, "H1AB234"), "turns in the order \"%s\", want \"H1AB234\"", order);
    CHECK(hold.rc == MD_OK && x.rc == MD_OK && y.rc == MD_OK);
    for (int i = 0; i < 4; i++) {
        CHECK(flood[i].rc == MD_OK);
        md_vqa_stream_free(flood[i].s);
    }
    md_vqa_stream_free(hold.s);
    md_vqa_stream_free(x.s);
    md_vqa_stream_free(y.s);
    md_vqa_free(v);
}

/* A request whose abort fires while it waits leaves the queue at once,
 * without waiting for the turn in progress to end. */
static void threads_abort_waiting(void)
{
    struct md_vqa *v = load(5.0, "none", NULL);
    struct asker hold, waiter;
    asker_init(&hold, v, 'H', 10, NULL);
    asker_init(&waiter, v, 'W', 90, NULL);
    hold.hold_for = 1000;       /* until the test lets it go (stop below) */
    asker_start(&hold);
    for (int i = 0; i < 20000 && !hold.started; i++)
        usleep(1000);
    asker_start(&waiter);
    wait_until(waiting_is, v, 1);
    CHECK(md_vqa_waiting(v) == 1);
    waiter.stop = 1;
    pthread_join(waiter.thread, NULL);  /* returns while hold keeps its turn */
    CHECKF(waiter.rc == MD_ERR_ABORTED && !waiter.started, "rc %d: %s", waiter.rc,
           waiter.text);
    CHECK(md_vqa_waiting(v) == 0);
    hold.hold_for = 0;
    pthread_join(hold.thread, NULL);
    CHECK(hold.rc == MD_OK);
    md_vqa_stream_free(hold.s);
    md_vqa_stream_free(waiter.s);
    md_vqa_free(v);
}

/* Control-token text typed in the question and in the choices is text: a
 * choice "</s>" is scored as its characters (several tokens), not as the
 * end of the answer (one token), and is not refused. */
static void typed_controls(void)
{
    struct md_vqa *v = load(5.0, NULL, NULL);
    struct md_vqa_stream *s;
    struct md_vqa_answer a;
    char err[512];
    CHECK(md_vqa_stream_new(v, MD_VQA_WINDOW, &s, err, sizeof err) == MD_OK);
    feed(s, 10);
    static const char *const typed[] = { "</s>", "red</s>" };
    struct md_vqa_ask ask = md_vqa_default_ask("Is it </s> or red?</s>");
    ask.choices = typed;
    ask.n_choices = 2;
    CHECKF(md_vqa_answer(s, &ask, &a, err, sizeof err) == MD_OK, "%s", err);
    CHECK(a.choice >= 0 && a.choice < 2 && a.text && !strcmp(a.text, typed[a.choice]));
    CHECKF(a.generated_tokens > 2, "%d tokens for '%s'", a.generated_tokens,
           a.text ? a.text : "");
    md_vqa_answer_clear(&a);
    md_vqa_stream_free(s);
    md_vqa_free(v);
}

int main(void)
{
    md_test_data("../models/fixtures/vision/tiny-llava-llm-f32.gguf", llm, sizeof llm);
    md_test_data("../models/fixtures/vision/tiny-llava-mmproj-f32.gguf", mmproj, sizeof mmproj);
    load_errors();
    sampling();
    answers();
    own_settings();
    constrained();
    typed_controls();
    growing();
    aborted();
    threads_same_answers();
    threads_fair_turns();
    threads_abort_waiting();
    threads_batched();
    return md_test_finish("vqa");
}
