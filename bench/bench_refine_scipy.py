"""bench_refine_scipy: trial steps of a noise-free fit, dualbragg's db_refine against scipy.optimize.least_squares
(method trf, the exact Jacobian from the same library, x_scale='jac') from the same start, on the same pixels.

The still of tests/refine_study.h without noise (b_triclinic's crystal at 0.4 of the default fluence), 10 spot boxes
of 15 x 15 found on it, the ten parameters a b c alpha beta gamma misset_x misset_y misset_z fluence, least squares
with unit weights and no background in both, from two starts: the study's (cell 0.2-0.3%, misset 0.05 deg, fluence
5%) and a farther one (cell 0.5%, misset 0.3 deg, fluence 10%). Counts: db_refine's trial steps (each one primal
run; an accepted one adds a run with derivatives) and scipy's function evaluations (nfev; its Jacobian evaluations
njev beside). Usage (after `pip install .`, from the repository root): python3 bench/bench_refine_scipy.py"""
import os

import numpy as np
import scipy.optimize as so

import dualbragg

HKL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "b_triclinic", "P1.hkl")
ARGS = ["-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30", "-hkl", HKL, "-Na", "4", "-Nb", "5",
        "-Nc", "6", "-lambda", "1", "-distance", "100", "-pixel", "0.1", "-detpixels", "256", "-oversample", "1",
        "-fluence", "5.0372806114e28"]
FIT = ["a", "b", "c", "alpha", "beta", "gamma", "misset_x", "misset_y", "misset_z", "fluence"]
STARTS = {
    "study start": {"a": 1.003, "b": 0.997, "c": 1.003, "alpha": 0.998, "beta": 1.002, "gamma": 1.002,
                    "misset_x": 0.05, "misset_y": -0.05, "misset_z": 0.05, "fluence": 1.05},
    "farther start": {"a": 1.005, "b": 0.995, "c": 1.005, "alpha": 0.995, "beta": 1.005, "gamma": 1.005,
                      "misset_x": 0.3, "misset_y": -0.3, "misset_z": 0.3, "fluence": 1.1},
}


def start_of(truth, rule):
    return {n: truth[n] + rule[n] if n.startswith("misset") else truth[n] * rule[n] for n in FIT}


def main():
    sim = dualbragg.Simulation(ARGS)
    truth = sim.get_params(FIT)
    obs = sim.run()
    boxes = dualbragg.find_spots(obs, 10, 15)
    sim.select_boxes(boxes)
    y = obs[sim.selected_mask()]
    print("noise-free still, %d boxes, %d pixels; least squares, unit weights, no background" % (len(boxes), y.size))
    print("%-14s %-28s %7s %7s %12s" % ("start", "fitter", "trials", "jac", "max rel err"))
    for name, rule in STARTS.items():
        start = start_of(truth, rule)
        sim.set_params(start)
        r = sim.refine(obs, FIT, objective="lsq", weighting="unit", background="none", boxes=boxes)
        err = max(abs(r.values[n] - truth[n]) / abs(truth[n]) for n in FIT)
        print("%-14s %-28s %7d %7d %12.1e" % (name, "db_refine (LM, damping 1e-2)", r.iterations, r.derivative_runs, err))
        cache = {}

        def evaluate(x):
            key = tuple(x)
            if key not in cache:
                cache.clear()
                sim.set_params(dict(zip(FIT, x)))
                cache[key] = sim.run_selected(FIT)
            return cache[key]

        x0 = [start[n] for n in FIT]
        fit = so.least_squares(lambda x: evaluate(x)[0] - y, x0, jac=lambda x: evaluate(x)[1], method="trf",
                               x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12)
        err = max(abs(v - truth[n]) / abs(truth[n]) for n, v in zip(FIT, fit.x))
        print("%-14s %-28s %7d %7d %12.1e" % (name, "scipy least_squares trf", fit.nfev, fit.njev, err))
    print("trials: db_refine's trial steps / scipy's function evaluations; jac: Jacobian evaluations")


if __name__ == "__main__":
    main()
