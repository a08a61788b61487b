#!/usr/bin/env bash
# The built-in example, the whole product in a few seconds, every output into examples/out/:
# 1. an image: a small made-up crystal (example.hkl, written by make_hkl.py) in a monoclinic-like cell, rotated by a
#    misset, on a 512x512 detector over a short phi sweep with a little mosaic spread: float image, float64 image,
#    SMV int and noise images, PGM, Fdump.bin, a PNG picture, and the derivative images of two parameters (the cell
#    length a and the misset angle misset_x) with their PNG pictures (image.png, grad_a.png, grad_misset_x.png);
# 2. a gradcheck of those derivatives against finite differences on a 16x16 box (gradcheck.json);
# 3. a refinement: a weak still of the same crystal with a water background (its Poisson noise image), fitted from
#    a start 0.3% off in the cell, 0.1 degree off in the misset and 5% in the fluence, on boxes around 10 spots, by the Poisson
#    likelihood with a background plane per box: the fitted values with their sigmas (printed, fit.json) and the
#    observed, model and residual pictures (fit_observed.png, fit_model.png, fit_residual.png);
# 4. an ensemble refinement (when dualbragg-ensemble was built, which needs CHOLMOD): four weak stills of the same
#    crystal in other orientations, each misset refined from 0.05 degree off, with the structure factors they share
#    refined from 1.2 times the truth (ensemble_stills.txt, ensemble.hkl, ensemble.json).
# The binaries are ../build/bin/dualbragg, dualbragg-gradcheck and dualbragg-refine (build first: cmake -S . -B
# build && cmake --build build -j); set DUALBRAGG=/path/to/dualbragg to use other ones (the other two are taken
# from beside it). -seed 1 makes the noise images reproducible.
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
bindir="$(dirname "$(command -v "$DUALBRAGG")")"
GRADCHECK="$bindir/dualbragg-gradcheck" REFINE="$bindir/dualbragg-refine"
for p in "$GRADCHECK" "$REFINE"; do
    if [ ! -x "$p" ]; then
        echo "example.sh: $p not found beside $DUALBRAGG; build first (cmake -S . -B build && cmake --build build -j)" >&2
        exit 1
    fi
done
cd "$here"
mkdir -p out

echo "== 1. the image and its derivatives with respect to a and misset_x (examples/out/)"
"$DUALBRAGG" \
    -hkl example.hkl -dump out/Fdump.bin \
    -cell 60 70 80 90 95 90 -misset 10 20 30 -N 8 \
    -mosaic 0.2 -mosaic_domains 5 \
    -lambda 1 -distance 200 -pixel 0.1 -detpixels 512 -oversample 2 \
    -phi 0 -osc 0.5 -phisteps 5 \
    -seed 1 -noprogress \
    -floatfile out/floatimage.bin -floatfile64 out/floatimage64.bin \
    -intfile out/intimage.img -noisefile out/noiseimage.img -pgmfile out/image.pgm -pngfile out/image.png \
    -grad a,misset_x -gradprefix out/grad_ -gradpng | grep -E "^(max_I|mean|wrote|derivative)" || true

# the crystal of the sweep as one weak still: a short exposure with a water background
crystal=(-hkl example.hkl -cell 60 70 80 90 95 90 -N 8 -lambda 1 -distance 200 -pixel 0.1 -detpixels 512
         -oversample 1 -noprogress)

echo "== 2. gradcheck of d image / d a and d image / d misset_x on a 16x16 box around the brightest pixel"
"$GRADCHECK" "${crystal[@]}" -misset 10 20 30 -grad a,misset_x -json out/gradcheck.json | tail -n 4

echo "== 3. refinement of a weak still with water, from a start 0.3% and 0.1 degree off"
"$DUALBRAGG" "${crystal[@]}" -misset 10 20 30 -fluence 6e25 -water 3.5 -seed 1 \
    -noisefile out/still.img -floatfile out/still_float.bin -intfile out/still_int.img -dump out/still_Fdump.bin -nopgm | grep -E "^max_I" || true
"$REFINE" "${crystal[@]}" -cell 60.18 69.79 80.24 90 95 90 -misset 10.1 19.9 30.1 -fluence 6.3e25 \
    -obs out/still.img -spots 10 -refine a,b,c,beta,misset_x,misset_y,misset_z,fluence \
    -json out/fit.json -pngprefix out/fit_ | sed -n '/^stopped/,/^$/p;/^parameter/,/^$/p;/^wrote/p'
echo "true values: a 60, b 70, c 80, beta 95, misset 10 20 30, fluence 6e+25"

ENSEMBLE="$bindir/dualbragg-ensemble"
if [ ! -x "$ENSEMBLE" ]; then
    echo "== 4. (skipped: $ENSEMBLE was not built; it needs CHOLMOD, Debian's libsuitesparse-dev)"
    exit 0
fi
echo "== 4. ensemble refinement: four weak stills sharing F, missets 0.05 degree off, F from 1.2 x the truth"
missets=("10 20 30" "40 10 -20" "-30 50 15" "70 -35 5")
: > out/ensemble_stills.txt
for i in 0 1 2 3; do
    read -r x y z <<< "${missets[$i]}"
    "$DUALBRAGG" "${crystal[@]}" -misset $x $y $z -fluence 6e25 -water 3.5 -seed $((i + 1)) \
        -noisefile "out/ensemble_$i.img" -intfile "out/ensemble_${i}_int.img" -floatfile "out/ensemble_${i}_float.bin" -nopgm -dump out/ensemble_Fdump.bin > /dev/null
    echo "ensemble_$i.img -misset $(awk -v a="$x" -v b="$y" -v c="$z" 'BEGIN { print a + 0.05, b - 0.05, c + 0.05 }')" \
        >> out/ensemble_stills.txt
done
awk '{ printf "%s %s %s %.4f\n", $1, $2, $3, 1.2 * $4 }' example.hkl > out/ensemble_start.hkl
status=0
"$ENSEMBLE" "${crystal[@]/example.hkl/out/ensemble_start.hkl}" -fluence 6e25 -stills out/ensemble_stills.txt -spots 10 \
    -refine_still misset_x,misset_y,misset_z -refine_F -noprogress -max_iterations 40 \
    -hklout out/ensemble.hkl -json out/ensemble.json | tail -n 12 || status=$?
# exit 3: not converged in -max_iterations (the outputs hold the best values found)
[ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"
echo "true missets: ${missets[*]}; refined F against the truth (reflections refined):"
awk 'NR == FNR { t[$1 " " $2 " " $3] = $4; next }
     $5 != "nan" { k = $1 " " $2 " " $3; n++; sx += $4; sy += t[k]; sxx += $4 * $4; syy += t[k] * t[k]; sxy += $4 * t[k] }
     END { if (n > 1) printf "  %d reflections, correlation %.3f\n", n, (n * sxy - sx * sy) / sqrt((n * sxx - sx * sx) * (n * syy - sy * sy)) }' \
    example.hkl out/ensemble.hkl
