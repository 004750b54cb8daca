/*
 * fuzz.h - shared helpers for Petal's libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Every target defines LLVMFuzzerTestOneInput() and calls the real library
 * entry point on the input. The same .c file is linked either with libFuzzer
 * (clang -fsanitize=fuzzer, `make fuzz`) or with tests/fuzz/replay.c, a plain
 * main() that feeds every file of the corpus and regression directories
 * (`make test`). A target may also define LLVMFuzzerInitialize().
 *
 * FZ_CHECK(c) aborts when a property the library promises does not hold: the
 * fuzzer then reports it like a crash (the harness, not the library, aborts).
 */
#ifndef PETAL_FUZZ_H
#define PETAL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "petal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(c)                                                                        \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #c);       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Separator between the parts of a multi-part input (text formats and seeds
 * written by tests/fuzz/gen_corpus.py use the same bytes). */
#define FZ_SEP "\n@@@@\n"
#define FZ_SEP_LEN 6

/* Split data[0..size) at FZ_SEP into at most n parts (the last part keeps any
 * further separators). Missing parts are empty. Pointers borrow data.
 * Returns the number of parts found (1..n; 0 when n is 0). */
static inline size_t fz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len,
                            size_t n)
{
    size_t i = 0, start = 0;
    for (size_t k = 0; k < n; k++) {
        part[k] = data + size;
        len[k] = 0;
    }
    if (n == 0) return 0;
    for (size_t p = 0; i + 1 < n && p + FZ_SEP_LEN <= size; p++) {
        if (memcmp(data + p, FZ_SEP, FZ_SEP_LEN)) continue;
        part[i] = data + start;
        len[i] = p - start;
        i++;
        start = p + FZ_SEP_LEN;
        p = start - 1;
    }
    part[i] = data + start;
    len[i] = size - start;
    return i + 1;
}

/* A reusable in-memory file (memfd) whose path "/proc/self/fd/N" can be
 * handed to loaders that take a path: no disk I/O, nothing to clean up. */
typedef struct fz_file {
    int fd;
    char path[48];
} fz_file;

/* Replace the file's content with data[0..n). Returns 0 or -1. */
static inline int fz_file_set(fz_file *f, const char *name, const void *data, size_t n)
{
    if (f->fd <= 0) {
        f->fd = memfd_create(name, 0);
        if (f->fd < 0) return -1;
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    }
    if (ftruncate(f->fd, 0)) return -1;
    const uint8_t *p = data;
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(f->fd, p + off, n - off, (off_t)off);
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    return 0;
}

/* A private scratch directory (mkdtemp under $TMPDIR, else /dev/shm when it
 * exists, else /tmp), created on
 * first use and removed with its files at exit, for loaders that need real
 * paths (rename, directories). Returns its path, or NULL. */
static char fz_tmp_path[256];
static inline void fz_tmpdir_cleanup(void)
{
    DIR *d = opendir(fz_tmp_path);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", fz_tmp_path, e->d_name);
        if (unlink(p) != 0) { /* one level of subdirectories */
            DIR *s = opendir(p);
            struct dirent *f;
            char q[768];
            while (s && (f = readdir(s))) {
                if (f->d_name[0] == '.' && (!f->d_name[1] || !strcmp(f->d_name, ".."))) continue;
                snprintf(q, sizeof q, "%s/%s", p, f->d_name);
                unlink(q);
            }
            if (s) closedir(s);
            rmdir(p);
        }
    }
    if (d) closedir(d);
    rmdir(fz_tmp_path);
}
static inline const char *fz_tmpdir(void)
{
    if (fz_tmp_path[0]) return fz_tmp_path;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz_tmp_path, sizeof fz_tmp_path, "%s/petal-fuzz-XXXXXX", base);
    if (!mkdtemp(fz_tmp_path)) {
        fz_tmp_path[0] = 0;
        return NULL;
    }
    atexit(fz_tmpdir_cleanup);
    return fz_tmp_path;
}

/* Write data[0..n) to the file dir/name (replacing it). Returns 0 or -1. */
static inline int fz_write(const char *dir, const char *name, const void *data, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) != 0 || w != n) ? -1 : 0;
}

/* Quiet the library's log lines (they are still formatted: the format code
 * runs on fuzzed strings too). */
static inline void fz_quiet_logs(void)
{
    pt_log_set_stderr(getenv("FUZZ_LOG") != NULL);
    pt_log_set_level(PT_LOG_DEBUG);
}

#endif /* PETAL_FUZZ_H */
