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
