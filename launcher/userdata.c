/* userdata.c - the instance bootstrap script (EC2 user-data). It holds no
 * credentials: only a presigned URL to its role's run manifest (JSON), which
 * lists presigned GET URLs for the artifacts and presigned PUT URLs (or, with
 * an instance profile, S3 keys the agent signs for with its role credentials)
 * for every result object, and (unless --no-auth) presigned GET URLs for the
 * run's CA, the role's certificate and key and the token (fetched into auth/). */
#include "launch_int.h"

#include <stdio.h>
#include <string.h>

/* @RUN@ @ROLE@ @URL@ @GUARD_MIN@ are substituted. POSIX sh. */
static const char agent_script[] =
    "#!/bin/sh\n"
    "# Petal agent (run @RUN@, role @ROLE@), rendered by 'petal launch'.\n"
    "# No credentials here: one presigned URL to this role's run manifest.\n"
    "PETAL_RUN='@RUN@'\n"
    "PETAL_ROLE='@ROLE@'\n"
    "MANIFEST_URL='@URL@'\n"
    "IMDS=${PETAL_IMDS_ENDPOINT:-http://169.254.169.254}\n"
    "WORK=${PETAL_WORK_DIR:-/opt/petal}\n"
    "STAGE=boot\n"
    "mkdir -p \"$WORK\" && cd \"$WORK\" || exit 1\n"
    "LOG=\"$WORK/agent.log\"\n"
    "say() { echo \"petal-agent[$PETAL_ROLE${INDEX:+ $INDEX}] $(date -u +%H:%M:%S) $*\" | tee -a \"$LOG\"; }\n"
    "fetch() { curl -sSf --retry 5 --retry-delay 2 --connect-timeout 10 -o \"$2\" \"$1\"; }\n"
    "put() {\n"
    "  [ -n \"$2\" ] && [ -f \"$1\" ] || return 0\n"
    "  if [ \"${UPLOAD_MODE:-}\" = role ]; then\n"
    "    up=${UPLOADER_BINARY:-${PETAL:-}}\n"
    "    [ -x \"$up\" ] || return 1\n"
    "    \"$up\" launch --agent-put \"$1\" --bucket \"$BUCKET\" --key \"$2\" --region \"$REGION\" \\\n"
    "      ${S3_ENDPOINT:+--s3-endpoint \"$S3_ENDPOINT\"} >>\"$LOG\" 2>&1\n"
    "  else\n"
    "    curl -sSf --retry 5 --retry-delay 2 -X PUT -H 'Content-Type: application/octet-stream' \\\n"
    "      --upload-file \"$1\" \"$2\" >>\"$LOG\" 2>&1\n"
    "  fi\n"
    "}\n"
    "finish() {\n"
    "  rc=$?\n"
    "  trap - EXIT\n"
    "  say \"exit status $rc at stage $STAGE\"\n"
    "  printf '{\"run\":\"%s\",\"role\":\"%s\",\"index\":\"%s\",\"instance\":\"%s\",\"status\":%d,\"stage\":\"%s\"}\\n' \\\n"
    "    \"$PETAL_RUN\" \"$PETAL_ROLE\" \"${INDEX:-}\" \"${INSTANCE_ID:-}\" \"$rc\" \"$STAGE\" >\"$WORK/status.json\"\n"
    "  put \"$LOG\" \"${AGENT_LOG_PUT:-}\"\n"
    "  put \"$WORK/status.json\" \"${STATUS_PUT:-}\"\n"
    "  exit $rc\n"
    "}\n"
    "trap finish EXIT\n"
    "command -v curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl; } \\\n"
    "  >>\"$LOG\" 2>&1 || { say 'curl is missing and cannot be installed'; exit 9; }\n"
    "trap 'exit 143' TERM INT\n"
    "STAGE=imds\n"
    "i=0\n"
    "while :; do\n"
    "  TOKEN=$(curl -sf -X PUT \"$IMDS/latest/api/token\" -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600') &&\n"
    "    [ -n \"$TOKEN\" ] && break\n"
    "  i=$((i + 1)); [ $i -ge 30 ] && { say \"IMDSv2 unreachable at $IMDS\"; exit 10; }\n"
    "  sleep 2\n"
    "done\n"
    "md() { curl -sf -H \"X-aws-ec2-metadata-token: $TOKEN\" \"$IMDS/latest/meta-data/$1\"; }\n"
    "INSTANCE_ID=$(md instance-id) && INDEX=$(md ami-launch-index) && PRIVATE_IP=$(md local-ipv4) ||\n"
    "  { say 'instance metadata incomplete'; exit 11; }\n"
    "say \"instance $INSTANCE_ID, launch index $INDEX, private ip $PRIVATE_IP\"\n"
    "if [ \"$IMDS\" = http://169.254.169.254 ] && [ -z \"${PETAL_WORK_DIR:-}\" ]; then\n"
    "  shutdown -h +@GUARD_MIN@ 'petal: run deadline passed' >/dev/null 2>&1 || true\n"
    "fi\n"
    "STAGE=manifest\n"
    "fetch \"$MANIFEST_URL\" manifest.json || { say 'cannot fetch the run manifest'; exit 12; }\n"
    "python3 - \"$PETAL_ROLE\" \"$INDEX\" \"$WORK\" >manifest.sh <<'PYEOF' || { say 'bad run manifest'; exit 13; }\n"
    "import json, os, shlex, sys\n"
    "role, idx, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "m = json.load(open('manifest.json'))\n"
    "assert m['version'] == 1 and m['role'] == role, 'manifest is not for this role'\n"
    "me = m['agents'][idx if role == 'client' else 0]\n"
    "sub = {'{server_ip}': os.environ.get('PETAL_SERVER_IP_OVERRIDE') or m.get('server_ip', ''),\n"
    "       '{out}': work + '/out', '{data}': work + '/data', '{model}': work + '/model.json',\n"
    "       '{auth}': work + '/auth'}\n"
    "def q(k, v): print('%s=%s' % (k, shlex.quote(str(v))))\n"
    "def s(a):\n"
    "    for k, v in sub.items(): a = a.replace(k, v)\n"
    "    return a\n"
    "a, u = m['artifacts'], m['upload']\n"
    "q('SRC_URL', a['source']); q('DATA_URL', a.get('dataset', '')); q('MODEL_URL', a.get('model', ''))\n"
    "q('AGENT_BINARY', m.get('agent_binary', '')); q('UPLOADER_BINARY', m.get('uploader_binary', ''))\n"
    "q('UPLOAD_MODE', u['mode']); q('BUCKET', u.get('bucket', '')); q('REGION', u.get('region', ''))\n"
    "q('S3_ENDPOINT', u.get('s3_endpoint', ''))\n"
    "au = m.get('auth') or {}\n"
    "for k in ('ca', 'cert', 'key', 'token'): q('AUTH_%s_URL' % k.upper(), au.get(k, ''))\n"
    "q('AGENT_LOG_PUT', me['agent_log']); q('STATUS_PUT', me['status'])\n"
    "q('NSTRAT', len(me['runs']))\n"
    "for k, r in enumerate(me['runs']):\n"
    "    q('S%d_NAME' % k, r['strategy']); q('S%d_LOG_PUT' % k, r['log'])\n"
    "    q('S%d_EVENTS_PUT' % k, r['events'])\n"
    "    q('S%d_ARGS' % k, ' '.join(shlex.quote(s(x)) for x in r['argv']))\n"
    "PYEOF\n"
    ". ./manifest.sh\n"
    "STAGE=artifacts\n"
    "fetch \"$SRC_URL\" petal-src.tar.gz || { say 'cannot fetch the source tarball'; exit 14; }\n"
    "rm -rf src && mkdir src && tar -xzf petal-src.tar.gz -C src --strip-components=1 ||\n"
    "  { say 'bad source tarball'; exit 14; }\n"
    "if [ -n \"$DATA_URL\" ]; then\n"
    "  fetch \"$DATA_URL\" dataset.tar.gz && rm -rf data && mkdir data &&\n"
    "    tar -xzf dataset.tar.gz -C data || { say 'cannot fetch the dataset'; exit 15; }\n"
    "fi\n"
    "if [ -n \"$MODEL_URL\" ]; then\n"
    "  fetch \"$MODEL_URL\" model.json || { say 'cannot fetch the model'; exit 15; }\n"
    "fi\n"
    "if [ -n \"$AUTH_TOKEN_URL\" ]; then\n"
    "  STAGE=auth\n"
    "  (umask 077 && rm -rf auth && mkdir auth && fetch \"$AUTH_CA_URL\" auth/ca.pem &&\n"
    "    fetch \"$AUTH_CERT_URL\" auth/cert.pem && fetch \"$AUTH_KEY_URL\" auth/key.pem &&\n"
    "    fetch \"$AUTH_TOKEN_URL\" auth/token) || { say 'cannot fetch the run certificates'; exit 17; }\n"
    "  say 'run certificates and token fetched (mutual TLS + token)'\n"
    "fi\n"
    "STAGE=build\n"
    "if [ -n \"$AGENT_BINARY\" ]; then\n"
    "  PETAL=$AGENT_BINARY\n"
    "  say \"using the prebuilt agent $PETAL\"\n"
    "else\n"
    "  say 'installing dependencies and building petal'\n"
    "  (cd src && sh scripts/deps.sh && make -j\"$(nproc)\" all) >>\"$LOG\" 2>&1 ||\n"
    "    { say 'build failed'; exit 16; }\n"
    "  PETAL=$WORK/src/build/petal\n"
    "fi\n"
    "k=0\n"
    "while [ $k -lt \"$NSTRAT\" ]; do\n"
    "  eval \"NAME=\\$S${k}_NAME ARGS=\\$S${k}_ARGS LPUT=\\$S${k}_LOG_PUT EPUT=\\$S${k}_EVENTS_PUT\"\n"
    "  STAGE=\"run:$NAME\"\n"
    "  eval \"set -- $ARGS\"\n"
    "  say \"strategy $NAME: petal $*\"\n"
    "  tries=0\n"
    "  while :; do\n"
    "    t0=$(date +%s)\n"
    "    \"$PETAL\" \"$@\" >>\"$LOG\" 2>&1\n"
    "    rc=$?\n"
    "    [ $rc -eq 0 ] || [ \"$PETAL_ROLE\" = server ] && break\n"
    "    tries=$((tries + 1))\n"
    "    [ $tries -ge 100 ] || [ $(($(date +%s) - t0)) -gt 30 ] && break\n"
    "    sleep 3\n"
    "  done\n"
    "  say \"strategy $NAME: exit status $rc\"\n"
    "  STAGE=\"upload:$NAME\"\n"
    "  f=$(find \"$WORK/out/$NAME\" -name '*_log.log' 2>/dev/null | head -n 1)\n"
    "  e=$(find \"$WORK/out/$NAME\" -name events.jsonl 2>/dev/null | head -n 1)\n"
    "  if [ -n \"$f\" ]; then put \"$f\" \"$LPUT\" || { say \"upload of $f failed\"; exit 21; }; fi\n"
    "  if [ -n \"$e\" ]; then put \"$e\" \"$EPUT\" || { say \"upload of $e failed\"; exit 21; }; fi\n"
    "  [ $rc -eq 0 ] || exit 20\n"
    "  k=$((k + 1))\n"
    "done\n"
    "STAGE=done\n"
    "say 'all strategies done'\n"
    "exit 0\n";

