#!/usr/bin/env bash
# Installs a build tree into a temporary prefix (cmake --install) and builds tests/consumer/consumer.c against it
# twice, as another project would: with CMake's find_package(dualbragg), and with
# cc $(pkg-config --cflags --libs --static dualbragg). Both programs run a tiny simulation. Fails (never skips)
# when any step fails, pkg-config included.
# usage: install_consumer.sh BUILD_DIR SOURCE_DIR C_COMPILER [C_FLAGS [LINKER_FLAGS]]
# The flags are the build's own CMAKE_C_FLAGS and CMAKE_EXE_LINKER_FLAGS: a library built with sanitizers
# (tests/sanitize.sh) links only into programs built with them.
set -euo pipefail
build=$1 src=$2 cc=$3 cflags=${4:-} ldflags=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
test -f "$prefix/include/dualbragg.h"
# only the public header is installed
if [ "$(find "$prefix/include" -type f | wc -l)" != 1 ]; then
    echo "install_consumer: more than include/dualbragg.h installed:" >&2; find "$prefix/include" -type f >&2; exit 1
fi
for p in dualbragg dualbragg-refine dualbragg-gradcheck; do test -x "$prefix/bin/$p"; done
"$prefix/bin/dualbragg" -cell 100 -default_F 100 -N 2 -detpixels 8 -nopgm -nonoise -noprogress \
    -floatfile "$tmp/f.bin" -intfile "$tmp/i.img" > /dev/null
test "$(stat -c %s "$tmp/f.bin")" = 256

echo "== CMake: find_package(dualbragg)"
cmake -S "$src/tests/consumer" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" > "$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/cmake-build" > "$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
"$tmp/cmake-build/consumer"

echo "== pkg-config --cflags --libs --static dualbragg"
pc=$(find "$prefix" -name dualbragg.pc)
test -n "$pc"
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs --static dualbragg)
echo "flags: $flags"
libdir=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=libdir dualbragg)
# shellcheck disable=SC2086
"$cc" $cflags "$src/tests/consumer/consumer.c" -o "$tmp/consumer-pc" $flags $ldflags -Wl,-rpath,"$libdir"
"$tmp/consumer-pc"
echo "install_consumer: both consumers built and ran"
