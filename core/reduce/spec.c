/* Reduction spec strings: "method:key=value,...+method:..." -> config.
 * Defaults come from the methods' reference code; the § numbers below are
 * sections of docs/reduction-methods.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

struct md_reduce_config md_reduce_default_config(void)
{
    struct md_reduce_config c;
    memset(&c, 0, sizeof c);
    c.md_tokens = 128;
    c.md_tau_g = 0.0012f;          /* §1.3, the 128 operating point */
    c.md_tau_i = 0.001f;
    c.md_merge_thresh = 0.8f;      /* §1.1 */
    c.md_merge_layer = 0;
    c.md_key_rate = 0.08f;         /* §1.2 */
    c.md_kv = MD_REDUCE_KV_DECODE;  /* positions kept: measured, docs/accuracy.md; faithful is kv=faithful */
    c.md_evict_thresh = 0.001f;
    c.md_evict_every = 4;
    c.hired_budget = 0.2f;         /* §2.4 */
    c.hired_alpha = 0.5f;
    c.fastv_k = 2;                 /* §4, FastV paper defaults */
    c.fastv_r = 0.5f;
    c.random_keep = 0.25f;
    c.random_seed = 1;
    c.uniform_tokens = 144;
    c.dycoke_k = 0.7f;             /* §3, the evaluation default */
    c.dycoke_window = 4;
    c.st_thresh = 0.8f;
    c.st_frames = 2;
    c.vz_keep = 0.11f;             /* VisionZip README: 54 + 10 = 64 of 576 */
    c.vz_dominant = 54.0f / 64.0f;
    c.cd_keep = 0.11f;             /* CDPruner scripts: 64 of 576 */
    c.fv_keep = 0.25f;             /* §10.4, the FlashVID wrapper's defaults */
    c.fv_alpha = 0.7f;
    c.fv_seg_thresh = 0.9f;
    c.fv_min_segs = 8;
    c.fv_temp_thresh = 0.8f;
    c.fv_expansion = 1.0f;         /* 1.25 only with the inner-LLM prune (§10.5) */
    c.ht_keep = 0.1f;              /* §11.4, the HoliTom code's defaults */
    c.ht_tau = 0.8f;
    c.ht_beta = 0.6f;
    c.ht_max_window = 1024;
    c.pos = MD_REDUCE_POS_KEEP;   /* measured on both bundled models (docs/reduction.md, "Positions") */
    return c;
}

/* The published (tau_g, tau_i) operating points (§1.3). */
int md_reduce_mustdrop_preset(int32_t tokens, float *tau_g, float *tau_i)
{
    switch (tokens) {
    case 192: *tau_g = 0.001f;  *tau_i = 0.001f; return MD_OK;
    case 128: *tau_g = 0.0012f; *tau_i = 0.001f; return MD_OK;
    case 64:  *tau_g = 0.011f;  *tau_i = 0.01f;  return MD_OK;
    default:  return MD_ERR_INVALID;
    }
}

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return MD_ERR_INVALID;
}

/* Whole-string numbers only: "0.5x" or "" are errors, not 0.5 / 0. */
static bool parse_double(const char *s, double *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || v != v)
        return false;
    *out = v;
    return true;
}

struct key_ctx {
    const char *method;
    const char *key;
    const char *val;
    char *err;
    size_t errlen;
};

static int num_in(const struct key_ctx *k, double lo, double hi, double *out)
{
    if (!parse_double(k->val, out) || *out < lo || *out > hi)
        return fail(k->err, k->errlen, "%s: bad value '%s' for key '%s' (a number in [%g, %g])",
                    k->method, k->val, k->key, lo, hi);
    return MD_OK;
}

static int int_in(const struct key_ctx *k, double lo, double hi, int32_t *out)
{
    double v = 0.0;
    int rc = num_in(k, lo, hi, &v);
    if (rc)
        return rc;
    if (v != (double)(int64_t)v)
        return fail(k->err, k->errlen, "%s: key '%s' wants an integer, got '%s'", k->method,
                    k->key, k->val);
    *out = (int32_t)v;
    return MD_OK;
}

static int float_in(const struct key_ctx *k, double lo, double hi, float *out)
{
    double v = 0.0;
    int rc = num_in(k, lo, hi, &v);
    if (!rc)
        *out = (float)v;
    return rc;
}

static int unknown_key(const struct key_ctx *k, const char *keys)
{
    return fail(k->err, k->errlen, "%s: unknown key '%s' (keys: %s, pos)", k->method, k->key, keys);
}

