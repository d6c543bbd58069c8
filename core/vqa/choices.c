/* Choices: each choice scored by the model after one prefill (the log
 * probability of its tokens, then of the end of the answer), the session
 * rewound between them; and the '|'-separated lists the CLIs and the
 * element take. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "session.h"
#include "tokenizer.h"
#include "unicode.h"
#include "vqa-impl.h"

/* ---- lists ---- */

void md_vqa_choices_free(char **choices)
{
    free(choices);
}

static int list_fail(char *err, size_t errlen, int rc, const char *what, const char *item)
{
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s%s", what, item ? " '" : "", item ? item : "",
                 item ? "'" : "");
    return rc;
}

int md_vqa_choices_parse(const char *list, char ***out, int32_t *n, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!list || !out || !n)
        return list_fail(err, errlen, MD_ERR_INVALID, "no list of choices", NULL);
    if (md_utf8_first_invalid(list) >= 0)
        return list_fail(err, errlen, MD_ERR_INVALID, "the choices are not valid UTF-8", NULL);
    int32_t count = 1;
    for (const char *p = list; *p; p++)
        count += *p == '|';
    /* one allocation: the pointers, then the texts (each at most the list) */
    size_t len = strlen(list);
    char **c = malloc(sizeof *c * ((size_t)count + 1) + len + (size_t)count + 1);
    if (!c)
        return list_fail(err, errlen, MD_ERR_NOMEM, "out of memory", NULL);
    char *text = (char *)(c + count + 1);
    const char *p = list;
    for (int32_t i = 0; i < count; i++) {
        const char *end = strchr(p, '|');
        end = end ? end : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && strchr(" \t\r\n", *a))
            a++;
        while (b > a && strchr(" \t\r\n", b[-1]))
            b--;
        memcpy(text, a, (size_t)(b - a));
        text[b - a] = '\0';
        c[i] = text;
        text += b - a + 1;
        p = *end ? end + 1 : end;
        int rc = !*c[i] ? MD_ERR_INVALID : MD_OK;
        for (int32_t k = 0; !rc && k < i; k++)
            rc = strcmp(c[k], c[i]) ? MD_OK : MD_ERR_INVALID;
        if (rc) {
            list_fail(err, errlen, rc, *c[i] ? "a duplicate choice" : "an empty choice in",
                      *c[i] ? c[i] : list);
            free(c);
            return rc;
        }
    }
    c[count] = NULL;
    *out = c;
    *n = count;
    return MD_OK;
}

/* ---- the tokens of a choice ---- */

/* Tokens of text, control tokens matched only outside the literal spans
 * (the question and the choice are typed text, as in the prompt: vision.c). */
static int32_t *tokens(const struct md_vocab *vocab, const char *text,
                       const struct md_text_span *lit, int32_t n_lit, int64_t *n)
{
    size_t len = strlen(text);
    int64_t k = md_tokenize_literal(vocab, text, len, false, true, NULL, 0, lit, n_lit, NULL, 0);
    int32_t *t = k >= 0 ? malloc(sizeof *t * (size_t)(k + 1)) : NULL;
    if (t && md_tokenize_literal(vocab, text, len, false, true, NULL, 0, lit, n_lit, t, k) != k) {
        free(t);
        t = NULL;
    }
    *n = t ? k : 0;
    return t;
}

/* The prompt's last text segment (after the last frame: "\n", the
 * question, the template's text that opens the answer) and what separates
 * the answer from it: nothing after a newline (ChatML, LLaMA-3), else a
 * space (Vicuna's "ASSISTANT: green", [/INST] green). */
static int prompt_tail(const struct md_vqa *v, const struct md_vqa_ask *ask, char **segment,
                       const char **sep)
{
    int len = md_chat_format(ask->chat_template, v->model, ask->system, "\x01", NULL, 0);
    char *r = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!r)
        return len < 0 ? MD_ERR_INVALID : MD_ERR_NOMEM;
    md_chat_format(ask->chat_template, v->model, ask->system, "\x01", r, (size_t)len + 1);
    const char *tail = strchr(r, '\x01');
    tail = tail ? tail + 1 : r + len;
    size_t tl = strlen(tail), ql = strlen(ask->question);
    *sep = tl && !strchr(" \n\t", tail[tl - 1]) ? " " : "";
    *segment = malloc(ql + tl + 2);
    if (*segment)
        snprintf(*segment, ql + tl + 2, "\n%s%s", ask->question, tail);
    free(r);
    return *segment ? MD_OK : MD_ERR_NOMEM;
}

