/* creds.c - AWS credentials and region: environment, .env, ~/.aws files. */
#include "plaunch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct kv {
    char *key;   /* one allocation: key, NUL, value, NUL */
    char *value;
} kv;

static void trim(char *s)
{
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r' || s[l - 1] == '\n'))
        s[--l] = 0;
    size_t i = 0;
    while (s[i] == ' ' || s[i] == '\t') i++;
    if (i) memmove(s, s + i, l - i + 1);
}

static int set_field(char *dst, size_t cap, const char *v, const char *what, const char *src,
                     char *err)
{
    size_t l = strlen(v);
    if (l >= cap)
        return pt_seterr(err, PT_ERR_FORMAT, "%s in %s is too long (%zu bytes)", what, src, l);
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return pt_seterr(err, PT_ERR_FORMAT, "%s in %s contains a non-printable character",
                             what, src);
    memcpy(dst, v, l + 1);
    return PT_OK;
}

/* lookup function over one source */
typedef const char *(*getter)(void *ud, const char *name);

static const char *env_get(void *ud, const char *name)
{
    (void)ud;
    const char *v = getenv(name);
    return (v && v[0]) ? v : NULL;
}

typedef struct kvlist {
    kv *e;
    size_t n;
} kvlist;

static const char *kv_get(void *ud, const char *name)
{
    kvlist *l = ud;
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->e[i].key, name) && l->e[i].value[0]) return l->e[i].value;
    return NULL;
}

/* Append k=v to out, whatever their lengths: a value too long for its field
 * is refused with its name when it is used (set_field), never dropped here.
 * Returns -1 when out of memory. */
static int kv_append(kvlist *out, const char *k, const char *v)
{
    size_t kl = strlen(k), vl = strlen(v);
    kv *ne = realloc(out->e, (out->n + 1) * sizeof *ne);
    if (!ne) return -1;
    out->e = ne;
    char *b = malloc(kl + vl + 2);
    if (!b) return -1;
    memcpy(b, k, kl + 1);
    memcpy(b + kl + 1, v, vl + 1);
    ne[out->n].key = b;
    ne[out->n].value = b + kl + 1;
    out->n++;
    return 0;
}

/* Wipe (they hold secrets) and free. */
static void kv_free(kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        explicit_bzero(l->e[i].key, strlen(l->e[i].key) + strlen(l->e[i].value) + 2);
        free(l->e[i].key);
    }
    free(l->e);
    l->e = NULL;
    l->n = 0;
}

/* Read a .env file (KEY=value, optional "export ", quotes). PT_ERR_NOTFOUND if absent. */
static int read_env_file(const char *path, kvlist *out, char *err)
{
    char e2[PT_ERRLEN];
    int fd = pt_open_read(path, e2); /* a FIFO is refused, never waited on */
    if (fd == PT_ERR_NOTFOUND) return PT_ERR_NOTFOUND;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return pt_seterr(err, PT_ERR_IO, "cannot read %s", e2);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = PT_OK, lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len > PL_TOKEN_MAX + 64) {
            rc = pt_seterr(err, PT_ERR_FORMAT, "%s:%d: line too long", path, lineno);
            break;
        }
        trim(line);
        char *p = line;
        if (!*p || *p == '#') continue;
        if (!strncmp(p, "export ", 7)) p += 7;
        char *eq = strchr(p, '=');
        if (!eq) continue; /* not an assignment: ignore like shells do */
        *eq = 0;
        char *k = p, *v = eq + 1;
        trim(k);
        trim(v);
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = 0;
            v++;
        }
        if (kv_append(out, k, v)) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* Read section [want] (or [profile want] when alt) of an ini file. */
static int read_ini(const char *path, const char *want, int config, kvlist *out, char *err)
{
    char e2[PT_ERRLEN];
    int fd = pt_open_read(path, e2); /* a FIFO is refused, never waited on */
    if (fd == PT_ERR_NOTFOUND) return PT_ERR_NOTFOUND;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return pt_seterr(err, PT_ERR_IO, "cannot read %s", e2);
    }
    char *line = NULL;
    size_t cap = 0;
    int in = 0, rc = PT_ERR_NOTFOUND, lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        trim(line);
        if (!line[0] || line[0] == '#' || line[0] == ';') continue;
        if (line[0] == '[') {
            char *e = strchr(line, ']');
            if (!e) {
                rc = pt_seterr(err, PT_ERR_FORMAT, "%s:%d: bad section header", path, lineno);
                break;
            }
            *e = 0;
            char *name = line + 1;
            trim(name);
            if (config && strcmp(name, "default")) {
                if (strncmp(name, "profile ", 8)) {
                    in = 0;
                    continue;
                }
                name += 8;
                trim(name);
            }
            in = !strcmp(name, want);
            if (in && rc == PT_ERR_NOTFOUND) rc = PT_OK;
            continue;
        }
        if (!in) continue;
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        char *k = line, *v = eq + 1;
        trim(k);
        trim(v);
        if (kv_append(out, k, v)) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* Try one source: key names ak/sk/tok (or the AWS_LAB_ alternatives). */