/* "2/6/10/14": LLM pruning layers, strictly increasing. */
static int parse_layers(const struct key_ctx *k, struct md_reduce_config *c)
{
    const char *p = k->val;
    int32_t n = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 4096 || n == MD_REDUCE_MAX_LAYERS ||
            (n && v <= c->md_layers[n - 1]) || (*end && *end != '/'))
            return fail(k->err, k->errlen,
                        "mustdrop: bad value '%s' for key 'layers' (increasing layer numbers "
                        "separated by '/', at most %d)", k->val, MD_REDUCE_MAX_LAYERS);
        c->md_layers[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    c->md_n_layers = n;
    return n ? MD_OK : fail(k->err, k->errlen, "mustdrop: key 'layers' is empty");
}

static int mustdrop_key(const struct key_ctx *k, struct md_reduce_config *c)
{
    if (!strcmp(k->key, "tokens")) {
        int rc = int_in(k, 0, 1e9, &c->md_tokens);
        if (!rc && c->md_tokens && md_reduce_mustdrop_preset(c->md_tokens, &c->md_tau_g, &c->md_tau_i))
            return fail(k->err, k->errlen,
                        "mustdrop: key 'tokens' has presets 192, 128 and 64 only, got '%s' "
                        "(set tau_g and tau_i instead)", k->val);
        return rc;
    }
    if (!strcmp(k->key, "tau_g")) { c->md_tokens = 0; return float_in(k, 0, 1, &c->md_tau_g); }
    if (!strcmp(k->key, "tau_i")) { c->md_tokens = 0; return float_in(k, 0, 1, &c->md_tau_i); }
    if (!strcmp(k->key, "merge")) return float_in(k, -1, 2, &c->md_merge_thresh);
    if (!strcmp(k->key, "merge_layer")) return int_in(k, 0, 4096, &c->md_merge_layer);
    if (!strcmp(k->key, "key")) return float_in(k, 0, 1, &c->md_key_rate);
    if (!strcmp(k->key, "layers")) return parse_layers(k, c);
    if (!strcmp(k->key, "evict")) return float_in(k, 0, 1, &c->md_evict_thresh);
    if (!strcmp(k->key, "every")) return int_in(k, 1, 1e6, &c->md_evict_every);
    if (!strcmp(k->key, "kv")) {
        if (!strcmp(k->val, "faithful")) c->md_kv = MD_REDUCE_KV_FAITHFUL;
        else if (!strcmp(k->val, "decode")) c->md_kv = MD_REDUCE_KV_DECODE;
        else if (!strcmp(k->val, "off")) c->md_kv = MD_REDUCE_KV_OFF;
        else return fail(k->err, k->errlen,
                         "mustdrop: bad value '%s' for key 'kv' (faithful, decode, off)", k->val);
        return MD_OK;
    }
    return unknown_key(k, "tokens, tau_g, tau_i, merge, merge_layer, key, layers, kv, evict, every");
}

static int hired_key(const struct key_ctx *k, struct md_reduce_config *c)
{
    if (!strcmp(k->key, "budget")) return float_in(k, 0, 1, &c->hired_budget);
    if (!strcmp(k->key, "alpha")) return float_in(k, 0, 1, &c->hired_alpha);
    if (!strcmp(k->key, "map")) {
        if (!strcmp(k->val, "faithful")) c->hired_geometric = false;
        else if (!strcmp(k->val, "geometric")) c->hired_geometric = true;
        else return fail(k->err, k->errlen,
                         "hired: bad value '%s' for key 'map' (faithful, geometric)", k->val);
        return MD_OK;
    }
    return unknown_key(k, "budget, alpha, map");
}

static int flashvid_key(const struct key_ctx *k, struct md_reduce_config *c)
{
    if (!strcmp(k->key, "keep")) return float_in(k, 0, 1, &c->fv_keep);
    if (!strcmp(k->key, "tokens")) return int_in(k, 0, 1e7, &c->fv_tokens);
    if (!strcmp(k->key, "alpha")) return float_in(k, 0, 1, &c->fv_alpha);
    if (!strcmp(k->key, "seg")) return float_in(k, -1, 2, &c->fv_seg_thresh);
    if (!strcmp(k->key, "segs")) return int_in(k, 1, 1e6, &c->fv_min_segs);
    if (!strcmp(k->key, "temporal")) return float_in(k, -1, 2, &c->fv_temp_thresh);
    if (!strcmp(k->key, "expansion")) return float_in(k, 0.01, 100, &c->fv_expansion);
    if (!strcmp(k->key, "adts")) {
        if (!strcmp(k->val, "v1")) c->fv_adts_v1 = true;
        else if (!strcmp(k->val, "v2")) c->fv_adts_v1 = false;
        else return fail(k->err, k->errlen, "flashvid: bad value '%s' for key 'adts' (v1, v2)",
                         k->val);
        return MD_OK;
    }
    return unknown_key(k, "keep, tokens, alpha, seg, segs, temporal, expansion, adts");
}

