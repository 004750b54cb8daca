/* s3.c - S3 REST calls (path-style addressing). */
#include "aws_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_bucket(const char *b, char *err)
{
    size_t l = b ? strlen(b) : 0;
    if (l < 3 || l > 63) return pt_seterr(err, PT_ERR_INVAL, "bucket name must be 3..63 chars");
    for (size_t i = 0; i < l; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return pt_seterr(err, PT_ERR_INVAL, "bucket name '%s': only a-z 0-9 . - allowed", b);
    }
    if (b[0] == '-' || b[0] == '.' || b[l - 1] == '-' || b[l - 1] == '.')
        return pt_seterr(err, PT_ERR_INVAL, "bucket name '%s' must start and end with a letter "
                                            "or digit", b);
    return PT_OK;
}

static int check_key(const char *k, char *err)
{
    size_t l = k ? strlen(k) : 0;
    if (!l || l > 1024) return pt_seterr(err, PT_ERR_INVAL, "object key must be 1..1024 bytes");
    return PT_OK;
}

static void strip_quotes(const char *in, char out[80])
{
    size_t l = strlen(in);
    if (l >= 2 && in[0] == '"' && in[l - 1] == '"') {
        in++;
        l -= 2;
    }
    if (l >= 80) l = 79;
    memcpy(out, in, l);
    out[l] = 0;
}

int pl_s3_create_bucket(pl_aws *a, const char *bucket, char *err)
{
    int rc = check_bucket(bucket, err);
    if (rc) return rc;
    pl_str body = {0};
    const char *region = pl_aws_region(a);
    if (strcmp(region, "us-east-1") &&
        pl_str_addf(&body,
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                    region))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    pl_call c = {.svc = PL_S3, .method = "PUT", .bucket = bucket, .body = body.data,
                 .body_len = body.len};
    pl_resp r = {0};
    pl_awserr ae;
    rc = pl_aws_call(a, &c, &r, &ae, err);
    if (rc == PT_ERR_AWS && !strcmp(ae.code, "BucketAlreadyOwnedByYou")) rc = PT_OK;
    pl_resp_free(&r);
    pl_str_free(&body);
    return rc;
}

int pl_s3_delete_bucket(pl_aws *a, const char *bucket, char *err)
{
    int rc = check_bucket(bucket, err);
    if (rc) return rc;
    pl_call c = {.svc = PL_S3, .method = "DELETE", .bucket = bucket};
    pl_resp r = {0};
    pl_awserr ae;
    rc = pl_aws_call(a, &c, &r, &ae, err);
    if (rc == PT_ERR_NOTFOUND && !strcmp(ae.code, "NoSuchBucket")) rc = PT_OK;
    pl_resp_free(&r);
    return rc;
}

int pl_s3_put(pl_aws *a, const char *bucket, const char *key, const void *data, size_t n,
              const char *content_type, char etag_out[80], char *err)
{
    int rc = check_bucket(bucket, err);
    if (!rc) rc = check_key(key, err);
    if (rc) return rc;
    char md5hex[33], md5b64[25];
    pl_md5(data ? data : "", n, md5hex, md5b64);
    pl_call c = {.svc = PL_S3, .method = "PUT", .bucket = bucket, .key = key, .body = data,
                 .body_len = n};
    c.headers[c.n_headers++] = (pl_header){"Content-MD5", md5b64};
    c.headers[c.n_headers++] =
        (pl_header){"Content-Type", content_type ? content_type : "application/octet-stream"};
    pl_resp r = {0};
    rc = pl_aws_call(a, &c, &r, NULL, err);
    if (!rc) {
        char et[80];
        strip_quotes(r.etag, et);
        /* single-part uploads without KMS: ETag is the MD5 */
        if (et[0] && strcmp(et, md5hex))
            rc = pt_seterr(err, PT_ERR_MISMATCH, "S3 PUT %s: ETag %s does not match MD5 %s", key,
                           et, md5hex);
        if (etag_out) snprintf(etag_out, 80, "%s", et);
    }
    pl_resp_free(&r);
    return rc;
}

int pl_s3_get(pl_aws *a, const char *bucket, const char *key, size_t max, pl_str *out,
              char etag_out[80], char *err)
{
    int rc = check_bucket(bucket, err);
    if (!rc) rc = check_key(key, err);
    if (rc) return rc;
    pl_call c = {.svc = PL_S3, .method = "GET", .bucket = bucket, .key = key, .max_resp = max};
    pl_resp r = {0};
    rc = pl_aws_call(a, &c, &r, NULL, err);
    if (!rc) {
        if (r.content_length >= 0 && (size_t)r.content_length != r.body.len)
            rc = pt_seterr(err, PT_ERR_IO, "S3 GET %s: got %zu bytes, Content-Length %lld", key,
                           r.body.len, r.content_length);
        else if (pl_str_add(out, r.body.data ? r.body.data : "", r.body.len))
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        if (etag_out) strip_quotes(r.etag, etag_out);
    }
    pl_resp_free(&r);
    return rc;
}

