/* checkpoint.c - the server's per-round checkpoint: serialise, write
 * atomically, read back and validate (see checkpoint_int.h). */
#include "checkpoint_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pst.h"

#define MAGIC "PTCK"
#define HDR_LEN 16u                    /* magic, version, payload length */
#define MAX_FILE ((uint64_t)1 << 40)   /* sanity bound on a checkpoint */

/* ---- CRC-32 ------------------------------------------------------------------ */

uint32_t pt_crc32(uint32_t crc, const void *buf, size_t len)
{
    static uint32_t table[256];
    static int ready;
    const uint8_t *p = buf;
    if (!ready) { /* idempotent: racing threads compute the same table */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    for (size_t i = 0; i < len; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- writer ------------------------------------------------------------------ */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void put(wbuf *w, const void *d, size_t n)
{
    if (w->oom || !n) return;
    if (w->len + n > w->cap) {
        size_t nc = w->cap ? w->cap : 4096;
        while (nc < w->len + n) nc *= 2;
        uint8_t *np = realloc(w->p, nc);
        if (!np) {
            w->oom = 1;
            return;
        }
        w->p = np;
        w->cap = nc;
    }
    memcpy(w->p + w->len, d, n);
    w->len += n;
}

static void put_u32(wbuf *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}

static void put_u64(wbuf *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

static void put_f64(wbuf *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(w, v);
}

static void put_str(wbuf *w, const char *s, size_t n)
{
    put_u32(w, (uint32_t)n);
    put(w, s, n);
}

static void put_hist(wbuf *w, const pt_ckpt_hist *h, size_t n)
{
    put_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u32(w, (uint32_t)h[i].round);
        put_f64(w, h[i].loss);
        put_f64(w, h[i].acc);
    }
}

/* Only string values are kept (the server's metric histories). */
static void put_cfg(wbuf *w, const pt_config *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < c->n; i++) n += c->e[i].val.type == PT_SCALAR_STRING;
    put_u32(w, n);
    for (size_t i = 0; i < c->n; i++) {
        if (c->e[i].val.type != PT_SCALAR_STRING) continue;
        put_str(w, c->e[i].key, strlen(c->e[i].key));
        put_str(w, c->e[i].val.v.s.ptr, c->e[i].val.v.s.len);
    }
}

/* Writers enforce what the reader accepts: every history key fits
 * PT_CONFIG_KEY_MAX (the reader refuses longer ones). */
static int check_keys(const pt_config *c, const char *what, char *err)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t kl = strlen(c->e[i].key);
        if (c->e[i].val.type == PT_SCALAR_STRING && kl > PT_CONFIG_KEY_MAX)
            return pt_seterr(err, PT_ERR_RANGE,
                             "checkpoint: a %s key of %zu bytes is over the %d a checkpoint "
                             "can hold", what, kl, PT_CONFIG_KEY_MAX);
    }
    return PT_OK;
}

#define TMP_TAG PT_CKPT_FILE ".tmp."

/* Remove temporary files a crashed writer left in dir: "<file>.tmp.<pid>.*"
 * of a process that no longer exists (or of this pid, which is not writing
 * one now). Those of a live process (another server on this directory) stay. */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d) return;
    while ((de = readdir(d))) {
        const char *p = de->d_name;
        char *end;
        struct stat sb;
        if (strncmp(p, TMP_TAG, strlen(TMP_TAG))) continue;
        errno = 0;
        long pid = strtol(p + strlen(TMP_TAG), &end, 10);
        if (errno || end == p + strlen(TMP_TAG) || *end != '.' || pid <= 0) continue;
        if (pid != (long)getpid() && !(kill((pid_t)pid, 0) && errno == ESRCH)) continue;
        if (fstatat(dirfd(d), p, &sb, AT_SYMLINK_NOFOLLOW) ||
            !(S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)))
            continue;
        if (!unlinkat(dirfd(d), p, 0)) PT_DEBUG("checkpoint: removed stale %s/%s", dir, p);
    }
    closedir(d);
}