static int holitom_key(const struct key_ctx *k, struct md_reduce_config *c)
{
    if (!strcmp(k->key, "keep")) return float_in(k, 0, 1, &c->ht_keep);
    if (!strcmp(k->key, "tokens")) return int_in(k, 0, 1e7, &c->ht_tokens);
    if (!strcmp(k->key, "tau")) return float_in(k, -1, 2, &c->ht_tau);
    if (!strcmp(k->key, "beta")) return float_in(k, 0, 1, &c->ht_beta);
    if (!strcmp(k->key, "window")) return int_in(k, 1, 1e6, &c->ht_max_window);
    return unknown_key(k, "keep, tokens, tau, beta, window");
}

static int method_key(uint32_t m, const struct key_ctx *k, struct md_reduce_config *c)
{
    switch (m) {
    case MD_REDUCE_MUSTDROP: return mustdrop_key(k, c);
    case MD_REDUCE_HIRED: return hired_key(k, c);
    case MD_REDUCE_FASTV:
        if (!strcmp(k->key, "k")) return int_in(k, 1, 4096, &c->fastv_k);
        if (!strcmp(k->key, "r")) return float_in(k, 0, 1, &c->fastv_r);
        return unknown_key(k, "k, r");
    case MD_REDUCE_RANDOM:
        if (!strcmp(k->key, "keep")) return float_in(k, 0, 1, &c->random_keep);
        if (!strcmp(k->key, "seed")) {
            double v = 0.0;
            int rc = num_in(k, 0, 9007199254740992.0, &v);
            if (!rc)
                c->random_seed = (uint64_t)v;
            return rc;
        }
        return unknown_key(k, "keep, seed");
    case MD_REDUCE_UNIFORM:
        if (!strcmp(k->key, "tokens")) return int_in(k, 1, 1e7, &c->uniform_tokens);
        return unknown_key(k, "tokens");
    case MD_REDUCE_DYCOKE:
        if (!strcmp(k->key, "k")) return float_in(k, 0, 1, &c->dycoke_k);
        if (!strcmp(k->key, "window")) return int_in(k, 2, 1024, &c->dycoke_window);
        return unknown_key(k, "k, window");
    case MD_REDUCE_STMERGE:
        if (!strcmp(k->key, "thresh")) return float_in(k, -1, 2, &c->st_thresh);
        if (!strcmp(k->key, "frames")) return int_in(k, 1, 64, &c->st_frames);
        return unknown_key(k, "thresh, frames");
    case MD_REDUCE_VISIONZIP:
        if (!strcmp(k->key, "keep")) return float_in(k, 0, 1, &c->vz_keep);
        if (!strcmp(k->key, "tokens")) return int_in(k, 0, 1e7, &c->vz_tokens);
        if (!strcmp(k->key, "dominant")) return float_in(k, 0, 1, &c->vz_dominant);
        if (!strcmp(k->key, "merge")) {
            if (!strcmp(k->val, "faithful")) c->vz_mean_merge = false;
            else if (!strcmp(k->val, "mean")) c->vz_mean_merge = true;
            else return fail(k->err, k->errlen,
                             "visionzip: bad value '%s' for key 'merge' (faithful, mean)", k->val);
            return MD_OK;
        }
        return unknown_key(k, "keep, tokens, dominant, merge");
    case MD_REDUCE_CDPRUNER:
        if (!strcmp(k->key, "keep")) return float_in(k, 0, 1, &c->cd_keep);
        if (!strcmp(k->key, "tokens")) return int_in(k, 0, 1e7, &c->cd_tokens);
        return unknown_key(k, "keep, tokens");
    case MD_REDUCE_FLASHVID: return flashvid_key(k, c);
    case MD_REDUCE_HOLITOM: return holitom_key(k, c);
    default:
        if (!strcmp(k->key, "tokens")) return int_in(k, 0, 1e9, &c->max_visual_tokens);
        if (!strcmp(k->key, "frames")) return int_in(k, 1, 1e7, &c->max_visual_frames);
        return unknown_key(k, "tokens, frames");
    }
}

