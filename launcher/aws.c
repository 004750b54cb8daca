/* aws.c - AWS client: endpoints, signing, libcurl transport with size caps,
 * retries with exponential backoff and jitter, error parsing. */
#include "aws_int.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct pl_aws {
    pl_creds creds;
    char region[32];
    char endpoint[PL_NSERVICES][256]; /* scheme://host[:port] */
    char host[PL_NSERVICES][256];     /* host[:port] as sent */
    int max_attempts;
    double backoff_base, backoff_cap;
    size_t max_response;
    long timeout_s;
    size_t timeout_body;
    long low_speed_s;
    volatile int *stop;
    int (*refresh)(pl_creds *fresh, const pl_creds *rejected, void *ud);
    void *refresh_ud;
    time_t fixed_clock;
    unsigned long requests;
    uint64_t rng;
    pl_capture_fn capture;
    void *capture_ud;
    CURL *curl;
};

static const char *const svc_id[PL_NSERVICES] = {"ec2", "s3", "ssm", "sts"};
static const char *const svc_label[PL_NSERVICES] = {"EC2", "S3", "SSM", "STS"};

const char *pl_service_name(pl_service s)
{
    return (s >= 0 && s < PL_NSERVICES) ? svc_label[s] : "?";
}

/* "scheme://host[:port][/]" -> endpoint (no trailing slash) and Host value */
static int parse_endpoint(const char *url, char ep[256], char host[256], char *err)
{
    const char *p = strstr(url, "://");
    if (!p || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
        return pt_seterr(err, PT_ERR_INVAL, "endpoint '%s' must start with http:// or https://",
                         url);
    int https = url[4] == 's';
    p += 3;
    size_t hl = strcspn(p, "/?#");
    if (!hl || hl >= 200) return pt_seterr(err, PT_ERR_INVAL, "endpoint '%s' has a bad host", url);
    if (p[hl] && strcmp(p + hl, "/"))
        return pt_seterr(err, PT_ERR_INVAL, "endpoint '%s' must not have a path", url);
    for (size_t i = 0; i < hl; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return pt_seterr(err, PT_ERR_INVAL, "endpoint '%s' has a bad host", url);
    }
    char h[256];
    memcpy(h, p, hl);
    h[hl] = 0;
    /* drop a default port: curl sends Host without it */
    size_t l = strlen(h);
    if (!https && l > 3 && !strcmp(h + l - 3, ":80")) h[l - 3] = 0;
    if (https && l > 4 && !strcmp(h + l - 4, ":443")) h[l - 4] = 0;
    snprintf(ep, 256, "%s://%s", https ? "https" : "http", h);
    snprintf(host, 256, "%s", h);
    return PT_OK;
}

int pl_aws_new(pl_aws **out, const pl_creds *c, const pl_aws_opts *o, char *err)
{
    *out = NULL;
    if (!c || !o || !o->region || !o->region[0])
        return pt_seterr(err, PT_ERR_INVAL, "AWS client: region is required");
    for (const char *r = o->region; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return pt_seterr(err, PT_ERR_INVAL, "bad region name '%s'", o->region);
    if (strlen(o->region) >= 32) return pt_seterr(err, PT_ERR_INVAL, "region name too long");
    pl_aws *a = calloc(1, sizeof *a);
    if (!a) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    a->creds = *c;
    snprintf(a->region, sizeof a->region, "%s", o->region);
    for (int s = 0; s < PL_NSERVICES; s++) {
        char def[256];
        const char *ep = o->endpoint[s];
        if (!ep) {
            snprintf(def, sizeof def, "https://%s.%s.amazonaws.com", svc_id[s], a->region);
            ep = def;
        }
        int rc = parse_endpoint(ep, a->endpoint[s], a->host[s], err);
        if (rc) {
            pl_aws_free(a);
            return rc;
        }
    }
    a->max_attempts = o->max_attempts > 0 ? o->max_attempts : 5;
    a->backoff_base = o->backoff_base > 0 ? o->backoff_base : 0.5;
    a->backoff_cap = o->backoff_cap > 0 ? o->backoff_cap : 20;
    a->max_response = o->max_response ? o->max_response : (size_t)16 << 20;
    a->timeout_s = o->timeout_s > 0 ? o->timeout_s : 60;
    a->timeout_body = o->timeout_body ? o->timeout_body : (size_t)1 << 20;
    a->low_speed_s = o->low_speed_s > 0 ? o->low_speed_s : 60;
    a->stop = o->stop;
    a->refresh = o->refresh;
    a->refresh_ud = o->refresh_ud;
    a->rng = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)getpid() ^ 0x9e3779b97f4a7c15ULL;
    a->curl = curl_easy_init();
    if (!a->curl) {
        pl_aws_free(a);
        return pt_seterr(err, PT_ERR_NOMEM, "curl_easy_init failed");
    }
    *out = a;
    return PT_OK;
}

void pl_aws_free(pl_aws *a)
{
    if (!a) return;
    if (a->curl) curl_easy_cleanup(a->curl);
    pl_creds_wipe(&a->creds);
    free(a);
}

const char *pl_aws_endpoint(const pl_aws *a, pl_service svc)
{
    return a->endpoint[svc];
}

const char *pl_aws_region(const pl_aws *a)
{
    return a->region;
}

unsigned long pl_aws_request_count(const pl_aws *a)
{
    return a->requests;
}

void pl_aws_set_clock(pl_aws *a, time_t fixed)
{
    a->fixed_clock = fixed;
}

void pl_aws_set_capture(pl_aws *a, pl_capture_fn fn, void *ud)
{
    a->capture = fn;
    a->capture_ud = ud;
}

void pl_aws_set_stop(pl_aws *a, volatile int *stop)
{
    a->stop = stop;
}

void pl_resp_free(pl_resp *r)
{
    if (r) pl_str_free(&r->body);
}

void pl_prepared_free(pl_prepared *p)
{
    pl_str_free(&p->url);
    for (size_t i = 0; i < p->n_lines; i++) pl_str_free(&p->header_lines[i]);
    p->n_lines = 0;
    pl_sigv4_out_free(&p->sig);
}

static int add_line(pl_prepared *p, const char *name, const char *value)
{
    if (p->n_lines >= sizeof p->header_lines / sizeof p->header_lines[0]) return PT_ERR_RANGE;
    return pl_str_addf(&p->header_lines[p->n_lines++], "%s: %s", name, value);
}

int pl_aws_prepare(pl_aws *a, const pl_call *c, time_t when, pl_prepared *p, char *err)
{
    if (c->svc < 0 || c->svc >= PL_NSERVICES || !c->method)
        return pt_seterr(err, PT_ERR_INVAL, "bad AWS call");
    if (c->n_headers > PL_MAX_CALL_HEADERS)
        return pt_seterr(err, PT_ERR_INVAL, "too many headers");
    int s3 = c->svc == PL_S3;
    pl_str path = {0};
    int rc = PT_OK;
    if (s3 && c->bucket) {
        rc = pl_str_adds(&path, "/");
        if (!rc) rc = pl_uri_encode(&path, c->bucket, strlen(c->bucket), 0);
        if (!rc && c->key) {
            rc = pl_str_adds(&path, "/");
            if (!rc) rc = pl_uri_encode(&path, c->key, strlen(c->key), 1);
        }
    } else {
        rc = pl_str_adds(&path, "/");
    }
    if (rc) goto nomem;
    if (pl_str_addf(&p->url, "%s%s%s%s", a->endpoint[c->svc], pl_str_c(&path),
                    (c->query && c->query[0]) ? "?" : "", c->query ? c->query : ""))
        goto nomem;
    snprintf(p->host, sizeof p->host, "%s", a->host[c->svc]);
    pl_sigv4_req r = {
        .method = c->method,
        .host = p->host,
        .path = pl_str_c(&path),
        .query = c->query,
        .headers = c->headers,
        .n_headers = c->n_headers,
        .body = c->body,
        .body_len = c->body_len,
        .payload_hash = (s3 && c->unsigned_payload) ? "UNSIGNED-PAYLOAD" : NULL,
        .service = svc_id[c->svc],
        .region = a->region,
        .when = when,
        .s3 = s3,
    };
    rc = pl_sigv4_sign(&r, &a->creds, &p->sig, err);
    pl_str_free(&path);
    if (rc) return rc;
    for (size_t i = 0; i < c->n_headers; i++)
        if (add_line(p, c->headers[i].name, c->headers[i].value)) goto nomem;
    if (add_line(p, "X-Amz-Date", p->sig.amz_date)) goto nomem;
    if (a->creds.token[0] && add_line(p, "X-Amz-Security-Token", a->creds.token)) goto nomem;
    if (s3 && add_line(p, "X-Amz-Content-Sha256", p->sig.payload_hash)) goto nomem;
    if (add_line(p, "Authorization", p->sig.authorization)) goto nomem;
    return PT_OK;
nomem:
    pl_str_free(&path);
    return pt_seterr(err, PT_ERR_NOMEM, "out of memory preparing request");
}

/* ---- transport ---- */
typedef struct sink {
    pl_str *body;
    size_t cap;
    int too_big;
    pl_resp *r;
    char err_type[96];
} sink;

static size_t on_write(char *ptr, size_t sz, size_t nm, void *ud)
{
    sink *s = ud;
    size_t n = sz * nm;
    if (s->body->len + n > s->cap) {
        s->too_big = 1;
        return 0;
    }
    if (pl_str_add(s->body, ptr, n)) return 0;
    return n;
}

static void hdr_value(const char *line, size_t n, char *dst, size_t cap)
{
    const char *colon = memchr(line, ':', n);
    if (!colon) return;
    const char *v = colon + 1;
    const char *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
    size_t l = (size_t)(e - v);
    if (l >= cap) l = cap - 1;
    memcpy(dst, v, l);
    dst[l] = 0;
}

static int hdr_is(const char *line, size_t n, const char *name)
{
    size_t l = strlen(name);
    return n > l && line[l] == ':' && !strncasecmp(line, name, l);
}

static size_t on_header(char *ptr, size_t sz, size_t nm, void *ud)
{
    sink *s = ud;
    size_t n = sz * nm;
    if (hdr_is(ptr, n, "x-amz-request-id") || hdr_is(ptr, n, "x-amzn-requestid"))
        hdr_value(ptr, n, s->r->request_id, sizeof s->r->request_id);
    else if (hdr_is(ptr, n, "etag"))
        hdr_value(ptr, n, s->r->etag, sizeof s->r->etag);
    else if (hdr_is(ptr, n, "x-amzn-errortype"))
        hdr_value(ptr, n, s->err_type, sizeof s->err_type);
    else if (hdr_is(ptr, n, "content-length")) {
        char v[32] = "";
        hdr_value(ptr, n, v, sizeof v);
        char *end;
        long long x = strtoll(v, &end, 10);
        if (end != v && x >= 0) s->r->content_length = x;
    }
    return n;
}

void pl_aws_parse_error(const char *body, size_t n, pl_awserr *ae)
{
    if (!body || !n) return;
    size_t i = 0;
    while (i < n && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) i++;
    if (i < n && body[i] == '<') {
        pl_xml *doc = NULL;
        if (pl_xml_parse(body, n, &doc, NULL)) return;
        const pl_xml *e = pl_xml_find(doc, "Code");
        if (e) snprintf(ae->code, sizeof ae->code, "%s", pl_str_c(&e->text));
        e = pl_xml_find(doc, "Message");
        if (e) snprintf(ae->message, sizeof ae->message, "%s", pl_str_c(&e->text));
        e = pl_xml_find(doc, "RequestId");
        if (!e) e = pl_xml_find(doc, "RequestID");
        if (e) snprintf(ae->request_id, sizeof ae->request_id, "%s", pl_str_c(&e->text));
        pl_xml_free(doc);
    } else if (i < n && body[i] == '{') {
        cJSON *j = pt_json_parse(body, n, NULL);
        if (!j) return;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "__type");
        if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(j, "code");
        if (cJSON_IsString(t)) {
            const char *v = strrchr(t->valuestring, '#');
            snprintf(ae->code, sizeof ae->code, "%s", v ? v + 1 : t->valuestring);
        }
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (!cJSON_IsString(m)) m = cJSON_GetObjectItemCaseSensitive(j, "Message");
        if (cJSON_IsString(m)) snprintf(ae->message, sizeof ae->message, "%s", m->valuestring);
        cJSON_Delete(j);
    }
}