/* The tokens the model would produce for choice c after the prompt: the
 * segment followed by the answer text, tokenized as one, minus the
 * segment's own tokens. When the two do not share the segment's tokens
 * (the answer's first bytes merged with the prompt's last token) the
 * prompt stays as it was prefilled, as it would for generation, and the
 * answer is tokenized alone (for SPM with a space prefix, the prefix is the
 * separating space). */
static int choice_tokens(const struct md_vqa *v, const char *segment, size_t question_len,
                         const char *sep, const char *c, int32_t **out, int64_t *n)
{
    const struct md_vocab *vocab = md_model_vocab(v->model);
    size_t len = strlen(segment) + strlen(sep) + strlen(c) + 1;
    char *full = malloc(len);
    if (!full)
        return MD_ERR_NOMEM;
    snprintf(full, len, "%s%s%s", segment, sep, c);
    /* the segment is "\n" + question + the template's tail */
    struct md_text_span lit[2] = { { 1, question_len },
                                   { strlen(segment) + strlen(sep), strlen(c) } };
    int64_t np, nq;
    int32_t *p = tokens(vocab, segment, lit, 1, &np), *q = tokens(vocab, full, lit, 2, &nq);
    int rc = p && q ? MD_OK : MD_ERR_NOMEM;
    *out = NULL;
    if (!rc && nq > np && !memcmp(p, q, sizeof *p * (size_t)np)) {
        memmove(q, q + np, sizeof *q * (size_t)(nq - np));
        *out = q;
        *n = nq - np;
        q = NULL;
    } else if (!rc) {
        bool spm_space = md_vocab_add_space_prefix(vocab) && *sep == ' ';
        snprintf(full, len, "%s%s", spm_space ? "" : sep, c);
        vqa_log(v, MD_LOG_DEBUG, "choice '%s' merges with the prompt's last token: scored "
                "as its own tokens", c);
        struct md_text_span whole = { 0, strlen(full) };
        *out = tokens(vocab, full, &whole, 1, n);
        rc = *out ? MD_OK : MD_ERR_NOMEM;
    }
    free(full);
    free(p);
    free(q);
    return rc;
}

/* ---- scoring ---- */

static double log_sum_exp(const float *x, int32_t n, const int32_t *ids)
{
    double m = -INFINITY, s = 0.0;
    for (int32_t i = 0; i < n; i++)
        m = fmax(m, x[ids ? ids[i] : i]);
    if (m == -INFINITY || isnan(m))
        return -INFINITY;
    for (int32_t i = 0; i < n; i++)
        s += exp(x[ids ? ids[i] : i] - m);
    return m + log(s);
}

struct scorer {
    struct md_vqa *v;
    struct md_reduce_session *rs;
    int32_t n_vocab;
    int32_t *eog;               /* the end-of-generation tokens */
    int32_t n_eog;
    int32_t decodes;
};

/* log P(tokens, then any end-of-generation token | prompt): what greedy
 * generation would weigh, the end included so that "red" is not preferred
 * over "red square" only for being a prefix. */
static int score_one(struct scorer *sc, const int32_t *t, int64_t n, double *lp)
{
    *lp = 0.0;
    for (int64_t j = 0; j <= n; j++) {
        const float *logits = md_reduce_logits(sc->rs);
        double all = log_sum_exp(logits, sc->n_vocab, NULL);
        if (j == n) {
            *lp += log_sum_exp(logits, sc->n_eog, sc->eog) - all;
            break;
        }
        *lp += logits[t[j]] - all;
        if (vqa_aborted(sc->v))
            return MD_ERR_ABORTED;
        int rc = md_reduce_decode(sc->rs, t[j]);
        if (rc)
            return rc;
        sc->decodes++;
    }
    if (isnan(*lp))
        *lp = -INFINITY;
    return md_reduce_rewind(sc->rs);
}

