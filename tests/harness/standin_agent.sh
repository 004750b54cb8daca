#!/bin/sh
# standin_agent.sh - stands in for 'petal server' / 'petal client' in the launch
# rehearsals while the real agents are unavailable. It only writes the files an
# agent writes (log + events.jsonl under --out), so the launcher's manifest,
# uploads, collection and clean-up are exercised; it does no federated learning.
role=$1; shift
out=; part=0/1; strategy=?
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift ;;
        --partition) part=$2; shift ;;
        --strategy) strategy=$2; shift ;;
        --model) model=$2; shift ;;
        --dataset) dataset=$2; shift ;;
        --tls-ca|--tls-cert|--tls-key|--tls-client-ca|--auth-token-file)
            # the run's certificates and token, fetched through the manifest
            [ -s "$2" ] || { echo "standin: $1 $2 missing" >&2; exit 3; }
            auth=$((${auth:-0} + 1)); shift ;;
        --*) [ $# -gt 1 ] && case $2 in --*) ;; *) shift ;; esac ;;
    esac
    shift
done
[ -n "$out" ] || { echo "standin: --out missing" >&2; exit 2; }
mkdir -p "$out" || exit 1
# artifacts delivered through the manifest must be there
case ${model:-} in /*) [ -s "$model" ] || { echo "standin: model $model missing" >&2; exit 3; } ;; esac
case ${dataset:-} in folder:*)
    [ -f "${dataset#folder:}/class_a/x.txt" ] || { echo "standin: dataset $dataset missing" >&2; exit 3; } ;;
esac
if [ -n "${STANDIN_EXPECT_AUTH:-}" ] && [ "${auth:-0}" -lt 4 ]; then
    echo "standin: expected TLS + mutual TLS + token arguments" >&2; exit 3
fi
sleep "${STANDIN_SECONDS:-2}"
# STANDIN_FAIL=client_1 (or server): that agent fails after writing its log
if [ "${STANDIN_FAIL:-}" = "$role" ] || [ "${STANDIN_FAIL:-}" = "${role}_${part%/*}" ]; then
    echo "standin: failing as asked (STANDIN_FAIL=$STANDIN_FAIL)" >&2
    exit 3
fi
now=$(date +%s)
if [ "$role" = server ]; then
    echo "INFO flwr standin server: strategy $strategy done" >"$out/server_log.log"
    printf '{"ts":%s.0,"source":"server","event":"run_start","strategy":"%s"}\n{"ts":%s.5,"source":"server","event":"run_end","status":"ok"}\n' \
        "$now" "$strategy" "$now" >>"$out/events.jsonl"
else
    id=${part%/*}
    echo "INFO flwr standin client $id" >"$out/client_${id}_log.log"
    printf '{"ts":%s.2,"source":"client_%s","event":"client_start","partition":"%s"}\n' \
        "$now" "$id" "$part" >>"$out/events.jsonl"
fi
