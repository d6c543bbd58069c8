/* A real llama.cpp-converted GGUF end to end: shared/fixtures/gguf/
 * llama-2-tiny-random.gguf (arch llama, n_embd 8, 1 block, full LLaMA-2 SPM
 * vocab, F16 matrices) must reproduce the greedy continuations llama.cpp
 * printed, recorded in llama-2-tiny-random.expected.txt ("prompt<TAB>text of
 * 16 tokens"). Skips where shared/ is absent.
 *
 * llama.cpp rounds activations to F16 before its F16 dot products, so an
 * engine with F32 activations may pick another token where two logits nearly
 * tie. The comparison is therefore by text, token by token: at each step our
 * argmax's piece must continue the expected text; if it does not, the token
 * llama.cpp must have taken is the one, among those whose piece continues the
 * expected text, with our highest logit; its logit must be within
 * MARGIN_TOL x max|logit| of our argmax's (a near-tie), and it is fed
 * (teacher-forced) instead. More than MAX_FORCED forced steps in a prompt, a
 * larger margin, or a text that no token continues fails the test. */
#include "mustdrop.h"
#include "tokenizer.h"
#include "md_test.h"

#include <stdint.h>
#include <stdbool.h>

#define N_GEN 16
#define MARGIN_TOL 1e-3
#define MAX_FORCED 2

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static float max_abs(const float *x, int32_t n)
{
    float m = 0;
    for (int32_t i = 0; i < n; i++)
        if (fabsf(x[i]) > m) m = fabsf(x[i]);
    return m;
}

/* Generate greedily from prompt and compare with expected; returns the number
 * of steps whose argmax matched exactly. */
static int run_prompt(struct md_context *ctx, const struct md_vocab *vocab, int32_t n_vocab,
                      const char *prompt, const char *expected, int *n_forced_out)
{
    int32_t toks[256];
    int64_t n = md_tokenize(vocab, prompt, strlen(prompt), true, false, toks, 256);
    CHECKF(n > 1 && n <= 256, "md_tokenize(\"%s\") = %lld", prompt, (long long)n);
    if (n <= 1 || n > 256) return 0;
    CHECK(toks[0] == md_vocab_bos(vocab));
    printf("prompt \"%s\": ids", prompt);
    for (int64_t i = 0; i < n; i++) printf(" %d", toks[i]);
    printf("\n");
    if (strcmp(prompt, "Hello world") == 0)   /* LLaMA-2's well-known ids */
        CHECK(n == 3 && toks[0] == 1 && toks[1] == 15043 && toks[2] == 3186);

    md_kv_clear(ctx);
    int rc = md_decode(ctx, toks, (int32_t)n, false);
    CHECKF(rc == MD_OK, "md_decode: %d (%s)", rc, md_status_str(rc));
    if (rc != MD_OK) return 0;

    const size_t elen = strlen(expected);
    size_t pos = 0;
    int n_exact = 0, n_forced = 0;
    char piece[256], cand_piece[256];
    char got_text[4096] = "";
    size_t got_len = 0;
    for (int step = 0; step < N_GEN; step++) {
        const float *lg = md_get_logits(ctx, -1);
        CHECK(lg != NULL);
        if (!lg) break;
        int32_t am = argmax(lg, n_vocab);
        int32_t pl = md_token_to_piece(vocab, am, piece, (int32_t)sizeof piece, false);
        int32_t feed;
        if (pl > 0 && pl < (int32_t)sizeof piece && pos + (size_t)pl <= elen &&
            memcmp(expected + pos, piece, (size_t)pl) == 0) {
            feed = am;
            n_exact++;
        } else {
            /* the token llama.cpp took: continues the expected text, our best logit */
            int32_t cand = -1, cand_len = 0;
            const int32_t nt = md_vocab_n_tokens(vocab);
            for (int32_t t = 0; t < nt && t < n_vocab; t++) {
                int32_t l = md_token_to_piece(vocab, t, cand_piece, (int32_t)sizeof cand_piece, false);
                if (l <= 0 || l >= (int32_t)sizeof cand_piece || pos + (size_t)l > elen ||
                    memcmp(expected + pos, cand_piece, (size_t)l) != 0)
                    continue;
                if (cand < 0 || lg[t] > lg[cand] || (lg[t] == lg[cand] && l > cand_len)) {
                    cand = t;
                    cand_len = l;
                }
            }
            CHECKF(cand >= 0, "\"%s\" step %d: no token continues the expected text at byte %zu",
                   prompt, step, pos);
            if (cand < 0) break;
            float scale = max_abs(lg, n_vocab);
            double margin = (double)lg[am] - (double)lg[cand];
            double rel = scale > 0 ? margin / scale : margin;
            int32_t cl = md_token_to_piece(vocab, cand, cand_piece, (int32_t)sizeof cand_piece, false);
            printf("  step %2d: ours %d '%.*s' (%.6g) vs llama.cpp's %d '%.*s' (%.6g): "
                   "margin %.3g = %.3g x max|logit| -> forced\n",
                   step, am, pl > 0 && pl < (int32_t)sizeof piece ? pl : 0, piece, (double)lg[am],
                   cand, cl > 0 && cl < (int32_t)sizeof cand_piece ? cl : 0, cand_piece,
                   (double)lg[cand], margin, rel);
            CHECKF(rel < MARGIN_TOL, "\"%s\" step %d: margin %.3g x max|logit| is not a near-tie (tol %.0e)",
                   prompt, step, rel, MARGIN_TOL);
            feed = cand;
            n_forced++;
        }
        int32_t fl = md_token_to_piece(vocab, feed, piece, (int32_t)sizeof piece, false);
        if (fl > 0 && fl < (int32_t)sizeof piece) {
            pos += (size_t)fl;
            if (got_len + (size_t)fl < sizeof got_text) {
                memcpy(got_text + got_len, piece, (size_t)fl);
                got_len += (size_t)fl;
                got_text[got_len] = 0;
            }
        }
        rc = md_decode(ctx, &feed, 1, false);
        CHECKF(rc == MD_OK, "md_decode(token): %d (%s)", rc, md_status_str(rc));
        if (rc != MD_OK) break;
    }
    printf("  ours:     \"%s\"\n  expected: \"%s\"\n  %d/%d steps matched exactly, %d forced\n",
           got_text, expected, n_exact, N_GEN, n_forced);
    CHECKF(pos == elen, "\"%s\": generated text covers %zu of %zu expected bytes", prompt, pos, elen);
    CHECKF(n_forced <= MAX_FORCED, "\"%s\": %d steps needed forcing (max %d)", prompt, n_forced, MAX_FORCED);
    *n_forced_out += n_forced;
    return n_exact;
}

