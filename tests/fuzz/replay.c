/* Replays files through the fuzz target without libFuzzer, as a normal
 * test: every file of the directories (or files) named on the command line
 * goes through LLVMFuzzerTestOneInput, so the hostile corpus and the seed
 * corpus are checked in every build (and under ASan/UBSan in a sanitized one).
 * Arguments that do not exist are skipped; at least one file must be run. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: cannot open %s\n", path); return -1; }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) { fprintf(stderr, "replay: out of memory for %s\n", path); return -1; }
    /* An exact-size copy, so that ASan sees reads past the end. */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) { free(buf); return -1; }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    long files = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) { printf("replay: %s absent, skipped\n", argv[a]); continue; }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[a]) == 0) files++;
            else return 1;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) { fprintf(stderr, "replay: cannot list %s\n", argv[a]); return 1; }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            if (run_file(path) != 0) { closedir(d); return 1; }
            files++;
        }
        closedir(d);
    }
    printf("replay: %ld files run\n", files);
    if (files == 0) { printf("FAIL: no input files\n"); return 1; }
    printf("PASS: fuzz_gguf_replay\n");
    return 0;
}
