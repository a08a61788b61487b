"""Fits a weak still with a water background over a few noise seeds and prints how often the truth lies within
one and two reported standard uncertainties (0.68 and 0.95 when the uncertainties are honest).

The crystal of example.sh as a still: spot peaks of about 50 photons on 0.5 photons of water per pixel. Each seed
draws Poisson counts of the true image (numpy), and dualbragg.Simulation.refine fits eight parameters from a start
0.3% and 0.1 degree off, with the Poisson likelihood and a background plane per spot box (the model has no water).
Run from the repository root after `pip install .`:  python3 examples/weak_still_coverage.py [SEEDS]
bench/bench_refine_stats does the same in C over 100 seeds with the program's own noise images (README
"Refinement")."""
import os
import sys

import numpy as np

import dualbragg

HERE = os.path.dirname(os.path.abspath(__file__))
CRYSTAL = ["-hkl", os.path.join(HERE, "example.hkl"), "-N", "8", "-lambda", "1", "-distance", "200", "-pixel", "0.1",
           "-detpixels", "512", "-oversample", "1", "-fluence", "6e25"]
TRUE = ["-cell", "60", "70", "80", "90", "95", "90", "-misset", "10", "20", "30"]
START = {"a": 60.18, "b": 69.79, "c": 80.24, "beta": 95.0, "misset_x": 10.1, "misset_y": 19.9, "misset_z": 30.1,
         "fluence": 6.3e25}
FIT = list(START)


def main(seeds):
    truth_sim = dualbragg.Simulation(CRYSTAL + TRUE)
    truth = truth_sim.get_params(FIT)
    boxes = dualbragg.find_spots(truth_sim.run(), 10, 15)  # spots of the noise-free image: the same pixels every seed
    expected = dualbragg.Simulation(CRYSTAL + TRUE + ["-water", "3.5"]).run()
    model = dualbragg.Simulation(CRYSTAL + TRUE)
    z = []
    for seed in range(1, seeds + 1):
        observed = np.random.default_rng(seed).poisson(expected).astype(np.float64)
        model.set_params(START)
        fit = model.refine(observed, FIT, boxes=boxes)
        z.append([(fit.values[n] - truth[n]) / fit.sigmas[n] for n in FIT])
        print("seed %2d: %2d trial steps, deviance per dof %.3f (expected %.3f)%s" % (
            seed, fit.iterations, fit.deviance_per_dof, fit.expected_deviance_per_dof, ", POOR FIT" if fit.poor_fit else ""))
    z = np.abs(np.array(z))
    print("\n%-10s %8s %8s" % ("parameter", "|z|<=1", "|z|<=2"))
    for j, n in enumerate(FIT):
        print("%-10s %8.2f %8.2f" % (n, np.mean(z[:, j] <= 1), np.mean(z[:, j] <= 2)))
    print("%-10s %8.2f %8.2f   (expected 0.68 and 0.95; %d seeds x %d parameters)" % (
        "pooled", np.mean(z <= 1), np.mean(z <= 2), seeds, len(FIT)))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
