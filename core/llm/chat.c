/* Chat templates: one system + user turn rendered the way each model family
 * was trained (docs/llama-cpp.md §8), without a Jinja engine. The BOS is
 * left to the tokenizer (add_special), so no template writes it. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "tokenizer.h"

#define VICUNA_SYSTEM "A chat between a curious human and an artificial intelligence assistant. " \
    "The assistant gives helpful, detailed, and polite answers to the human's questions."

/* One template: how a turn is laid out, with or without a system part. */
struct chat_template {
    const char *name;
    const char *default_system;  /* used when system == NULL; NULL = none */
    const char *with_system;     /* printf format: system, user */
    const char *without_system;  /* printf format: user */
};

static const struct chat_template templates[] = {
    /* LLaVA-1.5 / Vicuna v1 (LLaVA's conv_vicuna_v1: sep " "). */
    { "vicuna", VICUNA_SYSTEM, "%s USER: %s ASSISTANT:", "USER: %s ASSISTANT:" },
    /* Mistral-instruct v0.1/v0.2: the system text opens the first [INST]. */
    { "mistral", NULL, "[INST] %s\n\n%s [/INST]", "[INST] %s [/INST]" },
    /* LLaMA-2-chat. */
    { "llama2", NULL, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", "[INST] %s [/INST]" },
    /* ChatML: Qwen2, Yi. */
    { "chatml", "You are a helpful assistant.",
      "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
      "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" },
    /* LLaMA-3 instruct. */
    { "llama3", NULL,
      "<|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n",
      "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n" },
};

static const struct chat_template *find_template(const char *name)
{
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (!strcmp(templates[i].name, name))
            return &templates[i];
    return NULL;
}

/* Guess from the Jinja text's markers, then from the vocabulary's special
 * tokens, then from the architecture. Order matters: LLaMA-2 templates
 * contain "[INST]" too. */
static const char *detect(const struct md_model *m)
{
    const char *t = m ? m->chat_template : NULL;
    if (t) {
        if (strstr(t, "<|im_start|>")) return "chatml";
        if (strstr(t, "<|start_header_id|>")) return "llama3";
        if (strstr(t, "<<SYS>>")) return "llama2";
        if (strstr(t, "[INST]")) return "mistral";
        if (strstr(t, "USER:") || strstr(t, "ASSISTANT:")) return "vicuna";
    }
    if (m && m->vocab) {
        if (md_vocab_find(m->vocab, "<|im_start|>") >= 0) return "chatml";
        if (md_vocab_find(m->vocab, "<|start_header_id|>") >= 0) return "llama3";
    }
    if (m && m->arch == MD_ARCH_QWEN2)
        return "chatml";
    return "vicuna";
}

const char *md_chat_template_name(const char *tmpl, const struct md_model *model)
{
    if (!tmpl || !*tmpl || !strcmp(tmpl, "auto"))
        return detect(model);
    const struct chat_template *ct = find_template(tmpl);
    return ct ? ct->name : NULL;
}

int md_chat_format(const char *tmpl, const struct md_model *model, const char *system,
                   const char *user, char *buf, size_t n)
{
    const char *name = md_chat_template_name(tmpl, model);
    const struct chat_template *ct = name ? find_template(name) : NULL;
    if (!ct || !user || (!buf && n))
        return MD_ERR_INVALID;
    if (!system)
        system = ct->default_system;
    int len = system && *system ? snprintf(buf, n, ct->with_system, system, user)
                                : snprintf(buf, n, ct->without_system, user);
    return len < 0 ? MD_ERR_INVALID : len;
}
