#!/bin/sh
# test_nn_install.sh - `make install-nn` into a temporary DESTDIR, then build
# nn/examples/train_fmnist.c with pkg-config alone and run it on a subset.
BUILD=${BUILD:-build}
tmp=$(mktemp -d /tmp/pnn-install.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $1"; exit 1; }
make -s --no-print-directory install-nn BUILD="$BUILD" DESTDIR="$tmp/stage" PREFIX=/usr \
    >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail test_nn_install/install; }
for f in include/pnn.h lib/libpetal-nn.a lib/libpetal-nn.so.0 lib/libpetal-nn.so \
         lib/pkgconfig/petal-nn.pc; do
    [ -e "$tmp/stage/usr/$f" ] || fail "test_nn_install/installed_$f"
done
echo "PASS: test_nn_install/install"
export PKG_CONFIG_PATH="$tmp/stage/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$tmp/stage"
[ "$(pkg-config --modversion petal-nn)" = 0.1.0 ] || fail test_nn_install/pkgconfig_version
san=
case "$BUILD" in *san*) san="-fsanitize=address,undefined" ;; esac
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -Wall -Wextra -Werror -O2 $san nn/examples/train_fmnist.c \
    $(pkg-config --cflags --libs petal-nn zlib) -o "$tmp/train_fmnist" 2>"$tmp/cc.log" ||
    { cat "$tmp/cc.log"; fail test_nn_install/build_example; }
echo "PASS: test_nn_install/build_example_with_pkg_config"
d=/usr/share/datasets/fashion-mnist
if [ ! -f "$d/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: test_nn_install/run_example dataset-fashion-mnist not installed"
    exit 0
fi
LD_LIBRARY_PATH="$tmp/stage/usr/lib" "$tmp/train_fmnist" "$d" 1000 "$tmp/w.npz" \
    >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail test_nn_install/run_example; }
grep -q "test accuracy" "$tmp/out" && [ -s "$tmp/w.npz" ] || fail test_nn_install/run_example
# the example really used the installed shared library
LD_LIBRARY_PATH="$tmp/stage/usr/lib" ldd "$tmp/train_fmnist" | grep -q "$tmp/stage/usr/lib/libpetal-nn.so.0" ||
    fail test_nn_install/uses_installed_so
cat "$tmp/out"
echo "PASS: test_nn_install/run_example"
