/*
 * replay.c - run a fuzz target without libFuzzer: feed every file of the
 * given directories (or files) to LLVMFuzzerTestOneInput, in name order.
 * Linked with one tests/fuzz/fuzz_<name>.c using the normal compiler and
 * flags, so `make test` (and `make SANITIZE=address,undefined test`) checks
 * the seed corpus and every saved crash input on each build.
 *
 *   replay_<name> NAME DIR_OR_FILE...
 *
 * Prints "PASS: fuzz_replay_NAME (N inputs)" and exits 0; a crash or a failed
 * property aborts inside the target (the test runner reports the exit
 * status). An input that runs longer than FUZZ_REPLAY_TIMEOUT seconds
 * (default 20) is a FAIL naming the file (a hang). A missing or empty corpus
 * is a FAIL: the test must feed something.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *cur_name = "?";
static char cur_path[1024];

static void on_alarm(int sig)
{
    (void)sig;
    char msg[1200];
    int n = snprintf(msg, sizeof msg, "FAIL: fuzz_replay_%s (hang: %s)\n", cur_name, cur_path);
    if (n > 0) {
        ssize_t w = write(1, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        (void)w;
    }
    _exit(1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read a whole file; returns a malloc'd buffer (size+1 bytes) or NULL. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Feed one file. Returns 0, or -1 when it cannot be read. */
static int feed(const char *path)
{
    size_t len = 0;
    uint8_t *buf = slurp(path, &len);
    if (!buf) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* An exact-size copy so ASan sees reads past the input's end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    if (getenv("FUZZ_REPLAY_VERBOSE")) fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    snprintf(cur_path, sizeof cur_path, "%s", path);
    const char *t = getenv("FUZZ_REPLAY_TIMEOUT");
    alarm(t && atoi(t) > 0 ? (unsigned)atoi(t) : 20);
    LLVMFuzzerTestOneInput(exact, len);
    alarm(0);
    free(exact);
    return 0;
}

/* Feed every regular file of dir (sorted; dot files skipped). Returns the
 * count, or -1 on error. */
static long feed_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    long rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = -1;
                goto done;
            }
            names = nn;
            cap = ncap;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(l))) {
            rc = -1;
            goto done;
        }
        snprintf(names[n], l, "%s/%s", dir, e->d_name);
        n++;
    }
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) || !S_ISREG(st.st_mode)) continue;
        if (feed(names[i])) {
            rc = -1;
            goto done;
        }
        rc++;
    }
done:
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s NAME DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    const char *name = argv[1];
    cur_name = name;
    signal(SIGALRM, on_alarm);
    setvbuf(stdout, NULL, _IONBF, 0);
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    long total = 0;
    for (int i = 2; i < argc; i++) {
        struct stat st;
        long k;
        if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
            k = feed(argv[i]) ? -1 : 1;
        else
            k = feed_dir(argv[i]);
        if (k < 0) {
            printf("FAIL: fuzz_replay_%s (cannot read %s)\n", name, argv[i]);
            return 1;
        }
        total += k;
    }
    if (total == 0) {
        printf("FAIL: fuzz_replay_%s (no inputs)\n", name);
        return 1;
    }
    printf("PASS: fuzz_replay_%s (%ld inputs)\n", name, total);
    return 0;
}
