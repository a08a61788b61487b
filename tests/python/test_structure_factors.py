"""Structure factors as values (issue 19) through the package: the table's list and its order, setting F by list and
by hkl, the refusals (with the library's messages, nothing changed), and the sparse F-Jacobian of
run_selected(structure_factors=True): its values and parameter Jacobian bit for bit those of the plain call, and
every entry equal to what the package's own dualbragg program writes with -grad_F for the same pixels (both print
or copy the same doubles of one library computation, so the comparison is exact)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse

import dualbragg
from conftest import GOLDEN, case_args

PARAMS = ["a", "phi0", "distance", "na"]


def read_hkl(path):
    """The lines of an hkl file: hkl (n, 3) ints and F (n,), in file order."""
    rows = [line.split() for line in open(path) if line.strip()]
    return np.array([[int(w) for w in r[:3]] for r in rows]), np.array([float(r[3]) for r in rows])


def bright_roi(args, half=4):
    """(xmin, xmax, ymin, ymax): 2*half x 2*half pixels around the brightest pixel of the whole image."""
    img = dualbragg.Simulation(args).run()
    s, f = np.unravel_index(np.argmax(img), img.shape)
    S, F = img.shape
    x0, y0 = min(max(f - half, 0), F - 2 * half), min(max(s - half, 0), S - 2 * half)
    return x0, x0 + 2 * half - 1, y0, y0 + 2 * half - 1


def roi_args(case, roi):
    return case_args(case) + ["-roi"] + [str(v) for v in roi]


# ---- the list, and setting it ----

def test_list_is_the_file_in_order(in_case):
    """structure_factors() is the -hkl file's lines in file order (int32 hkl (n, 3), float64 F (n,))."""
    in_case("b_triclinic")
    sim = dualbragg.Simulation(case_args("b_triclinic"))
    hkl, F = sim.structure_factors()
    want_hkl, want_F = read_hkl("P1.hkl")
    assert hkl.shape == (len(want_F), 3) and hkl.dtype == np.intc
    assert F.shape == (len(want_F),) and F.dtype == np.float64
    assert np.array_equal(hkl, want_hkl) and np.array_equal(F, want_F)


def test_set_round_trip_and_the_next_run(in_case):
    """Set all (list order) and some (by hkl): structure_factors() gives back exactly what was set, the others are
    unchanged, and the next run equals a fresh simulation from an hkl file holding those values."""
    in_case("b_triclinic")
    args = case_args("b_triclinic")
    roi = bright_roi(args)
    sim = dualbragg.Simulation(args + ["-roi"] + [str(v) for v in roi])
    hkl, F = sim.structure_factors()
    F2 = F * 1.25 + 0.5
    sim.set_structure_factors(F2)
    assert np.array_equal(sim.structure_factors()[1], F2)
    assert np.array_equal(sim.structure_factors()[0], hkl)
    pick = [7, 3000, len(F) - 1]
    sim.set_structure_factors(hkl[pick].tolist(), [1.0, 0.0, 123.456])  # lists are arrays too
    F3 = F2.copy()
    F3[pick] = [1.0, 0.0, 123.456]
    assert np.array_equal(sim.structure_factors()[1], F3)
    # the F of every reflection the image's brightest pixels read, changed: the image changes with them
    fresh_hkl = "P1_set.hkl"
    with open(fresh_hkl, "w") as f:
        for (h, k, l), v in zip(hkl, F3):
            f.write("%d %d %d %.17g\n" % (h, k, l, v))
    fresh = dualbragg.Simulation([fresh_hkl if a == "P1.hkl" else a for a in args] +
                                 ["-roi"] + [str(v) for v in roi])
    assert np.array_equal(sim.run(), fresh.run())
    assert not np.array_equal(sim.run(), dualbragg.Simulation(args + ["-roi"] + [str(v) for v in roi]).run())


