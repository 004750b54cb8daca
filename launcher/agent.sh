#!/bin/sh
# Petal agent (run @RUN@, role @ROLE@), rendered by 'petal launch' as EC2
# user-data: runs once, as root, at first boot. It holds no credential: one
# presigned URL to this role's run manifest; with an instance profile the
# uploads are signed with the instance role's own credentials (IMDSv2).
# Each stage goes to agents/<agent>.status (the launcher shows it live); on
# failure the agent log and the status are uploaded and the instance shuts
# itself down (terminate on shutdown) unless it is kept.
PETAL_RUN='@RUN@'
PETAL_ROLE='@ROLE@'
MANIFEST_URL='@URL@'
UPLOAD_MODE='@MODE@'
BUCKET='@BUCKET@'
REGION='@REGION@'
S3='@S3@'
DEADLINE=@DEADLINE@
KEEP='@KEEP@'
HB=@HB@
IMDS=${PETAL_IMDS_ENDPOINT:-http://169.254.169.254}
WORK=${PETAL_WORK_DIR:-/opt/petal}
REAL=1
[ -n "${PETAL_WORK_DIR:-}" ] && REAL=0
export DEBIAN_FRONTEND=noninteractive
umask 022
mkdir -p "$WORK" && cd "$WORK" || exit 1
LOG=$WORK/agent.log
AGENT=$PETAL_ROLE STAGE=boot STATE=running EXIT=null STRAT= K=0 NSTRAT=0 ROUND=0 ROUNDS=0
PHASES="\"boot\":$(date +%s)" STATUS_DEST= LOG_DEST= INSTANCE_ID= WPID= SF=status
say() { echo "petal-agent[$AGENT] $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }

# The deadline guard runs at every boot: a Learner Lab stops the instances at
# the end of a session and starts them at the next one, when the in-memory
# shutdown timer is gone; the unit arms it again (or ends a finished run).
cat >"$WORK/guard.sh" <<EOF
#!/bin/sh
now=\$(date +%s)
if [ -e '$WORK/finished' ] || [ "\$now" -ge $DEADLINE ]; then
  shutdown -h now 'petal: run over'
else
  shutdown -h +\$(( ($DEADLINE - now + 59) / 60 )) 'petal: run deadline'
fi
EOF
if [ $REAL = 1 ] && [ -d /etc/systemd/system ]; then
  printf '[Unit]\nDescription=Petal run %s: terminate at its deadline\n[Service]\nType=oneshot\nExecStart=/bin/sh %s/guard.sh\n[Install]\nWantedBy=multi-user.target\n' \
    "$PETAL_RUN" "$WORK" >/etc/systemd/system/petal-guard.service
  systemctl enable petal-guard.service >/dev/null 2>&1 || say 'cannot enable the deadline guard unit'
fi
sh "$WORK/guard.sh" >>"$LOG" 2>&1

fetch() { curl -sSf --retry 5 --retry-delay 2 --connect-timeout 10 --speed-limit 1024 --speed-time 60 -o "$2" "$1"; }
imds_token() { TOKEN=$(curl -sf -X PUT "$IMDS/latest/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600'); }
md() {
  curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/meta-data/$1" ||
    { imds_token && curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/meta-data/$1"; }
}
# curl config (stdin) with this instance role's current credentials
role_creds() {
  r=$(md iam/security-credentials/ | head -n 1) && [ -n "$r" ] || return 1
  md "iam/security-credentials/$r" | python3 -c '
import json, sys
c = json.load(sys.stdin)
e = lambda s: str(s).replace("\\", "\\\\").replace("\"", "\\\"")
print("user = \"%s:%s\"" % (e(c["AccessKeyId"]), e(c["SecretAccessKey"])))
if c.get("Token"): print("header = \"x-amz-security-token: %s\"" % e(c["Token"]))'
}
# put FILE DEST: DEST is a presigned PUT URL, or (role mode) the URL-encoded key
put() {
  [ -n "$2" ] && [ -f "$1" ] || return 0
  if [ "$UPLOAD_MODE" = role ]; then
    { role_creds || return 1; echo 'header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"'; } |
      curl -sSf --retry 3 --retry-delay 2 --speed-limit 1024 --speed-time 60 -K - \
        --aws-sigv4 "aws:amz:$REGION:s3" -X PUT -H 'Content-Type: application/octet-stream' \
        --upload-file "$1" "$S3/$BUCKET/$2" >>"$LOG" 2>&1
  else
    curl -sSf --retry 3 --retry-delay 2 --speed-limit 1024 --speed-time 60 -X PUT \
      -H 'Content-Type: application/octet-stream' --upload-file "$1" "$2" >>"$LOG" 2>&1
  fi
}
status() {
  f=$WORK/$SF.json
  printf '{"run":"%s","role":"%s","agent":"%s","instance":"%s","state":"%s","exit":%s,"stage":"%s","strategy":"%s","k":%d,"strategies":%d,"round":%d,"rounds":%d,"t":%s,"phases":{%s}}\n' \
    "$PETAL_RUN" "$PETAL_ROLE" "$AGENT" "$INSTANCE_ID" "$STATE" "$EXIT" "$STAGE" "$STRAT" "$K" \
    "$NSTRAT" "${ROUND:-0}" "$ROUNDS" "$(date +%s)" "$PHASES" >"$f.tmp" && mv "$f.tmp" "$f" &&
    put "$f" "$STATUS_DEST"
}
stage() {
  STAGE=$1
  PHASES="$PHASES,\"$1\":$(date +%s)"
  say "stage $1"
  status || say 'status upload failed'
}
# while an agent runs: its last round number (events.jsonl), uploaded on change
watch() {
  SF=status-w last=
  while sleep "$HB"; do
    r=$(find "$1" -name events.jsonl -exec sed -n 's/.*"round":\([0-9][0-9]*\).*/\1/p' {} + 2>/dev/null | tail -n 1)
    [ -n "$r" ] && [ "$r" != "$last" ] || continue
    last=$r ROUND=$r
    status >/dev/null 2>&1
  done
}
finish() {
  rc=$?
  trap - EXIT INT TERM HUP
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null
  SF=status EXIT=$rc STATE=done
  [ "$rc" -eq 0 ] || STATE=failed
  PHASES="$PHASES,\"end\":$(date +%s)"
  say "exit status $rc at stage $STAGE"
  put "$LOG" "$LOG_DEST" || say 'agent log upload failed'
  status || say 'status upload failed'
  if [ "$KEEP" = always ] || { [ "$KEEP" = failure ] && [ "$rc" -ne 0 ]; }; then
    say 'instance kept (petal launch --keep / --keep-on-failure)'
  else
    touch "$WORK/finished"
    say 'shutting down: the instance terminates'
    shutdown -h now 'petal: agent finished' >>"$LOG" 2>&1
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 143' INT TERM HUP

for t in curl python3; do
  command -v $t >/dev/null 2>&1 && continue
  { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $t; } >>"$LOG" 2>&1 ||
    { say "$t is missing and cannot be installed"; exit 9; }
done
STAGE=imds
i=0
until imds_token && [ -n "$TOKEN" ]; do
  i=$((i + 1)); [ $i -ge 30 ] && { say "IMDSv2 unreachable at $IMDS"; exit 10; }
  sleep 2
done
INSTANCE_ID=$(md instance-id) && INDEX=$(md ami-launch-index) && PRIVATE_IP=$(md local-ipv4) ||
  { say 'instance metadata incomplete'; exit 11; }
[ "$PETAL_ROLE" = client ] && AGENT=client_$INDEX
say "instance $INSTANCE_ID, launch index $INDEX, private ip $PRIVATE_IP"
if [ "$UPLOAD_MODE" = role ]; then  # uploads work from here on
  STATUS_DEST=agents/$AGENT.status LOG_DEST=agents/$AGENT.log
fi

stage manifest
fetch "$MANIFEST_URL" manifest.json || { say 'cannot fetch the run manifest'; exit 12; }
PETAL_RUN=$PETAL_RUN python3 - "$PETAL_ROLE" "$INDEX" "$WORK" >manifest.sh <<'PYEOF' || { say 'bad run manifest'; exit 13; }
import json, os, shlex, sys
from urllib.parse import quote
role, idx, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = json.load(open('manifest.json'))
assert m['version'] == 2 and m['role'] == role and m['run_id'] == os.environ['PETAL_RUN'], \
    'manifest is not for this run and role'
me = m['agents'][idx if role == 'client' else 0]
role_mode = m['upload']['mode'] == 'role'
dest = lambda v: quote(v, safe='/-_.~') if role_mode and v else v
sub = {'{server_ip}': os.environ.get('PETAL_SERVER_IP_OVERRIDE') or m.get('server_ip', ''),
       '{out}': work + '/out', '{data}': work + '/data', '{model}': work + '/model.json',
       '{auth}': work + '/auth'}
def q(k, v): print('%s=%s' % (k, shlex.quote(str(v))))
def s(a):
    for k, v in sub.items(): a = a.replace(k, v)
    return a
a, b, au = m['artifacts'], m['binary'], m.get('auth') or {}
q('SRC_URL', a['source']); q('DATA_URL', a.get('dataset', '')); q('MODEL_URL', a.get('model', ''))
q('BUILT_BY', m['build']); q('BIN_URL', b.get('get', '')); q('BIN_SHA_URL', b.get('sha_get', ''))
q('BIN_PUT', dest(b.get('put', ''))); q('BIN_SHA_PUT', dest(b.get('sha_put', '')))
for k in ('ca', 'cert', 'key', 'token'): q('AUTH_%s_URL' % k.upper(), au.get(k, ''))
q('LOG_DEST', dest(me['agent_log'])); q('STATUS_DEST', dest(me['status']))
q('NSTRAT', len(me['runs'])); q('ROUNDS', int(m['rounds']))
for k, r in enumerate(me['runs']):
    q('S%d_NAME' % k, r['strategy']); q('S%d_LOG' % k, dest(r['log']))
    q('S%d_EVENTS' % k, dest(r['events']))
    q('S%d_ARGS' % k, ' '.join(shlex.quote(s(x)) for x in r['argv']))
PYEOF
. ./manifest.sh

stage artifacts
fetch "$SRC_URL" petal-src.tar.gz || { say 'cannot fetch the source tarball'; exit 14; }
rm -rf src && mkdir src && tar -xzf petal-src.tar.gz -C src --strip-components=1 ||
  { say 'bad source tarball'; exit 14; }
if [ -n "$DATA_URL" ]; then
  fetch "$DATA_URL" dataset.tar.gz && rm -rf data && mkdir data &&
    tar -xzf dataset.tar.gz -C data || { say 'cannot fetch the dataset'; exit 15; }
fi
if [ -n "$MODEL_URL" ]; then
  fetch "$MODEL_URL" model.json || { say 'cannot fetch the model'; exit 15; }
fi
if [ -n "$AUTH_TOKEN_URL" ]; then
  (umask 077 && rm -rf auth && mkdir auth && fetch "$AUTH_CA_URL" auth/ca.pem &&
    fetch "$AUTH_CERT_URL" auth/cert.pem && fetch "$AUTH_KEY_URL" auth/key.pem &&
    fetch "$AUTH_TOKEN_URL" auth/token) || { say 'cannot fetch the run certificates'; exit 17; }
  say 'run certificates and token fetched (mutual TLS + token)'
fi

# The server builds petal once and shares it through S3; the clients (or
# every instance, with a binary from the launcher) install runtime packages.
PROFILE=runtime
[ "$BUILT_BY" = server ] && [ "$PETAL_ROLE" = server ] && PROFILE=build
stage packages
sh src/scripts/deps.sh $PROFILE >>"$LOG" 2>&1 || { say "deps.sh $PROFILE failed"; exit 18; }
if [ $PROFILE = build ]; then
  stage build
  make -C src -j"$(nproc)" build/petal >>"$LOG" 2>&1 || { say 'build failed'; exit 16; }
  PETAL=$WORK/src/build/petal
  stage share
  sha256sum "$PETAL" | cut -d' ' -f1 >petal.sha256
  { put "$PETAL" "$BIN_PUT" && put petal.sha256 "$BIN_SHA_PUT"; } ||
    { say 'cannot upload the binary for the clients'; exit 21; }
else
  stage binary
  until curl -sf -o petal.sha256 "$BIN_SHA_URL"; do
    [ "$(date +%s)" -lt "$DEADLINE" ] || { say 'no petal binary before the deadline'; exit 19; }
    sleep 3
  done
  fetch "$BIN_URL" petal.bin && [ "$(sha256sum petal.bin | cut -d' ' -f1)" = "$(cat petal.sha256)" ] ||
    { say 'the petal binary did not download intact'; exit 19; }
  chmod 755 petal.bin
  PETAL=$WORK/petal.bin
  if [ "$(head -c 4 petal.bin | tail -c 3)" = ELF ]; then
    miss=$(ldd petal.bin 2>&1 | grep 'not found')
    [ -z "$miss" ] || { say "petal needs libraries this image lacks: $miss"; exit 19; }
  fi
fi

k=0
while [ $k -lt "$NSTRAT" ]; do
  eval "STRAT=\$S${k}_NAME ARGS=\$S${k}_ARGS LDEST=\$S${k}_LOG EDEST=\$S${k}_EVENTS"
  K=$((k + 1)) ROUND=0
  stage "run:$STRAT"
  eval "set -- $ARGS"
  say "strategy $STRAT: petal $*"
  mkdir -p "$WORK/out/$STRAT"
  watch "$WORK/out/$STRAT" &
  WPID=$!
  tries=0
  while :; do
    t0=$(date +%s)
    "$PETAL" "$@" >>"$LOG" 2>&1
    rc=$?
    [ $rc -eq 0 ] || [ "$PETAL_ROLE" = server ] && break
    tries=$((tries + 1))
    [ $tries -ge 100 ] || [ $(($(date +%s) - t0)) -gt 30 ] && break
    sleep 3
  done
  kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null
  WPID=
  say "strategy $STRAT: exit status $rc"
  stage "upload:$STRAT"
  f=$(find "$WORK/out/$STRAT" -name '*_log.log' 2>/dev/null | head -n 1)
  e=$(find "$WORK/out/$STRAT" -name events.jsonl 2>/dev/null | head -n 1)
  if [ -n "$f" ]; then put "$f" "$LDEST" || { say "upload of $f failed"; exit 21; }; fi
  if [ -n "$e" ]; then put "$e" "$EDEST" || { say "upload of $e failed"; exit 21; }; fi
  [ $rc -eq 0 ] || exit 20
  k=$((k + 1))
done
STRAT=
stage done
say 'all strategies done'
exit 0
