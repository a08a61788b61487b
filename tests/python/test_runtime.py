"""Lifetime and threads: no leak over 1000 create/run/destroy cycles, the GIL released during a run."""
import threading
import time

import numpy as np

import dualbragg

TINY = "-cell 100 -default_F 100 -N 3 -detpixels 16 -oversample 1"


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cycle():
    sim = dualbragg.Simulation(TINY)
    img, g = sim.run(grad=["a", "phi0"])
    sim.select_boxes([[2, 9, 3, 12]])
    sim.run_selected(["a"])
    sim.close()
    return float(img.sum())


def test_no_leak_over_1000_cycles():
    first = cycle()
    for _ in range(200):  # warm-up: allocator pools, OpenMP threads
        cycle()
    before = rss_kib()
    for _ in range(1000):
        assert cycle() == first
    grown = rss_kib() - before
    # a simulation's tables alone are tens of KiB: leaking one per cycle would grow by tens of MiB
    assert grown < 2048, "RSS grew by %d KiB over 1000 cycles" % grown


def test_collected_without_close():
    before = None
    for i in range(600):
        dualbragg.Simulation(TINY).run()  # freed by __del__
        if i == 100:
            before = rss_kib()
    assert rss_kib() - before < 2048


def test_gil_released_during_run():
    sim = dualbragg.Simulation("-cell 100 -default_F 100 -N 5 -detpixels 384 -oversample 3 -mosaic 0.2 "
                               "-mosaic_dom 6")
    done = threading.Event()
    out = {}

    def work():
        out["img"] = sim.run()
        done.set()

    t = threading.Thread(target=work)
    start = last = time.perf_counter()
    longest = 0.0  # the longest time this thread could not run while the other one rendered
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    t.join()
    elapsed = time.perf_counter() - start
    assert elapsed > 0.3, "the run was too short to tell (%.3f s)" % elapsed
    # with the GIL held for the whole run this loop would stall for about the whole run
    assert longest < 0.25 * elapsed, "this thread stalled %.3f s of a %.3f s run" % (longest, elapsed)
    assert np.max(out["img"]) > 0