static const char *const throttle_codes[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "EC2ThrottledException",
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "InternalError",
    "ServiceUnavailable", "InsufficientInstanceCapacity", NULL};

static const char *const auth_codes[] = {
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "AuthFailure",
    "RequestExpired", "SignatureDoesNotMatch", "InvalidAccessKeyId", "UnrecognizedClientException",
    "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
    "InvalidToken", "TokenRefreshRequired", "RequestTimeTooSkewed", NULL};

static int in_list(const char *code, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(code, *list)) return 1;
    return 0;
}

static double rnd01(pl_aws *a)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    return (double)(a->rng >> 11) / 9007199254740992.0;
}

/* The caller's refresh hook found credentials other than the rejected ones:
 * use them from now on. 1 when they changed. */
static int refresh_creds(pl_aws *a)
{
    if (!a->refresh) return 0;
    pl_creds fresh;
    memset(&fresh, 0, sizeof fresh);
    int ok = a->refresh(&fresh, &a->creds, a->refresh_ud) == PT_OK;
    if (ok) {
        pl_creds_wipe(&a->creds);
        a->creds = fresh;
    }
    pl_creds_wipe(&fresh);
    return ok;
}

static const char *op_name(const pl_call *c, char *buf, size_t cap)
{
    if (c->svc == PL_EC2 || c->svc == PL_STS) {
        /* Action=... at the start of the form body */
        const char *b = c->body;
        if (b && c->body_len > 7 && !strncmp(b, "Action=", 7)) {
            size_t l = strcspn(b + 7, "&");
            if (l >= cap) l = cap - 1;
            memcpy(buf, b + 7, l);
            buf[l] = 0;
            return buf;
        }
    }
    for (size_t i = 0; i < c->n_headers; i++)
        if (!strcasecmp(c->headers[i].name, "x-amz-target")) {
            const char *d = strrchr(c->headers[i].value, '.');
            snprintf(buf, cap, "%s", d ? d + 1 : c->headers[i].value);
            return buf;
        }
    snprintf(buf, cap, "%s %s%s%s", c->method, c->bucket ? c->bucket : "/", c->key ? "/" : "",
             c->key ? c->key : "");
    return buf;
}

