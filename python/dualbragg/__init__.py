"""dualbragg: nanoBragg-compatible diffraction images and their derivatives, numpy arrays in and out.

A thin layer over the C library (include/dualbragg.h) through ctypes: numpy buffers are handed to the library as
pointers, so images, derivative images and Jacobians are written straight into the arrays returned (the sparse
structure-factor Jacobian is copied out of the library's arrays into a scipy matrix); ctypes releases the GIL
during every library call. Every failure raises dualbragg.Error with the library's message. numpy is the one
dependency; scipy is imported only by run_selected(..., structure_factors=True). See the README, section "Python".
"""
import ctypes as C
import os
import shlex

import numpy as np

from . import _capi
from ._capi import lib as _lib
from ._capi import rlib as _rlib

__all__ = ["Error", "Simulation", "RefineResult", "find_spots", "gradcheck", "param_names", "param_units", "program"]


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


def _float_vector(v, what):
    """v as a contiguous float64 1-d array; anything else raises Error naming what."""
    try:
        a = np.ascontiguousarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise Error("dualbragg: %s must be numbers (%s)" % (what, e), 1) from None
    if a.ndim != 1:
        raise Error("dualbragg: %s must be a 1-d array, not shape %s" % (what, a.shape), 1)
    return a


def _hkl_array(hkl, k):
    """hkl as a contiguous (k, 3) C-int array of Miller indices; anything else raises Error."""
    h = np.asarray(hkl)
    if h.size == 0 and k == 0:
        return np.zeros((0, 3), dtype=np.intc)
    if h.ndim != 2 or h.shape[1] != 3:
        raise Error("dualbragg: hkl must be a (k, 3) array of Miller indices, not shape %s" % (h.shape,), 1)
    if not np.issubdtype(h.dtype, np.integer):
        raise Error("dualbragg: hkl must be integers (Miller indices), not %s" % h.dtype, 1)
    if h.shape[0] != k:
        raise Error("dualbragg: %d reflections in hkl and %d values in F" % (h.shape[0], k), 1)
    info = np.iinfo(np.intc)
    if h.min() < info.min or h.max() > info.max:
        raise Error("dualbragg: hkl holds an index beyond a C int (%d..%d)" % (info.min, info.max), 1)
    return np.ascontiguousarray(h, dtype=np.intc)


def _csr_copy(m, sparse):
    """A db_csr's arrays copied into a scipy.sparse.csr_matrix (the caller frees the db_csr)."""
    def out(ptr, n, dtype):
        if n == 0 or not ptr:
            return np.zeros(n, dtype=dtype)
        return np.ctypeslib.as_array(ptr, shape=(n,)).astype(dtype, copy=True)
    rows, cols, nnz = int(m.rows), int(m.cols), int(m.nnz)
    indptr = out(m.row_ptr, rows + 1, np.int64)
    return sparse.csr_matrix((out(m.val, nnz, np.float64), out(m.col, nnz, np.int64), indptr), shape=(rows, cols))


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


def find_spots(observed, n, size=15, mask=None):
    """Boxes (k, 4) of size x size pixels (xmin xmax ymin ymax, inclusive) around the n brightest spots of observed
    ((slow, fast) photons), by the rule of dualbragg-refine -spots (README "Refinement"); mask: a boolean array like
    observed, True where pixels may be used (default: all). k <= n; k == 0 when nothing stands above the
    background."""
    obs = np.ascontiguousarray(observed, dtype=np.float64)
    if obs.ndim != 2:
        raise Error("dualbragg: observed must be a 2-d (slow, fast) array, not shape %s" % (obs.shape,), 1)
    S, F = obs.shape
    if mask is None:
        pix = np.arange(S * F, dtype=np.int_)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != obs.shape:
            raise Error("dualbragg: mask has shape %s, observed %s" % (m.shape, obs.shape), 1)
        pix = np.flatnonzero(m.ravel()).astype(np.int_)
    pix = np.ascontiguousarray(pix, dtype=C.c_long)
    boxes = np.zeros((max(int(n), 1), 4), dtype=np.intc)
    err = _capi.db_error()
    k = _rlib.db_find_spots(_dptr(obs), F, S, pix.ctypes.data_as(C.POINTER(C.c_long)), pix.size, int(n), int(size),
                           boxes.ctypes.data_as(_capi.c_int_p), C.byref(err))
    if k < 0:
        _check(err.code or 1, err)
    return boxes[:k].copy()


_OBJECTIVES = {"poisson": 0, "lsq": 1}
_BACKGROUNDS = {"auto": 0, "none": 1, "constant": 2, "planes": 3}
_BACKGROUND_NAMES = {v: k for k, v in _BACKGROUNDS.items()}