/* Create a new temporary file next to path: O_EXCL | O_NOFOLLOW, so it is
 * never a file or link someone else put there. */
static int create_temp(const char *path, char *tmp, size_t len)
{
    for (int tries = 0; tries < 16; tries++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = (uint64_t)pt_now_ns() * 0x9E3779B97F4A7C15ull + (uint64_t)tries;
        if (snprintf(tmp, len, "%s.tmp.%ld.%016llx", path, (long)getpid(),
                     (unsigned long long)r) >= (int)len) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int strategy_bytes(const pst_strategy *st, uint8_t **out, size_t *len, char *err)
{
    char *b = NULL;
    size_t n = 0;
    char e[PT_ERRLEN];
    FILE *f = open_memstream(&b, &n);
    if (!f) return pt_seterr(err, PT_ERR_NOMEM, "checkpoint: out of memory");
    int rc = pst_state_save(st, f, e);
    if (fclose(f) && !rc) rc = PT_ERR_IO;
    if (rc) {
        free(b);
        return pt_seterr(err, rc, "checkpoint: strategy state: %s",
                         rc == PT_ERR_IO ? "write failed" : e);
    }
    *out = (uint8_t *)b;
    *len = n;
    return PT_OK;
}

int pt_ckpt_save(const char *dir, const pt_ckpt *c, const pst_strategy *st, char *err)
{
    wbuf w = {0};
    uint8_t *sst = NULL;
    size_t sst_len = 0;
    char path[4096], tmp[4200];
    int rc, fd = -1;
    if (!dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "checkpoint: no directory");
    if (snprintf(path, sizeof path, "%s/%s", dir, PT_CKPT_FILE) >= (int)sizeof path)
        return pt_seterr(err, PT_ERR_INVAL, "checkpoint: directory name too long");
    if (mkdir(dir, 0755) && errno != EEXIST)
        return pt_seterr(err, PT_ERR_IO, "checkpoint: cannot create %s: %s", dir,
                         strerror(errno));
    if ((rc = check_keys(&c->fit_hist, "fit metrics history", err)) ||
        (rc = check_keys(&c->eval_hist, "evaluate metrics history", err)))
        return rc;
    if (st && (rc = strategy_bytes(st, &sst, &sst_len, err))) return rc;

    put(&w, MAGIC, 4);
    put_u32(&w, PT_CKPT_VERSION);
    put_u64(&w, 0); /* payload length, patched below */
    put_u32(&w, (uint32_t)c->round);
    put_u32(&w, (uint32_t)c->rounds);
    put_u64(&w, c->seed);
    put_u64(&w, c->rng);
    put_f64(&w, c->central_loss);
    put_f64(&w, c->elapsed);
    put_str(&w, c->model, strnlen(c->model, sizeof c->model));
    put_str(&w, c->strategy, strnlen(c->strategy, sizeof c->strategy));
    put_u32(&w, (uint32_t)c->global.n);
    for (size_t i = 0; i < c->global.n; i++) {
        put_u32(&w, (uint32_t)c->global.t[i].ndim);
        for (int d = 0; d < c->global.t[i].ndim; d++)
            put_u64(&w, (uint64_t)c->global.t[i].shape[d]);
    }
    put_u64(&w, c->global.total);
    for (size_t i = 0; i < c->global.total; i++) {
        uint32_t v;
        memcpy(&v, &c->global.buf[i], 4);
        put_u32(&w, v);
    }
    put_hist(&w, c->h_cent, c->n_cent);
    put_hist(&w, c->h_dist, c->n_dist);
    put_cfg(&w, &c->fit_hist);
    put_cfg(&w, &c->eval_hist);
    put_u64(&w, sst_len);
    put(&w, sst, sst_len);
    free(sst);
    if (w.oom) {
        free(w.p);
        return pt_seterr(err, PT_ERR_NOMEM, "checkpoint: out of memory");
    }
    uint64_t plen = w.len - HDR_LEN;
    for (int i = 0; i < 8; i++) w.p[8 + i] = (uint8_t)(plen >> (8 * i));
    put_u32(&w, pt_crc32(0, w.p + HDR_LEN, (size_t)plen));
    if (w.oom) {
        free(w.p);
        return pt_seterr(err, PT_ERR_NOMEM, "checkpoint: out of memory");
    }

    remove_stale_temps(dir);
    fd = create_temp(path, tmp, sizeof tmp);
    if (fd < 0) {
        rc = pt_seterr(err, PT_ERR_IO, "checkpoint: cannot create a temporary file in %s: %s",
                       dir, strerror(errno));
        free(w.p);
        return rc;
    }
    for (size_t off = 0; off < w.len;) {
        ssize_t k = write(fd, w.p + off, w.len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            rc = pt_seterr(err, PT_ERR_IO, "checkpoint: write %s: %s", tmp,
                           k < 0 ? strerror(errno) : "no progress");
            goto fail;
        }
        off += (size_t)k;
    }
    if (fsync(fd)) {
        rc = pt_seterr(err, PT_ERR_IO, "checkpoint: fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd)) {
        fd = -1;
        rc = pt_seterr(err, PT_ERR_IO, "checkpoint: close %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path)) {
        rc = pt_seterr(err, PT_ERR_IO, "checkpoint: rename to %s: %s", path, strerror(errno));
        goto fail;
    }
    free(w.p);
    if (fsync_dir(dir))
        return pt_seterr(err, PT_ERR_IO, "checkpoint: fsync directory %s: %s", dir,
                         strerror(errno));
    return PT_OK;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(w.p);
    return rc;
}

/* ---- reader ------------------------------------------------------------------ */

typedef struct rbuf {
    const uint8_t *p;
    size_t len, off;
    const char *what; /* first field that did not fit */
} rbuf;

static int take(rbuf *r, void *d, size_t n, const char *what)
{
    if (r->what) return -1;
    if (n > r->len - r->off) {
        r->what = what;
        return -1;
    }
    if (d) memcpy(d, r->p + r->off, n);
    r->off += n;
    return 0;
}

static uint32_t get_u32(rbuf *r, const char *what)
{
    uint8_t b[4] = {0};
    take(r, b, 4, what);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get_u64(rbuf *r, const char *what)
{
    uint64_t lo = get_u32(r, what), hi = get_u32(r, what);
    return lo | hi << 32;
}

static double get_f64(rbuf *r, const char *what)
{
    uint64_t v = get_u64(r, what);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* A length-prefixed string of at most max bytes, NUL-terminated into a new buffer. */
static char *get_str(rbuf *r, size_t max, const char *what)
{
    uint32_t n = get_u32(r, what);
    if (r->what) return NULL;
    if (n > max || n > r->len - r->off) {
        r->what = what;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->what = "(out of memory)";
        return NULL;
    }
    memcpy(s, r->p + r->off, n);
    s[n] = 0;
    r->off += n;
    return s;
}

static int get_hist(rbuf *r, pt_ckpt_hist **h, size_t *n, const char *what)
{
    uint32_t k = get_u32(r, what);
    if (r->what) return -1;
    if ((uint64_t)k * 20 > r->len - r->off) {
        r->what = what;
        return -1;
    }
    *n = 0;
    *h = calloc(k ? k : 1, sizeof **h);
    if (!*h) {
        r->what = "(out of memory)";
        return -1;
    }
    for (uint32_t i = 0; i < k; i++) {
        (*h)[i].round = (int)get_u32(r, what);
        (*h)[i].loss = get_f64(r, what);
        (*h)[i].acc = get_f64(r, what);
    }
    *n = k;
    return r->what ? -1 : 0;
}

static int get_cfg(rbuf *r, pt_config *c, const char *what)
{
    uint32_t k = get_u32(r, what);
    if (r->what) return -1;
    if ((uint64_t)k * 8 > r->len - r->off) {
        r->what = what;
        return -1;
    }
    for (uint32_t i = 0; i < k; i++) {
        char *key = get_str(r, PT_CONFIG_KEY_MAX, what);
        char *val = key ? get_str(r, r->len, what) : NULL;
        if (val && pt_config_set_string(c, key, val)) r->what = "(out of memory)";
        free(key);
        free(val);
        if (r->what) return -1;
    }
    return 0;
}

void pt_ckpt_free(pt_ckpt *c)
{
    pt_params_free(&c->global);
    free(c->h_cent);
    free(c->h_dist);
    pt_config_free(&c->fit_hist);
    pt_config_free(&c->eval_hist);
    free(c->strategy_state);
    memset(c, 0, sizeof *c);
}

/* Values a CRC-valid file may still get wrong (tampered or written by a
 * broken build): the first bad field's name, or NULL. */
static const char *check_values(const pt_ckpt *c)
{
    if (!(isnan(c->central_loss) || (isfinite(c->central_loss) && c->central_loss >= 0)))
        return "central loss (negative or infinite)";
    if (!(isfinite(c->elapsed) && c->elapsed >= 0)) return "elapsed";
    for (size_t i = 0; i < c->global.total; i++)
        if (!isfinite(c->global.buf[i])) return "weights (a value is not finite)";
    for (size_t i = 0; i < c->n_cent; i++)
        if (c->h_cent[i].round < 0 || c->h_cent[i].round > c->round)
            return "centralised history (round)";
    for (size_t i = 0; i < c->n_dist; i++)
        if (c->h_dist[i].round < 1 || c->h_dist[i].round > c->round)
            return "distributed history (round)";
    return NULL;
}

static int read_file(const char *path, uint8_t **out, size_t *len, char *err)
{
    char e2[PT_ERRLEN];
    int fd = pt_open_read(path, e2); /* a FIFO is refused, never waited on */
    if (fd < 0) return pt_seterr(err, fd == PT_ERR_INVAL ? PT_ERR_FORMAT : fd, "checkpoint %s", e2);
    FILE *f = fdopen(fd, "rb");
    struct stat sb;
    if (!f || fstat(fd, &sb)) {
        if (f) fclose(f);
        else close(fd);
        return pt_seterr(err, PT_ERR_IO, "checkpoint %s: %s", path, strerror(errno));
    }
    if ((uint64_t)sb.st_size > MAX_FILE) {
        fclose(f);
        return pt_seterr(err, PT_ERR_FORMAT, "checkpoint %s: implausibly large (%lld bytes)",
                         path, (long long)sb.st_size);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return pt_seterr(err, PT_ERR_NOMEM, "checkpoint %s: %zu bytes: out of memory", path, n);
    }
    size_t got = fread(b, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(b);
        return pt_seterr(err, PT_ERR_IO, "checkpoint %s: read failed", path);
    }
    *out = b;
    *len = n;
    return PT_OK;
}

int pt_ckpt_load(const char *dir, const pt_params *like, pt_ckpt *c, char *err)
{
    char path[4096];
    uint8_t *b = NULL;
    size_t n = 0;
    struct stat sb;
    int rc;
    memset(c, 0, sizeof *c);
    if (!dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "checkpoint: no directory");
    if (!stat(dir, &sb) && S_ISREG(sb.st_mode))
        snprintf(path, sizeof path, "%s", dir);
    else if (snprintf(path, sizeof path, "%s/%s", dir, PT_CKPT_FILE) >= (int)sizeof path)
        return pt_seterr(err, PT_ERR_INVAL, "checkpoint: directory name too long");
    if ((rc = read_file(path, &b, &n, err))) return rc;
    if (n < 4 || memcmp(b, MAGIC, 4)) {
        free(b);
        return pt_seterr(err, PT_ERR_FORMAT, "checkpoint %s: not a Petal checkpoint (bad magic)",
                         path);
    }
    rbuf r = {b, n, 4, NULL};
    uint32_t ver = get_u32(&r, "version");
    uint64_t plen = get_u64(&r, "payload length");
    if (r.what) {
        free(b);
        return pt_seterr(err, PT_ERR_FORMAT, "checkpoint %s: truncated header (%zu bytes)", path,
                         n);
    }
    if (ver != PT_CKPT_VERSION) {
        free(b);
        return pt_seterr(err, PT_ERR_UNSUPPORTED,
                         "checkpoint %s: version %u, this petal reads version %u", path, ver,
                         PT_CKPT_VERSION);
    }
    if (plen != (uint64_t)n - HDR_LEN - 4 || n < HDR_LEN + 4) {
        free(b);
        return pt_seterr(err, PT_ERR_FORMAT,
                         "checkpoint %s: truncated or padded (payload says %llu bytes, file has "
                         "%zu)", path, (unsigned long long)plen, n);
    }
    uint32_t want = (uint32_t)b[n - 4] | (uint32_t)b[n - 3] << 8 | (uint32_t)b[n - 2] << 16 |
                    (uint32_t)b[n - 1] << 24;
    uint32_t got = pt_crc32(0, b + HDR_LEN, (size_t)plen);
    if (want != got) {
        free(b);
        return pt_seterr(err, PT_ERR_FORMAT, "checkpoint %s: CRC mismatch (stored %08x, "
                         "computed %08x): the file is damaged", path, want, got);
    }
    r.len = n - 4; /* payload ends before the CRC */
    c->round = (int)get_u32(&r, "round");
    c->rounds = (int)get_u32(&r, "rounds");
    c->seed = get_u64(&r, "seed");
    c->rng = get_u64(&r, "rng");
    c->central_loss = get_f64(&r, "central loss");
    c->elapsed = get_f64(&r, "elapsed");
    char *s = get_str(&r, sizeof c->model - 1, "model name");
    if (s) snprintf(c->model, sizeof c->model, "%s", s);
    free(s);
    s = get_str(&r, sizeof c->strategy - 1, "strategy name");
    if (s) snprintf(c->strategy, sizeof c->strategy, "%s", s);
    free(s);
    uint32_t nt = get_u32(&r, "tensor count");
    if (!r.what && (c->round < 0 || c->round > 100000000)) r.what = "round";
    if (!r.what && (uint64_t)nt * 4 > r.len - r.off) r.what = "tensor count";
    int *ndims = NULL;
    int64_t **shapes = NULL;
    if (!r.what) {
        ndims = calloc(nt ? nt : 1, sizeof *ndims);
        shapes = calloc(nt ? nt : 1, sizeof *shapes);
        if (!ndims || !shapes) r.what = "(out of memory)";
    }
    for (uint32_t i = 0; !r.what && i < nt; i++) {
        ndims[i] = (int)get_u32(&r, "tensor rank");
        if (r.what) break;
        if (ndims[i] < 0 || ndims[i] > PT_MAX_DIMS) {
            r.what = "tensor rank";
            break;
        }
        if (!(shapes[i] = calloc(PT_MAX_DIMS, sizeof **shapes))) {
            r.what = "(out of memory)";
            break;
        }
        for (int d = 0; d < ndims[i]; d++) {
            uint64_t v = get_u64(&r, "tensor shape");
            if (v > ((uint64_t)1 << 40)) r.what = "tensor shape";
            shapes[i][d] = (int64_t)v;
        }
    }
    /* the floats must fit in what is left of the payload before anything is allocated */
    uint64_t numel_all = 0;
    for (uint32_t i = 0; !r.what && i < nt; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            uint64_t v = (uint64_t)shapes[i][d];
            if (v && numel > (r.len - r.off) / v) {
                r.what = "tensor shape (more floats than the file holds)";
                break;
            }
            numel *= v;
        }
        numel_all += numel;
        if (numel_all > (r.len - r.off) / 4)
            r.what = "tensor shape (more floats than the file holds)";
    }
    if (!r.what && pt_params_init(&c->global, nt, ndims, (const int64_t *const *)shapes))
        r.what = "(tensor shapes or out of memory)";
    for (uint32_t i = 0; shapes && i < nt; i++) free(shapes[i]);
    free(shapes);
    free(ndims);
    if (!r.what) {
        uint64_t total = get_u64(&r, "float count");
        if (!r.what && (total != c->global.total || total * 4 > r.len - r.off))
            r.what = "float count";
        for (size_t i = 0; !r.what && i < c->global.total; i++) {
            uint32_t v = get_u32(&r, "weights");
            memcpy(&c->global.buf[i], &v, 4);
        }
    }
    if (!r.what) get_hist(&r, &c->h_cent, &c->n_cent, "centralised history");
    if (!r.what) get_hist(&r, &c->h_dist, &c->n_dist, "distributed history");
    if (!r.what) get_cfg(&r, &c->fit_hist, "fit metrics history");
    if (!r.what) get_cfg(&r, &c->eval_hist, "evaluate metrics history");
    if (!r.what) {
        uint64_t sl = get_u64(&r, "strategy state length");
        if (!r.what && sl != r.len - r.off) r.what = "strategy state length";
        if (!r.what && sl) {
            if (!(c->strategy_state = malloc((size_t)sl))) r.what = "(out of memory)";
            else take(&r, c->strategy_state, (size_t)sl, "strategy state");
            c->strategy_state_len = (size_t)sl;
        }
    }
    free(b);
    if (!r.what) r.what = check_values(c);
    if (r.what) {
        rc = !strcmp(r.what, "(out of memory)") ? PT_ERR_NOMEM : PT_ERR_FORMAT;
        pt_ckpt_free(c);
        return pt_seterr(err, rc, "checkpoint %s: bad or truncated field: %s", path, r.what);
    }
    if (like) {
        if (like->n != c->global.n) {
            size_t got_n = c->global.n;
            pt_ckpt_free(c);
            return pt_seterr(err, PT_ERR_MISMATCH,
                             "checkpoint %s: holds %zu tensors, the server's model has %zu", path,
                             got_n, like->n);
        }
        for (size_t i = 0; i < like->n; i++) {
            const pt_tensor *a = &like->t[i], *t = &c->global.t[i];
            int same = a->ndim == t->ndim;
            for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == t->shape[d];
            if (!same) {
                char e1[96] = "", e2[96] = "";
                for (int d = 0; d < a->ndim; d++)
                    snprintf(e1 + strlen(e1), sizeof e1 - strlen(e1), "%s%lld", d ? "," : "",
                             (long long)a->shape[d]);
                for (int d = 0; d < t->ndim; d++)
                    snprintf(e2 + strlen(e2), sizeof e2 - strlen(e2), "%s%lld", d ? "," : "",
                             (long long)t->shape[d]);
                pt_ckpt_free(c);
                return pt_seterr(err, PT_ERR_MISMATCH,
                                 "checkpoint %s: tensor %zu has shape (%s), the server's model "
                                 "(%s): a different model", path, i, e2, e1);
            }
        }
    }
    return PT_OK;
}

int pt_ckpt_restore_strategy(const pt_ckpt *c, pst_strategy *st, char *err)
{
    char e[PT_ERRLEN];
    if (!c->strategy_state_len)
        return pt_seterr(err, PT_ERR_FORMAT, "checkpoint holds no strategy state");
    FILE *f = fmemopen(c->strategy_state, c->strategy_state_len, "rb");
    if (!f) return pt_seterr(err, PT_ERR_NOMEM, "checkpoint: out of memory");
    int rc = pst_state_load(st, f, e);
    fclose(f);
    if (rc) return pt_seterr(err, rc, "checkpoint: strategy state: %s", e);
    return PT_OK;
}
