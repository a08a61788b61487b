#!/usr/bin/env bash
# bench/gpu_check.sh [BUILD_DIR]: every check that needs a GPU, in one call (a GPU machine is lent for minutes): builds
# with CUDA unless BUILD_DIR already holds bin/test_gpu and bin/bench_gpu (built elsewhere and carried over), runs
# the GPU test on every golden case (tests/image/test_gpu.c) and the GPU bench (bench/bench_gpu.c), and prints every figure
# and the compiler's register report of each kernel. Under 8 minutes on an H100/H200 (a few seconds with a carried
# build). Exit status 0 only if both pass.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
B=${1:-build-gpu-check}
if [ ! -x "$B/bin/test_gpu" ] || [ ! -x "$B/bin/bench_gpu" ]; then
    echo "+ building with CUDA in $B"
    cmake -S . -B "$B" -DDUALBRAGG_AVX2=OFF -DDUALBRAGG_ENGINE_OPT=-O1 -DDUALBRAGG_PLANTED_TEST=OFF -DBUILD_TESTING=OFF || exit 1
    cmake --build "$B" -j "$(nproc)" --target test_gpu bench_gpu 2>&1 | grep -E "error|warning|registers|stack frame" || true
    [ -x "$B/bin/test_gpu" ] && [ -x "$B/bin/bench_gpu" ] || { echo "gpu_check: the build failed"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
echo "+ test_gpu: every golden case, the image and every derivative image, GPU against CPU"
"$B/bin/test_gpu" "$PWD/tests/golden"
t=$?
echo "+ bench_gpu: anchors.md's B0 and B1 at 1024 x 1024"
"$B/bin/bench_gpu"
b=$?
echo "gpu_check: test_gpu exit $t, bench_gpu exit $b"
[ "$t" -eq 0 ] && [ "$b" -eq 0 ]