static int take(pl_creds *c, getter g, void *ud, const char *const *names, const char *src,
                char *err)
{
    for (int alt = 0; names[alt * 3]; alt++) {
        const char *ak = g(ud, names[alt * 3]), *sk = g(ud, names[alt * 3 + 1]);
        const char *tok = g(ud, names[alt * 3 + 2]);
        if (!ak && !sk) continue;
        if (!ak || !sk)
            return pt_seterr(err, PT_ERR_AUTH, "%s sets %s but not %s", src,
                             ak ? names[alt * 3] : names[alt * 3 + 1],
                             ak ? names[alt * 3 + 1] : names[alt * 3]);
        int rc = set_field(c->access_key, sizeof c->access_key, ak, names[alt * 3], src, err);
        if (!rc) rc = set_field(c->secret_key, sizeof c->secret_key, sk, "the secret key", src, err);
        if (!rc && tok) rc = set_field(c->token, sizeof c->token, tok, "the session token", src, err);
        if (rc) return rc;
        snprintf(c->source, sizeof c->source, "%s", src);
        return 1;
    }
    return 0;
}

/* The first region named in one source; a bad one is an error, not skipped. */
static int take_region(pl_creds *c, getter g, void *ud, const char *const *names,
                       const char *src, char *err)
{
    if (c->region[0]) return PT_OK;
    for (; *names; names++) {
        const char *r = g(ud, *names);
        if (r) return set_field(c->region, sizeof c->region, r, *names, src, err);
    }
    return PT_OK;
}

int pl_creds_load(pl_creds *c, const pl_creds_opts *o, char *err)
{
    static const char *const env_names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_SESSION_TOKEN", "AWS_LAB_ACCESS_KEY_ID",
                                            "AWS_LAB_SECRET_ACCESS_KEY", "AWS_LAB_SESSION_TOKEN",
                                            NULL};
    static const char *const ini_names[] = {"aws_access_key_id", "aws_secret_access_key",
                                            "aws_session_token", NULL};
    static const char *const region_env[] = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAB_REGION",
                                             NULL};
    static const char *const region_ini[] = {"region", NULL};
    pl_creds_opts dflt = {0};
    if (!o) o = &dflt;
    memset(c, 0, sizeof *c);
    int rc, found = 0;
    kvlist envf = {0}, cred = {0}, conf = {0};
    const char *profile = o->profile;
    if (!profile && !o->no_environment) profile = getenv("AWS_PROFILE");
    if (!profile || !profile[0]) profile = "default";
    const char *home = o->home ? o->home : (o->no_environment ? NULL : getenv("HOME"));
    char path_env[1024], path_cred[1024], path_conf[1024];
    const char *envfile = o->env_file ? o->env_file : ".env";
    snprintf(path_env, sizeof path_env, "%s", envfile);
    path_cred[0] = path_conf[0] = 0;
    if (home && home[0]) {
        const char *cf = o->no_environment ? NULL : getenv("AWS_SHARED_CREDENTIALS_FILE");
        const char *gf = o->no_environment ? NULL : getenv("AWS_CONFIG_FILE");
        snprintf(path_cred, sizeof path_cred, "%s", cf ? cf : "");
        snprintf(path_conf, sizeof path_conf, "%s", gf ? gf : "");
        if (!cf) snprintf(path_cred, sizeof path_cred, "%s/.aws/credentials", home);
        if (!gf) snprintf(path_conf, sizeof path_conf, "%s/.aws/config", home);
    }
    /* 1. environment */
    if (!o->no_environment) {
        rc = take(c, env_get, NULL, env_names, "the environment", err);
        if (rc < 0) goto done;
        found = rc;
        if ((rc = take_region(c, env_get, NULL, region_env, "the environment", err))) goto done;
    }
    /* 2. .env */
    if (envfile[0]) {
        rc = read_env_file(path_env, &envf, err);
        if (rc && rc != PT_ERR_NOTFOUND) goto done;
        if (!rc) {
            char src[160];
            snprintf(src, sizeof src, "%.150s", path_env);
            if (!found) {
                rc = take(c, kv_get, &envf, env_names, src, err);
                if (rc < 0) goto done;
                found = rc;
            }
            if ((rc = take_region(c, kv_get, &envf, region_env, src, err))) goto done;
        }
    }
    /* 3. profile files */
    if (path_cred[0]) {
        rc = read_ini(path_cred, profile, 0, &cred, err);
        if (rc && rc != PT_ERR_NOTFOUND) goto done;
        if (!found && !rc) {
            char src[160];
            snprintf(src, sizeof src, "profile '%s' in %.100s", profile, path_cred);
            rc = take(c, kv_get, &cred, ini_names, src, err);
            if (rc < 0) goto done;
            found = rc;
        }
        rc = read_ini(path_conf, profile, 1, &conf, err);
        if (rc && rc != PT_ERR_NOTFOUND) goto done;
        if (!found && !rc) {
            char src[160];
            snprintf(src, sizeof src, "profile '%s' in %.100s", profile, path_conf);
            rc = take(c, kv_get, &conf, ini_names, src, err);
            if (rc < 0) goto done;
            found = rc;
        }
        if ((rc = take_region(c, kv_get, &cred, region_ini, path_cred, err)) ||
            (rc = take_region(c, kv_get, &conf, region_ini, path_conf, err)))
            goto done;
    }
    if (!found) {
        rc = pt_seterr(err, PT_ERR_AUTH,
                       "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                       "(and AWS_SESSION_TOKEN), put them in %s, or in profile '%s' of "
                       "~/.aws/credentials",
                       envfile[0] ? envfile : ".env", profile);
        goto done;
    }
    rc = PT_OK;
done:
    kv_free(&envf);
    kv_free(&cred);
    kv_free(&conf);
    if (rc) pl_creds_wipe(c);
    return rc;
}

void pl_creds_wipe(pl_creds *c)
{
    if (!c) return;
    volatile char *p = (volatile char *)c;
    for (size_t i = 0; i < sizeof *c; i++) p[i] = 0;
}