int main(void)
{
    char mpath[1024], epath[1024];
    md_test_shared("fixtures/gguf/llama-2-tiny-random.gguf", mpath, sizeof mpath);
    md_test_shared("fixtures/gguf/llama-2-tiny-random.expected.txt", epath, sizeof epath);

    struct md_model_params mp = md_model_default_params();
    mp.n_threads = 1;
    const char *backend = getenv("MD_TEST_BACKEND");
    if (backend && *backend) mp.backend = backend;
    struct md_model *model = NULL;
    char err[512] = "";
    int rc = md_model_load(mpath, &mp, &model, err, sizeof err);
    CHECKF(rc == MD_OK && model, "md_model_load: %d %s", rc, err);
    if (rc != MD_OK || !model) return md_test_finish("tiny_random");
    printf("%s\n", md_model_desc(model));
    const struct md_vocab *vocab = md_model_vocab(model);
    CHECK(vocab != NULL);
    CHECK(md_model_n_vocab(model) == 32000);

    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    struct md_context *ctx = NULL;
    rc = md_context_new(model, &cp, &ctx, err, sizeof err);
    CHECKF(rc == MD_OK && ctx, "md_context_new: %d %s", rc, err);

    FILE *f = fopen(epath, "rb");
    CHECK(f != NULL);
    int n_prompts = 0, n_exact = 0, n_forced = 0;
    if (f && ctx && vocab) {
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            size_t l = strlen(line);
            while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
            char *tab = strchr(line, '\t');
            if (!tab) continue;          /* notes */
            *tab = 0;
            n_exact += run_prompt(ctx, vocab, md_model_n_vocab(model), line, tab + 1, &n_forced);
            n_prompts++;
        }
    }
    if (f) fclose(f);
    CHECKF(n_prompts == 3, "%d prompts in %s, expected 3", n_prompts, epath);
    printf("tiny-random: %d prompts, %d/%d steps matched llama.cpp exactly, %d forced near-ties\n",
           n_prompts, n_exact, n_prompts * N_GEN, n_forced);
    if (ctx) md_context_free(ctx);
    md_model_free(model);
    return md_test_finish("tiny_random");
}
