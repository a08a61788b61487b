"""ctypes declarations of include/dualbragg.h and gradcheck/gradcheck.h (the shared libraries libdualbragg,
libdualbragg_refine and libdualbragg_gradcheck installed beside
this file by `pip install .`). Structures mirror the C ones field for field; change both together."""
import ctypes as C
import glob
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _find(name):
    env = os.environ.get("DUALBRAGG_LIBDIR")  # a CMake build's folder, for development
    dirs = [env] if env else sorted(glob.glob(os.path.join(_HERE, "lib*"))) + [_HERE]
    for d in dirs:
        for cand in sorted(glob.glob(os.path.join(d, "**", name), recursive=True)):
            return cand
    raise ImportError("dualbragg: %s not found under %s (was the package built with `pip install .`?)"
                      % (name, ", ".join(dirs)))


lib = C.CDLL(_find("libdualbragg.so"), mode=C.RTLD_GLOBAL)
gclib = C.CDLL(_find("libdualbragg_gradcheck.so"))
rlib = C.CDLL(_find("libdualbragg_refine.so"))  # the refinement, spots and pictures (OpenBLAS, LAPACKE, libpng)

DB_MAX_CHUNK = 28
DB_REFINE_MAX_PARAMS = 32
DB_GC_MAX_ROWS = 32

c_int_p = C.POINTER(C.c_int)
c_double_p = C.POINTER(C.c_double)
c_float_p = C.POINTER(C.c_float)


class db_error(C.Structure):
    _fields_ = [("code", C.c_int), ("message", C.c_char * 1024)]


class db_geometry(C.Structure):
    _fields_ = [(n, C.c_int) for n in ("fpixels", "spixels", "oversample", "sources", "mosaic_domains",
                                        "phisteps", "steps")] + \
               [(n, C.c_double) for n in ("pixel_mm", "distance_mm", "close_distance_mm", "Fbeam_mm", "Sbeam_mm",
                                           "Fclose_mm", "Sclose_mm", "ORGX", "ORGY")] + \
               [(n, C.c_double * 3) for n in ("pix0_m", "fdet", "sdet", "odet", "beam")] + \
               [("cell", C.c_double * 6), ("Na", C.c_double), ("Nb", C.c_double), ("Nc", C.c_double),
                ("interpolate", C.c_int)]


class db_refine_iteration(C.Structure):
    _fields_ = [("iteration", C.c_int), ("accepted", C.c_int), ("cost", C.c_double), ("damping", C.c_double),
                ("step", C.c_double), ("seconds", C.c_double)]


refine_progress_fn = C.CFUNCTYPE(None, C.c_void_p, C.POINTER(db_refine_iteration))


class db_refine_options(C.Structure):
    _fields_ = [("max_iterations", C.c_int), ("cost_tolerance", C.c_double), ("step_tolerance", C.c_double),
                ("initial_damping", C.c_double), ("weighting", C.c_int), ("typical_step", c_double_p),
                ("progress", refine_progress_fn), ("progress_user", C.c_void_p),
                ("objective", C.c_int), ("background", C.c_int), ("readout_noise", C.c_double),
                ("background_values", c_double_p), ("background_sigma", c_double_p), ("background_boxes", c_int_p)]


class db_refine_result(C.Structure):
    _fields_ = [("nparams", C.c_int), ("start", C.c_double * DB_REFINE_MAX_PARAMS),
                ("values", C.c_double * DB_REFINE_MAX_PARAMS), ("sigma", C.c_double * DB_REFINE_MAX_PARAMS),
                ("correlation", C.c_double * (DB_REFINE_MAX_PARAMS * DB_REFINE_MAX_PARAMS)),
                ("start_cost", C.c_double), ("cost", C.c_double), ("reduced_chi2", C.c_double),
                ("pixels", C.c_long), ("iterations", C.c_int), ("derivative_runs", C.c_int),
                ("primal_runs", C.c_int), ("stop_reason", C.c_int), ("seconds", C.c_double),
                ("objective", C.c_int), ("background", C.c_int), ("nbackground", C.c_int), ("dof", C.c_long),
                ("sigma_scaled", C.c_double * DB_REFINE_MAX_PARAMS), ("deviance", C.c_double),
                ("deviance_per_dof", C.c_double), ("expected_deviance_per_dof", C.c_double),
                ("deviance_z", C.c_double), ("poor_fit", C.c_int)]


class db_gc_options(C.Structure):
    _fields_ = [("roi", C.c_int * 4), ("rtol", C.c_double), ("atol_factor", C.c_double), ("atol_abs", C.c_double),
                ("precise", C.c_int), ("chunk", C.c_int), ("fdump_path", C.c_char_p)]


class db_gc_row(C.Structure):
    _fields_ = [("param", C.c_int), ("pixels", C.c_long), ("max_abs_err", C.c_double), ("max_rel_err", C.c_double),
                ("worst_f", C.c_int), ("worst_s", C.c_int), ("worst_ad", C.c_double), ("worst_fd", C.c_double),
                ("atol", C.c_double), ("noise_floor", C.c_double), ("max_abs_fd", C.c_double), ("step", C.c_double),
                ("pass_", C.c_int), ("structure_factor", C.c_int), ("hkl", C.c_int * 3), ("F", C.c_double),
                ("F_at", C.c_double)]


