/* imds.c - IMDSv2 role credentials (the launcher itself on an EC2 instance, tests). */
#include "launch_int.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    pl_str *b = ud;
    if (b->len + s * n > 65536) return 0;
    return pl_str_add(b, p, s * n) ? 0 : s * n;
}

static int imds_req(const char *url, const char *method, const char *hdr, pl_str *out, char *err)
{
    CURL *h = curl_easy_init();
    if (!h) return pt_seterr(err, PT_ERR_NOMEM, "curl_easy_init failed");
    struct curl_slist *hl = curl_slist_append(NULL, hdr);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (!strcmp(method, "PUT")) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    long st = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK)
        return pt_seterr(err, PT_ERR_NET, "IMDS %s: %s", url, curl_easy_strerror(cc));
    if (st != 200) return pt_seterr(err, PT_ERR_AUTH, "IMDS %s: HTTP %ld", url, st);
    return PT_OK;
}

int pl_imds_role_credentials(const char *endpoint, pl_creds *c, time_t *expires, char *err)
{
    memset(c, 0, sizeof *c);
    if (expires) *expires = 0;
    if (!endpoint) endpoint = getenv("PETAL_IMDS_ENDPOINT");
    if (!endpoint || !endpoint[0]) endpoint = "http://169.254.169.254";
    char url[512], hdr[256];
    pl_str tok = {0}, role = {0}, js = {0};
    snprintf(url, sizeof url, "%s/latest/api/token", endpoint);
    int rc = imds_req(url, "PUT", "X-aws-ec2-metadata-token-ttl-seconds: 300", &tok, err);
    if (rc) goto done;
    if (!tok.len || tok.len > 200) {
        rc = pt_seterr(err, PT_ERR_PROTO, "IMDS: bad token");
        goto done;
    }
    /* The token goes into a header line: refuse anything but visible ASCII
     * (a CR/LF would inject header lines). */
    for (size_t i = 0; i < tok.len; i++) {
        unsigned char ch = (unsigned char)tok.data[i];
        if (ch < 0x21 || ch > 0x7e) {
            rc = pt_seterr(err, PT_ERR_PROTO,
                           "IMDS: token has a byte outside visible ASCII (0x%02x at %zu)", ch, i);
            goto done;
        }
    }
    snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %s", tok.data);
    snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/", endpoint);
    if ((rc = imds_req(url, "GET", hdr, &role, err))) goto done;
    size_t rl = strcspn(pl_str_c(&role), "\r\n");
    if (!rl || rl > 128) {
        rc = pt_seterr(err, PT_ERR_AUTH, "IMDS: this instance has no instance profile role");
        goto done;
    }
    role.data[rl] = 0;
    for (size_t i = 0; i < rl; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@_-",
                    role.data[i])) {
            rc = pt_seterr(err, PT_ERR_PROTO, "IMDS: bad role name");
            goto done;
        }
    snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/%s", endpoint,
             role.data);
    if ((rc = imds_req(url, "GET", hdr, &js, err))) goto done;
    cJSON *j = pt_json_parse(pl_str_c(&js), js.len, NULL);
    const cJSON *ak = cJSON_GetObjectItemCaseSensitive(j, "AccessKeyId");
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(j, "SecretAccessKey");
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "Token");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "Expiration");
    if (!cJSON_IsString(ak) || !cJSON_IsString(sk) || strlen(ak->valuestring) >= sizeof c->access_key ||
        strlen(sk->valuestring) >= sizeof c->secret_key ||
        (cJSON_IsString(tk) && strlen(tk->valuestring) >= sizeof c->token)) {
        rc = pt_seterr(err, PT_ERR_PROTO, "IMDS: malformed role credentials");
    } else {
        snprintf(c->access_key, sizeof c->access_key, "%s", ak->valuestring);
        snprintf(c->secret_key, sizeof c->secret_key, "%s", sk->valuestring);
        if (cJSON_IsString(tk)) snprintf(c->token, sizeof c->token, "%s", tk->valuestring);
        snprintf(c->source, sizeof c->source, "instance role %s", role.data);
        if (expires && cJSON_IsString(ex)) {
            struct tm tm;
            memset(&tm, 0, sizeof tm);
            if (strptime(ex->valuestring, "%Y-%m-%dT%H:%M:%S", &tm)) *expires = timegm(&tm);
        }
    }
    if (j && cJSON_IsString(sk)) memset(sk->valuestring, 0, strlen(sk->valuestring));
    cJSON_Delete(j);
done:
    if (js.data) memset(js.data, 0, js.len);
    pl_str_free(&tok);
    pl_str_free(&role);
    pl_str_free(&js);
    return rc;
}
