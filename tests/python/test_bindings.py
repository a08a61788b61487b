"""The bindings' argument mapping (issue 18): every option of Simulation.refine, the RefineResult fields, the
selection mask and the geometry reach the C field they name. Each is checked through an effect that only that
field has, computed without the bindings' own mapping (the library's stop reasons, a fit with explicit weights, the
injected background plane, the detector's vectors). Each test names the mutants of tests/mutation/ it guards."""
import numpy as np
import pytest

import dualbragg
from conftest import SMALL

TRUE = {"a": 70.0, "c": 90.0}
START = {"a": 70.05, "c": 89.96}
NAMES = ["a", "c"]
BOXES = [[0, 31, 0, 63], [32, 63, 0, 63]]


def fit(obs, **kw):
    sim = dualbragg.Simulation(SMALL)
    sim.set_params(START)
    return sim.refine(obs, NAMES, **kw)


@pytest.fixture
def obs(in_case):
    in_case("b_triclinic")
    return dualbragg.Simulation(SMALL).run()


def test_tolerances_reach_their_fields(obs):
    """cost_tolerance 1 ends the fit at its first accepted step by the cost rule, step_tolerance 1000 at its first
    step by the step rule: the stop reasons are the library's (py-step-tolerance, py-struct-tolerances)."""
    kw = dict(objective="lsq", weighting="unit", background="none")
    r = fit(obs, cost_tolerance=1.0, step_tolerance=0.0, **kw)
    assert r.stop_reason == "relative cost change below tolerance" and r.iterations == 1
    r = fit(obs, cost_tolerance=0.0, step_tolerance=1e3, **kw)
    assert r.stop_reason == "relative step below tolerance" and r.iterations == 1


def test_max_iterations_and_initial_damping(obs):
    """max_iterations caps the trial steps exactly; one step at initial_damping 1e6 moves the values by less than a
    thousandth of one step at the default 1e-2 (py-max-iterations, py-initial-damping)."""
    kw = dict(objective="lsq", weighting="unit", background="none", cost_tolerance=0.0, step_tolerance=0.0)
    r = fit(obs, max_iterations=2, **kw)
    assert r.iterations == 2 and r.stop_reason == "maximum number of iterations reached"
    near = fit(obs, max_iterations=1, **kw)
    stiff = fit(obs, max_iterations=1, initial_damping=1e6, **kw)
    for n in NAMES:
        assert abs(stiff.values[n] - START[n]) < 1e-3 * abs(near.values[n] - START[n]), n


def test_weighting_equals_explicit_weights(obs):
    """weighting="unit" is the fit with weights 1, weighting="poisson" the fit with weights 1 / max(obs, 1): the same
    values and uncertainties to rounding (1e-12); the two differ (py-weighting)."""
    noisy = obs + 0.02 * np.sin(np.arange(obs.size)).reshape(obs.shape)
    kw = dict(objective="lsq", background="none")
    unit, poisson = fit(noisy, weighting="unit", **kw), fit(noisy, weighting="poisson", **kw)
    ones = fit(noisy, weights=np.ones(obs.shape), **kw)
    inv = fit(noisy, weights=1.0 / np.maximum(noisy, 1.0), **kw)
    for got, want in ((unit, ones), (poisson, inv)):
        for n in NAMES:
            assert got.values[n] == pytest.approx(want.values[n], rel=1e-12)
            assert got.sigmas[n] == pytest.approx(want.sigmas[n], rel=1e-12)
    assert unit.sigmas["a"] != pytest.approx(poisson.sigmas["a"], rel=1e-3)


def test_backgrounds_and_plane_terms(obs):
    """On the image plus a known plane per box (no noise), background="planes" recovers each plane's a, b, c (b
    along x, c along y, from the box's centre) and "constant" fits b = c = 0 (py-backgrounds, py-background-c)."""
    S, F = obs.shape
    planes = [(0.3, 0.01, -0.02), (0.5, -0.015, 0.005)]
    data = obs.copy()
    for (x0, x1, y0, y1), (a, b, c) in zip(BOXES, planes):
        y, x = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        data[y0:y1 + 1, x0:x1 + 1] += a + b * (x - 0.5 * (x0 + x1)) + c * (y - 0.5 * (y0 + y1))
    r = fit(data, objective="lsq", weighting="unit", background="planes", boxes=BOXES)
    assert r.background_model == "planes" and len(r.background) == 2
    for entry, box, (a, b, c) in zip(r.background, BOXES, planes):
        assert entry["box"] == box
        assert entry["a"] == pytest.approx(a, abs=1e-7)
        assert entry["b"] == pytest.approx(b, abs=1e-7)
        assert entry["c"] == pytest.approx(c, abs=1e-7)
        assert entry["sigma_b"] > 0 and entry["sigma_c"] > 0
    r = fit(data, objective="lsq", weighting="unit", background="constant", boxes=BOXES)
    assert r.background_model == "constant"
    assert all(e["b"] == 0.0 and e["c"] == 0.0 for e in r.background)


