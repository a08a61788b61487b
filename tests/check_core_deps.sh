#!/usr/bin/env bash
# The simulator library needs no BLAS, LAPACK or libpng (issue 17): those belong to the refinement library. Fails
# when libdualbragg (static or shared) has an undefined symbol of theirs, or when the refinement library lacks
# them (a check that could not fail otherwise: an empty or wrong file would pass the first test).
# usage: check_core_deps.sh LIBDUALBRAGG LIBDUALBRAGG_REFINE
set -euo pipefail
core=$1 refine=$2
undefined() { nm -u "$1" 2>/dev/null || nm -D --undefined-only "$1"; }
pattern='^ *U (cblas_|LAPACKE_|dpotr|dsyev|dsyrk|dgemv|png_)'
core_u=$(undefined "$core") refine_u=$(undefined "$refine")
if grep -E "$pattern" <<< "$core_u"; then
    echo "check_core_deps: $core needs the symbols above (BLAS, LAPACK or libpng)" >&2
    exit 1
fi
if ! grep -Eq "$pattern" <<< "$refine_u"; then
    echo "check_core_deps: $refine uses none of BLAS, LAPACK, libpng: is it the refinement library?" >&2
    exit 1
fi
echo "check_core_deps: $(basename "$core") needs none of BLAS, LAPACK, libpng; $(basename "$refine") does"
