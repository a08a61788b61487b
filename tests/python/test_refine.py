"""Refinement: scipy.optimize.least_squares with the package's Jacobian, and db_refine through Simulation.refine,
both recover known values from a simulated image."""
import numpy as np
import scipy.optimize as scipy_optimize  # part of the test command's venv: a missing scipy fails, never skips

import dualbragg
from conftest import SMALL

TRUE = {"a": 70.0, "c": 90.0, "phi0": 0.0, "misset_x": 10.0}
START = {"a": 70.05, "c": 89.96, "phi0": 0.02, "misset_x": 10.03}


def observed_and_sim():
    truth = dualbragg.Simulation(SMALL)
    obs = truth.run()
    sim = dualbragg.Simulation(SMALL)
    sim.set_params(START)
    return obs, sim


def test_least_squares_recovers_values(in_case):
    in_case("b_triclinic")
    obs, sim = observed_and_sim()
    names = list(START)
    sim.select_boxes([[0, 63, 0, 63]])
    y = obs[sim.selected_mask()]
    cache = {}

    def evaluate(x):
        key = tuple(x)
        if key not in cache:
            sim.set_params(dict(zip(names, x)))
            cache.clear()
            cache[key] = sim.run_selected(names)
        return cache[key]

    fit = scipy_optimize.least_squares(lambda x: evaluate(x)[0] - y, [START[n] for n in names],
                                       jac=lambda x: evaluate(x)[1], x_scale="jac", xtol=1e-14, ftol=1e-14,
                                       gtol=1e-14)
    assert fit.success
    for n, v in zip(names, fit.x):
        assert abs(v - TRUE[n]) <= 1e-6 * max(abs(TRUE[n]), 1.0), (n, v, TRUE[n])
    assert fit.cost < 1e-12 * float(np.sum(y * y))


def test_db_refine_recovers_values(in_case):
    in_case("b_triclinic")
    obs, sim = observed_and_sim()
    names = list(START)
    r = sim.refine(obs, names, objective="lsq", weighting="unit", background="none", boxes=[[0, 63, 0, 63]])
    assert r.names == names and r.correlation.shape == (4, 4)
    for n in names:
        assert abs(r.values[n] - TRUE[n]) <= 1e-6 * max(abs(TRUE[n]), 1.0), (n, r.values[n])
        assert r.start[n] == START[n] and r.sigmas[n] >= 0
    assert np.allclose(np.diag(r.correlation), 1.0)
    assert r.cost < r.start_cost and r.pixels == 64 * 64
    # the simulation keeps the fitted values
    assert sim.get_params(names) == r.values


WEAK = SMALL[:-2] + ["-detpixels", "128", "-oversample", "1", "-fluence", "5e28"]
FIT = ["a", "b", "c", "misset_x", "misset_y", "fluence"]
WEAK_START = {"a": 70.2, "b": 79.8, "c": 90.2, "misset_x": 10.03, "misset_y": 19.97, "fluence": 5.2e28}


def weak_still(seed=7):
    """A weak still (spot peaks of tens of photons) with Poisson noise from numpy, written as float64 photons."""
    obs = dualbragg.Simulation(WEAK).run()
    return np.random.default_rng(seed).poisson(obs + 0.2).astype(np.float64)  # 0.2 photons of flat background


def test_find_spots_and_cli_give_the_same_fit(in_case):
    """The same flags give the same fit in Python and in dualbragg-refine: the spots, the boxes, the values."""
    import json
    import subprocess
    in_case("b_triclinic")
    obs = weak_still()
    obs.tofile("obs.f64")
    boxes = dualbragg.find_spots(obs, 6, 15)
    assert boxes.shape == (6, 4) and boxes.dtype == np.intc
    assert np.all(boxes[:, 1] - boxes[:, 0] <= 14) and np.all(boxes[:, 3] - boxes[:, 2] <= 14)
    for x0, x1, y0, y1 in boxes:  # each box holds a spot far above the background
        assert obs[y0:y1 + 1, x0:x1 + 1].max() >= 10
    args = list(WEAK)  # the start on the command line, as a user of both would give it
    args[1:7] = ["70.2", "79.8", "90.2", "75", "85", "95"]
    args[8:11] = ["10.03", "19.97", "30"]
    i = args.index("-fluence")
    args[i + 1] = "5.2e28"
    out = subprocess.run([dualbragg.program("dualbragg-refine")] + args +
                         ["-obs", "obs.f64", "-refine", ",".join(FIT), "-spots", "6", "-json", "fit.json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    with open("fit.json") as f:
        cli = json.load(f)
    assert cli["objective"] == "poisson" and cli["background_model"] == "planes"
    assert cli["boxes"] == boxes.tolist()
    sim = dualbragg.Simulation(args)
    r = sim.refine(obs, FIT, boxes=boxes)
    assert r.objective == "poisson" and r.background_model == "planes" and len(r.background) == 6
    assert r.boxes.tolist() == boxes.tolist()
    for n in FIT:  # one library, one process each: the same numbers up to the threads' summation order in BLAS
        assert abs(r.values[n] - cli["parameters"][n]) <= 1e-12 * abs(cli["parameters"][n]), n
        assert abs(r.sigmas[n] - cli["sigma"][n]) <= 1e-9 * cli["sigma"][n], n
    for b, c in zip(r.background, cli["background"]):
        assert b["box"] == c["box"] and abs(b["a"] - c["a"]) <= 1e-9 * max(abs(c["a"]), 1e-3)
    assert abs(r.deviance_per_dof - cli["deviance_per_dof"]) <= 1e-9 * cli["deviance_per_dof"]


def test_poisson_fit_reports(in_case):
    """A weak still: the fit is near the truth within its sigmas, the background near its 0.2 photons, the
    goodness of fit near its expectation, and the scaled sigmas beside the unscaled ones."""
    in_case("b_triclinic")
    obs = weak_still(11)
    truth = dualbragg.Simulation(WEAK).get_params(FIT)
    sim = dualbragg.Simulation(WEAK)
    sim.set_params(WEAK_START)
    r = sim.refine(obs, FIT, boxes=dualbragg.find_spots(obs, 8, 15))
    assert not r.poor_fit and abs(r.deviance_z) < 6
    assert r.stop_reason.startswith("relative")
    for n in FIT:
        assert r.sigmas[n] > 0 and r.sigma_scaled[n] > 0
        assert abs(r.values[n] - truth[n]) <= 4 * r.sigmas[n], (n, r.values[n], truth[n], r.sigmas[n])
    for b in r.background:
        assert abs(b["a"] - 0.2) <= 5 * b["sigma_a"] + 1e-3, b
    assert 0.3 < r.expected_deviance_per_dof < 1.5 and r.dof == r.pixels - len(FIT) - 3 * len(r.background)


def test_refine_refusals(in_case):
    import pytest
    in_case("b_triclinic")
    sim = dualbragg.Simulation(WEAK)
    obs = weak_still()
    with pytest.raises(dualbragg.Error, match="objective='lsq'"):
        sim.refine(obs, ["a"], weighting="unit")
    with pytest.raises(dualbragg.Error, match="objective must be"):
        sim.refine(obs, ["a"], objective="gauss")
    with pytest.raises(dualbragg.Error, match="background must be"):
        sim.refine(obs, ["a"], background="tilted")
    with pytest.raises(dualbragg.Error, match="cannot be negative"):
        bad = obs.copy()
        bad[5, 7] = -1.0
        sim.refine(bad, ["a"])
    r = sim.refine(bad, ["a"], objective="lsq", background="none")  # lsq takes negative values
    assert r.objective == "lsq"
