/* Bad files given to md_model_load and md_vision_load: each defect is made
 * in a temporary directory (truncations of the LLM and of the mmproj at
 * several points, an empty file, a PNG, a directory, a FIFO, a missing
 * file, a file without read permission when not run as root, the mmproj
 * given as the LLM and the reverse). Every loader that sees it (the LLM
 * mapped and read, the mmproj) must give the expected status and no object,
 * and a message that starts with the path, holds it once, and whose
 * headline (md_load_error_cause) is the expected cause. Where the defect is
 * in the bytes, the _memory loaders must give the same status and the same
 * message without the path. */
#include <sys/stat.h>
#include <unistd.h>

#include "md_test.h"
#include "gguf.h"
#include "mustdrop-vision.h"

#define FIXTURES "../models/fixtures/vision/"

enum { LLM_MMAP, LLM_READ, MMPROJ, N_LOADERS };
static const char *const loader_names[N_LOADERS] = { "model (mmap)", "model (read)", "mmproj" };

/* What one loader must say about one defect; cause NULL: the loader is not
 * asked (the file is fine for it). */
struct want {
    int rc;
    const char *cause;
    const char *also;      /* another substring, or NULL */
};

struct bytes {
    uint8_t *p;
    size_t n;
};

static struct bytes read_all(const char *path)
{
    struct bytes b = { NULL, 0 };
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = n > 0 ? malloc((size_t)n) : NULL;
    if (b.p && fread(b.p, 1, (size_t)n, f) == (size_t)n) b.n = (size_t)n;
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECKF(f && (n == 0 || fwrite(p, 1, n, f) == n), "cannot write %s", path);
    if (f) fclose(f);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Load path with loader l; returns the status, err holds the message. */
static int load(int l, const char *path, char *err, size_t errlen)
{
    if (l == MMPROJ) {
        struct md_vision_params vp = md_vision_default_params();
        vp.n_threads = 1;
        struct md_vision *v = (struct md_vision *)&vp;   /* must be reset to NULL */
        int rc = md_vision_load(path, &vp, &v, err, errlen);
        CHECKF(v == NULL || rc == MD_OK, "%s: an md_vision after a failure", path);
        if (rc == MD_OK) md_vision_free(v);
        return rc;
    }
    struct md_model_params mp = md_model_default_params();
    mp.use_mmap = l == LLM_MMAP;
    struct md_model *m = (struct md_model *)&mp;
    int rc = md_model_load(path, &mp, &m, err, errlen);
    CHECKF(m == NULL || rc == MD_OK, "%s: a model after a failure", path);
    if (rc == MD_OK) md_model_free(m);
    return rc;
}

static int load_memory(int l, const struct bytes *b, char *err, size_t errlen)
{
    static const uint8_t none[1];
    const void *p = b->p ? (const void *)b->p : none;   /* the empty file */
    if (l == MMPROJ) {
        struct md_vision *v = NULL;
        int rc = md_vision_load_memory(p, b->n, NULL, &v, err, errlen);
        if (rc == MD_OK) md_vision_free(v);
        return rc;
    }
    struct md_model *m = NULL;
    int rc = md_model_load_memory(p, b->n, NULL, &m, err, errlen);
    if (rc == MD_OK) md_model_free(m);
    return rc;
}

/* One loader on one defect: status, path once and first, headline. */
static void check_loader(const char *what, int l, const char *path, const struct bytes *b,
                         const struct want *w)
{
    char err[1024], cause[256];
    memset(err, 0x55, sizeof err);
    int rc = load(l, path, err, sizeof err);
    md_load_error_cause(err, path, cause, sizeof cause);
    size_t k = strlen(path);
    CHECKF(rc == w->rc, "%s, %s: status %d (%s), want %d: %s", what, loader_names[l], rc,
           md_status_str(rc), w->rc, err);
    CHECKF(!strncmp(err, path, k) && !strncmp(err + k, ": ", 2) && count_of(err, path) == 1,
           "%s, %s: the message does not start with the path, or repeats it: %s", what,
           loader_names[l], err);
    CHECKF(!strcmp(cause, w->cause), "%s, %s: headline \"%s\", want \"%s\" (%s)", what,
           loader_names[l], cause, w->cause, err);
    if (w->also)
        CHECKF(strstr(err, w->also) != NULL, "%s, %s: \"%s\" lacks \"%s\"", what,
               loader_names[l], err, w->also);
    if (l != LLM_READ)
        printf("%-22s %-7s %-20s %s\n", what, l == MMPROJ ? "mmproj" : "model", md_status_str(rc),
               err);
    if (!b)
        return;
    char merr[1024];
    int mrc = load_memory(l, b, merr, sizeof merr);
    CHECKF(mrc == rc && !strcmp(merr, err + k + 2), "%s, %s from memory: status %d \"%s\", "
           "from the file %d \"%s\"", what, loader_names[l], mrc, merr, rc, err);
}

/* A defect every loader sees the same way (b: its bytes, or NULL). */
static void check_all(const char *what, const char *path, const struct bytes *b,
                      const struct want *w)
{
    for (int l = 0; l < N_LOADERS; l++)
        check_loader(what, l, path, b, w);
}

/* Cuts of a file inside its header, key/value pairs, tensor infos and
 * tensor data, each truncated for every loader. */
static void check_cuts(const char *dir, const char *kind, const struct bytes *full)
{
    struct md_gguf *g = NULL;
    char err[256];
    CHECKF(md_gguf_open_memory(full->p, full->n, &g, err, sizeof err) == MD_OK, "%s", err);
    if (!g) return;
    size_t kv_end = (size_t)((const uint8_t *)g->tensors[0].name.ptr - g->base) - 8;
    size_t cuts[] = { 3, 20, 1000, (24 + kv_end) / 2, (kv_end + (size_t)g->data_offset) / 2,
                      ((size_t)g->data_offset + full->n) / 2, full->n - 1 };
    const char *where[] = { "magic", "header", "1000 bytes", "mid-kv", "mid tensor info",
                            "mid tensor data", "last byte" };
    md_gguf_close(g);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char path[512], what[64], also[64];
        snprintf(path, sizeof path, "%s/%s-cut-%zu.gguf", dir, kind, cuts[i]);
        snprintf(what, sizeof what, "%s cut (%s)", kind, where[i]);
        snprintf(also, sizeof also, "truncated: the file has %zu bytes", cuts[i]);
        struct bytes b = { full->p, cuts[i] };
        write_file(path, b.p, b.n);
        struct want w = { MD_ERR_FORMAT, "truncated", also };
        check_all(what, path, &b, &w);
        unlink(path);
    }
}