/* Stage (b) has two parts (docs/reduction.md, "Composition"): a temporal
 * part across frames runs first, then a per-frame part on what each frame
 * has left. Two methods may share stage (b) when their parts differ. */
enum { PART_TEMPORAL = 1, PART_FRAME = 2 };

struct method_info {
    const char *name;
    uint32_t bit;      /* 0: the "cap" pseudo-method */
    uint32_t stages;
    uint32_t parts;    /* of stage (b) */
};

static const struct method_info METHODS[] = {
    { "mustdrop", MD_REDUCE_MUSTDROP, MD_STAGE_VISION | MD_STAGE_PREFILL | MD_STAGE_DECODE, 0 },
    { "hired", MD_REDUCE_HIRED, MD_STAGE_SELECT, PART_FRAME },
    { "fastv", MD_REDUCE_FASTV, MD_STAGE_PREFILL, 0 },
    { "random", MD_REDUCE_RANDOM, MD_STAGE_SELECT, PART_FRAME },
    { "uniform", MD_REDUCE_UNIFORM, MD_STAGE_SELECT, PART_FRAME },
    { "dycoke", MD_REDUCE_DYCOKE, MD_STAGE_SELECT, PART_TEMPORAL },
    { "stmerge", MD_REDUCE_STMERGE, MD_STAGE_SELECT, PART_TEMPORAL },
    { "visionzip", MD_REDUCE_VISIONZIP, MD_STAGE_SELECT, PART_FRAME },
    { "cdpruner", MD_REDUCE_CDPRUNER, MD_STAGE_SELECT, PART_FRAME },
    { "flashvid", MD_REDUCE_FLASHVID, MD_STAGE_SELECT, PART_TEMPORAL | PART_FRAME },
    { "holitom", MD_REDUCE_HOLITOM, MD_STAGE_SELECT, PART_TEMPORAL },
    { "cap", 0, 0, 0 },
};
#define N_METHODS (sizeof METHODS / sizeof METHODS[0])

static const struct method_info *find_method(const char *name)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (!strcmp(METHODS[i].name, name))
            return &METHODS[i];
    return NULL;
}

uint32_t md_reduce_stages(const struct md_reduce_config *cfg)
{
    uint32_t s = 0;
    for (size_t i = 0; cfg && i < N_METHODS; i++)
        if (cfg->methods & METHODS[i].bit)
            s |= METHODS[i].stages;
    return s;
}

static const char *stage_name(uint32_t s)
{
    return s & MD_STAGE_VISION ? "vision" : s & MD_STAGE_SELECT ? "select"
         : s & MD_STAGE_PREFILL ? "prefill" : "decode";
}

/* pos=keep|renumber, a key every method takes; given in two methods it
 * must agree. *given: 0 not yet, else 1 + the value. */
static int pos_key(const struct key_ctx *k, struct md_reduce_config *c, int *given)
{
    enum md_reduce_pos p;
    if (!strcmp(k->val, "keep"))
        p = MD_REDUCE_POS_KEEP;
    else if (!strcmp(k->val, "renumber"))
        p = MD_REDUCE_POS_RENUMBER;
    else
        return fail(k->err, k->errlen, "%s: bad value '%s' for key 'pos' (keep, renumber)",
                    k->method, k->val);
    if (*given && *given != 1 + (int)p)
        return fail(k->err, k->errlen, "%s: pos=%s contradicts an earlier pos", k->method, k->val);
    *given = 1 + (int)p;
    c->pos = p;
    return MD_OK;
}

