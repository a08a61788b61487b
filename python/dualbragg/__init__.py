"""dualbragg: nanoBragg-compatible diffraction images and their derivatives, numpy arrays in and out.

A thin layer over the C library (include/dualbragg.h) through ctypes: numpy buffers are handed to the library as
pointers, so images, derivative images and Jacobians are written straight into the arrays returned; ctypes
releases the GIL during every library call. Every failure raises dualbragg.Error with the library's message.
See the README, section "Python".
"""
import ctypes as C
import os
import shlex

import numpy as np

from . import _capi
from ._capi import lib as _lib

__all__ = ["Error", "Simulation", "RefineResult", "gradcheck", "param_names", "param_units", "program"]


class Error(Exception):
    """A failure reported by the library: str(e) is its message, e.code its db_status (DB_ERR_*)."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


def _check(rc, err):
    if rc != 0:
        msg = err.message.decode("utf-8", "replace") or "dualbragg: error %d" % rc
        raise Error(msg, err.code or rc)


def _names():
    return [_lib.db_param_name(i).decode() for i in range(_lib.db_param_count())]


param_names = _names()
param_units = {n: _lib.db_param_unit(i).decode() for i, n in enumerate(param_names)}


def program(name="dualbragg"):
    """Path of one of the command-line programs installed with the package (dualbragg, dualbragg-refine,
    dualbragg-gradcheck)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", name)
    if not os.path.exists(path):
        raise Error("dualbragg: program %s is not installed with the package" % name)
    return path


def _param_indices(params):
    """Names (a list, or "a,b,phi0") -> ctypes int array; unknown names raise Error naming them."""
    if isinstance(params, str):
        params = [p for p in params.split(",") if p]
    params = list(params)
    idx = []
    for p in params:
        i = _lib.db_param_from_name(str(p).encode())
        if i < 0:
            raise Error("dualbragg: unknown parameter '%s' (known: %s)" % (p, " ".join(param_names)),
                        1)
        idx.append(i)
    return params, (C.c_int * max(len(idx), 1))(*idx)


def _argv(args):
    if isinstance(args, str):
        args = shlex.split(args)
    args = [str(a) for a in args]
    return len(args), (C.c_char_p * max(len(args), 1))(*[a.encode() for a in args])


def _dptr(a):
    return a.ctypes.data_as(_capi.c_double_p)


class _Config:
    def __init__(self, args):
        err = _capi.db_error()
        self.ptr = _lib.db_config_create()
        if not self.ptr:
            raise Error("dualbragg: out of memory", 5)
        n, argv = _argv(args)
        try:
            _check(_lib.db_config_parse(self.ptr, n, argv, C.byref(err)), err)
        except Error:
            self.close()
            raise
        self.warnings = (_lib.db_config_warnings(self.ptr) or b"").decode()

    def close(self):
        if self.ptr:
            _lib.db_config_destroy(self.ptr)
            self.ptr = None

    def __del__(self):
        self.close()


class RefineResult:
    """What Simulation.refine returns: values, sigmas (dicts by parameter name, command-line units), correlation
    (k x k array in the order of names), costs, counts and the stop reason."""

    def __init__(self, names, r):
        k = r.nparams
        self.names = list(names)
        self.start = {n: r.start[i] for i, n in enumerate(names)}
        self.values = {n: r.values[i] for i, n in enumerate(names)}
        self.sigmas = {n: r.sigma[i] for i, n in enumerate(names)}
        self.correlation = np.array(r.correlation[:k * k], dtype=np.float64).reshape(k, k)
        self.start_cost, self.cost, self.reduced_chi2 = r.start_cost, r.cost, r.reduced_chi2
        self.pixels, self.iterations = r.pixels, r.iterations
        self.derivative_runs, self.primal_runs = r.derivative_runs, r.primal_runs
        self.stop_reason = _lib.db_stop_reason_text(r.stop_reason).decode()
        self.seconds = r.seconds

    def __repr__(self):
        vals = ", ".join("%s=%.10g+-%.3g" % (n, self.values[n], self.sigmas[n]) for n in self.names)
        return "RefineResult(%s; cost %.6g -> %.6g, %d iterations, %s)" % (
            vals, self.start_cost, self.cost, self.iterations, self.stop_reason)


