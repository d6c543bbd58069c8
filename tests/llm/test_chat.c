/* Chat templates render exact strings; auto-detection from the GGUF's
 * tokenizer.chat_template and from the architecture; snprintf semantics. */
#include "md_test.h"
#include "md_tiny_llm.h"

static void expect(const char *tmpl, const struct md_model *m, const char *sys, const char *user,
                   const char *want)
{
    char buf[1024];
    int n = md_chat_format(tmpl, m, sys, user, buf, sizeof buf);
    CHECKF(n == (int)strlen(want) && !strcmp(buf, want), "%s: got [%s] want [%s]",
           tmpl ? tmpl : "auto", n >= 0 ? buf : "(error)", want);
}

static const char *detect_with(const char *arch, const char *jinja)
{
    static char name[32];
    struct tiny_cfg c = tiny_default(arch);
    c.n_layer = 1;
    c.chat_template = jinja;
    struct tiny_model t;
    tiny_build(&t, &c);
    struct md_model *m = NULL;
    char err[256];
    CHECKF(tiny_load(&t, &m, err, sizeof err) == MD_OK, "%s", err);
    snprintf(name, sizeof name, "%s", md_chat_template_name(NULL, m));
    if (jinja)
        CHECK(m && md_model_chat_template(m) && !strcmp(md_model_chat_template(m), jinja));
    else
        CHECK(m && md_model_chat_template(m) == NULL);
    /* auto formatting goes through the same choice */
    char a[512], b[512];
    md_chat_format(NULL, m, "S", "U", a, sizeof a);
    md_chat_format(name, m, "S", "U", b, sizeof b);
    CHECK(!strcmp(a, b));
    md_model_free(m);
    tiny_free(&t);
    return name;
}

int main(void)
{
    const char *vsys = "A chat between a curious human and an artificial intelligence assistant. "
                       "The assistant gives helpful, detailed, and polite answers to the human's questions.";
    char want[1024];
    snprintf(want, sizeof want, "%s USER: <image>\nWhat is this? ASSISTANT:", vsys);
    expect("vicuna", NULL, NULL, "<image>\nWhat is this?", want);
    expect("vicuna", NULL, "Be brief.", "Hi", "Be brief. USER: Hi ASSISTANT:");
    expect("vicuna", NULL, "", "Hi", "USER: Hi ASSISTANT:");
    expect("mistral", NULL, NULL, "Hi there", "[INST] Hi there [/INST]");
    expect("mistral", NULL, "Be brief.", "Hi", "[INST] Be brief.\n\nHi [/INST]");
    expect("llama2", NULL, "Be brief.", "Hi", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
    expect("chatml", NULL, NULL, "Hi",
           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    expect("chatml", NULL, "", "Hi", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    expect("llama3", NULL, "Sys", "Hi",
           "<|start_header_id|>system<|end_header_id|>\n\nSys<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect("llama3", NULL, NULL, "Hi",
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(NULL, NULL, "", "Hi", "USER: Hi ASSISTANT:");   /* no model: vicuna */
    expect("auto", NULL, "", "Hi", "USER: Hi ASSISTANT:");

    /* snprintf semantics and errors */
    char small[8];
    int n = md_chat_format("mistral", NULL, NULL, "Hello", small, sizeof small);
    CHECK(n == (int)strlen("[INST] Hello [/INST]") && !strcmp(small, "[INST] "));
    CHECK(md_chat_format("mistral", NULL, NULL, "Hello", NULL, 0) == n);
    CHECK(md_chat_format("jinja2", NULL, NULL, "Hi", small, sizeof small) == MD_ERR_INVALID);
    CHECK(md_chat_format("chatml", NULL, NULL, NULL, small, sizeof small) == MD_ERR_INVALID);
    CHECK(md_chat_template_name("jinja2", NULL) == NULL);
    CHECK(!strcmp(md_chat_template_name("chatml", NULL), "chatml"));

    /* detection from tokenizer.chat_template, then the architecture */
    CHECK(!strcmp(detect_with("llama", "{% for m in messages %}<|im_start|>{{ m.role }}"), "chatml"));
    CHECK(!strcmp(detect_with("llama", "{{ bos_token }}[INST] {{ m.content }} [/INST]"), "mistral"));
    CHECK(!strcmp(detect_with("llama", "[INST] <<SYS>>\\n{{ s }}<</SYS>> [/INST]"), "llama2"));
    CHECK(!strcmp(detect_with("llama", "<|start_header_id|>{{ role }}<|end_header_id|>"), "llama3"));
    CHECK(!strcmp(detect_with("llama", "{{ 'USER: ' + m }} ASSISTANT:"), "vicuna"));
    CHECK(!strcmp(detect_with("llama", NULL), "vicuna"));
    CHECK(!strcmp(detect_with("qwen2", NULL), "chatml"));
    return md_test_finish("chat");
}