class RefineResult:
    """What Simulation.refine returns: values, sigmas (the inverse Fisher information, unscaled), sigma_scaled
    (times sqrt(reduced_chi2)) (dicts by parameter name, command-line units), correlation (k x k array in the order
    of names), the background of each box (a list of dicts: box, a, b, c, sigma_a, sigma_b, sigma_c; photons per
    pixel, x and y in pixels from the box's centre), the goodness of fit (deviance_per_dof beside
    expected_deviance_per_dof, deviance_z, poor_fit), costs, counts and the stop reason."""

    def __init__(self, names, r, bg=None, bg_sigma=None, bg_boxes=None):
        k = r.nparams
        self.names = list(names)
        self.start = {n: r.start[i] for i, n in enumerate(names)}
        self.values = {n: r.values[i] for i, n in enumerate(names)}
        self.sigmas = {n: r.sigma[i] for i, n in enumerate(names)}
        self.sigma_scaled = {n: r.sigma_scaled[i] for i, n in enumerate(names)}
        self.objective = "lsq" if r.objective == 1 else "poisson"
        self.background_model = _BACKGROUND_NAMES.get(r.background, "none")
        self.background = []
        if bg is not None and r.background != 1:
            for e in range(bg_boxes.shape[0]):
                if not np.isfinite(bg[e, 0]):
                    continue
                self.background.append({"box": [int(v) for v in bg_boxes[e]], "a": bg[e, 0], "b": bg[e, 1],
                                        "c": bg[e, 2], "sigma_a": bg_sigma[e, 0], "sigma_b": bg_sigma[e, 1],
                                        "sigma_c": bg_sigma[e, 2]})
        self.dof = r.dof
        self.deviance, self.deviance_per_dof = r.deviance, r.deviance_per_dof
        self.expected_deviance_per_dof, self.deviance_z = r.expected_deviance_per_dof, r.deviance_z
        self.poor_fit = bool(r.poor_fit)
        self.correlation = np.array(r.correlation[:k * k], dtype=np.float64).reshape(k, k)
        self.start_cost, self.cost, self.reduced_chi2 = r.start_cost, r.cost, r.reduced_chi2
        self.pixels, self.iterations = r.pixels, r.iterations
        self.derivative_runs, self.primal_runs = r.derivative_runs, r.primal_runs
        self.stop_reason = _rlib.db_stop_reason_text(r.stop_reason).decode()
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

    def run_selected(self, params=(), structure_factors=False):
        """(values, jac): values[i] of the selected pixels (row-major order), shape (m,), and jac[i, k] =
        d values[i] / d params[k], shape (m, k), Fortran order (filled in place by the library).

        structure_factors=True: (values, jac, fjac), fjac[i, j] = d values[i] / d F_j for every reflection j of
        structure_factors() (in its order), a scipy.sparse.csr_matrix of shape (m, n), float64, from the same pass
        (db_sim_run_selected_F): exact through sub-pixels, sources, phi steps, mosaic domains and tricubic
        interpolation; reflections not listed (-default_F) have no column. values and jac are then bit for bit those
        without it. Needs a structure-factor table, the CPU renderers (Error on a GPU) and scipy."""
        if structure_factors:
            try:
                import scipy.sparse as sparse  # here only: the package itself needs numpy alone
            except ImportError as e:
                raise ImportError("dualbragg: run_selected(structure_factors=True) returns a scipy.sparse matrix and "
                                  "needs scipy (pip install scipy)") from e
        names, idx = _param_indices(params)
        m = self.selected_count
        if m <= 0:  # let the library say why
            m = 0
        values = np.zeros(max(m, 1), dtype=np.float64)
        jac = np.zeros((max(m, 1), len(names)), dtype=np.float64, order="F")
        err = _capi.db_error()
        if not structure_factors:
            _check(_lib.db_sim_run_selected(self._p(), idx, len(names), _dptr(values),
                                            _dptr(jac) if names else None, C.byref(err)), err)
        else:
            csr = _capi.db_csr()
            try:
                _check(_lib.db_sim_run_selected_F(self._p(), idx, len(names), _dptr(values),
                                                  _dptr(jac) if names else None, C.byref(csr), C.byref(err)), err)
                fjac = _csr_copy(csr, sparse)
            finally:
                _lib.db_csr_free(C.byref(csr))
            if fjac.shape[0] != m:
                raise Error("dualbragg: the F-Jacobian has %d rows for %d selected pixels" % (fjac.shape[0], m), 6)
        if m != self.selected_count:
            raise Error("dualbragg: the selection changed during the run", 6)
        if structure_factors:
            return values[:m], jac[:m], fjac
        return values[:m], jac[:m]

    # ---- structure factors as values (README "Structure factors") ----
    def structure_factors(self):
        """(hkl, F): the table's reflections in the library's list order, hkl an int32 (C int) array (n, 3) and F
        float64 (n,): an -hkl file's lines in file order (a repeated line once), or every entry of an Fdump cache's
        index ranges (h, k, then l fastest). Reflections that hold -default_F are not listed; without a table
        (-default_F only) both are empty (n = 0). These are the columns of run_selected(...,
        structure_factors=True)."""
        p = self._p()
        n = int(_lib.db_sim_structure_factor_count(p))
        hkl = np.zeros((n, 3), dtype=np.intc)
        F = np.zeros(n, dtype=np.float64)
        err = _capi.db_error()
        got = _lib.db_sim_get_structure_factors(p, hkl.ctypes.data_as(_capi.c_int_p), _dptr(F), n, C.byref(err))
        if got < 0:
            _check(err.code or 1, err)
        return hkl[:got], F[:got]

    def set_structure_factors(self, hkl_or_F, F=None):
        """set_structure_factors(F): every listed F at once, in the order of structure_factors() (as many values as
        it lists); set_structure_factors(hkl, F): the reflections named, hkl a (k, 3) integer array and F (k,).
        F must be finite and >= 0. In place: the next run equals a fresh simulation from an hkl file holding these
        values. Refused as a whole, nothing changed (Error with the library's message: the reflection that the
        table does not list, the value refused, or the count expected)."""
        err = _capi.db_error()
        if F is None:
            v = _float_vector(hkl_or_F, "F")
            _check(_lib.db_sim_set_structure_factors(self._p(), _dptr(v), v.size, C.byref(err)), err)
            return
        v = _float_vector(F, "F")
        h = _hkl_array(hkl_or_F, v.size)
        _check(_lib.db_sim_set_structure_factors_hkl(self._p(), h.ctypes.data_as(_capi.c_int_p), _dptr(v), v.size,
                                                     C.byref(err)), err)

    def refine(self, observed, params, weights=None, max_iterations=100, cost_tolerance=1e-12,
               step_tolerance=1e-10, initial_damping=1e-2, weighting="poisson", typical_step=None, boxes=None,
               objective="poisson", background="auto", readout_noise=0.0, gain=1.0):
        """Levenberg-Marquardt fit (db_refine) of params to observed (float64 (slow, fast): photons, or detector
        units with gain) over the selected pixels (boxes here, or select_boxes, or the -roi/-mask).
        objective "poisson" (the likelihood of the counts; readout_noise S in photons adds S^2 to the variance) or
        "lsq" (weighted least squares: weights, an array like observed, or weighting "poisson" (1/max(observed, 1))
        or "unit"). background "auto" (planes when boxes are selected, none for the -roi/-mask), "none",
        "constant" or "planes" (a + b x + c y per box). gain: detector units per photon (observed / gain is
        fitted). The simulation keeps the fitted values. Returns RefineResult. The same flags give the same fit as
        dualbragg-refine (README "Refinement")."""
        if boxes is not None:
            self.select_boxes(boxes)
        names, idx = _param_indices(params)
        if objective not in _OBJECTIVES:
            raise Error("dualbragg: objective must be 'poisson' or 'lsq', not %r" % (objective,), 1)
        if background not in _BACKGROUNDS:
            raise Error("dualbragg: background must be 'auto', 'none', 'constant' or 'planes', not %r" % (background,), 1)
        if objective == "poisson" and (weights is not None or weighting != "poisson"):
            raise Error("dualbragg: weights and weighting belong to objective='lsq' (the Poisson objective weighs each "
                        "pixel by its model variance)", 1)
        if not (float(gain) > 0 and np.isfinite(gain)):
            raise Error("dualbragg: gain must be a finite number > 0 (detector units per photon), not %r" % (gain,), 1)
        obs = np.ascontiguousarray(observed, dtype=np.float64)
        if obs.shape != self.shape:
            raise Error("dualbragg: observed has shape %s, the detector %s" % (obs.shape, self.shape), 1)
        if float(gain) != 1.0:
            obs = obs / float(gain)
        w = None
        if weights is not None:
            w = np.ascontiguousarray(weights, dtype=np.float64)
            if w.shape != self.shape:
                raise Error("dualbragg: weights have shape %s, the detector %s" % (w.shape, self.shape), 1)
        o = _capi.db_refine_options()
        _rlib.db_refine_default_options(C.byref(o))
        o.max_iterations = int(max_iterations)
        o.cost_tolerance = float(cost_tolerance)
        o.step_tolerance = float(step_tolerance)
        o.initial_damping = float(initial_damping)
        if weighting not in ("poisson", "unit"):
            raise Error("dualbragg: weighting must be 'poisson' or 'unit', not %r" % (weighting,), 1)
        o.weighting = 0 if weighting == "poisson" else 1
        o.objective = _OBJECTIVES[objective]
        o.background = _BACKGROUNDS[background]
        o.readout_noise = float(readout_noise)
        ts = None
        if typical_step is not None:
            ts = np.ascontiguousarray([float(typical_step[n]) for n in names], dtype=np.float64)
            o.typical_step = _dptr(ts)
        nbg = int(_rlib.db_refine_background_count(self._p()))
        bg = np.zeros((nbg, 3), dtype=np.float64)
        bg_sigma = np.zeros((nbg, 3), dtype=np.float64)
        bg_boxes = np.zeros((nbg, 4), dtype=np.intc)
        o.background_values = _dptr(bg)
        o.background_sigma = _dptr(bg_sigma)
        o.background_boxes = bg_boxes.ctypes.data_as(_capi.c_int_p)
        r = _capi.db_refine_result()
        err = _capi.db_error()
        _check(_rlib.db_refine(self._p(), idx, len(names), _dptr(obs), _dptr(w) if w is not None else None,
                              C.byref(o), C.byref(r), C.byref(err)), err)
        res = RefineResult(names, r, bg, bg_sigma, bg_boxes)
        nb = int(_lib.db_sim_get_boxes(self._p(), None, 0))
        res.boxes = np.zeros((nb, 4), dtype=np.intc)
        if nb:
            _lib.db_sim_get_boxes(self._p(), res.boxes.ctypes.data_as(_capi.c_int_p), nb)
        return res


