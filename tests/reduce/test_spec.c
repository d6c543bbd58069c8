/* Spec strings: every documented example parses to the right values,
 * composition across stages works, and bad input gives a message naming
 * the bad method, key or value (never a crash). */
#include <stdint.h>

#include "md_test.h"
#include "mustdrop-reduce.h"

static int parse(const char *spec, struct md_reduce_config *c, char *err)
{
    return md_reduce_parse(spec, c, err, 256);
}

static void new_methods(void);

static void good(void)
{
    struct md_reduce_config c;
    char err[256];
    CHECK(parse("none", &c, err) == MD_OK && c.methods == 0);
    CHECK(parse("", &c, err) == MD_OK && c.methods == 0 && md_reduce_stages(&c) == 0);
    CHECK(parse(NULL, &c, err) == MD_OK && c.methods == 0);
    CHECK(parse("mustdrop:tokens=128", &c, err) == MD_OK && c.methods == MD_REDUCE_MUSTDROP);
    CHECK(c.md_tau_g == 0.0012f && c.md_tau_i == 0.001f);
    CHECK(parse("mustdrop:tokens=64", &c, err) == MD_OK && c.md_tau_g == 0.011f && c.md_tau_i == 0.01f);
    CHECK(parse("mustdrop:tokens=192,kv=decode,evict=0.01,every=2", &c, err) == MD_OK);
    CHECK(c.md_tau_g == 0.001f && c.md_kv == MD_REDUCE_KV_DECODE && c.md_evict_every == 2);
    CHECK(parse("mustdrop:layers=1/3", &c, err) == MD_OK && c.md_n_layers == 2 && c.md_layers[1] == 3);
    CHECK(parse("hired:budget=0.2,alpha=0.5", &c, err) == MD_OK && c.methods == MD_REDUCE_HIRED);
    CHECK(c.hired_budget == 0.2f && c.hired_alpha == 0.5f && !c.hired_geometric);
    CHECK(parse("hired:map=geometric", &c, err) == MD_OK && c.hired_geometric);
    CHECK(parse("fastv:k=2,r=0.5", &c, err) == MD_OK && c.fastv_k == 2 && c.fastv_r == 0.5f);
    CHECK(parse("random:keep=0.25,seed=1", &c, err) == MD_OK && c.random_keep == 0.25f && c.random_seed == 1);
    CHECK(parse("uniform:tokens=144", &c, err) == MD_OK && c.uniform_tokens == 144);
    CHECK(parse("dycoke:k=0.7,window=4", &c, err) == MD_OK && c.dycoke_k == 0.7f && c.dycoke_window == 4);
    CHECK(parse("stmerge:thresh=0.8", &c, err) == MD_OK && c.st_thresh == 0.8f);
    CHECK(parse("dycoke:k=0.7+fastv:k=2,r=0.5", &c, err) == MD_OK);
    CHECK(c.methods == (MD_REDUCE_DYCOKE | MD_REDUCE_FASTV));
    CHECK(md_reduce_stages(&c) == (MD_STAGE_SELECT | MD_STAGE_PREFILL));
    CHECK(parse("hired+fastv+cap:tokens=300", &c, err) == MD_OK && c.max_visual_tokens == 300);
    {   /* cap:frames= (the element's window=0) round-trips; frames alone is refused */
        struct md_reduce_config cf;
        char fb[128];
        CHECK(parse("dycoke:k=0.7+cap:tokens=256,frames=8", &cf, err) == MD_OK &&
              cf.max_visual_tokens == 256 && cf.max_visual_frames == 8);
        CHECK(md_reduce_format(&cf, fb, sizeof fb) > 0);
        CHECKF(strstr(fb, "cap:tokens=256,frames=8") != NULL, "format '%s'", fb);
        CHECK(parse("cap:frames=8", &cf, err) != MD_OK);
        CHECK(parse("cap:tokens=8,frames=0", &cf, err) != MD_OK);
    }
    CHECK(parse("mustdrop:kv=decode,every=3,layers=1/4/9,merge_layer=2+uniform:tokens=100", &c, err) == MD_OK);
    char buf[512];
    CHECK(md_reduce_format(&c, buf, sizeof buf) > 0);
    struct md_reduce_config c2;
    CHECKF(parse(buf, &c2, err) == MD_OK && c2.methods == c.methods, "round trip '%s': %s", buf, err);
    CHECKF(c2.md_n_layers == 3 && c2.md_layers[2] == 9 && c2.md_evict_every == 3 &&
           c2.md_merge_layer == 2 && c2.uniform_tokens == 100 && c2.md_kv == MD_REDUCE_KV_DECODE,
           "round trip '%s' lost a value", buf);
    char tiny[4];
    CHECK(md_reduce_format(&c, tiny, sizeof tiny) > 3 && strlen(tiny) == 3);
    new_methods();
}