class db_gc_report(C.Structure):
    _fields_ = [("roi", C.c_int * 4), ("boxes", C.c_int), ("nrows", C.c_int), ("rows", db_gc_row * DB_GC_MAX_ROWS),
                ("all_pass", C.c_int)]


class db_csr(C.Structure):
    _fields_ = [("rows", C.c_long), ("cols", C.c_long), ("nnz", C.c_long), ("row_ptr", C.POINTER(C.c_long)),
                ("col", C.POINTER(C.c_long)), ("val", c_double_p), ("row_cap", C.c_long), ("nnz_cap", C.c_long)]


def _decl(library, name, restype, *argtypes):
    f = getattr(library, name)
    f.restype = restype
    f.argtypes = list(argtypes)


E = C.POINTER(db_error)
P = C.c_void_p  # db_config *, db_sim *
_decl(lib, "db_config_create", P)
_decl(lib, "db_config_destroy", None, P)
_decl(lib, "db_config_parse", C.c_int, P, C.c_int, C.POINTER(C.c_char_p), E)
_decl(lib, "db_config_warnings", C.c_char_p, P)
_decl(lib, "db_sim_create", C.c_int, C.POINTER(P), P, C.c_char_p, E)
_decl(lib, "db_sim_destroy", None, P)
_decl(lib, "db_sim_size", None, P, c_int_p, c_int_p)
_decl(lib, "db_sim_set_device", C.c_int, P, C.c_char_p, E)
_decl(lib, "db_sim_device", C.c_char_p, P)
_decl(lib, "db_sim_run", C.c_int, P, c_float_p, c_double_p, E)
_decl(lib, "db_sim_geometry", C.c_int, P, C.POINTER(db_geometry))
_decl(lib, "db_param_count", C.c_int)
_decl(lib, "db_param_name", C.c_char_p, C.c_int)
_decl(lib, "db_param_unit", C.c_char_p, C.c_int)
_decl(lib, "db_param_from_name", C.c_int, C.c_char_p)
_decl(lib, "db_sim_set_chunk", C.c_int, P, C.c_int)
_decl(lib, "db_sim_run_grad", C.c_int, P, c_int_p, C.c_int, c_float_p, c_double_p, c_double_p, E)
_decl(lib, "db_sim_set_params", C.c_int, P, c_int_p, c_double_p, C.c_int, E)  # params, values, n
_decl(lib, "db_sim_get_params", C.c_int, P, c_int_p, c_double_p, C.c_int, E)
_decl(lib, "db_sim_select_boxes", C.c_int, P, c_int_p, C.c_int, E)
_decl(lib, "db_sim_selected_count", C.c_long, P)
_decl(lib, "db_sim_run_selected", C.c_int, P, c_int_p, C.c_int, c_double_p, c_double_p, E)
_decl(lib, "db_sim_selected_pixel_list", C.c_long, P, C.POINTER(C.c_long), C.c_long, E)
_decl(lib, "db_sim_get_boxes", C.c_int, P, c_int_p, C.c_int)
_decl(lib, "db_sim_structure_factor_count", C.c_long, P)
_decl(lib, "db_sim_get_structure_factors", C.c_long, P, c_int_p, c_double_p, C.c_long, E)  # hkl, F, capacity
_decl(lib, "db_sim_set_structure_factors", C.c_int, P, c_double_p, C.c_long, E)
_decl(lib, "db_sim_set_structure_factors_hkl", C.c_int, P, c_int_p, c_double_p, C.c_long, E)
_decl(lib, "db_sim_structure_factor_index", C.c_long, P, C.c_int, C.c_int, C.c_int)
_decl(lib, "db_csr_free", None, C.POINTER(db_csr))
_decl(lib, "db_sim_run_selected_F", C.c_int, P, c_int_p, C.c_int, c_double_p, c_double_p, C.POINTER(db_csr), E)
_decl(rlib, "db_find_spots", C.c_int, c_double_p, C.c_int, C.c_int, C.POINTER(C.c_long), C.c_long, C.c_int, C.c_int,
      c_int_p, E)
_decl(rlib, "db_refine_background_count", C.c_int, P)
_decl(rlib, "db_stop_reason_text", C.c_char_p, C.c_int)
_decl(rlib, "db_refine_default_options", None, C.POINTER(db_refine_options))
_decl(rlib, "db_refine", C.c_int, P, c_int_p, C.c_int, c_double_p, c_double_p, C.POINTER(db_refine_options),
      C.POINTER(db_refine_result), E)
_decl(gclib, "db_gc_default_options", None, C.POINTER(db_gc_options))
_decl(gclib, "db_gradcheck", C.c_int, P, c_int_p, C.c_int, C.POINTER(db_gc_options), C.POINTER(db_gc_report), E)
_decl(gclib, "db_gradcheck_F", C.c_int, P, c_int_p, C.c_int, C.POINTER(db_gc_options), C.POINTER(db_gc_report), E)
_decl(gclib, "db_gradcheck_with_F", C.c_int, P, c_int_p, C.c_int, c_int_p, C.c_int, C.POINTER(db_gc_options),
      C.POINTER(db_gc_report), E)
