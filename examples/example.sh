#!/usr/bin/env bash
# The built-in example: a small made-up crystal (example.hkl, written by make_hkl.py) in a monoclinic-like cell,
# rotated by a misset, on a 512x512 detector over a short phi sweep with a little mosaic spread.
# Writes every output into examples/out/: float image, float64 image, SMV int and noise images, PGM, Fdump.bin.
# The binary is ../build/bin/dualbragg (build first: cmake -S . -B build && cmake --build build -j);
# set DUALBRAGG=/path/to/dualbragg to use another one. -seed 1 makes the noise image reproducible.
# The sweep starts at -phi 0, so by default the reference's phi==0 carryover quirk is reproduced
# (README, spec section 4); add "-phi_carryover off" for the physically intended phi = 0 slice.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DUALBRAGG="${DUALBRAGG:-$here/../build/bin/dualbragg}"
# a relative override is taken relative to the caller's folder; a bare name is looked up on PATH
case "$DUALBRAGG" in
    /*) ;;
    */*) DUALBRAGG="$PWD/$DUALBRAGG" ;;
esac
if ! command -v "$DUALBRAGG" >/dev/null 2>&1; then
    echo "example.sh: $DUALBRAGG not found or not executable; build first (cmake -S . -B build && cmake --build build -j)" >&2
    exit 1
fi
cd "$here"
mkdir -p out

"$DUALBRAGG" \
    -hkl example.hkl -dump out/Fdump.bin \
    -cell 60 70 80 90 95 90 -misset 10 20 30 -N 8 \
    -mosaic 0.2 -mosaic_domains 5 \
    -lambda 1 -distance 200 -pixel 0.1 -detpixels 512 -oversample 2 \
    -phi 0 -osc 0.5 -phisteps 5 \
    -seed 1 -noprogress \
    -floatfile out/floatimage.bin -floatfile64 out/floatimage64.bin \
    -intfile out/intimage.img -noisefile out/noiseimage.img -pgmfile out/image.pgm
