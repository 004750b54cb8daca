/* secrets.c - nothing secret leaves the user's machine: every artifact the
 * launcher uploads (source tarball, dataset archive, model, agent binary) is
 * read once before the upload; a tar member whose name looks like a
 * credential file, or the bytes of the user's own secret key or session
 * token anywhere in the (decompressed) content, stop the run. */
#include "launch_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Keep in step with scripts/dist.sh (the packer refuses the same names). */
static const char *const secret_exact[] = {".env", "credentials", ".netrc", ".git-credentials",
                                           ".pgpass", ".npmrc", ".pypirc", NULL};
static const char *const secret_prefix[] = {".env.", "labsuser", "id_rsa", "id_dsa", "id_ecdsa",
                                            "id_ed25519", "credentials.", NULL};
static const char *const secret_suffix[] = {".pem", ".key", ".p12", ".pfx", ".ppk", ".jks",
                                            ".keystore", ".env", NULL};
static const char *const secret_dirs[] = {".aws", ".ssh", ".gnupg", NULL};

static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t l = strlen(suf);
    return n >= l && !strncasecmp(s + n - l, suf, l);
}

int pl_secret_name(const char *path)
{
    if (!path) return 0;
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (p[n] == '/') { /* a directory component */
            for (int i = 0; secret_dirs[i]; i++)
                if (n == strlen(secret_dirs[i]) && !strncasecmp(p, secret_dirs[i], n)) return 1;
            p += n + 1;
            continue;
        }
        if (!n) return 0;
        for (int i = 0; secret_exact[i]; i++)
            if (n == strlen(secret_exact[i]) && !strncasecmp(p, secret_exact[i], n)) return 1;
        for (int i = 0; secret_prefix[i]; i++)
            if (!strncasecmp(p, secret_prefix[i], strlen(secret_prefix[i]))) return 1;
        for (int i = 0; secret_suffix[i]; i++)
            if (ends_with(p, n, secret_suffix[i])) return 1;
        return 0;
    }
    return 0;
}

/* ---- scanning ---- */
#define CHUNK 65536
#define NAME_MAX_LEN 4096

typedef struct scan {
    const char *what;      /* artifact label for messages */
    const char *needle[2]; /* secret key, session token (NULL: none) */
    size_t nlen[2];
    size_t keep;           /* longest needle - 1 */
    unsigned char *win;    /* the last `keep` bytes of the previous chunk + this chunk */
    size_t win_len;
    int found;             /* index + 1 of the needle found */
    /* tar state (only for tarballs) */
    int tar;
    unsigned char hdr[512];
    size_t hdr_len;
    unsigned long long skip; /* data bytes (padded) still to skip */
    char longname[NAME_MAX_LEN];
    size_t longname_len;
    int collecting; /* 'L' or 'x' data goes to longname */
    int have_long;
    int bad_member;
    char member[256];
    unsigned long long members;
} scan;

static void scan_bytes(scan *s, const unsigned char *p, size_t n)
{
    if (s->found || !s->keep) return;
    /* window = tail of the previous bytes + p; search, then keep the tail */
    while (n) {
        size_t take = n > CHUNK ? CHUNK : n;
        memcpy(s->win + s->win_len, p, take);
        size_t len = s->win_len + take;
        for (int i = 0; i < 2 && !s->found; i++)
            if (s->needle[i] && memmem(s->win, len, s->needle[i], s->nlen[i])) s->found = i + 1;
        size_t tail = len < s->keep ? len : s->keep;
        memmove(s->win, s->win + len - tail, tail);
        s->win_len = tail;
        p += take;
        n -= take;
    }
}

static unsigned long long octal(const unsigned char *f, size_t n, int *ok)
{
    unsigned long long v = 0;
    size_t i = 0;
    while (i < n && (f[i] == ' ' || f[i] == 0)) i++;
    if (i < n && (f[i] & 0x80)) { /* GNU base-256 size: refuse absurd values */
        *ok = 0;
        return 0;
    }
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60) {
            *ok = 0;
            return 0;
        }
        v = v * 8 + (unsigned)(f[i] - '0');
    }
    return v;
}

