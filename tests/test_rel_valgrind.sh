#!/bin/sh
# test_rel_valgrind.sh - `make check-valgrind`: a 2-round local federation
# (petal server + 2 petal clients on 127.0.0.1, a small CNN, a Fashion-MNIST
# subset, centralised and federated evaluation, checkpoints, --save-weights)
# with every process under valgrind --leak-check=full. Fails when valgrind
# reports any error or a definitely/indirectly lost block in any process, or
# when a process exits non-zero. Prints each process's valgrind summary.
# Slow (a minute or two): a make target, not part of `make test`.
set -u
B=${BUILD:-build}
P=$B/petal
FMNIST=/usr/share/datasets/fashion-mnist
if ! command -v valgrind >/dev/null 2>&1; then
    echo "FAIL: valgrind not installed (apt-get install valgrind)"; exit 1
fi
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: valgrind Fashion-MNIST not installed (dataset-fashion-mnist)"; exit 0
fi
MODEL='{"input_shape": [28, 28, 1], "layers": [
 {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
 {"type": "MaxPool2D", "pool_size": 2}, {"type": "Flatten"},
 {"type": "Dense", "units": 10, "activation": "softmax"}]}'
VG="valgrind --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30"
d=$(mktemp -d /tmp/petal-valgrind-XXXXXX)
$VG --log-file="$d/server.vg" "$P" server --address 127.0.0.1:0 --port-file "$d/port" \
    --model "$MODEL" --rounds 2 --min-available-clients 2 --min-fit-clients 2 \
    --min-evaluate-clients 2 --dataset fashion-mnist --eval-limit 100 --wait-clients 300 \
    --round-timeout 600 --out "$d/out" --save-weights "$d/w.npz" --threads 1 \
    >"$d/server.log" 2>&1 &
spid=$!
i=0
while [ ! -s "$d/port" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -s "$d/port" ]; then
    echo "FAIL: valgrind server did not start (see $d)"; kill $spid; exit 1
fi
port=$(cat "$d/port")
for c in 0 1; do
    $VG --log-file="$d/client$c.vg" "$P" client --server "127.0.0.1:$port" --model "$MODEL" \
        --dataset fashion-mnist --partition $c/2 --limit 200 --eval-limit 100 --threads 1 \
        --connect-timeout 300 --out "$d/out" >"$d/client$c.log" 2>&1 &
    eval cpid$c=\$!
done
fail=0
wait $cpid0; rc0=$?
wait $cpid1; rc1=$?
wait $spid; rcs=$?
for n in server:$rcs client0:$rc0 client1:$rc1; do
    name=${n%%:*}; rc=${n#*:}
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$d/$name.vg" | tail -1)
    lost=$(grep -E "definitely lost:|indirectly lost:" "$d/$name.vg" | sed 's/^==[0-9]*== *//' |
           tr '\n' ' ')
    [ -z "$lost" ] && lost="all heap blocks were freed"
    heap=$(grep -E "in use at exit:|total heap usage:" "$d/$name.vg" | sed 's/^==[0-9]*== *//' |
           tr '\n' ' ')
    lost="$lost; $heap"
    echo "  $name: exit $rc, valgrind errors ${errs:-?}; $lost"
    if [ "$rc" != 0 ] || [ "${errs:-1}" != 0 ]; then
        fail=1
        echo "FAIL: valgrind_$name (logs in $d)"
        grep -A25 -E "definitely lost in|indirectly lost in|Invalid|uninitialised|Mismatched" \
            "$d/$name.vg" | head -60
    else
        echo "PASS: valgrind_$name"
    fi
done
[ $fail = 0 ] && rm -rf "$d"
exit $fail