static int collect_eog(struct scorer *sc, const struct md_vocab *vocab)
{
    sc->eog = malloc(sizeof *sc->eog * (size_t)sc->n_vocab);
    if (!sc->eog)
        return MD_ERR_NOMEM;
    for (int32_t t = 0; t < sc->n_vocab; t++)
        if (md_vocab_is_eog(vocab, t))
            sc->eog[sc->n_eog++] = t;
    return MD_OK;
}

/* Every choice's tokens, checked: each has some and fits the context after
 * the prompt. (A choice's control-token text, "</s>", is its text: it is
 * a literal span, so it cannot end the answer inside it.) */
static int all_tokens(struct md_vqa_stream *s, const struct md_vqa_ask *ask, int32_t prompt,
                      int32_t **toks, int64_t *n, char *err, size_t errlen)
{
    struct md_vqa *v = s->vqa;
    char *segment = NULL;
    const char *sep;
    int rc = prompt_tail(v, ask, &segment, &sep);
    if (rc == MD_ERR_INVALID)
        snprintf(err, errlen, "unknown chat template '%s'",
                 ask->chat_template ? ask->chat_template : "auto");
    for (int32_t i = 0; !rc && i < ask->n_choices; i++) {
        rc = choice_tokens(v, segment, strlen(ask->question), sep, ask->choices[i], &toks[i],
                           &n[i]);
        if (!rc && n[i] == 0) {
            snprintf(err, errlen, "choice %d ('%s') has no tokens", i, ask->choices[i]);
            rc = MD_ERR_INVALID;
        }
        if (!rc && prompt + n[i] > md_context_n_ctx(v->ctx)) {
            snprintf(err, errlen, "choice %d ('%s', %" PRId64 " tokens) does not fit the "
                     "context after the prompt (%d of %d tokens)", i, ask->choices[i], n[i],
                     prompt, md_context_n_ctx(v->ctx));
            rc = MD_ERR_CONTEXT_FULL;
        }
    }
    if (rc == MD_ERR_NOMEM)
        snprintf(err, errlen, "out of memory");
    free(segment);
    return rc;
}

int vqa_answer_choices(struct md_vqa_stream *s, struct md_reduce_session *rs,
                       const struct md_vqa_ask *ask, struct md_vqa_answer *out, char *err,
                       size_t errlen)
{
    struct md_vqa *v = s->vqa;
    int32_t nc = ask->n_choices;
    int32_t **toks = calloc((size_t)nc, sizeof *toks);
    int64_t *n = calloc((size_t)nc, sizeof *n);
    struct scorer sc = { .v = v, .rs = rs, .n_vocab = md_model_n_vocab(v->model) };
    int rc = toks && n ? collect_eog(&sc, md_model_vocab(v->model)) : MD_ERR_NOMEM;
    if (!rc)
        rc = all_tokens(s, ask, out->prompt_tokens, toks, n, err, errlen);
    if (!rc && (rc = md_reduce_mark(rs)))
        snprintf(err, errlen, "%s", md_reduce_error(rs));
    double best = -INFINITY;
    out->choice = -1;
    for (int32_t i = 0; !rc && i < nc; i++) {
        double lp;
        rc = score_one(&sc, toks[i], n[i], &lp);
        if (rc && rc != MD_ERR_ABORTED)
            snprintf(err, errlen, "scoring choice %d: %s", i, md_reduce_error(rs));
        vqa_log(v, MD_LOG_DEBUG, "choice %d '%s': %" PRId64 " tokens, log p %.4f", i,
                ask->choices[i], n[i], lp);
        if (!rc && (out->choice < 0 || lp > best)) {
            best = lp;
            out->choice = i;
        }
    }
    md_reduce_unmark(rs);
    out->generated_tokens = sc.decodes;
    if (!rc && (!(out->text = strdup(ask->choices[out->choice])) ||
                !(out->value = md_value_string(ask->choices[out->choice])))) {
        snprintf(err, errlen, "out of memory");
        rc = MD_ERR_NOMEM;
    }
    for (int32_t i = 0; toks && i < nc; i++)
        free(toks[i]);
    free(toks);
    free(n);
    free(sc.eog);
    return rc;
}