def gradcheck(args, params=(), roi=None, rtol=1e-6, atol_factor=1e-8, atol_abs=None, precise=False, fdump=None,
              hkl=None):
    """Finite-difference check of the derivative images (db_gradcheck, as dualbragg-gradcheck): args as for
    Simulation, params names, roi (xmin, xmax, ymin, ymax) or None (the -boxes, or 16x16 around the brightest
    pixel); hkl: reflections (k, 3) whose structure-factor columns are checked too (db_gradcheck_with_F, as
    -grad_hkl). Returns {"all_pass": bool, "roi": (...), "rows": [{"param", "pass", "max_abs_err", ...}]}; a
    structure factor's row has "param" "F(h k l)", "hkl", "F" and "F_checked"."""
    cfg = _Config(args)
    try:
        names, idx = _param_indices(params)
        refl = np.zeros((0, 3), dtype=np.intc) if hkl is None else np.asarray(hkl)
        if refl.size and not np.issubdtype(refl.dtype, np.integer):
            raise Error("dualbragg: hkl must be integers", 1)
        refl = np.ascontiguousarray(refl, dtype=np.intc).reshape(-1, 3) if refl.size else np.zeros((0, 3), dtype=np.intc)
        if not names and not refl.shape[0]:
            raise Error("dualbragg: gradcheck needs parameters, reflections (hkl) or both", 1)
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
        if refl.shape[0] and not names:
            _check(_capi.gclib.db_gradcheck_F(cfg.ptr, refl.ctypes.data_as(_capi.c_int_p), refl.shape[0], C.byref(o),
                                              C.byref(rep), C.byref(err)), err)
        elif refl.shape[0]:
            _check(_capi.gclib.db_gradcheck_with_F(cfg.ptr, idx, len(names), refl.ctypes.data_as(_capi.c_int_p),
                                                   refl.shape[0], C.byref(o), C.byref(rep), C.byref(err)), err)
        else:
            _check(_capi.gclib.db_gradcheck(cfg.ptr, idx, len(names), C.byref(o), C.byref(rep), C.byref(err)), err)
    finally:
        cfg.close()
    rows = []
    for i in range(rep.nrows):
        r = rep.rows[i]
        row = {"param": _lib.db_param_name(r.param).decode() if not r.structure_factor else
               "F(%d %d %d)" % tuple(r.hkl), "pass": bool(r.pass_), "pixels": r.pixels,
               "max_abs_err": r.max_abs_err, "max_rel_err": r.max_rel_err,
               "worst_pixel": (r.worst_f, r.worst_s), "worst_ad": r.worst_ad, "worst_fd": r.worst_fd,
               "atol": r.atol, "noise_floor": r.noise_floor, "max_abs_fd": r.max_abs_fd, "step": r.step}
        if r.structure_factor:
            row.update({"hkl": tuple(r.hkl), "F": r.F, "F_checked": r.F_at})
        rows.append(row)
    return {"all_pass": bool(rep.all_pass), "roi": tuple(rep.roi), "boxes": rep.boxes, "rows": rows}
