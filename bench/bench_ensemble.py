"""bench_ensemble: the proof on simulated data of issue 20 (point 5): many weak stills, one set of structure factors.

What it does (every random choice from one seeded numpy generator, --seed):

1. Truth: a P1 crystal (cell 30 34 38 80 95 105, 6 x 6 x 6 cells), every hkl from --dmin A out to the lowest
   order (Friedel mates are separate reflections, as dualbragg keeps them), F from a Wilson distribution for acentric
   reflections (I ~ Exponential(mean), F = sqrt(I)), written as truth.hkl (h k l F).
2. 4N stills (the first N of them are the N stills): uniform random orientations (scipy's Rotation.random, given
   as the -misset angles x, y, z in degrees: dualbragg turns the crystal about x, then y, then z, which is scipy's
   extrinsic 'xyz'), rendered with the Python package's Simulation (the reference physics of the dualbragg program,
   the same image bit for bit) with a water background (-water), then Poisson noise drawn by numpy on that float
   image (noise route: package + numpy Poisson, not the CLI's -noisefile). Each still's counts are written as raw
   float64 (still_NNNN.f64, read with -obs_float64) with its spot boxes (boxes_NNNN.txt, `xmin xmax ymin ymax`):
   boxes of --box x --box pixels around the K (--spots) reflections that a noise-free render of the true orientation
   with every F equal predicts brightest (so the choice of spots depends on the geometry, not on the unknown F),
   fully on the detector and not overlapping.
3. Monte Carlo merging on the same stills: per box, the sum of the inner pixels (the box less its one-pixel border)
   minus the mean of the border pixels times the inner pixel count (background from the box border); the box's
   reflection is the column of the F-Jacobian (sim.run_selected(structure_factors=True), uniform F, true
   orientation) with the largest sum over the box. Per hkl the mean of those sums over its observations, with no
   partiality model: F_mc = sqrt(max(mean, 0)). At N and at 4N stills.
4. The refinement, when the program dualbragg-ensemble is found (--ensemble PATH, else beside the dualbragg CLI of
   --build, else in the Python package, else on PATH): the stills file of the N stills, each misset started off
   the truth by a normal draw of --misset_start_sd degrees per angle, every F started at one constant value (the
   truth's mean F), the model without water (each box's background plane takes it), then
   `dualbragg-ensemble <shared flags> -hkl start.hkl -stills stills.txt -refine_still misset_x,misset_y,misset_z
   -refine_F -hklout refined.hkl -json refined.json`. Reported: CC and R of the refined F (over the refined
   reflections), the misset coverage (fraction of |fitted - true| / sigma within 1 and 2; ideal 0.683 and 0.954),
   the mean and rms of z = (fitted - true) / sigma, the time per iteration (the solver's seconds over its iterations)
   and in all, and the sum over the N stills of one derivative run each (misset x y z and the F-Jacobian on the
   boxes, through the package) beside it.
5. Figures against the truth: CC is Pearson's correlation of F; R = sum |k F_est - F_true| / sum F_true with the
   least-squares scale k = sum F_est F_true / sum F_est^2 (the estimate brought onto the truth's scale; MC merging's
   F are sqrt(photons)). Each estimate over its own measured reflections, and all of them over the reflections that
   all of them measured. Seconds for generating, merging and refining.

   The time per iteration is the last progress line's "seconds" (the solver's time: its first linearisation through
   the last trial step) over the JSON's "iterations" (LM trial steps, accepted or not); the derivative runs' sum is
   the median of 5 passes.
   `--start truth` starts F and the missets at the truth instead: where the fit ends from there shows where the
   optimum lies, and its cost beside the bench's says whether the bench's fit stopped short of it.

Usage (after `pip install .`; numpy and scipy): python3 bench/bench_ensemble.py [--n 100] [--seed 1]
[--workdir /tmp/bench_ensemble] [--build build-cpu] [--start constant|truth]. On two cores --n 100 (400 stills of
192 x 192 pixels) takes about 10 s with the refinement, --n 300 about 20 s. Without dualbragg-ensemble it says
REFINEMENT NOT RUN and reports the rest."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

np = None  # numpy and dualbragg are imported after the arguments are read, so that --help needs neither
dualbragg = None


def import_packages():
    global np, dualbragg
    try:
        import numpy
        import scipy  # noqa: F401 (the F-Jacobian and the random rotations)
        import dualbragg as db
    except ImportError as e:
        sys.exit(f"bench_ensemble: {e}; it needs numpy, scipy and the package dualbragg (pip install . from the "
                 "repository root)")
    np, dualbragg = numpy, db

CELL = (30.0, 34.0, 38.0, 80.0, 95.0, 105.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Ensemble refinement against Monte Carlo merging on simulated weak stills (issue 20, point 5).")
    p.add_argument("--n", type=int, default=100, help="stills refined (N); Monte Carlo merging also at 4N (default 100)")
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    p.add_argument("--workdir", default="/tmp/bench_ensemble", help="folder for the images, boxes and outputs")
    p.add_argument("--build", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build-cpu"),
                   help="build folder whose bin/ holds dualbragg and dualbragg-ensemble (default: build-cpu)")
    p.add_argument("--ensemble", default=None, help="path of dualbragg-ensemble (overrides the search)")
    p.add_argument("--detpixels", type=int, default=192, help="detector pixels per edge (default 192)")
    p.add_argument("--distance", type=float, default=70.0, help="detector distance in mm (default 70)")
    p.add_argument("--dmin", type=float, default=6.0, help="resolution limit of the hkl list in A (default 6)")
    p.add_argument("--ncells", type=int, default=6, help="unit cells along each axis (default 6)")
    p.add_argument("--fluence", type=float, default=3e26, help="photons/m^2 of every still (default 3e26)")
    p.add_argument("--water", type=float, default=0.5, help="water droplet in um, the background (default 0.5)")
    p.add_argument("--spots", type=int, default=15, help="spot boxes per still (default 15)")
    p.add_argument("--box", type=int, default=9, help="spot box edge in pixels, odd (default 9)")
    p.add_argument("--misset_start_sd", type=float, default=0.05,
                   help="sd in degrees of the refinement's start misset about the truth (default 0.05)")
    p.add_argument("--misset_prior", choices=("start_sd", "none"), default=None,
                   help="'start_sd': -prior_still with each misset angle's prior sd = --misset_start_sd about the "
                        "still's start (the indexing precision the simulation gives the starts); 'none': no prior "
                        "(default: start_sd with --start constant, none with --start truth, where a prior would sit "
                        "on the truth and move the optimum that run is meant to locate)")
    p.add_argument("--max_iterations", type=int, default=100, help="dualbragg-ensemble -max_iterations (default 100)")
    p.add_argument("--start", choices=("constant", "truth"), default="constant",
                   help="refinement start: 'constant' (every F the truth's mean F, missets perturbed; the bench) or "
                        "'truth' (F and missets at the truth: a check of where the optimum lies; default constant)")
    p.add_argument("--no_refine", action="store_true", help="skip the refinement even if the program is found")
    a = p.parse_args(argv)
    if a.misset_prior is None:
        a.misset_prior = "start_sd" if a.start == "constant" else "none"
    elif a.misset_prior == "start_sd" and a.start == "truth":
        p.error("--misset_prior start_sd with --start truth would centre the prior on the truth; give "
                "--misset_prior none (the default with --start truth)")
    if a.n < 1:
        p.error("--n must be at least 1")
    if a.box < 5 or a.box % 2 == 0:
        p.error("--box must be odd and at least 5")
    return a


# ---------------------------------------------------------------------------------------------------------------
# truth


def reciprocal_vectors(cell):
    a, b, c = cell[:3]
    al, be, ga = np.radians(cell[3:])
    va = np.array([a, 0.0, 0.0])
    vb = np.array([b * np.cos(ga), b * np.sin(ga), 0.0])
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    vc = np.array([cx, cy, np.sqrt(c * c - cx * cx - cy * cy)])
    vol = va @ np.cross(vb, vc)
    return np.stack([np.cross(vb, vc), np.cross(vc, va), np.cross(va, vb)]) / vol


def hkl_list(cell, dmin):
    """Every hkl with d >= dmin except 0 0 0, h, k, then l fastest."""
    rs = reciprocal_vectors(cell)
    hmax = [int(np.ceil(cell[i] / dmin)) + 1 for i in range(3)]
    g = np.mgrid[-hmax[0]:hmax[0] + 1, -hmax[1]:hmax[1] + 1, -hmax[2]:hmax[2] + 1]
    hkl = g.reshape(3, -1).T
    q = np.linalg.norm(hkl @ rs, axis=1)
    keep = (q > 0) & (q <= 1.0 / dmin)
    return hkl[keep].astype(np.int64)


def write_hkl(path, hkl, F):
    with open(path, "w") as f:
        for (h, k, l), x in zip(hkl, F):
            f.write(f"{h} {k} {l} {x:.17g}\n")


def read_hklout(path):
    """h k l F sigF lines (sigF nan: not refined) -> dict hkl -> (F, sigF)."""
    out = {}
    with open(path) as f:
        for line in f:
            w = line.split("#")[0].split()
            if len(w) < 4:
                continue
            sig = float(w[4]) if len(w) > 4 else float("nan")
            out[(int(w[0]), int(w[1]), int(w[2]))] = (float(w[3]), sig)
    return out


# ---------------------------------------------------------------------------------------------------------------
# figures


def figures(est, truth):
    """CC (Pearson, on F) and R = sum |k est - truth| / sum truth with the least-squares k; (cc, r, k, n)."""
    est = np.asarray(est, float)
    truth = np.asarray(truth, float)
    n = len(est)
    if n < 3 or np.std(est) == 0:
        return float("nan"), float("nan"), float("nan"), n
    cc = float(np.corrcoef(est, truth)[0, 1])
    k = float(est @ truth / (est @ est))
    r = float(np.sum(np.abs(k * est - truth)) / np.sum(truth))
    return cc, r, k, n


# ---------------------------------------------------------------------------------------------------------------
# stills


def shared_flags(a, fluence=None):
    return ["-cell", *[f"{x:g}" for x in CELL], "-N", str(a.ncells), "-lambda", "1", "-distance", f"{a.distance:g}",
            "-pixel", "0.1", "-detpixels", str(a.detpixels), "-oversample", "1",
            "-fluence", f"{a.fluence if fluence is None else fluence:.17g}"]


def misset_dict(ang):
    return {"misset_x": float(ang[0]), "misset_y": float(ang[1]), "misset_z": float(ang[2])}


def choose_boxes(fjac, width, height, K, box):
    """The K reflections predicted brightest (column sums of the whole-detector F-Jacobian at uniform F), each a
    box x box box centred on its intensity-weighted centroid, inside the detector and not overlapping an earlier
    one. Returns (boxes (k, 4) xmin xmax ymin ymax, their reflections' columns)."""
    coo = fjac.tocoo()
    ncol = fjac.shape[1]
    fast = coo.row % width
    slow = coo.row // width
    w = coo.data
    tot = np.bincount(coo.col, weights=w, minlength=ncol)
    cx = np.bincount(coo.col, weights=w * fast, minlength=ncol)
    cy = np.bincount(coo.col, weights=w * slow, minlength=ncol)
    half = box // 2
    taken = np.zeros((height, width), bool)
    boxes, cols = [], []
    for j in np.argsort(-tot):
        if tot[j] <= 0 or len(boxes) == K:
            break
        x0 = int(round(cx[j] / tot[j])) - half
        y0 = int(round(cy[j] / tot[j])) - half
        if x0 < 0 or y0 < 0 or x0 + box > width or y0 + box > height:
            continue
        if taken[y0:y0 + box, x0:x0 + box].any():
            continue
        taken[y0:y0 + box, x0:x0 + box] = True
        boxes.append((x0, x0 + box - 1, y0, y0 + box - 1))
        cols.append(j)
    return np.array(boxes, dtype=np.int64).reshape(-1, 4), cols


def box_reflection(fjac_csc_rows, boxes, width):
    """Per box: the column of the F-Jacobian (uniform F) with the largest sum over the box's pixels, or -1."""
    out = []
    for x0, x1, y0, y1 in boxes:
        rows = (np.arange(y0, y1 + 1)[:, None] * width + np.arange(x0, x1 + 1)[None, :]).ravel()
        sub = fjac_csc_rows[rows]
        s = np.asarray(sub.sum(axis=0)).ravel()
        out.append(int(np.argmax(s)) if s.max() > 0 else -1)
    return out


def integrate(img, boxes):
    """Per box: the inner pixels' sum minus the border pixels' mean times the inner pixel count."""
    out = []
    for x0, x1, y0, y1 in boxes:
        b = img[y0:y1 + 1, x0:x1 + 1]
        inner = b[1:-1, 1:-1]
        border_sum = b.sum() - inner.sum()
        nborder = b.size - inner.size
        out.append(float(inner.sum() - border_sum / nborder * inner.size))
    return out


def generate(a, rng, hkl, F_true, nstills):
    """Renders and writes nstills stills; returns per still: misset angles, boxes, box reflections (list index),
    integrated sums, and the mean count per pixel."""
    from scipy.spatial.transform import Rotation

    os.makedirs(a.workdir, exist_ok=True)
    truth_hkl = os.path.join(a.workdir, "truth.hkl")
    uniform_hkl = os.path.join(a.workdir, "uniform.hkl")
    write_hkl(truth_hkl, hkl, F_true)
    write_hkl(uniform_hkl, hkl, np.full(len(hkl), 100.0))
    sim = dualbragg.Simulation(shared_flags(a) + ["-water", f"{a.water:g}", "-hkl", truth_hkl])
    geo = dualbragg.Simulation(shared_flags(a) + ["-hkl", uniform_hkl])
    # both list the reflections in file order, which is hkl's
    height, width = sim.shape
    angles = Rotation.random(nstills, random_state=rng).as_euler("xyz", degrees=True)
    stills = []
    t0 = time.time()
    for s in range(nstills):
        m = misset_dict(angles[s])
        sim.set_params(m)
        geo.set_params(m)
        clean = sim.run()
        counts = rng.poisson(clean).astype(np.float64)
        _, _, fjac = geo.run_selected([], structure_factors=True)
        boxes, _ = choose_boxes(fjac, width, height, a.spots, a.box)
        refl = box_reflection(fjac, boxes, width)
        img_name = f"still_{s:04d}.f64"
        box_name = f"boxes_{s:04d}.txt"
        counts.tofile(os.path.join(a.workdir, img_name))
        with open(os.path.join(a.workdir, box_name), "w") as f:
            f.write("# xmin xmax ymin ymax (fast, slow; inclusive): around the predicted brightest spots\n")
            for b in boxes:
                f.write("%d %d %d %d\n" % tuple(b))
        stills.append({"misset": angles[s], "boxes": boxes, "refl": refl, "sums": integrate(counts, boxes),
                       "image": img_name, "boxfile": box_name, "mean_count": float(counts.mean()),
                       "spot_max": float(max((clean[y0:y1 + 1, x0:x1 + 1].max() for x0, x1, y0, y1 in boxes),
                                             default=0.0)),
                       "bg": float(np.median(clean))})
        if (s + 1) % 50 == 0 or s + 1 == nstills:
            print(f"  generated {s + 1}/{nstills} stills ({time.time() - t0:.1f} s)", flush=True)
    sim.close()
    geo.close()
    return stills


def merge_mc(stills, nref):
    """Monte Carlo merging: per reflection (list index) the mean of its boxes' sums; (F_mc, observation counts)."""
    total = np.zeros(nref)
    count = np.zeros(nref, dtype=np.int64)
    for st in stills:
        for j, v in zip(st["refl"], st["sums"]):
            if j >= 0:
                total[j] += v
                count[j] += 1
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.sqrt(np.maximum(mean, 0.0)), count


# ---------------------------------------------------------------------------------------------------------------
# refinement


def find_ensemble(a):
    if a.ensemble:
        return a.ensemble if os.path.isfile(a.ensemble) and os.access(a.ensemble, os.X_OK) else None
    cands = []
    if a.build:
        for sub in ("bin", "."):
            if os.path.isfile(os.path.join(a.build, sub, "dualbragg")):  # beside the dualbragg CLI of the build
                cands.append(os.path.join(a.build, sub, "dualbragg-ensemble"))
    try:
        cands.append(os.path.join(os.path.dirname(dualbragg.program("dualbragg")), "dualbragg-ensemble"))
    except Exception:  # the package's programs folder may not exist
        pass
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    return shutil.which("dualbragg-ensemble")


def derivative_runs(a, stills, start_hkl, repeats=5):
    """Seconds of one derivative run per still (misset x y z and the F-Jacobian on its boxes), summed over the
    stills: the median of `repeats` passes (the machine is shared; one pass varied by 3x)."""
    sim = dualbragg.Simulation(shared_flags(a) + ["-hkl", start_hkl])
    totals = []
    for _ in range(repeats):
        total = 0.0
        for st in stills:
            sim.set_params(misset_dict(st["misset"]))
            sim.select_boxes(st["boxes"])
            t = time.perf_counter()
            sim.run_selected(["misset_x", "misset_y", "misset_z"], structure_factors=True)
            total += time.perf_counter() - t
        totals.append(total)
    sim.close()
    return float(np.median(totals))


def refine(a, prog, rng, stills, hkl, F_true):
    wd = a.workdir
    start_hkl = os.path.join(wd, "start.hkl")
    F0 = float(np.mean(F_true))
    write_hkl(start_hkl, hkl, np.full(len(hkl), F0) if a.start == "constant" else F_true)
    starts = []
    with open(os.path.join(wd, "stills.txt"), "w") as f:
        f.write("# image, its start misset (truth + N(0, %g) deg per angle), its spot boxes\n" % a.misset_start_sd)
        for st in stills:
            m0 = st["misset"] + (rng.normal(0.0, a.misset_start_sd, 3) if a.start == "constant" else 0.0)
            starts.append(m0)
            f.write("%s -obs_float64 -misset %.17g %.17g %.17g -boxes %s\n" % (st["image"], *m0, st["boxfile"]))
    out_hkl = os.path.join(wd, "refined.hkl")
    out_json = os.path.join(wd, "refined.json")
    for p in (out_hkl, out_json):
        if os.path.exists(p):
            os.remove(p)
    cmd = [prog] + shared_flags(a) + ["-hkl", start_hkl, "-stills", os.path.join(wd, "stills.txt"),
                                      "-refine_still", "misset_x,misset_y,misset_z", "-refine_F",
                                      "-max_iterations", str(a.max_iterations), "-hklout", out_hkl,
                                      "-json", out_json]
    if a.misset_prior == "start_sd":
        cmd += ["-prior_still", ",".join("misset_%s=%.17g" % (c, a.misset_start_sd) for c in "xyz")]
    print("  " + " ".join(cmd), flush=True)
    t0 = time.time()
    iters = []
    with open(os.path.join(wd, "refine.log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, cwd=wd)
        for line in proc.stderr:
            log.write(line)
            if " iteration " in line:
                iters.append(line.strip())
                print("  " + line.strip(), flush=True)
            elif line.strip():
                print("  [stderr] " + line.rstrip(), flush=True)
        rc = proc.wait()
    wall = time.time() - t0
    res = {"rc": rc, "wall": wall, "progress_lines": len(iters), "F0": F0}
    if rc not in (0, 3) or not os.path.exists(out_json) or not os.path.exists(out_hkl):
        res["error"] = f"dualbragg-ensemble exited with {rc} (see {os.path.join(wd, 'refine.log')})"
        return res
    with open(out_json) as f:
        js = json.load(f)
    res["json"] = js
    res["hkl"] = read_hklout(out_hkl)
    z, z0 = [], []
    for st, sj, m0 in zip(stills, js.get("stills", []), starts):
        for i, name in enumerate(("misset_x", "misset_y", "misset_z")):
            v = sj.get("values", {}).get(name)
            s = sj.get("sigma", {}).get(name)
            if v is None or s is None or not s > 0:
                continue
            d = (v - st["misset"][i] + 180.0) % 360.0 - 180.0
            z.append(d / s)
            z0.append((m0[i] - st["misset"][i]) / s)
    res["z"], res["z0"] = np.array(z), np.array(z0)
    res["sigma_misset"] = [s for sj in js.get("stills", []) for s in sj.get("sigma", {}).values() if s]
    res["deriv_sum"] = derivative_runs(a, stills, start_hkl)
    # the solver's own time (its first linearisation through the last trial step): the progress line's "seconds";
    # the JSON's "seconds" adds reading and setting up the stills and the final uncertainties
    secs = [float(l.split(" seconds ")[1].split()[0]) for l in iters if " seconds " in l]
    res["fit_seconds"] = secs[-1] if secs else None
    return res


# ---------------------------------------------------------------------------------------------------------------


def main(argv=None):
    a = parse_args(argv)
    import_packages()
    a.workdir = os.path.abspath(a.workdir)
    a.build = os.path.abspath(a.build) if a.build else None
    rng = np.random.default_rng(a.seed)
    N, N4 = a.n, 4 * a.n
    hkl = hkl_list(CELL, a.dmin)
    mean_I = 1e4
    F_true = np.sqrt(rng.exponential(mean_I, len(hkl)))
    print(f"bench_ensemble: cell {' '.join('%g' % x for x in CELL)} (P1), {a.ncells}^3 cells, {len(hkl)} reflections "
          f"to {a.dmin:g} A, F Wilson (acentric, mean I {mean_I:g}); {a.detpixels}x{a.detpixels} pixels of 0.1 mm at "
          f"{a.distance:g} mm; fluence {a.fluence:g}, water {a.water:g} um; {a.spots} boxes of {a.box}x{a.box} a still; "
          f"N = {N}, 4N = {N4}; seed {a.seed}; workdir {a.workdir}", flush=True)

    t0 = time.time()
    stills = generate(a, rng, hkl, F_true, N4)
    t_gen = time.time() - t0
    nbox = np.mean([len(s["boxes"]) for s in stills])
    print(f"generated {N4} stills in {t_gen:.1f} s: {nbox:.1f} boxes a still, mean count {np.mean([s['mean_count'] for s in stills]):.3f} "
          f"per pixel, background (median noise-free pixel) {np.mean([s['bg'] for s in stills]):.3f}, brightest "
          f"noise-free spot pixel in the boxes: median over stills {np.median([s['spot_max'] for s in stills]):.2f}, "
          f"largest {np.max([s['spot_max'] for s in stills]):.2f} photons", flush=True)

    t0 = time.time()
    mc = {}
    for label, ss in (("N", stills[:N]), ("4N", stills)):
        F_mc, cnt = merge_mc(ss, len(hkl))
        meas = cnt > 0
        mc[label] = (F_mc, meas, cnt)
    t_merge = time.time() - t0

    prog = None if a.no_refine else find_ensemble(a)
    ref = None
    t_ref = None
    if prog:
        print(f"refining the first {N} stills with {prog}", flush=True)
        t0 = time.time()
        ref = refine(a, prog, rng, stills[:N], hkl, F_true)
        t_ref = time.time() - t0

    # ------------------------------------------------------------------ summary
    rows = []
    sets = {}
    for label in ("N", "4N"):
        F_mc, meas, cnt = mc[label]
        cc, r, k, n = figures(F_mc[meas], F_true[meas])
        rows.append((f"MC merging, {N if label == 'N' else N4} stills", n, float(cnt[meas].mean()), cc, r, k))
        sets[label] = meas
    F_ref = None
    if ref is not None and "hkl" in ref:
        F_ref = np.full(len(hkl), np.nan)
        refined = np.zeros(len(hkl), bool)
        for j, key in enumerate(map(tuple, hkl)):
            v = ref["hkl"].get(key)
            if v is not None and np.isfinite(v[1]):
                F_ref[j] = v[0]
                refined[j] = True
        cc, r, k, n = figures(F_ref[refined], F_true[refined])
        rows.append((f"refined, {N} stills", n, float(mc["N"][2][refined].mean()) if n else float("nan"), cc, r, k))
        sets["ref"] = refined
    print("\nagainst the truth (CC: Pearson on F; R = sum|k F - F_true| / sum F_true, k the least-squares scale)")
    print(f"{'estimate':28s} {'reflections':>11s} {'obs/refl':>9s} {'CC':>8s} {'R':>8s} {'k':>10s}")
    for name, n, mult, cc, r, k in rows:
        print(f"{name:28s} {n:11d} {mult:9.2f} {cc:8.4f} {r:8.4f} {k:10.4g}")
    common = sets["N"] & sets["4N"] & sets.get("ref", np.ones(len(hkl), bool))
    summary = {"n": N, "seed": a.seed, "common_reflections": int(common.sum())}
    print(f"\nover the {int(common.sum())} reflections that {'all three' if 'ref' in sets else 'both'} measured:")
    ests = [(f"MC merging, {N} stills", mc["N"][0], "mc_N"), (f"MC merging, {N4} stills", mc["4N"][0], "mc_4N")]
    if F_ref is not None:
        ests.append((f"refined, {N} stills", F_ref, "refined"))
    for name, est, key in ests:
        cc, r, k, n = figures(est[common], F_true[common])
        print(f"{name:28s} {n:11d} {'':9s} {cc:8.4f} {r:8.4f} {k:10.4g}")
        summary[key] = {"CC": cc, "R": r}

    if ref is not None:
        print()
        if "error" in ref:
            print(f"refinement: FAILED: {ref['error']}")
        else:
            js = ref["json"]
            z = ref["z"]
            it = js.get("iterations") or 0
            secs = js.get("seconds")
            print(f"refinement: exit {ref['rc']}, stop: {js.get('stop_reason')}, {it} iterations, "
                  f"{js.get('evaluations')} evaluations, {js.get('pixels')} pixels, F refined "
                  f"{js.get('F', {}).get('refined')} of {js.get('F', {}).get('listed')}; start: " +
                  (f"every F {ref['F0']:.4g}" if a.start == "constant" else "F and missets at the truth") +
                  f"; cost {js.get('cost'):.10g} (start {js.get('start_cost'):.10g})")
            if len(z):
                print(f"misset coverage: {np.mean(np.abs(z) <= 1):.3f} within 1 sigma, {np.mean(np.abs(z) <= 2):.3f} "
                      f"within 2 (ideal 0.683, 0.954); z mean {z.mean():+.3f}, rms {np.sqrt(np.mean(z * z)):.3f} "
                      f"over {len(z)} angles (the start's: rms {np.sqrt(np.mean(ref['z0'] ** 2)):.3f}; median "
                      f"sigma {np.median(ref['sigma_misset']):.4f} deg)")
            fit_secs = ref.get("fit_seconds")
            if fit_secs is not None and it:
                print(f"time: {fit_secs / it:.3f} s per iteration ({fit_secs:.2f} s in the solver's last progress line, "
                      f"{secs:.2f} s in the program's JSON with the setup and the sigmas, {ref['wall']:.2f} s wall); "
                      f"the {N} stills' derivative runs (misset x y z + F-Jacobian on the boxes) sum to "
                      f"{ref['deriv_sum']:.3f} s (median of 5 passes): ratio {fit_secs / it / ref['deriv_sum']:.2f}")
            ph = js.get("seconds_by_phase")
            if ph:
                print("time by phase, per iteration (ratio to the derivative runs): " +
                      ", ".join(f"{k} {v / it:.4f} s ({v / it / ref['deriv_sum']:.2f})" for k, v in ph.items()) +
                      f"; {js.get('reduced_solves')} reduced solves ({js.get('reduced_solves', 0) / it:.1f} an iteration)")
    else:
        why = "--no_refine given" if a.no_refine else (
            "dualbragg-ensemble not found (looked beside the dualbragg CLI in " + str(a.build) +
            ", in the Python package, and on PATH)")
        print(f"\nREFINEMENT NOT RUN: {why}. Only the Monte Carlo merging figures above were measured.")

    print(f"\nseconds: generating {t_gen:.1f}, merging {t_merge:.2f}" +
          (f", refining {t_ref:.1f}" if t_ref is not None else ", refining (not run)"))
    if ref is not None and "error" not in ref:
        z, it, fit_secs = ref["z"], ref["json"].get("iterations") or 0, ref.get("fit_seconds")
        summary.update({"coverage_1": float(np.mean(np.abs(z) <= 1)) if len(z) else None,
                        "coverage_2": float(np.mean(np.abs(z) <= 2)) if len(z) else None,
                        "z_mean": float(z.mean()) if len(z) else None, "iterations": it,
                        "stop_reason": ref["json"].get("stop_reason"), "exit": ref["rc"],
                        "seconds_per_iteration": fit_secs / it if fit_secs is not None and it else None,
                        "derivative_runs_seconds": ref["deriv_sum"],
                        "seconds_by_phase": ref["json"].get("seconds_by_phase"),
                        "reduced_solves": ref["json"].get("reduced_solves")})
    # the figures as JSON (bench/bench_ensemble_seeds.py gathers them over seeds); written then renamed
    with open(os.path.join(a.workdir, "figures.json.tmp"), "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(os.path.join(a.workdir, "figures.json.tmp"), os.path.join(a.workdir, "figures.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