/* Each file where the other belongs: the loader that does not take it says
 * what it is and where it goes; the other loads it. */
static void check_swapped(const char *llm, const struct bytes *llm_b, const char *mmproj,
                          const struct bytes *mmproj_b)
{
    struct want as_model = { MD_ERR_UNSUPPORTED, "a vision projector (clip), not a language "
                             "model; pass it as the mmproj", NULL };
    struct want as_mmproj = { MD_ERR_UNSUPPORTED, "a language model (llama), not a vision "
                              "projector; pass it as the model", NULL };
    check_loader("mmproj as the model", LLM_MMAP, mmproj, mmproj_b, &as_model);
    check_loader("mmproj as the model", LLM_READ, mmproj, mmproj_b, &as_model);
    check_loader("model as the mmproj", MMPROJ, llm, llm_b, &as_mmproj);
    char err[1024];
    CHECKF(load(LLM_MMAP, llm, err, sizeof err) == MD_OK, "%s", err);
    CHECKF(load(MMPROJ, mmproj, err, sizeof err) == MD_OK, "%s", err);
}

/* Paths that are not a file to read: the loaders say why, MD_ERR_IO. */
static void check_not_files(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/a-directory.gguf", dir);
    CHECK(mkdir(path, 0700) == 0);
    struct want w_dir = { MD_ERR_IO, "is a directory, not a GGUF file", NULL };
    check_all("directory", path, NULL, &w_dir);
    rmdir(path);

    snprintf(path, sizeof path, "%s/a-fifo.gguf", dir);
    CHECK(mkfifo(path, 0600) == 0);     /* no writer: opening it must not wait */
    struct want w_fifo = { MD_ERR_IO, "not a regular file (a FIFO)", NULL };
    check_all("fifo", path, NULL, &w_fifo);
    unlink(path);

    snprintf(path, sizeof path, "%s/missing.gguf", dir);
    struct want w_missing = { MD_ERR_IO, "no such file", NULL };
    check_all("missing", path, NULL, &w_missing);

    if (geteuid() == 0) {
        printf("(no read-permission case: root reads any file)\n");
        return;
    }
    snprintf(path, sizeof path, "%s/unreadable.gguf", dir);
    write_file(path, "GGUF", 4);
    CHECK(chmod(path, 0) == 0);
    struct want w_perm = { MD_ERR_IO, "permission denied", NULL };
    check_all("no read permission", path, NULL, &w_perm);
    unlink(path);
}

/* Files that hold bytes, but no GGUF: MD_ERR_FORMAT. */
static void check_not_gguf(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    write_file(path, "", 0);
    struct bytes empty = { NULL, 0 };
    struct want w_empty = { MD_ERR_FORMAT, "empty file (0 bytes)", NULL };
    check_all("empty", path, &empty, &w_empty);
    unlink(path);

    static const uint8_t png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                   'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0 };
    snprintf(path, sizeof path, "%s/image.png", dir);
    write_file(path, png, sizeof png);
    struct bytes b = { (uint8_t *)png, sizeof png };
    struct want w_png = { MD_ERR_FORMAT, "not a GGUF file (a PNG image)", ": starts with '\\x89PNG'" };
    check_all("png", path, &b, &w_png);
    unlink(path);
}

int main(void)
{
    char llm[512], mmproj[512];
    md_test_data(FIXTURES "tiny-llava-llm-f32.gguf", llm, sizeof llm);
    md_test_data(FIXTURES "tiny-llava-mmproj-f32.gguf", mmproj, sizeof mmproj);
    struct bytes llm_b = read_all(llm), mmproj_b = read_all(mmproj);
    if (!llm_b.n || !mmproj_b.n)
        SKIP("%s or %s missing (run models/make_test_vlm.py)", llm, mmproj);
    char dir[] = "/tmp/md_load_errors_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    check_not_files(dir);
    check_not_gguf(dir);
    check_cuts(dir, "llm", &llm_b);
    check_cuts(dir, "mmproj", &mmproj_b);
    check_swapped(llm, &llm_b, mmproj, &mmproj_b);

    char cause[64];
    CHECK(!strcmp(md_load_error_cause("truncated: the file has 3 bytes", NULL, cause,
                                      sizeof cause), "truncated"));
    CHECK(!strcmp(md_load_error_cause("p: x (a: b) 'c: d': e", "p", cause, sizeof cause),
                  "x (a: b) 'c: d'"));
    CHECK(!strcmp(md_load_error_cause("p: truncated: e", "p", cause, 4), "tru"));
    CHECK(!strcmp(md_load_error_cause(NULL, "p", cause, sizeof cause), ""));

    rmdir(dir);
    free(llm_b.p);
    free(mmproj_b.p);
    return md_test_finish("load_errors");
}