static int transport(pl_aws *a, const pl_call *c, pl_resp *r, sink *sk, char *cerr, char *err)
{
    pl_prepared p;
    memset(&p, 0, sizeof p);
    time_t now = a->fixed_clock ? a->fixed_clock : time(NULL);
    int rc = pl_aws_prepare(a, c, now, &p, err);
    if (rc) return rc;
    struct curl_slist *hl = NULL, *t;
    for (size_t i = 0; i < p.n_lines; i++) {
        t = curl_slist_append(hl, pl_str_c(&p.header_lines[i]));
        if (!t) goto nomem;
        hl = t;
    }
    int has_ct = 0;
    for (size_t i = 0; i < c->n_headers; i++)
        if (!strcasecmp(c->headers[i].name, "content-type")) has_ct = 1;
    const char *extra[] = {"Expect:", "Accept:", has_ct ? NULL : "Content-Type: application/octet-stream"};
    for (size_t i = 0; i < 3; i++) {
        if (!extra[i]) continue;
        if (i == 2 && !c->body_len && strcmp(c->method, "PUT")) continue;
        t = curl_slist_append(hl, extra[i]);
        if (!t) goto nomem;
        hl = t;
    }
    CURL *h = a->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, pl_str_c(&p.url));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* small calls get a whole-transfer limit; uploads and object downloads
     * (up to 512 MiB) only a low-speed limit, so a slow link still finishes
     * and a stalled one fails */
    int bulk = c->body_len > a->timeout_body ||
               (c->svc == PL_S3 && c->key && !strcmp(c->method, "GET"));
    curl_easy_setopt(h, CURLOPT_TIMEOUT, bulk ? 0L : a->timeout_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, a->low_speed_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sk);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, sk);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "petal-launcher/" "0.1");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!strcmp(c->method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(c->method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
        if (c->body_len || !strcmp(c->method, "PUT") || !strcmp(c->method, "POST")) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body_len ? (const char *)c->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
        }
    }
    cerr[0] = 0;
    a->requests++;
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hl);
    pl_prepared_free(&p);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    if (sk->too_big) return PT_ERR_RANGE;
    if (cc != CURLE_OK) {
        if (!cerr[0]) snprintf(cerr, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
        return PT_ERR_NET;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    return PT_OK;
nomem:
    curl_slist_free_all(hl);
    pl_prepared_free(&p);
    return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
}

int pl_aws_call(pl_aws *a, const pl_call *c, pl_resp *r, pl_awserr *aeo, char *err)
{
    pl_awserr ae_local, *ae = aeo ? aeo : &ae_local;
    char op[128], cerr[CURL_ERROR_SIZE];
    op_name(c, op, sizeof op);
    int rc = PT_OK;
    if (a->capture) {
        pl_prepared p;
        memset(&p, 0, sizeof p);
        rc = pl_aws_prepare(a, c, a->fixed_clock ? a->fixed_clock : time(NULL), &p, err);
        if (!rc) a->capture(a->capture_ud, c, &p);
        pl_prepared_free(&p);
        return rc ? rc : pt_seterr(err, PT_ERR_UNSUPPORTED, "%s %s: captured, not sent",
                                   svc_label[c->svc], op);
    }
    int refreshed = 0;
    for (int attempt = 1;; attempt++) {
        memset(ae, 0, sizeof *ae);
        pl_str_reset(&r->body);
        r->status = 0;
        r->request_id[0] = r->etag[0] = 0;
        r->content_length = -1;
        sink sk = {.body = &r->body, .cap = c->max_resp ? c->max_resp : a->max_response, .r = r};
        int retry = 0;
        rc = transport(a, c, r, &sk, cerr, err);
        if (rc == PT_ERR_NET) {
            retry = 1;
            pt_seterr(err, rc, "%s %s: %s (%s)", svc_label[c->svc], op, cerr, a->endpoint[c->svc]);
        } else if (rc == PT_ERR_RANGE) {
            return pt_seterr(err, rc, "%s %s: response larger than %zu bytes", svc_label[c->svc],
                             op, sk.cap);
        } else if (rc) {
            return rc;
        } else if (r->status >= 300 || r->status < 100) {
            ae->status = r->status;
            pl_aws_parse_error(r->body.data, r->body.len, ae);
            if (!ae->code[0] && sk.err_type[0]) {
                const char *v = strrchr(sk.err_type, '#');
                const char *t = v ? v + 1 : sk.err_type;
                snprintf(ae->code, sizeof ae->code, "%.*s", (int)strcspn(t, ":"), t);
            }
            if (!ae->code[0]) {
                const char *dflt = r->status == 404   ? "NotFound"
                                   : r->status == 403 ? "Forbidden"
                                   : r->status == 503 ? "ServiceUnavailable"
                                                      : "HTTPError";
                snprintf(ae->code, sizeof ae->code, "%s", dflt);
            }
            if (!ae->request_id[0])
                snprintf(ae->request_id, sizeof ae->request_id, "%s", r->request_id);
            retry = r->status >= 500 || in_list(ae->code, throttle_codes);
            if (!strcmp(ae->code, "RequestTimeTooSkewed") ||
                (!strcmp(ae->code, "RequestExpired") && !a->creds.token[0])) {
                return pt_seterr(err, PT_ERR_AUTH,
                                 "%s %s: %s: %s (HTTP %ld): this machine's clock is more than "
                                 "15 minutes off; fix it (e.g. enable NTP) and try again",
                                 svc_label[c->svc], op, ae->code,
                                 ae->message[0] ? ae->message : "-", r->status);
            }
            if (in_list(ae->code, auth_codes) && refreshed < 5 && refresh_creds(a)) {
                refreshed++; /* expired mid-way: the same attempt with fresh credentials */
                attempt--;
                continue;
            }
            if (in_list(ae->code, auth_codes)) {
                return pt_seterr(err, PT_ERR_AUTH,
                                 "%s %s: AWS rejected the credentials: %s: %s (HTTP %ld, request "
                                 "id %s). Refresh them (Learner Lab: AWS Details > AWS CLI) and "
                                 "try again",
                                 svc_label[c->svc], op, ae->code,
                                 ae->message[0] ? ae->message : "-", r->status,
                                 ae->request_id[0] ? ae->request_id : "-");
            }
            int nf = r->status == 404 || strstr(ae->code, "NotFound") ||
                     !strncmp(ae->code, "NoSuch", 6);
            rc = nf ? PT_ERR_NOTFOUND : PT_ERR_AWS;
            pt_seterr(err, rc, "%s %s: %s: %s (HTTP %ld, request id %s)", svc_label[c->svc], op,
                      ae->code, ae->message[0] ? ae->message : "-", r->status,
                      ae->request_id[0] ? ae->request_id : "-");
        } else {
            return PT_OK;
        }
        if (!retry || attempt >= a->max_attempts) return rc;
        if (a->stop && *a->stop) return pt_seterr(err, PT_ERR_INTERRUPTED, "%s %s: interrupted",
                                                  svc_label[c->svc], op);
        double d = a->backoff_base * (double)(1u << (attempt - 1 < 16 ? attempt - 1 : 16));
        if (d > a->backoff_cap) d = a->backoff_cap;
        d *= rnd01(a);
        PT_DEBUG("%s %s: attempt %d failed (%s), retrying in %.2f s", svc_label[c->svc], op,
                 attempt, ae->code[0] ? ae->code : cerr, d);
        pt_sleep(d, a->stop);
    }
}

int pl_form_add(pl_str *f, const char *name, const char *value)
{
    /* application/x-www-form-urlencoded as botocore sends it (Python's
     * quote_plus): unreserved bytes kept, space as '+', the rest %XX. Some
     * emulators re-serialise the parsed form this way before hashing it. */
    if (pl_str_addf(f, "&%s=", name)) return PT_ERR_NOMEM;
    for (const char *p = value; *p;) {
        size_t run = strcspn(p, " ");
        if (pl_uri_encode(f, p, run, 0)) return PT_ERR_NOMEM;
        p += run;
        if (*p == ' ') {
            if (pl_str_add(f, "+", 1)) return PT_ERR_NOMEM;
            p++;
        }
    }
    return PT_OK;
}

static int query_call(pl_aws *a, pl_service svc, const char *action, const char *version,
                      const char *params, pl_xml **doc, pl_awserr *ae, char *err)
{
    pl_str body = {0};
    *doc = NULL;
    if (pl_str_addf(&body, "Action=%s&Version=%s%s", action, version, params ? params : ""))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    pl_call c = {.svc = svc, .method = "POST", .body = body.data, .body_len = body.len};
    c.headers[0] = (pl_header){"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"};
    c.n_headers = 1;
    pl_resp r = {0};
    int rc = pl_aws_call(a, &c, &r, ae, err);
    if (!rc) {
        char perr[PT_ERRLEN];
        rc = pl_xml_parse(r.body.data, r.body.len, doc, perr);
        if (rc) pt_seterr(err, rc, "%s %s: bad reply: %s", svc_label[svc], action, perr);
    }
    pl_resp_free(&r);
    pl_str_free(&body);
    return rc;
}

int pl_ec2_call(pl_aws *a, const char *action, const char *params, pl_xml **doc, pl_awserr *ae,
                char *err)
{
    return query_call(a, PL_EC2, action, "2016-11-15", params, doc, ae, err);
}

int pl_sts_caller_arn(pl_aws *a, char *arn, size_t cap, char *err)
{
    pl_xml *doc = NULL;
    arn[0] = 0;
    int rc = query_call(a, PL_STS, "GetCallerIdentity", "2011-06-15", "", &doc, NULL, err);
    if (!rc) {
        const char *v = pl_xml_text(doc, "GetCallerIdentityResult/Arn");
        if (!v || strncmp(v, "arn:", 4) || strlen(v) >= cap)
            rc = pt_seterr(err, PT_ERR_PROTO, "STS GetCallerIdentity: no valid Arn in the reply");
        else
            snprintf(arn, cap, "%s", v);
    }
    pl_xml_free(doc);
    return rc;
}

int pl_aws_check_credentials(pl_aws *a, char *err)
{
    pl_str params = {0};
    pl_xml *doc = NULL;
    int rc = pl_form_add(&params, "RegionName.1", a->region);
    if (rc) return pt_seterr(err, rc, "out of memory");
    rc = pl_ec2_call(a, "DescribeRegions", params.data, &doc, NULL, err);
    pl_str_free(&params);
    if (!rc) {
        const pl_xml *it = pl_xml_path(doc, "regionInfo/item");
        const char *name = it ? pl_xml_text(it, "regionName") : NULL;
        if (!name || strcmp(name, a->region))
            rc = pt_seterr(err, PT_ERR_AWS, "EC2 DescribeRegions: region %s not offered",
                           a->region);
    }
    pl_xml_free(doc);
    return rc;
}

int pl_s3_presign(pl_aws *a, const char *method, const char *bucket, const char *key,
                  int expires, pl_str *url, char *err)
{
    if (!method || (strcmp(method, "GET") && strcmp(method, "PUT") && strcmp(method, "HEAD")))
        return pt_seterr(err, PT_ERR_INVAL, "presign: method must be GET, PUT or HEAD");
    if (!bucket || !bucket[0] || !key || !key[0])
        return pt_seterr(err, PT_ERR_INVAL, "presign: bucket and key are required");
    pl_str path = {0};
    int rc = pl_str_adds(&path, "/");
    if (!rc) rc = pl_uri_encode(&path, bucket, strlen(bucket), 0);
    if (!rc) rc = pl_str_adds(&path, "/");
    if (!rc) rc = pl_uri_encode(&path, key, strlen(key), 1);
    if (rc) {
        pl_str_free(&path);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
    pl_sigv4_req r = {.method = method,
                      .host = a->host[PL_S3],
                      .path = path.data,
                      .service = "s3",
                      .region = a->region,
                      .when = a->fixed_clock ? a->fixed_clock : time(NULL),
                      .s3 = 1};
    pl_sigv4_out o;
    memset(&o, 0, sizeof o);
    rc = pl_sigv4_presign(&r, &a->creds, expires, &o, err);
    if (!rc && pl_str_addf(url, "%s%s?%s", a->endpoint[PL_S3], path.data,
                           pl_str_c(&o.presigned_query)))
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    pl_sigv4_out_free(&o);
    pl_str_free(&path);
    return rc;
}
