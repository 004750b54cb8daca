#!/bin/sh
# test_deps_profiles.sh - scripts/deps.sh profiles (test, build, runtime):
# the runtime profile covers every shared library build/petal links (owner
# packages, or their dependencies), build holds runtime, test holds build,
# and build installs nothing that only the tests need (the instances of
# 'petal launch' install build or runtime, never the test toolchain).
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
fail=0
ok() { echo "PASS: test_deps_profiles/$1"; }
ko() { echo "FAIL: test_deps_profiles/$1 $2"; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for p in test build runtime; do
    sh scripts/deps.sh "$p" --list >"$tmp/$p" || ko "list_$p" "deps.sh $p --list failed"
done
[ -s "$tmp/runtime" ] && ok runtime_not_empty || ko runtime_not_empty
missing=$(comm -23 "$tmp/runtime" "$tmp/build" | tr '\n' ' ')
[ -z "$missing" ] && ok build_holds_runtime || ko build_holds_runtime "$missing"
missing=$(comm -23 "$tmp/build" "$tmp/test" | tr '\n' ' ')
[ -z "$missing" ] && ok test_holds_build || ko test_holds_build "$missing"
bad=$(grep -xE 'chromium|clang|libclang-rt-.*|python3-grpcio|python3-grpc-tools|python3-botocore|python3-numpy|python3-protobuf' "$tmp/build" | tr '\n' ' ')
[ -z "$bad" ] && ok build_has_no_test_toolchain || ko build_has_no_test_toolchain "$bad"
sh scripts/deps.sh bogus --list >/dev/null 2>&1 && ko bad_profile_refused || ok bad_profile_refused
if [ ! -x "$BUILD/petal" ] || ! command -v ldd >/dev/null || ! command -v apt-cache >/dev/null; then
    echo "SKIP: test_deps_profiles/runtime_covers_petal (no $BUILD/petal, ldd or apt-cache)"
    exit $fail
fi
# the runtime profile and everything it depends on (recursively)
# shellcheck disable=SC2046
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances $(cat "$tmp/runtime") 2>/dev/null |
    grep -v '^ ' | sed 's/:.*//' | sort -u >"$tmp/closure"
# the packages that own the libraries petal links (one dpkg -S for all paths;
# with merged /usr a library may be registered under /usr or its real path)
ldd "$BUILD/petal" | awk '$3 ~ /^\// {print $3}' | sort -u >"$tmp/libs"
while read -r lib; do
    printf '%s\n%s\n/usr%s\n' "$lib" "$(readlink -f "$lib")" "$lib"
done <"$tmp/libs" | sort -u >"$tmp/paths"
# shellcheck disable=SC2046
dpkg -S $(cat "$tmp/paths") 2>/dev/null >"$tmp/owners"
sed 's/^.*: //' "$tmp/owners" >"$tmp/owned"   # the paths dpkg knows
while read -r lib; do
    real=$(readlink -f "$lib")
    grep -qxF -e "$lib" -e "$real" -e "/usr$lib" "$tmp/owned" || echo "UNOWNED:$lib"
done <"$tmp/libs" >"$tmp/linked"
sed 's/: .*//' "$tmp/owners" | tr ',' '\n' | sed 's/^ *//; s/:.*//' >>"$tmp/linked"
# a sanitizer build (make SANITIZE=...) also links the compiler's sanitizer runtimes
# (and the C++ library they need): not what the instances run
if grep -q 'lib[a-z]*san' "$tmp/libs"; then
    grep -vE '^lib(a|ub|l|t)san[0-9]*$|^libstdc\+\+6$' "$tmp/linked" >"$tmp/linked.n"
    mv "$tmp/linked.n" "$tmp/linked"
fi
sort -u -o "$tmp/linked" "$tmp/linked"
notcov=$(comm -23 "$tmp/linked" "$tmp/closure" | tr '\n' ' ')
[ -z "$notcov" ] && ok runtime_covers_petal ||
    ko runtime_covers_petal "libraries of $BUILD/petal from packages outside the runtime profile: $notcov"
exit $fail