/* VisionZip, CDPruner and the position option: values, defaults, stages,
 * composition, round trip. */
static void new_methods(void)
{
    struct md_reduce_config c, d = md_reduce_default_config();
    char err[256], buf[256];
    CHECK(d.pos == MD_REDUCE_POS_KEEP && d.vz_keep == 0.11f && d.cd_keep == 0.11f);
    CHECK(parse("visionzip", &c, err) == MD_OK && c.methods == MD_REDUCE_VISIONZIP);
    CHECK(md_reduce_stages(&c) == MD_STAGE_SELECT && c.vz_dominant == 54.0f / 64.0f && !c.vz_mean_merge);
    CHECK(parse("visionzip:keep=0.25,dominant=0.5,merge=mean", &c, err) == MD_OK);
    CHECK(c.vz_keep == 0.25f && c.vz_dominant == 0.5f && c.vz_mean_merge && c.vz_tokens == 0);
    CHECK(parse("visionzip:tokens=64", &c, err) == MD_OK && c.vz_tokens == 64);
    CHECK(parse("cdpruner:keep=0.25", &c, err) == MD_OK && c.methods == MD_REDUCE_CDPRUNER &&
          c.cd_keep == 0.25f);
    CHECK(parse("cdpruner:tokens=32+fastv:k=2,r=0.5", &c, err) == MD_OK && c.cd_tokens == 32);
    CHECK(md_reduce_stages(&c) == (MD_STAGE_SELECT | MD_STAGE_PREFILL));
    CHECK(parse("mustdrop:kv=off+visionzip:keep=0.5", &c, err) == MD_OK);
    /* pos: any method takes it, the same value twice is fine */
    CHECK(parse("random:keep=0.25,pos=keep", &c, err) == MD_OK && c.pos == MD_REDUCE_POS_KEEP);
    CHECK(parse("random:pos=renumber", &c, err) == MD_OK && c.pos == MD_REDUCE_POS_RENUMBER);
    CHECK(parse("dycoke:pos=keep+fastv:k=2,pos=keep", &c, err) == MD_OK && c.pos == MD_REDUCE_POS_KEEP);
    CHECK(parse("cap:tokens=8,pos=keep", &c, err) == MD_OK && c.pos == MD_REDUCE_POS_KEEP);
    CHECK(parse("mustdrop:kv=decode,pos=keep", &c, err) == MD_OK && c.pos == MD_REDUCE_POS_KEEP);
    static const char *const rt[] = { "visionzip:tokens=20,dominant=0.75,merge=mean,pos=keep",
                                      "cdpruner:keep=0.3+fastv:k=1,r=0.5,pos=keep",
                                      "hired:budget=0.25,pos=renumber", "random:keep=0.5,pos=keep" };
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
        struct md_reduce_config a, b;
        CHECK(parse(rt[i], &a, err) == MD_OK && md_reduce_format(&a, buf, sizeof buf) > 0);
        CHECKF(parse(buf, &b, err) == MD_OK && a.methods == b.methods && a.pos == b.pos &&
               a.vz_tokens == b.vz_tokens && a.vz_dominant == b.vz_dominant &&
               a.vz_mean_merge == b.vz_mean_merge && a.cd_keep == b.cd_keep,
               "round trip '%s' -> '%s': %s", rt[i], buf, err);
    }
}