def test_refusals_name_the_problem_and_change_nothing(in_case):
    in_case("b_triclinic")
    sim = dualbragg.Simulation(case_args("b_triclinic"))
    hkl, F = sim.structure_factors()

    def refused(words, *call):
        with pytest.raises(dualbragg.Error) as e:
            sim.set_structure_factors(*call)
        for w in words:
            assert w in str(e.value), (w, str(e.value))
        assert np.array_equal(sim.structure_factors()[1], F)  # a refused call changes nothing
        return e.value

    # the library's messages
    e = refused(["h k l = 40 0 0", "not in the table"], [[0, 0, 1], [40, 0, 0]], [1.0, 2.0])
    assert e.code == 1
    refused(["F = -1", "finite number >= 0", "nothing was changed"], hkl[:1], [-1.0])
    bad = F.copy()
    bad[5] = np.nan
    refused(["structure factor 5", "h k l = %d %d %d" % tuple(hkl[5]), "nan"], bad)
    refused(["F = inf"], hkl[2:3], [np.inf])
    refused(["%d values for a list of %d structure factors" % (len(F) - 1, len(F))], F[:-1])
    # the bindings' own checks
    refused(["hkl must be integers"], hkl[:2].astype(float), [1.0, 2.0])
    refused(["(k, 3)"], hkl[:2, :2], [1.0, 2.0])
    refused(["2 reflections in hkl and 1 values in F"], hkl[:2], [1.0])
    refused(["F must be a 1-d array"], F.reshape(-1, 1))
    refused(["beyond a C int"], [[2 ** 40, 0, 0]], [1.0])


def test_no_table(in_case):
    """-default_F only: an empty list, and setting or differentiating F is refused by the library."""
    in_case("b_triclinic")
    args = case_args("b_triclinic")
    i = args.index("-hkl")
    sim = dualbragg.Simulation(args[:i] + ["-default_F", "10"] + args[i + 2:] + ["-detpixels", "32"])
    hkl, F = sim.structure_factors()
    assert hkl.shape == (0, 3) and F.shape == (0,)
    with pytest.raises(dualbragg.Error, match="no structure-factor table"):
        sim.set_structure_factors([])
    with pytest.raises(dualbragg.Error, match="needs a structure-factor table"):
        sim.run_selected(["a"], structure_factors=True)


# ---- the F-Jacobian ----

@pytest.mark.parametrize("case", ["b_triclinic", "b2_interp"])
def test_values_and_jac_unchanged(in_case, case):
    """values and jac of run_selected(structure_factors=True) are those of run_selected, bit for bit; fjac is a
    float64 csr_matrix of (selected pixels) x (listed reflections)."""
    in_case(case)
    sim = dualbragg.Simulation(roi_args(case, bright_roi(case_args(case))))
    n = len(sim.structure_factors()[1])
    for params in (PARAMS, []):
        v0, j0 = sim.run_selected(params)
        v1, j1, fjac = sim.run_selected(params, structure_factors=True)
        assert np.array_equal(v0, v1) and np.array_equal(j0, j1)
        assert j1.shape == (sim.selected_count, len(params))
        assert isinstance(fjac, scipy.sparse.csr_matrix)
        assert fjac.shape == (sim.selected_count, n) and fjac.dtype == np.float64 and fjac.nnz > 0
        v2, j2 = sim.run_selected(params)  # and the plain call after it is as before
        assert np.array_equal(v0, v2) and np.array_equal(j0, j2)


def read_grad_F(path):
    """-grad_F's file: the header, then (fpixel, spixel, h, k, l) ints (n, 5) and dI/dF (n,)."""
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("#") and "fpixel spixel h k l dI/dF" in lines[0]
    words = [line.split() for line in lines[1:]]
    assert all(len(w) == 6 for w in words)
    return np.array([[int(x) for x in w[:5]] for w in words]).reshape(-1, 5), np.array([float(w[5]) for w in words])


