/* userdata.c - the instance bootstrap script (EC2 user-data), rendered from
 * launcher/agent.sh (compiled in as a string: $(BUILD)/gen/launcher/agent_sh.h).
 * It holds no credentials: a presigned URL to its role's run manifest (JSON:
 * presigned GET URLs for the artifacts, the binary and the run's auth
 * material; presigned PUT URLs, or with an instance profile the S3 keys the
 * instance signs for with its role, for every result and status object). */
#include "launch_int.h"

#include <stdio.h>
#include <string.h>

static const char agent_script[] =
#include "launcher/agent_sh.h"
    ;

static int safe_token(const char *s, const char *extra, int allow_empty)
{
    if (!s || (!s[0] && !allow_empty)) return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(extra, c)))
            return 0;
    }
    return 1;
}

int pl_render_user_data(const pl_user_data *u, pl_str *out, char *err)
{
    if (!safe_token(u->run_id, "-_.", 0))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: bad run id");
    if (!u->role || (strcmp(u->role, "server") && strcmp(u->role, "client")))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: role must be server or client");
    /* presigned URLs are fully percent-encoded; refuse anything that could
     * break out of the single-quoted shell strings */
    if (!u->manifest_url || strncmp(u->manifest_url, "http", 4) ||
        !safe_token(u->manifest_url, "-_.~:/?&=%+", 0))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: manifest URL has unsafe characters");
    if (!u->upload_mode || (strcmp(u->upload_mode, "presigned") && strcmp(u->upload_mode, "role")))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: upload mode must be presigned or role");
    if (!safe_token(u->bucket, "-.", 0) || !safe_token(u->region, "-", 0))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: bad bucket or region");
    if (!u->s3_endpoint || strncmp(u->s3_endpoint, "http", 4) ||
        !safe_token(u->s3_endpoint, "-_.:/[]", 0))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: bad S3 endpoint");
    if (!u->keep || (strcmp(u->keep, "no") && strcmp(u->keep, "failure") &&
                     strcmp(u->keep, "always")))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: keep must be no, failure or always");
    if (u->deadline <= 0 || u->heartbeat_s < 1 || u->heartbeat_s > 3600)
        return pt_seterr(err, PT_ERR_INVAL, "user-data: bad deadline or heartbeat");
    char deadline[24], hb[16];
    snprintf(deadline, sizeof deadline, "%lld", u->deadline);
    snprintf(hb, sizeof hb, "%d", u->heartbeat_s);
    static const char *const names[] = {"@RUN@", "@ROLE@", "@URL@", "@MODE@", "@BUCKET@",
                                        "@REGION@", "@S3@", "@DEADLINE@", "@KEEP@", "@HB@"};
    const char *values[] = {u->run_id, u->role, u->manifest_url, u->upload_mode, u->bucket,
                            u->region, u->s3_endpoint, deadline, u->keep, hb};
    const char *p = agent_script;
    while (*p) {
        const char *at = strchr(p, '@');
        if (!at) {
            if (pl_str_adds(out, p)) goto nomem;
            break;
        }
        if (pl_str_add(out, p, (size_t)(at - p))) goto nomem;
        size_t i = 0, n = sizeof names / sizeof names[0];
        while (i < n && strncmp(at, names[i], strlen(names[i]))) i++;
        if (i < n) {
            if (pl_str_adds(out, values[i])) goto nomem;
            p = at + strlen(names[i]);
        } else {
            if (pl_str_add(out, "@", 1)) goto nomem;
            p = at + 1;
        }
    }
    if (out->len > PL_USER_DATA_MAX)
        return pt_seterr(err, PT_ERR_RANGE, "user-data is %zu bytes (limit %d)", out->len,
                         PL_USER_DATA_MAX);
    return PT_OK;
nomem:
    return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
}