static void check_member(scan *s, const char *name)
{
    s->members++;
    if (s->bad_member || !pl_secret_name(name)) return;
    s->bad_member = 1;
    snprintf(s->member, sizeof s->member, "%.255s", name);
}

/* pax records "LEN path=VALUE\n": the path, if any, into longname */
static void pax_path(scan *s)
{
    size_t i = 0, n = s->longname_len;
    const char *b = s->longname;
    s->have_long = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && b[j] >= '0' && b[j] <= '9' && len < NAME_MAX_LEN) len = len * 10 + (size_t)(b[j++] - '0');
        if (j >= n || b[j] != ' ' || len <= j - i + 1 || i + len > n) return;
        const char *kv = b + j + 1;
        size_t kvl = i + len - (j + 1);
        if (kvl > 5 && !strncmp(kv, "path=", 5)) {
            size_t vl = kvl - 5 - (kv[kvl - 1] == '\n');
            memmove(s->longname, kv + 5, vl);
            s->longname[vl] = 0;
            s->have_long = 1;
            return;
        }
        i += len;
    }
}

/* Walk ustar/GNU/pax headers over the decompressed stream. */
static int tar_bytes(scan *s, const unsigned char *p, size_t n, char *err)
{
    while (n) {
        if (s->skip) {
            size_t t = s->skip < n ? (size_t)s->skip : n;
            if (s->collecting) {
                size_t room = NAME_MAX_LEN - 1 - s->longname_len;
                size_t c = t < room ? t : room;
                memcpy(s->longname + s->longname_len, p, c);
                s->longname_len += c;
            }
            s->skip -= t;
            p += t;
            n -= t;
            if (!s->skip && s->collecting) {
                s->longname[s->longname_len] = 0;
                if (s->collecting == 'x')
                    pax_path(s);
                else
                    s->have_long = 1;
                s->collecting = 0;
            }
            continue;
        }
        size_t t = 512 - s->hdr_len < n ? 512 - s->hdr_len : n;
        memcpy(s->hdr + s->hdr_len, p, t);
        s->hdr_len += t;
        p += t;
        n -= t;
        if (s->hdr_len < 512) break;
        s->hdr_len = 0;
        int zero = 1;
        for (int i = 0; i < 512 && zero; i++) zero = !s->hdr[i];
        if (zero) continue; /* end-of-archive blocks */
        int ok = 1;
        unsigned long long size = octal(s->hdr + 124, 12, &ok);
        if (!ok || size > (1ull << 40))
            return pt_seterr(err, PT_ERR_FORMAT, "%s: not a tar archive (bad member size)",
                             s->what);
        char type = (char)s->hdr[156];
        unsigned long long padded = (size + 511) / 512 * 512;
        if (type == 'L' || type == 'x') {
            s->collecting = type;
            s->longname_len = 0;
            s->skip = padded;
            if (!padded) s->collecting = 0;
            continue;
        }
        if (type == 'g') { /* global pax header: no member */
            s->skip = padded;
            continue;
        }
        char name[NAME_MAX_LEN + 256];
        if (s->have_long) {
            snprintf(name, sizeof name, "%s", s->longname);
            s->have_long = 0;
        } else {
            char pre[156], nm[101];
            memcpy(pre, s->hdr + 345, 155);
            pre[155] = 0;
            memcpy(nm, s->hdr, 100);
            nm[100] = 0;
            if (!memcmp(s->hdr + 257, "ustar", 5) && pre[0])
                snprintf(name, sizeof name, "%s/%s", pre, nm);
            else
                snprintf(name, sizeof name, "%s", nm);
        }
        check_member(s, name);
        /* only regular files (and old-style '\0') carry data */
        s->skip = (type == '0' || type == 0 || type == '7') ? padded : 0;
    }
    return PT_OK;
}