class Simulation:
    """One simulation from a nanoBragg-style command line (a list of arguments or one string; the same flags as
    the dualbragg program, files relative to the current folder, the -hkl file read here). Output flags
    (-floatfile ...) are accepted and ignored: nothing is written. fdump: a structure-factor cache (Fdump.bin
    format) to read when the arguments have no -hkl; the library never looks for ./Fdump.bin by itself."""

    def __init__(self, args, fdump=None):
        self._ptr = None
        cfg = _Config(args)
        try:
            err = _capi.db_error()
            ptr = C.c_void_p()
            fd = os.fsencode(fdump) if fdump is not None else None
            _check(_lib.db_sim_create(C.byref(ptr), cfg.ptr, fd, C.byref(err)), err)
            self._ptr = ptr.value
        finally:
            cfg.close()
        self.warnings = cfg.warnings
        f, s = C.c_int(), C.c_int()
        _lib.db_sim_size(self._ptr, C.byref(f), C.byref(s))
        self.shape = (s.value, f.value)
        self.param_names = list(param_names)
        self._selected = None

    # ---- lifetime ----
    def close(self):
        """Frees the simulation now (also done when the object is collected)."""
        if self._ptr:
            _lib.db_sim_destroy(self._ptr)
            self._ptr = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _p(self):
        if not self._ptr:
            raise Error("dualbragg: the simulation was closed", 1)
        return self._ptr

    # ---- properties ----
    @property
    def geometry(self):
        """The derived geometry (db_geometry) as a dict; vectors as tuples."""
        g = _capi.db_geometry()
        err = _capi.db_error()
        rc = _lib.db_sim_geometry(self._p(), C.byref(g))
        if rc:
            err.code = rc
            _check(rc, err)
        out = {}
        for name, _t in g._fields_:
            v = getattr(g, name)
            out[name] = tuple(v) if not isinstance(v, (int, float)) else v
        return out

    @property
    def device(self):
        return _lib.db_sim_device(self._p()).decode()

    def set_device(self, device):
        """"cpu", "cuda", "auto" (or "emulate"); Error when the device is unusable."""
        err = _capi.db_error()
        _check(_lib.db_sim_set_device(self._p(), str(device).encode(), C.byref(err)), err)

    # ---- runs ----
    def run(self, grad=None, float32=False):
        """The image, float64 of shape (slow, fast) (float32, as -floatfile writes it, with float32=True); with
        grad=[names], (image, grads) where grads[k] = d image / d grad[k] (shape (k, slow, fast), float64)."""
        err = _capi.db_error()
        img32 = np.zeros(self.shape, dtype=np.float32)
        img64 = np.zeros(self.shape, dtype=np.float64)
        if grad is None:
            _check(_lib.db_sim_run(self._p(), img32.ctypes.data_as(_capi.c_float_p), _dptr(img64), C.byref(err)),
                   err)
            return img32 if float32 else img64
        names, idx = _param_indices(grad)
        grads = np.zeros((len(names),) + self.shape, dtype=np.float64)
        _check(_lib.db_sim_run_grad(self._p(), idx, len(names), img32.ctypes.data_as(_capi.c_float_p),
                                    _dptr(img64), _dptr(grads), C.byref(err)), err)
        return (img32 if float32 else img64), grads

    def set_params(self, values):
        """values: {name: value} in command-line units. Refused as a whole (Error naming the parameter)."""
        names, idx = _param_indices(list(values.keys()))
        v = np.ascontiguousarray([float(values[n]) for n in names], dtype=np.float64)
        err = _capi.db_error()
        _check(_lib.db_sim_set_params(self._p(), idx, _dptr(v), len(names), C.byref(err)), err)

    def get_params(self, names):
        """{name: value} for the names asked (a list, or "a,b,c")."""
        names, idx = _param_indices(names)
        v = np.zeros(max(len(names), 1), dtype=np.float64)
        err = _capi.db_error()
        _check(_lib.db_sim_get_params(self._p(), idx, _dptr(v), len(names), C.byref(err)), err)
        return {n: float(v[i]) for i, n in enumerate(names)}

    def select_boxes(self, boxes):
        """boxes: (n, 4) integers xmin xmax ymin ymax (inclusive, fast/slow pixel indices); later run_selected and
        refine evaluate these pixels only. None or an empty array returns to the -roi/-mask."""
        b = np.zeros((0, 4), dtype=np.intc) if boxes is None else np.asarray(boxes)
        if b.size and not np.issubdtype(b.dtype, np.integer):
            raise Error("dualbragg: boxes must be integers", 1)
        b = np.ascontiguousarray(b, dtype=np.intc).reshape(-1, 4) if b.size else np.zeros((0, 4), dtype=np.intc)
        err = _capi.db_error()
        _check(_lib.db_sim_select_boxes(self._p(), b.ctypes.data_as(_capi.c_int_p), b.shape[0], C.byref(err)), err)
        self._selected = b.copy() if b.shape[0] else None

    @property
    def selected_count(self):
        return int(_lib.db_sim_selected_count(self._p()))

    def selected_mask(self):
        """Boolean (slow, fast) array of the pixels run_selected evaluates, in the order of its values (row-major)
        when the boxes were given with select_boxes (None when the -roi/-mask selects)."""
        if self._selected is None:
            return None
        m = np.zeros(self.shape, dtype=bool)
        for x0, x1, y0, y1 in self._selected:
            m[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
        return m

    def run_selected(self, params=()):
        """(values, jac): values[i] of the selected pixels (row-major order), shape (m,), and jac[i, k] =
        d values[i] / d params[k], shape (m, k), Fortran order (filled in place by the library)."""
        names, idx = _param_indices(params)
        m = self.selected_count
        if m <= 0:  # let the library say why
            m = 0
        values = np.zeros(max(m, 1), dtype=np.float64)
        jac = np.zeros((max(m, 1), len(names)), dtype=np.float64, order="F")
        err = _capi.db_error()
        _check(_lib.db_sim_run_selected(self._p(), idx, len(names), _dptr(values),
                                        _dptr(jac) if names else None, C.byref(err)), err)
        if m != self.selected_count:
            raise Error("dualbragg: the selection changed during the run", 6)
        return values[:m], jac[:m]

    def refine(self, observed, params, weights=None, max_iterations=100, cost_tolerance=1e-12,
               step_tolerance=1e-10, initial_damping=1.0, weighting="poisson", typical_step=None, boxes=None):
        """Levenberg-Marquardt fit (db_refine) of params to observed (float64 (slow, fast) photons) over the selected
        pixels (boxes here, or select_boxes, or the -roi/-mask). weights: an array like observed, or weighting
        "poisson" (1/max(observed, 1)) or "unit". The simulation keeps the fitted values. Returns RefineResult."""
        if boxes is not None:
            self.select_boxes(boxes)
        names, idx = _param_indices(params)
        obs = np.ascontiguousarray(observed, dtype=np.float64)
        if obs.shape != self.shape:
            raise Error("dualbragg: observed has shape %s, the detector %s" % (obs.shape, self.shape), 1)
        w = None
        if weights is not None:
            w = np.ascontiguousarray(weights, dtype=np.float64)
            if w.shape != self.shape:
                raise Error("dualbragg: weights have shape %s, the detector %s" % (w.shape, self.shape), 1)
        o = _capi.db_refine_options()
        _lib.db_refine_default_options(C.byref(o))
        o.max_iterations = int(max_iterations)
        o.cost_tolerance = float(cost_tolerance)
        o.step_tolerance = float(step_tolerance)
        o.initial_damping = float(initial_damping)
        if weighting not in ("poisson", "unit"):
            raise Error("dualbragg: weighting must be 'poisson' or 'unit', not %r" % (weighting,), 1)
        o.weighting = 0 if weighting == "poisson" else 1
        ts = None
        if typical_step is not None:
            ts = np.ascontiguousarray([float(typical_step[n]) for n in names], dtype=np.float64)
            o.typical_step = _dptr(ts)
        r = _capi.db_refine_result()
        err = _capi.db_error()
        _check(_lib.db_refine(self._p(), idx, len(names), _dptr(obs), _dptr(w) if w is not None else None,
                              C.byref(o), C.byref(r), C.byref(err)), err)
        return RefineResult(names, r)


def gradcheck(args, params, roi=None, rtol=1e-6, atol_factor=1e-8, atol_abs=None, precise=False, fdump=None):
    """Finite-difference check of the derivative images (db_gradcheck, as dualbragg-gradcheck): args as for
    Simulation, params names, roi (xmin, xmax, ymin, ymax) or None (the -boxes, or 16x16 around the brightest
    pixel). Returns {"all_pass": bool, "roi": (...), "rows": [{"param", "pass", "max_abs_err", ...}]}."""
    cfg = _Config(args)
    try:
        names, idx = _param_indices(params)
        o = _capi.db_gc_options()
        _capi.gclib.db_gc_default_options(C.byref(o))
        if roi is not None:
            for i, v in enumerate(roi):
                o.roi[i] = int(v)
        o.rtol = float(rtol)
        o.atol_factor = float(atol_factor)
        if atol_abs is not None:
            o.atol_abs = float(atol_abs)
        o.precise = 1 if precise else 0
        fd = os.fsencode(fdump) if fdump is not None else None
        o.fdump_path = fd
        rep = _capi.db_gc_report()
        err = _capi.db_error()
        _check(_capi.gclib.db_gradcheck(cfg.ptr, idx, len(names), C.byref(o), C.byref(rep), C.byref(err)), err)
    finally:
        cfg.close()
    rows = []
    for i in range(rep.nrows):
        r = rep.rows[i]
        rows.append({"param": _lib.db_param_name(r.param).decode(), "pass": bool(r.pass_), "pixels": r.pixels,
                     "max_abs_err": r.max_abs_err, "max_rel_err": r.max_rel_err,
                     "worst_pixel": (r.worst_f, r.worst_s), "worst_ad": r.worst_ad, "worst_fd": r.worst_fd,
                     "atol": r.atol, "noise_floor": r.noise_floor, "max_abs_fd": r.max_abs_fd, "step": r.step})
    return {"all_pass": bool(rep.all_pass), "roi": tuple(rep.roi), "boxes": rep.boxes, "rows": rows}
