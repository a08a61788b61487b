#!/bin/bash
# check_png.sh DUALBRAGG DUALBRAGG_REFINE GOLDEN_DIR: a real image reader (Python's PIL, not libpng, which wrote
# them) opens the pictures that `dualbragg -pngfile ... -grad a -gradpng` writes: size (width = fast pixels,
# height = slow pixels), mode RGB, and a pixel that is 0 in the float image is black (white in the derivative
# picture). Exits 77 (skipped) when no Python can import PIL.
set -euo pipefail
cli=$1
refine=$2
golden=$3

py=
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import PIL' >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
if [ -z "$py" ]; then
    echo "check_png.sh: skipped: neither /usr/bin/python3 nor python3 can import PIL (apt-get install python3-pil)"
    exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/dualbragg-png-XXXXXX")
trap 'rm -rf "$dir"' EXIT
cp "$golden/b_triclinic/P1.hkl" "$dir/"
cd "$dir"

# the b_triclinic case (cmd.txt line 1) on a 48 x 32 detector, so that width and height differ; the -roi leaves
# the slow rows 24..31 at 0
if ! "$cli" -cell 70 80 90 75 85 95 -misset 10 20 30 -hkl P1.hkl -Na 4 -Nb 5 -Nc 6 -lambda 1 -distance 100 \
    -pixel 0.1 -detpixels_f 48 -detpixels_s 32 -roi 0 47 0 23 -oversample 1 -noprogress -nopgm -nonoise -seed 1 \
    -floatfile float.bin -pngfile float.png -grad a -gradpng >run.log 2>&1; then
    cat run.log
    echo "check_png.sh: dualbragg failed"
    exit 1
fi

"$py" - float.bin float.png float.da.png <<'EOF'
import array, sys
from PIL import Image

F, S = 48, 32
floats = array.array("f")
with open(sys.argv[1], "rb") as f:
    floats.frombytes(f.read())
assert len(floats) == F * S, f"float.bin holds {len(floats)} values, expected {F * S}"
zero = next(i for i in range(F * S) if floats[i] == 0.0 and i // F >= 24)  # outside the -roi
brightest = max(range(F * S), key=lambda i: floats[i])
assert floats[brightest] > 0, "the float image is all 0"
expect = {sys.argv[2]: {zero: (0, 0, 0), brightest: (255, 255, 255)},  # log scale
          sys.argv[3]: {zero: (255, 255, 255)}}                        # diverging
for path, pixels in expect.items():
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG", f"{path}: format {im.format}"
        assert im.size == (F, S), f"{path}: size {im.size}, expected (width, height) = ({F}, {S})"
        assert im.mode == "RGB", f"{path}: mode {im.mode}, expected RGB"
        for i, want in pixels.items():
            got = im.getpixel((i % F, i // F))
            assert got == want, f"{path}: pixel (f={i % F}, s={i // F}) is {got}, expected {want}"
    print(f"{path}: {F} x {S} RGB, read by PIL, as expected")
EOF

# dualbragg-refine's pictures: fitting the image just written (a from 70.1) over a box, so that the outline shows
printf '4 40 2 20\n' > boxes.txt
if ! "$refine" -cell 70.1 80 90 75 85 95 -misset 10 20 30 -hkl P1.hkl -Na 4 -Nb 5 -Nc 6 -lambda 1 -distance 100 \
    -pixel 0.1 -detpixels_f 48 -detpixels_s 32 -roi 0 47 0 23 -oversample 1 -noprogress -obs float.bin \
    -refine a -objective lsq -weights unit -boxes boxes.txt -pngprefix fit_ >refine.log 2>&1; then
    cat refine.log
    echo "check_png.sh: dualbragg-refine failed"
    exit 1
fi
"$py" - fit_observed.png fit_model.png fit_residual.png <<'EOF2'
import sys
from PIL import Image

F, S = 48, 32
for path in sys.argv[1:]:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.size == (F, S) and im.mode == "RGB", f"{path}: {im.format} {im.size} {im.mode}"
        # the box 4..40 x 2..20 is outlined in green
        for f, s in ((4, 2), (40, 20), (20, 2), (4, 10)):
            assert im.getpixel((f, s)) == (0, 255, 0), f"{path}: box border ({f}, {s}) is {im.getpixel((f, s))}"
        assert im.getpixel((20, 10)) != (0, 255, 0), f"{path}: the inside of the box is outlined"
    print(f"{path}: {F} x {S} RGB with the fitted box outlined, read by PIL")
EOF2