def test_readout_noise_and_gain(obs):
    """The readout noise enters the Poisson variance (larger uncertainties); gain g divides the observed image: a fit
    of g x counts with gain=g is the fit of the counts, to rounding (py-readout-noise, py-gain)."""
    counts = np.round(obs * 50.0 + 2.0)
    sim = dualbragg.Simulation(SMALL)
    fl = sim.get_params(["fluence"])["fluence"] * 50.0

    def poisson_fit(data, **kw):
        s = dualbragg.Simulation(SMALL)
        s.set_params(dict(START, fluence=fl))
        return s.refine(data, NAMES, background="constant", boxes=BOXES, **kw)

    plain, noisy = poisson_fit(counts), poisson_fit(counts, readout_noise=5.0)
    for n in NAMES:
        assert noisy.sigmas[n] > 1.05 * plain.sigmas[n], n
    gained = poisson_fit(3.0 * counts, gain=3.0)
    for n in NAMES:
        assert gained.values[n] == pytest.approx(plain.values[n], rel=1e-12)
        assert gained.sigmas[n] == pytest.approx(plain.sigmas[n], rel=1e-9)


def test_typical_step_follows_its_name(obs):
    """A typical step of 1e-6 holds its parameter still in one damped step while the other moves
    (py-typical-step)."""
    kw = dict(objective="lsq", weighting="unit", background="none", max_iterations=1, cost_tolerance=0.0,
              step_tolerance=0.0)
    hold_a = fit(obs, typical_step={"a": 1e-6, "c": 1.0}, **kw)
    hold_c = fit(obs, typical_step={"a": 1.0, "c": 1e-6}, **kw)
    move = {n: (abs(hold_a.values[n] - START[n]), abs(hold_c.values[n] - START[n])) for n in NAMES}
    assert move["a"][0] < 1e-3 * move["a"][1]
    assert move["c"][1] < 1e-3 * move["c"][0]


def test_result_fields(obs):
    """sigma_scaled is sigma x sqrt(reduced_chi2) (here far from 1), deviance_per_dof the deviance over dof
    (py-sigma-scaled)."""
    noisy = obs + 0.05 * np.cos(np.arange(obs.size)).reshape(obs.shape)
    r = fit(noisy, objective="lsq", weighting="unit", background="none")
    assert abs(r.reduced_chi2 - 1.0) > 0.1
    for n in NAMES:
        assert r.sigma_scaled[n] == pytest.approx(r.sigmas[n] * np.sqrt(r.reduced_chi2), rel=1e-12)
    assert r.dof == obs.size - len(NAMES)
    assert r.deviance_per_dof == pytest.approx(r.deviance / r.dof, rel=1e-12)


def test_selected_mask_matches_the_selection(in_case):
    """selected_mask has the boxes' pixels, the last row and column included, in run_selected's order
    (py-selected-mask)."""
    in_case("b_triclinic")
    sim = dualbragg.Simulation(SMALL)
    boxes = [[0, 9, 0, 4], [60, 63, 50, 63], [20, 20, 30, 35]]
    sim.select_boxes(boxes)
    mask = sim.selected_mask()
    want = np.zeros(sim.shape, dtype=bool)
    for x0, x1, y0, y1 in boxes:
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                want[y, x] = True
    assert np.array_equal(mask, want) and mask.sum() == sim.selected_count
    values, _ = sim.run_selected()
    assert np.array_equal(values, dualbragg.Simulation(SMALL).run()[mask])


def test_geometry_beam_fields():
    """Fbeam_mm and Sbeam_mm are the beam's position along the fast and slow axes: -pix0 . fdet and -pix0 . sdet for
    a detector square to the beam (py-geometry-beam)."""
    sim = dualbragg.Simulation("-cell 100 -default_F 100 -N 3 -detpixels_f 40 -detpixels_s 24 -Xbeam 1.3 -Ybeam 0.9")
    g = sim.geometry
    assert (g["fpixels"], g["spixels"]) == (40, 24)
    pix0, fdet, sdet = (np.array(g[k]) for k in ("pix0_m", "fdet", "sdet"))
    assert abs(g["Fbeam_mm"] - g["Sbeam_mm"]) > 0.1
    assert g["Fbeam_mm"] == pytest.approx(-1000.0 * pix0.dot(fdet), abs=1e-9)
    assert g["Sbeam_mm"] == pytest.approx(-1000.0 * pix0.dot(sdet), abs=1e-9)
