/* The hostile corpus: every file of tests/gguf/hostile must be rejected by
 * both md_gguf_open (mmap) and md_gguf_open_memory, with an error message
 * that contains the substring listed for it in tests/gguf/hostile.expect
 * (written by gen_hostile.py). Every file must be listed and every listed
 * file present, and there must be at least MIN_FILES, so the test cannot
 * pass vacuously. The message's headline (before the first ": ") must fit
 * the status, and the file gives the same status and message as the buffer,
 * after "<path>: ". Run it under ASan/UBSan to check for memory errors. */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "md_test.h"
#include "gguf.h"

#define MIN_FILES 95
#define MAX_FILES 1024

struct entry {
    char name[512];
    char expect[512];
    int seen;
};

/* The status a message's headline stands for. */
static int status_of(const char *err)
{
    static const struct { const char *head; int status; } heads[] = {
        { "truncated: ", MD_ERR_FORMAT }, { "malformed GGUF: ", MD_ERR_FORMAT },
        { "not a GGUF file", MD_ERR_FORMAT }, { "empty file (0 bytes)", MD_ERR_FORMAT },
        { "unsupported ", MD_ERR_UNSUPPORTED },
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
        if (!strncmp(err, heads[i].head, strlen(heads[i].head)))
            return heads[i].status;
    return 0;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = malloc(65536);
    *n = buf ? fread(buf, 1, 65536, f) : 0;
    fclose(f);
    if (!buf) return NULL;
    uint8_t *exact = malloc(*n ? *n : 1);   /* exact size: ASan sees overreads */
    if (exact) memcpy(exact, buf, *n);
    free(buf);
    return exact;
}

int main(void)
{
    char dir[1024], man[1024];
    md_test_data("gguf/hostile", dir, sizeof dir);
    md_test_data("gguf/hostile.expect", man, sizeof man);

    static struct entry ents[MAX_FILES];
    int n_ents = 0;
    FILE *mf = fopen(man, "r");
    CHECKF(mf != NULL, "cannot open %s", man);
    if (!mf) return md_test_finish("gguf_hostile");
    char line[512];
    while (fgets(line, sizeof line, mf) && n_ents < MAX_FILES) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\r\n")] = 0;
        char *tab = strchr(line, '\t');
        CHECKF(tab != NULL, "manifest line without a tab: %s", line);
        if (!tab) continue;
        *tab = 0;
        snprintf(ents[n_ents].name, sizeof ents[n_ents].name, "%s", line);
        snprintf(ents[n_ents].expect, sizeof ents[n_ents].expect, "%s", tab + 1);
        n_ents++;
    }
    fclose(mf);

    DIR *d = opendir(dir);
    CHECKF(d != NULL, "cannot list %s", dir);
    if (!d) return md_test_finish("gguf_hostile");
    int n_files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        n_files++;
        CHECKF(st.st_size < 4096, "%s: %lld bytes, hostile files must be < 4 KB",
               e->d_name, (long long)st.st_size);

        struct entry *en = NULL;
        for (int i = 0; i < n_ents; i++)
            if (strcmp(ents[i].name, e->d_name) == 0) en = &ents[i];
        CHECKF(en != NULL, "%s is not listed in hostile.expect", e->d_name);
        if (en) en->seen = 1;

        size_t n = 0;
        uint8_t *buf = slurp(path, &n);
        CHECKF(buf != NULL, "cannot read %s", path);
        if (!buf) continue;
        struct md_gguf *g = (struct md_gguf *)1;
        char err[512];
        memset(err, 0x55, sizeof err);
        int rc = md_gguf_open_memory(buf, n, &g, err, sizeof err);
        CHECKF(rc != 0, "%s: accepted", e->d_name);
        CHECKF(g == NULL, "%s: context left after failure", e->d_name);
        CHECKF(memchr(err, 0, sizeof err) != NULL, "%s: error text not terminated", e->d_name);
        if (rc == 0) md_gguf_close(g);
        else {
            CHECKF(err[0] != 0, "%s: empty error text", e->d_name);
            if (en) CHECKF(strstr(err, en->expect) != NULL, "%s: error \"%s\" lacks \"%s\"",
                           e->d_name, err, en->expect);
            CHECKF(status_of(err) == rc, "%s: status %d for \"%s\"", e->d_name, rc, err);
            printf("%-40s %s\n", e->d_name, err);
        }
        free(buf);

        /* the mmap path: the same status, the same message after the path */
        char ferr[sizeof path + sizeof err + 4], want[sizeof ferr];
        snprintf(want, sizeof want, "%s: %s", path, err);
        int mem_rc = rc;
        g = NULL;
        rc = md_gguf_open(path, &g, ferr, sizeof ferr);
        CHECKF(rc == mem_rc && g == NULL && !strcmp(ferr, want),
               "%s: md_gguf_open rc %d err '%s', memory rc %d", e->d_name, rc, ferr, mem_rc);
        if (rc == 0) md_gguf_close(g);
    }
    closedir(d);

    for (int i = 0; i < n_ents; i++)
        CHECKF(ents[i].seen, "%s is listed in hostile.expect but missing", ents[i].name);
    CHECKF(n_files >= MIN_FILES, "only %d hostile files (expected >= %d)", n_files, MIN_FILES);
    CHECKF(n_files == n_ents, "%d files but %d manifest entries", n_files, n_ents);
    printf("%d hostile files checked\n", n_files);
    return md_test_finish("gguf_hostile");
}