int pl_s3_head(pl_aws *a, const char *bucket, const char *key, long long *size,
               char etag_out[80], char *err)
{
    int rc = check_bucket(bucket, err);
    if (!rc) rc = check_key(key, err);
    if (rc) return rc;
    pl_call c = {.svc = PL_S3, .method = "HEAD", .bucket = bucket, .key = key};
    pl_resp r = {0};
    rc = pl_aws_call(a, &c, &r, NULL, err);
    if (!rc) {
        if (size) *size = r.content_length;
        if (etag_out) strip_quotes(r.etag, etag_out);
    }
    pl_resp_free(&r);
    return rc;
}

/* FNV-1a 64 of a continuation token (only compared with earlier ones). */
static uint64_t token_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int pl_s3_list(pl_aws *a, const char *bucket, const char *prefix, int max_keys,
               pl_s3_object **objs, size_t *n, char *err)
{
    *objs = NULL;
    *n = 0;
    int rc = check_bucket(bucket, err);
    if (rc) return rc;
    if (max_keys <= 0 || max_keys > 1000) max_keys = 1000;
    char token[1024] = "";
    size_t cap = 0;
    uint64_t *seen = NULL; /* hashes of the continuation tokens received */
    size_t n_seen = 0, cap_seen = 0;
    for (int page = 0;; page++) {
        pl_str q = {0};
        if (page >= PL_S3_LIST_MAX_PAGES) {
            rc = pt_seterr(err, PT_ERR_RANGE, "S3 list %s: more than %d pages (%zu objects): "
                           "giving up", bucket, PL_S3_LIST_MAX_PAGES, *n);
            goto fail;
        }
        rc = PT_ERR_NOMEM;
        if (token[0]) {
            if (pl_str_adds(&q, "continuation-token=") ||
                pl_uri_encode(&q, token, strlen(token), 0) || pl_str_adds(&q, "&"))
                goto fail;
        }
        if (pl_str_addf(&q, "list-type=2&max-keys=%d", max_keys)) goto fail;
        if (prefix && prefix[0]) {
            if (pl_str_adds(&q, "&prefix=") || pl_uri_encode(&q, prefix, strlen(prefix), 0))
                goto fail;
        }
        pl_call c = {.svc = PL_S3, .method = "GET", .bucket = bucket, .query = q.data};
        pl_resp r = {0};
        pl_xml *doc = NULL;
        rc = pl_aws_call(a, &c, &r, NULL, err);
        if (!rc) {
            char perr[PT_ERRLEN];
            rc = pl_xml_parse(r.body.data, r.body.len, &doc, perr);
            if (rc) pt_seterr(err, rc, "S3 list %s: bad reply: %s", bucket, perr);
        }
        pl_resp_free(&r);
        pl_str_free(&q);
        if (rc) goto fail;
        if (strcmp(doc->name, "ListBucketResult")) {
            /* the message quotes doc->name: set it before the free */
            rc = pt_seterr(err, PT_ERR_PROTO, "S3 list %s: unexpected <%.64s>", bucket,
                           doc->name);
            pl_xml_free(doc);
            goto fail;
        }
        for (const pl_xml *e = pl_xml_child(doc, "Contents"); e; e = pl_xml_next(e, "Contents")) {
            if (*n == cap) {
                size_t nc = cap ? 2 * cap : 64;
                pl_s3_object *no = realloc(*objs, nc * sizeof *no);
                if (!no) {
                    pl_xml_free(doc);
                    rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                *objs = no;
                cap = nc;
            }
            pl_s3_object *o = &(*objs)[*n];
            memset(o, 0, sizeof *o);
            const char *sz = pl_xml_text(e, "Size"), *et = pl_xml_text(e, "ETag");
            char *end = NULL;
            rc = pl_xml_copy(e, "Key", o->key, sizeof o->key, err);
            if (!rc && (!sz || (o->size = strtoll(sz, &end, 10)) < 0 || !end || *end || end == sz))
                rc = pt_seterr(err, PT_ERR_PROTO, "S3 list %s: bad <Size> for %s", bucket, o->key);
            if (rc) {
                pl_xml_free(doc);
                goto fail;
            }
            strip_quotes(et ? et : "", o->etag);
            (*n)++;
        }
        const char *trunc = pl_xml_text(doc, "IsTruncated");
        int more = trunc && !strcmp(trunc, "true");
        token[0] = 0;
        if (more) {
            rc = pl_xml_copy(doc, "NextContinuationToken", token, sizeof token, err);
            if (rc || !token[0]) {
                pl_xml_free(doc);
                rc = pt_seterr(err, PT_ERR_PROTO, "S3 list %s: truncated without a token", bucket);
                goto fail;
            }
            /* an endpoint that keeps handing out the same token would make
             * this loop forever: refuse any token seen before */
            uint64_t h = token_hash(token);
            for (size_t i = 0; i < n_seen; i++)
                if (seen[i] == h) {
                    pl_xml_free(doc);
                    rc = pt_seterr(err, PT_ERR_PROTO, "S3 list %s: the endpoint repeated a "
                                   "continuation token (page %d): listing never ends", bucket,
                                   page + 1);
                    goto fail;
                }
            if (n_seen == cap_seen) {
                size_t nc = cap_seen ? 2 * cap_seen : 16;
                uint64_t *ns = realloc(seen, nc * sizeof *ns);
                if (!ns) {
                    pl_xml_free(doc);
                    rc = PT_ERR_NOMEM;
                    goto fail;
                }
                seen = ns;
                cap_seen = nc;
            }
            seen[n_seen++] = h;
        }
        pl_xml_free(doc);
        if (!more) {
            free(seen);
            return PT_OK;
        }
        continue;
    fail:
        pl_str_free(&q);
        free(seen);
        free(*objs);
        *objs = NULL;
        *n = 0;
        if (rc == PT_ERR_NOMEM) pt_seterr(err, rc, "out of memory");
        return rc;
    }
}

int pl_s3_delete(pl_aws *a, const char *bucket, const char *key, char *err)
{
    int rc = check_bucket(bucket, err);
    if (!rc) rc = check_key(key, err);
    if (rc) return rc;
    pl_call c = {.svc = PL_S3, .method = "DELETE", .bucket = bucket, .key = key};
    pl_resp r = {0};
    rc = pl_aws_call(a, &c, &r, NULL, err);
    if (rc == PT_ERR_NOTFOUND) rc = PT_OK;
    pl_resp_free(&r);
    return rc;
}

/* DeleteObjects for up to 1000 keys; checks per-key errors. */
static int delete_batch(pl_aws *a, const char *bucket, const pl_s3_object *o, size_t n, char *err)
{
    pl_str body = {0};
    int rc = pl_str_adds(&body, "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                "<Quiet>true</Quiet>");
    for (size_t i = 0; i < n && !rc; i++) {
        rc = pl_str_adds(&body, "<Object><Key>");
        if (!rc) rc = pl_xml_escape(&body, o[i].key);
        if (!rc) rc = pl_str_adds(&body, "</Key></Object>");
    }
    if (!rc) rc = pl_str_adds(&body, "</Delete>");
    if (rc) {
        pl_str_free(&body);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
    char md5b64[25];
    pl_md5(body.data, body.len, NULL, md5b64);
    pl_call c = {.svc = PL_S3, .method = "POST", .bucket = bucket, .query = "delete",
                 .body = body.data, .body_len = body.len};
    c.headers[c.n_headers++] = (pl_header){"Content-MD5", md5b64};
    c.headers[c.n_headers++] = (pl_header){"Content-Type", "application/xml"};
    pl_resp r = {0};
    rc = pl_aws_call(a, &c, &r, NULL, err);
    if (!rc && r.body.len) {
        pl_xml *doc = NULL;
        char perr[PT_ERRLEN];
        rc = pl_xml_parse(r.body.data, r.body.len, &doc, perr);
        if (rc) {
            pt_seterr(err, rc, "S3 DeleteObjects: bad reply: %s", perr);
        } else {
            const pl_xml *e = pl_xml_child(doc, "Error");
            if (e)
                rc = pt_seterr(err, PT_ERR_AWS, "S3 DeleteObjects %s: %s: %s", 
                               pl_xml_text(e, "Key") ? pl_xml_text(e, "Key") : "?",
                               pl_xml_text(e, "Code") ? pl_xml_text(e, "Code") : "?",
                               pl_xml_text(e, "Message") ? pl_xml_text(e, "Message") : "");
        }
        pl_xml_free(doc);
    }
    pl_resp_free(&r);
    pl_str_free(&body);
    return rc;
}

int pl_s3_delete_prefix(pl_aws *a, const char *bucket, const char *prefix, size_t *deleted,
                        char *err)
{
    if (deleted) *deleted = 0;
    if (!prefix || !prefix[0])
        return pt_seterr(err, PT_ERR_INVAL, "S3 delete: an empty prefix would mean everything");
    pl_s3_object *objs = NULL;
    size_t n = 0;
    int rc = pl_s3_list(a, bucket, prefix, 1000, &objs, &n, err);
    for (size_t i = 0; i < n && !rc; i += 1000)
        rc = delete_batch(a, bucket, objs + i, n - i > 1000 ? 1000 : n - i, err);
    free(objs);
    if (!rc && deleted) *deleted = n;
    return rc;
}

int pl_s3_empty_and_delete_bucket(pl_aws *a, const char *bucket, size_t *deleted, char *err)
{
    if (deleted) *deleted = 0;
    for (int round = 0; round < 10; round++) {
        pl_s3_object *objs = NULL;
        size_t n = 0;
        int rc = pl_s3_list(a, bucket, NULL, 1000, &objs, &n, err);
        if (rc == PT_ERR_NOTFOUND) return PT_OK; /* no bucket */
        if (rc) return rc;
        for (size_t i = 0; i < n && !rc; i += 1000)
            rc = delete_batch(a, bucket, objs + i, n - i > 1000 ? 1000 : n - i, err);
        free(objs);
        if (rc) return rc;
        if (deleted) *deleted += n;
        if (!n) break;
    }
    return pl_s3_delete_bucket(a, bucket, err);
}