static int feed(scan *s, const unsigned char *p, size_t n, char *err)
{
    scan_bytes(s, p, n);
    return s->tar ? tar_bytes(s, p, n, err) : PT_OK;
}

int pl_check_artifact(const char *path, const char *what, const pl_creds *c, int tarball,
                      char *err)
{
    scan s;
    memset(&s, 0, sizeof s);
    s.what = what;
    s.tar = tarball;
    const char *nd[2] = {c && c->secret_key[0] ? c->secret_key : NULL,
                         c && c->token[0] ? c->token : NULL};
    for (int i = 0; i < 2; i++) {
        s.needle[i] = nd[i];
        s.nlen[i] = nd[i] ? strlen(nd[i]) : 0;
        if (s.nlen[i] > s.keep + 1) s.keep = s.nlen[i] - 1;
    }
    s.win = malloc(CHUNK + s.keep + 1);
    unsigned char *in = malloc(CHUNK), *out = malloc(CHUNK);
    char e2[PT_ERRLEN];
    FILE *f = pt_fopen_read(path, e2);
    int rc = PT_OK;
    if (!s.win || !in || !out) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!f) {
        rc = pt_seterr(err, PT_ERR_IO, "cannot open %s", e2);
        goto done;
    }
    size_t n = fread(in, 1, CHUNK, f);
    int gz = n >= 2 && in[0] == 0x1f && in[1] == 0x8b;
    if (tarball && !gz) {
        rc = pt_seterr(err, PT_ERR_FORMAT, "%s (%s) is not a .tar.gz", what, path);
        goto done;
    }
    if (!gz) {
        while (n && !rc) {
            rc = feed(&s, in, n, err);
            n = fread(in, 1, CHUNK, f);
        }
    } else {
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit2(&z, 15 + 32) != Z_OK) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "zlib init failed");
            goto done;
        }
        int zr = Z_OK;
        while (!rc && n) {
            z.next_in = in;
            z.avail_in = (uInt)n;
            while (!rc && z.avail_in) {
                z.next_out = out;
                z.avail_out = CHUNK;
                zr = inflate(&z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END) { /* concatenated members are valid gzip */
                    rc = feed(&s, out, CHUNK - z.avail_out, err);
                    if (inflateReset(&z) != Z_OK) zr = Z_DATA_ERROR;
                    else continue;
                }
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                    rc = pt_seterr(err, PT_ERR_FORMAT, "%s (%s): corrupt gzip data", what, path);
                    break;
                }
                if (!rc) rc = feed(&s, out, CHUNK - z.avail_out, err);
                if (zr == Z_BUF_ERROR && !z.avail_in) break;
            }
            if (!rc) n = fread(in, 1, CHUNK, f);
        }
        inflateEnd(&z);
    }
    if (!rc && ferror(f)) rc = pt_seterr(err, PT_ERR_IO, "cannot read %s", path);
    if (rc) goto done;
    if (s.bad_member)
        rc = pt_seterr(err, PT_ERR_INVAL,
                       "%s (%s) holds '%s', which looks like a credential file: refusing to "
                       "upload it ('make dist' packs only the files git tracks; remove it "
                       "from what you pack)",
                       what, path, s.member);
    else if (s.found)
        rc = pt_seterr(err, PT_ERR_INVAL,
                       "%s (%s) contains your AWS %s: refusing to upload it (remove the "
                       "file that holds it from what is packed)",
                       what, path, s.found == 1 ? "secret access key" : "session token");
    else if (tarball && !s.members)
        rc = pt_seterr(err, PT_ERR_FORMAT, "%s (%s) is an empty archive", what, path);
done:
    if (f) fclose(f);
    if (s.win) explicit_bzero(s.win, CHUNK + s.keep + 1);
    free(s.win);
    free(in);
    free(out);
    return rc;
}
