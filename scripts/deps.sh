#!/bin/sh
# deps.sh - install the Debian packages Petal needs (idempotent).
#
# usage: scripts/deps.sh [test|build|runtime] [--list]
#   test     (default) build, run and test Petal: CI and developers
#   build    build and run petal, nothing for the tests (an instance that builds)
#   runtime  run a petal built elsewhere (instances handed the binary)
#   --list   print the profile's packages, install nothing
#
# Package lists live in scripts/deps/*.txt, one file per module, so modules
# add what they need without touching each other: packages separated by
# blanks, '#' comments, and an optional tag on the line:
#   (no tag)   needed to build: profiles build and test
#   @runtime   needed to run petal (shared libraries, datasets, the tools the
#              instances' user-data uses): every profile. Libraries petal links
#              are checked by tests/test_deps_profiles.sh; a library loaded at
#              run time (dlopen) must be tagged here by hand.
#   @test      tests and benchmarks only
# As root this runs apt-get, waiting for the dpkg lock (unattended-upgrades
# holds it for minutes on a fresh cloud instance); otherwise it prints the
# exact command to run. npm packages for tests (scripts/deps/npm.list, lines
# "name@version") are installed into tests/node_modules (profile test only).
set -e
cd "$(dirname "$0")/.."
profile=test
list=0
for a in "$@"; do
    case $a in
        test|build|runtime) profile=$a ;;
        --list) list=1 ;;
        *) echo "deps: unknown argument '$a' (test, build, runtime, --list)" >&2; exit 2 ;;
    esac
done
pkgs=$(cat scripts/deps/*.txt 2>/dev/null | sed 's/#.*//' | awk -v prof="$profile" '
    {
        tag = ""
        for (i = 1; i <= NF; i++) if ($i ~ /^@/) tag = $i
        if (tag != "" && tag != "@runtime" && tag != "@test") {
            print "deps: unknown tag " tag " in: " $0 > "/dev/stderr"; exit 3
        }
        if (prof == "test" || (prof == "build" && tag != "@test") ||
            (prof == "runtime" && tag == "@runtime"))
            for (i = 1; i <= NF; i++) if ($i !~ /^@/) print $i
    }' | sort -u)
if [ "$list" = 1 ]; then
    echo "$pkgs"
    exit 0
fi
missing=
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
n=$(echo "$pkgs" | grep -c .)
if [ -z "$missing" ]; then
    echo "deps ($profile): $n packages, all installed"
elif [ "$(id -u)" -eq 0 ]; then
    echo "deps ($profile): installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    lock="-o DPkg::Lock::Timeout=600"
    tries=0
    # shellcheck disable=SC2086
    until apt-get $lock update -qq; do
        tries=$((tries + 1)); [ $tries -lt 5 ] || exit 1
        echo "deps: apt-get update failed, retrying in 10 s"; sleep 10
    done
    # shellcheck disable=SC2086
    apt-get $lock install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "deps: missing Debian packages:$missing"
    echo "deps: run: sudo apt-get install -y$missing"
    exit 1
fi
if [ "$profile" = test ] && [ -s scripts/deps/npm.list ]; then
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