@pytest.mark.parametrize("case", ["b_triclinic", "b2_interp"])
def test_sparse_matrix_equals_the_programs_grad_F(in_case, case):
    """The package's dualbragg with the case's flags, -roi over the same pixels and -grad_F: the same entries, in the
    same order (rows as selected, columns ascending), each value exactly fjac's. b2_interp (N = 2) interpolates F
    tricubically: a pixel's one sample reads 64 neighbours, so its row holds up to 64 entries; b_triclinic reads the
    nearest reflection only: one entry at most."""
    folder = in_case(case)
    args = case_args(case)
    roi = bright_roi(args)
    x0, x1, y0, y1 = roi
    sim = dualbragg.Simulation(roi_args(case, roi))
    _, _, fjac = sim.run_selected(structure_factors=True)
    hkl, _ = sim.structure_factors()
    column = {tuple(int(v) for v in x): j for j, x in enumerate(hkl)}

    out = subprocess.run([dualbragg.program("dualbragg")] + roi_args(case, roi) + ["-grad_F", "fj.txt"],
                         cwd=folder, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "%d nonzeros" % fjac.nnz in out.stdout
    idx, val = read_grad_F(folder / "fj.txt")
    f, s = idx[:, 0], idx[:, 1]
    assert ((f >= x0) & (f <= x1) & (s >= y0) & (s <= y1)).all()
    rows = (s - y0) * (x1 - x0 + 1) + (f - x0)  # the ROI's row-major order, run_selected's
    cols = np.array([column[tuple(x)] for x in idx[:, 2:].tolist()], dtype=np.int64)
    want_rows = np.repeat(np.arange(fjac.shape[0]), np.diff(fjac.indptr))
    assert np.array_equal(rows, want_rows)
    assert np.array_equal(cols, fjac.indices)
    assert np.array_equal(val, fjac.data)

    per_row = np.diff(fjac.indptr)
    geometry = sim.geometry
    if case == "b2_interp":
        assert geometry["interpolate"] == 1 and 8 < per_row.max() <= 64
    else:
        assert geometry["interpolate"] == 0 and per_row.max() == 1


def test_scipy_only_when_asked(in_case):
    """Without scipy the package still imports and runs; run_selected(structure_factors=True) alone needs it."""
    folder = in_case("b_triclinic")
    code = ("import sys; sys.modules['scipy'] = None\n"
            "import dualbragg\n"
            "sim = dualbragg.Simulation(%r)\n"
            "sim.run_selected(['a'])\n"
            "try:\n"
            "    sim.run_selected(['a'], structure_factors=True)\n"
            "except ImportError as e:\n"
            "    print('refused:', e)\n" % (roi_args("b_triclinic", (100, 103, 100, 103)),))
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "refused: dualbragg: run_selected(structure_factors=True)" in out.stdout and "scipy" in out.stdout


# ---- gradcheck of structure factors ----

def test_gradcheck_of_structure_factors(in_case):
    """dualbragg.gradcheck(..., hkl=...) checks the F columns (db_gradcheck_F / db_gradcheck_with_F, as -grad_hkl):
    the (up to three) reflections with the largest columns on the region pass at rtol 1e-6 with the 4-point stencil, each
    row non-empty; a tolerance nothing can meet fails (the report is read, not assumed); an unlisted hkl is
    refused by name."""
    in_case("b_triclinic")
    args = case_args("b_triclinic")
    roi = bright_roi(args)
    sim = dualbragg.Simulation(roi_args("b_triclinic", roi))
    hkl = sim.structure_factors()[0]
    _, _, fjac = sim.run_selected([], structure_factors=True)
    weight = np.asarray(abs(fjac).sum(axis=0)).ravel()
    order = [j for j in np.argsort(weight)[::-1][:3] if weight[j] > 0]  # a bright spot's box: one or two reflections
    assert order
    top = hkl[order]
    rep = dualbragg.gradcheck(args, hkl=top, roi=roi, precise=True)
    assert rep["all_pass"]
    assert [r["param"] for r in rep["rows"]] == ["F(%d %d %d)" % tuple(x) for x in top]
    assert all(r["pass"] and r["max_abs_fd"] > 0 and r["hkl"] == tuple(x) for r, x in zip(rep["rows"], top))
    both = dualbragg.gradcheck(args, ["a"], hkl=top[:1], roi=roi)
    assert [r["param"] for r in both["rows"]] == ["a", "F(%d %d %d)" % tuple(top[0])] and both["all_pass"]
    strict = dualbragg.gradcheck(args, hkl=top[:1], roi=roi, rtol=0, atol_abs=0)
    assert not strict["all_pass"]
    with pytest.raises(dualbragg.Error, match="F\\(40 0 0\\) is not in the structure-factor table"):
        dualbragg.gradcheck(args, hkl=[(40, 0, 0)], roi=roi)
