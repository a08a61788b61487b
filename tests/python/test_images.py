"""Images and derivative images through the package: bit for bit the command line's (every golden case), the
Jacobian of run_selected equal to the derivative images, in-place buffers."""
import os
import subprocess

import numpy as np
import pytest

import dualbragg
from conftest import CASES, GOLDEN, SMALL, case_args


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("case", CASES)
def test_golden_bitwise(case, in_case):
    """The float image equals the reference's float.bin (which the dualbragg program reproduces bit for bit), and
    the package's own dualbragg program writes the same bits."""
    folder = in_case(case)
    args = case_args(case)
    sim = dualbragg.Simulation(args)
    img32 = sim.run(float32=True)
    ref = np.fromfile(os.path.join(GOLDEN, case, "float.bin"), dtype=np.float32)
    assert ref.size == img32.size and img32.shape == sim.shape
    assert np.array_equal(bits(img32.ravel()), bits(ref)), "%s: %d pixels differ" % (
        case, int(np.count_nonzero(bits(img32.ravel()) != bits(ref))))
    img64 = sim.run()
    assert img64.dtype == np.float64 and img64.shape == sim.shape
    assert np.array_equal(bits(img64.astype(np.float32)), bits(img32))
    # the command-line program installed with the package, in the same folder
    ours = [a for a in args]
    ours[ours.index("-floatfile") + 1] = "cli.bin"
    ours[ours.index("-intfile") + 1] = "cli.img"
    ours[ours.index("-noisefile") + 1] = "cli_noise.img"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([dualbragg.program("dualbragg")] + ours, cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    cli = np.fromfile(folder / "cli.bin", dtype=np.float32)
    assert np.array_equal(bits(cli), bits(img32.ravel()))


def test_geometry_and_shape(in_case):
    in_case("b_triclinic")
    sim = dualbragg.Simulation(" ".join(SMALL))  # one string works like a list
    g = sim.geometry
    assert sim.shape == (64, 64)
    assert (g["fpixels"], g["spixels"], g["oversample"]) == (64, 64, 1)
    assert g["pixel_mm"] == 0.1 and g["distance_mm"] == 100.0
    assert (g["Na"], g["Nb"], g["Nc"]) == (4.0, 5.0, 6.0)
    assert abs(g["cell"][0] - 70) < 1e-9 and abs(g["cell"][2] - 90) < 1e-9
    assert g["beam"] == (1.0, 0.0, 0.0)  # MOSFLM beam along x
    assert g["interpolate"] in (0, 1)
    assert "a" in sim.param_names and "phi0" in sim.param_names and len(sim.param_names) == len(set(sim.param_names))


def test_rectangular_detector_shape():
    sim = dualbragg.Simulation("-cell 100 -default_F 100 -N 3 -detpixels_f 40 -detpixels_s 24")
    img = sim.run()
    assert img.shape == (24, 40) == sim.shape
    # index slow*fpixels + fast: the brightest spot is where the float image says
    flat = sim.run(float32=True).ravel()
    assert np.array_equal(img.astype(np.float32).ravel(), flat)


def test_params_round_trip(in_case):
    in_case("b_triclinic")
    sim = dualbragg.Simulation(SMALL)
    before = sim.run()
    assert sim.get_params(["a", "phi0"]) == {"a": 70.0, "phi0": 0.0}
    sim.set_params({"a": 70.2, "phi0": 0.1})
    p = sim.get_params("a,phi0")
    assert abs(p["a"] - 70.2) < 1e-12 and abs(p["phi0"] - 0.1) < 1e-12
    moved = sim.run()
    assert not np.array_equal(moved, before)
    # a fresh simulation from a command line carrying the new values gives the same bits
    args = list(SMALL)
    args[args.index("-cell") + 1] = "70.2"
    fresh = dualbragg.Simulation(args + ["-phi", "0.1"]).run()
    assert np.array_equal(bits(fresh), bits(moved))


def test_jacobian_equals_derivative_images(in_case):
    in_case("b_triclinic")
    sim = dualbragg.Simulation(SMALL)
    names = ["a", "c", "phi0", "misset_x", "distance"]
    img, grads = sim.run(grad=names)
    assert grads.shape == (len(names),) + sim.shape and grads.dtype == np.float64
    assert np.abs(grads).max(axis=(1, 2)).min() > 0  # every derivative image is non-zero somewhere
    boxes = np.array([[10, 20, 5, 12], [40, 63, 30, 45], [15, 18, 8, 9]])  # the third overlaps the first
    sim.select_boxes(boxes)
    mask = sim.selected_mask()
    assert sim.selected_count == int(mask.sum())
    values, jac = sim.run_selected(names)
    assert values.shape == (sim.selected_count,) and jac.shape == (sim.selected_count, len(names))
    assert jac.flags["F_CONTIGUOUS"]
    assert np.array_equal(bits(values), bits(img[mask]))
    for k in range(len(names)):
        assert np.array_equal(bits(np.ascontiguousarray(jac[:, k])), bits(grads[k][mask])), names[k]
    # no parameters: values only
    v0, j0 = sim.run_selected([])
    assert np.array_equal(bits(v0), bits(values)) and j0.shape == (values.size, 0)
    # back to the whole detector
    sim.select_boxes(None)
    assert sim.selected_count == 64 * 64


def test_derivatives_match_finite_differences(in_case):
    """The package's derivative image of a against a central difference through set_params (a coarse check that
    the right buffer holds the right parameter; gradcheck below is the fine one)."""
    in_case("b_triclinic")
    sim = dualbragg.Simulation(SMALL)
    _, g = sim.run(grad=["a"])
    h = 1e-5
    sim.set_params({"a": 70 + h})
    up = sim.run()
    sim.set_params({"a": 70 - h})
    down = sim.run()
    fd = (up - down) / (2 * h)
    assert np.max(np.abs(fd - g[0])) <= 1e-4 * np.max(np.abs(fd))


def test_gradcheck(in_case):
    in_case("b_triclinic")
    rep = dualbragg.gradcheck(SMALL, ["a", "phi0", "misset_y"], roi=(20, 35, 20, 35))
    assert rep["all_pass"] and rep["roi"] == (20, 35, 20, 35)
    assert [r["param"] for r in rep["rows"]] == ["a", "phi0", "misset_y"]
    assert all(r["pass"] and r["pixels"] == 256 and r["max_abs_fd"] > 0 for r in rep["rows"])
    # a tolerance nothing can meet fails: the report is read, not assumed
    strict = dualbragg.gradcheck(SMALL, ["a"], roi=(20, 35, 20, 35), rtol=0, atol_abs=0)
    assert not strict["all_pass"] and not strict["rows"][0]["pass"]


def test_closed_simulation_raises():
    sim = dualbragg.Simulation("-cell 100 -default_F 1 -detpixels 8")
    sim.close()
    with pytest.raises(dualbragg.Error, match="closed"):
        sim.run()
