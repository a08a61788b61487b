#!/usr/bin/env python3
"""Writes example.hkl: a deterministic, made-up structure-factor table for the built-in example.

Every reflection with h, k, l in -8..8 gets one line "h k l F" (integer indices, as dualbragg and nanoBragg
require). F is a smooth, positive function of the indices: a falling Wilson-like envelope in |hkl|^2 times a
slowly varying modulation, so neighbouring spots differ in brightness but nothing is random. No symmetry is
assumed beyond Friedel (F(-h,-k,-l) = F(h,k,l)), which the formula has by construction. F000 is left out of the
file (so it takes -default_F, 0 by default): a bright direct-beam spot would otherwise set the images' scale.

Python 3 standard library only. Run from anywhere: python3 examples/make_hkl.py
"""
import math
import os

HMAX = 8  # indices run over -HMAX..HMAX on each axis


def structure_factor(h, k, l):
    s2 = h * h + k * k + l * l
    envelope = 1000.0 * math.exp(-s2 / 60.0)
    modulation = 1.0 + 0.6 * math.cos(0.7 * h + 0.4 * k) * math.cos(0.5 * l - 0.3 * k)
    return envelope * modulation + 5.0  # +5 keeps weak, high-angle reflections visible


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example.hkl")
    lines = []
    for h in range(-HMAX, HMAX + 1):
        for k in range(-HMAX, HMAX + 1):
            for l in range(-HMAX, HMAX + 1):
                if h == 0 and k == 0 and l == 0:
                    continue
                lines.append("%d %d %d %.4f\n" % (h, k, l, structure_factor(h, k, l)))
    with open(path, "w", newline="\n") as out:
        out.writelines(lines)
    print("wrote %s (%d reflections)" % (path, len(lines)))


if __name__ == "__main__":
    main()