static int safe_token(const char *s, const char *extra)
{
    if (!s || !s[0]) return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(extra, c)))
            return 0;
    }
    return 1;
}

int pl_render_user_data(const char *run_id, const char *role, const char *manifest_url,
                        int guard_min, pl_str *out, char *err)
{
    if (!safe_token(run_id, "-_."))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: bad run id");
    if (!role || (strcmp(role, "server") && strcmp(role, "client")))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: role must be server or client");
    /* presigned URLs are fully percent-encoded; refuse anything that could
     * break out of the single-quoted shell string */
    if (!manifest_url || strncmp(manifest_url, "http", 4) ||
        !safe_token(manifest_url, "-_.~:/?&=%+"))
        return pt_seterr(err, PT_ERR_INVAL, "user-data: manifest URL has unsafe characters");
    if (guard_min < 1) guard_min = 1;
    char gm[16];
    snprintf(gm, sizeof gm, "%d", guard_min);
    const char *p = agent_script;
    while (*p) {
        const char *at = strchr(p, '@');
        if (!at) {
            if (pl_str_adds(out, p)) goto nomem;
            break;
        }
        if (pl_str_add(out, p, (size_t)(at - p))) goto nomem;
        const char *v = NULL;
        size_t skip = 0;
        if (!strncmp(at, "@RUN@", 5)) v = run_id, skip = 5;
        else if (!strncmp(at, "@ROLE@", 6)) v = role, skip = 6;
        else if (!strncmp(at, "@URL@", 5)) v = manifest_url, skip = 5;
        else if (!strncmp(at, "@GUARD_MIN@", 11)) v = gm, skip = 11;
        if (v) {
            if (pl_str_adds(out, v)) goto nomem;
            p = at + skip;
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