/* Parse "key=value,key=value" (args may be empty) for method mi. */
static int parse_args(const struct method_info *mi, char *args, struct md_reduce_config *c,
                      int *pos_given, char *err, size_t errlen)
{
    char *save = NULL;
    for (char *kv = strtok_r(args, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return fail(err, errlen, "%s: '%s' is not key=value", mi->name, kv);
        *eq = '\0';
        struct key_ctx k = { mi->name, kv, eq + 1, err, errlen };
        int rc = !strcmp(kv, "pos") ? pos_key(&k, c, pos_given) : method_key(mi->bit, &k, c);
        if (rc)
            return rc;
    }
    return MD_OK;
}

/* One '+'-separated part: "name" or "name:args". */
/* Whether method mi may join the stages and stage-(b) parts taken so far
 * (at[0] stages, at[1] parts); records it when so. */
static int claim(const struct method_info *mi, uint32_t at[2], char *err, size_t errlen)
{
    uint32_t clash = at[0] & mi->stages & ~(uint32_t)MD_STAGE_SELECT;
    if (!clash && (at[0] & mi->stages & MD_STAGE_SELECT) && (at[1] & mi->parts))
        clash = MD_STAGE_SELECT;
    if (clash == MD_STAGE_SELECT)
        return fail(err, errlen, "method '%s' takes the %s part of stage 'select' like an "
                    "earlier method; '+' composes one temporal method (dycoke, stmerge, "
                    "holitom) with one per-frame method (hired, random, uniform, visionzip, "
                    "cdpruner), flashvid takes both", mi->name,
                    at[1] & mi->parts & PART_TEMPORAL ? "temporal" : "per-frame");
    if (clash)
        return fail(err, errlen, "method '%s' acts at stage '%s' like an earlier method; "
                    "'+' composes methods of different stages", mi->name, stage_name(clash));
    at[0] |= mi->stages;
    at[1] |= mi->parts;
    return MD_OK;
}

static int parse_part(char *part, struct md_reduce_config *c, uint32_t *stages, int *pos_given,
                      char *err, size_t errlen)
{
    char *colon = strchr(part, ':');
    if (colon)
        *colon = '\0';
    if (!strcmp(part, "none") && !colon)
        return MD_OK;
    const struct method_info *mi = find_method(part);
    if (!mi)
        return fail(err, errlen,
                    "unknown method '%s' (mustdrop, hired, fastv, random, uniform, dycoke, "
                    "stmerge, visionzip, cdpruner, flashvid, holitom, cap, none)", part);
    bool again = mi->bit ? (c->methods & mi->bit) != 0 : c->max_visual_tokens != 0;
    if (again)
        return fail(err, errlen, "method '%s' given twice", mi->name);
    int rc0 = claim(mi, stages, err, errlen);
    if (rc0)
        return rc0;
    c->methods |= mi->bit;
    int rc = colon ? parse_args(mi, colon + 1, c, pos_given, err, errlen) : MD_OK;
    if (!rc && !mi->bit && c->max_visual_tokens <= 0)
        return fail(err, errlen, "cap: key 'tokens' must be given and be at least 1");
    return rc;
}

int md_reduce_parse(const char *spec, struct md_reduce_config *cfg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cfg)
        return fail(err, errlen, "no config to fill");
    struct md_reduce_config c = md_reduce_default_config();
    if (!spec || !*spec) {
        *cfg = c;
        return MD_OK;
    }
    size_t len = strlen(spec);
    if (len > 4096)
        return fail(err, errlen, "spec longer than 4096 characters");
    char *buf = malloc(len + 1);
    if (!buf)
        return fail(err, errlen, "out of memory");
    memcpy(buf, spec, len + 1);
    uint32_t stages[2] = { 0, 0 };
    int rc = MD_OK, pos_given = 0;
    char *p = buf;
    for (;;) {
        char *plus = strchr(p, '+');
        if (plus)
            *plus = '\0';
        rc = *p ? parse_part(p, &c, stages, &pos_given, err, errlen)
                : fail(err, errlen, "empty method in spec '%s'", spec);
        if (rc || !plus)
            break;
        p = plus + 1;
    }
    free(buf);
    if (!rc && (c.methods & MD_REDUCE_MUSTDROP) &&
        (c.methods & (MD_REDUCE_FLASHVID | MD_REDUCE_HOLITOM)))
        rc = fail(err, errlen, "%s: needs each frame's full patch grid, which mustdrop's merge "
                  "inside the vision tower breaks; use it without mustdrop (fastv composes)",
                  c.methods & MD_REDUCE_FLASHVID ? "flashvid" : "holitom");
    if (!rc && pos_given && (c.methods & MD_REDUCE_MUSTDROP) && c.md_kv == MD_REDUCE_KV_FAITHFUL)
        rc = fail(err, errlen, "pos: mustdrop's kv=faithful rotates with per-layer cache lengths, "
                  "so pos= has no effect there; use kv=decode or kv=off to choose positions");
    if (!rc)
        *cfg = c;
    return rc;
}

int md_reduce_format(const struct md_reduce_config *c, char *buf, size_t n)
{
    if (!c || !buf || !n)
        return MD_ERR_INVALID;
    size_t o = 0;
    buf[0] = '\0';
#define PUT(...) do { int w_ = snprintf(buf + o, o < n ? n - o : 0, __VA_ARGS__); \
                      if (w_ > 0) o += (size_t)w_; } while (0)
