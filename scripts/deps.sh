#!/bin/sh
# deps.sh - install the Debian packages Petal needs (idempotent).
#
# Package lists live in scripts/deps/*.txt (one package per line, '#'
# comments), one file per module, so modules add what they need without
# touching each other. As root this runs apt-get; otherwise it prints the
# exact command to run. npm packages for tests (scripts/deps/npm.txt, lines
# "name@version") are installed into tests/node_modules.
set -e
cd "$(dirname "$0")/.."
pkgs=$(cat scripts/deps/*.txt 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "deps: installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "deps: missing Debian packages:$missing"
        echo "deps: run: sudo apt-get install -y$missing"
        exit 1
    fi
fi
if [ -s scripts/deps/npm.list ]; then
    want=$(sed 's/#.*//' scripts/deps/npm.list | grep -v '^ *$' | tr '\n' ' ')
    need=
    for spec in $want; do
        name=${spec%@*}
        [ -f "tests/node_modules/$name/package.json" ] || need="$need $spec"
    done
    if [ -n "$need" ]; then
        if command -v npm >/dev/null 2>&1; then
            echo "deps: npm install$need (tests/node_modules)"
            mkdir -p tests
            # shellcheck disable=SC2086
            (cd tests && npm install --no-save --no-audit --no-fund --loglevel=error $need >/dev/null)
        else
            echo "deps: npm not found; tests that need$need will be skipped"
        fi
    fi
fi
exit 0