/* err must mention every needle. */
static void bad(const char *spec, const char *n1, const char *n2)
{
    struct md_reduce_config c = md_reduce_default_config();
    c.fastv_k = 77;
    char err[256] = "";
    int rc = parse(spec, &c, err);
    CHECKF(rc == MD_ERR_INVALID, "'%s' accepted", spec);
    CHECKF(strstr(err, n1) && (!n2 || strstr(err, n2)), "'%s': message '%s'", spec, err);
    CHECK(c.fastv_k == 77);   /* untouched on failure */
}

/* Random strings over the spec alphabet: never a crash, and every
 * rejection comes with a message. */
static void random_specs(void)
{
    static const char alpha[] = "mustdrop:hiredfastvcap+=,.0123456789-ekn;/x";
    uint64_t st = 12345;
    int ok = 0;
    for (int i = 0; i < 20000; i++) {
        static const char *pre[] = { "", "mustdrop:", "fastv:k=", "hired:budget=0.", "cap:tokens=",
                                     "random:keep=0.5+fastv:", "uniform:tokens=" };
        char spec[80];
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        size_t p0 = strlen(pre[(st >> 40) % 7]);
        memcpy(spec, pre[(st >> 40) % 7], p0);
        int n = (int)(st >> 59) + 1;
        for (int j = (int)p0; j < (int)p0 + n; j++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            spec[j] = alpha[(st >> 33) % (sizeof alpha - 1)];
        }
        spec[p0 + (size_t)n] = '\0';
        struct md_reduce_config c;
        char err[256] = "";
        int rc = md_reduce_parse(spec, &c, err, sizeof err);
        if (rc == MD_OK)
            ok++;
        else
            CHECKF(err[0] != '\0', "'%s' rejected without a message", spec);
    }
    printf("random specs: %d of 20000 parsed\n", ok);
}

int main(void)
{
    good();
    random_specs();
    bad("fastv:q=3", "fastv", "'q'");
    bad("fastv:k=abc", "fastv", "'k'");
    bad("fastv:k=2.5", "'k'", "integer");
    bad("fastv:r=1.5", "'r'", "1.5");
    bad("hired:budget=", "budget", NULL);
    bad("hired:alpha", "not key=value", NULL);
    bad("hired:map=round", "map", "round");
    bad("mustdrop:tokens=100", "tokens", "192");
    bad("mustdrop:kv=maybe", "kv", "maybe");
    bad("mustdrop:layers=6/2", "layers", NULL);
    bad("bogus", "unknown method", "bogus");
    bad("random+uniform", "uniform", "select");
    bad("fastv+fastv", "fastv", "twice");
    bad("fastv++random", "empty", NULL);
    bad("+", "empty", NULL);
    bad("none:k=1", "unknown method", NULL);
    bad("random:keep=nan", "keep", NULL);
    bad("dycoke:window=1", "window", NULL);
    bad("cap", "cap", "tokens");
    bad("cap:tokens=3+cap:tokens=4", "cap", "twice");
    bad("visionzip:keep=1.5", "visionzip", "'keep'");
    bad("visionzip:dominant=x", "visionzip", "'dominant'");
    bad("visionzip:merge=sum", "visionzip", "'merge'");
    bad("visionzip:k=3", "visionzip", "keys: keep, tokens, dominant, merge, pos");
    bad("visionzip+random", "random", "select");
    bad("cdpruner:tokens=2.5", "'tokens'", "integer");
    bad("cdpruner:theta=0.5", "cdpruner", "'theta'");
    bad("cdpruner+visionzip", "visionzip", "select");
    bad("random:pos=sometimes", "'pos'", "keep, renumber");
    bad("random:pos=keep+fastv:pos=renumber", "fastv", "contradicts");
    bad("mustdrop:tokens=128,kv=faithful,pos=keep", "pos", "kv=faithful");
    char longspec[5000];
    memset(longspec, 'a', sizeof longspec - 1);
    longspec[sizeof longspec - 1] = '\0';
    bad(longspec, "4096", NULL);
    CHECK(md_reduce_parse("none", NULL, NULL, 0) == MD_ERR_INVALID);
    return md_test_finish("reduce_spec");
}