#define SEP() do { if (o) PUT("+"); } while (0)
    if (c->methods & MD_REDUCE_MUSTDROP) {
        SEP();
        PUT("mustdrop:tau_g=%g,tau_i=%g,merge=%g,merge_layer=%d,key=%g,kv=%s", c->md_tau_g,
            c->md_tau_i, c->md_merge_thresh, c->md_merge_layer, c->md_key_rate,
            c->md_kv == MD_REDUCE_KV_FAITHFUL ? "faithful" : c->md_kv == MD_REDUCE_KV_DECODE
            ? "decode" : "off");
        if (c->md_kv == MD_REDUCE_KV_DECODE)
            PUT(",evict=%g,every=%d", c->md_evict_thresh, c->md_evict_every);
        for (int32_t i = 0; i < c->md_n_layers && i < MD_REDUCE_MAX_LAYERS; i++)
            PUT("%s%d", i ? "/" : ",layers=", c->md_layers[i]);
    }
    if (c->methods & MD_REDUCE_HIRED) {
        SEP();
        PUT("hired:budget=%g,alpha=%g,map=%s", c->hired_budget, c->hired_alpha,
            c->hired_geometric ? "geometric" : "faithful");
    }
    if (c->methods & MD_REDUCE_FASTV) { SEP(); PUT("fastv:k=%d,r=%g", c->fastv_k, c->fastv_r); }
    if (c->methods & MD_REDUCE_RANDOM) {
        SEP();
        PUT("random:keep=%g,seed=%llu", c->random_keep, (unsigned long long)c->random_seed);
    }
    if (c->methods & MD_REDUCE_UNIFORM) { SEP(); PUT("uniform:tokens=%d", c->uniform_tokens); }
    if (c->methods & MD_REDUCE_DYCOKE) {
        SEP();
        PUT("dycoke:k=%g,window=%d", c->dycoke_k, c->dycoke_window);
    }
    if (c->methods & MD_REDUCE_STMERGE) {
        SEP();
        PUT("stmerge:thresh=%g,frames=%d", c->st_thresh, c->st_frames);
    }
    if (c->methods & MD_REDUCE_VISIONZIP) {
        SEP();
        PUT("visionzip:%s%g,dominant=%g,merge=%s", c->vz_tokens ? "tokens=" : "keep=",
            c->vz_tokens ? (double)c->vz_tokens : (double)c->vz_keep, c->vz_dominant,
            c->vz_mean_merge ? "mean" : "faithful");
    }
    if (c->methods & MD_REDUCE_CDPRUNER) {
        SEP();
        PUT("cdpruner:%s%g", c->cd_tokens ? "tokens=" : "keep=",
            c->cd_tokens ? (double)c->cd_tokens : (double)c->cd_keep);
    }
    if (c->methods & MD_REDUCE_FLASHVID) {
        SEP();
        PUT("flashvid:%s%g,alpha=%g,seg=%g,segs=%d,temporal=%g,expansion=%g,adts=%s",
            c->fv_tokens ? "tokens=" : "keep=",
            c->fv_tokens ? (double)c->fv_tokens : (double)c->fv_keep, c->fv_alpha,
            c->fv_seg_thresh, c->fv_min_segs, c->fv_temp_thresh, c->fv_expansion,
            c->fv_adts_v1 ? "v1" : "v2");
    }
    if (c->methods & MD_REDUCE_HOLITOM) {
        SEP();
        PUT("holitom:%s%g,tau=%g,beta=%g,window=%d", c->ht_tokens ? "tokens=" : "keep=",
            c->ht_tokens ? (double)c->ht_tokens : (double)c->ht_keep, c->ht_tau, c->ht_beta,
            c->ht_max_window);
    }
    if (c->max_visual_tokens) { SEP(); PUT("cap:tokens=%d", c->max_visual_tokens); }
    if (c->max_visual_tokens && c->max_visual_frames) PUT(",frames=%d", c->max_visual_frames);
    bool faithful = (c->methods & MD_REDUCE_MUSTDROP) && c->md_kv == MD_REDUCE_KV_FAITHFUL;
    /* the last method's args end the spec, and any method takes pos= */
    if (o && !faithful && c->pos != md_reduce_default_config().pos)
        PUT(",pos=%s", c->pos == MD_REDUCE_POS_KEEP ? "keep" : "renumber");
    if (!o)
        PUT("none");
#undef PUT
#undef SEP
    return (int)o;
}
