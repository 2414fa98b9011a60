"""Hardware evaluator: analytic CIM model (default, pure JAX) and a lazily imported CiMLoop backend.

    res = evaluate_designs(space, genomes)          # HWResult per design
    res = evaluate_layer_table(tech, layers, hw)    # LayerTable [P,L] + HardwareParams [P]
    get_backend("analytic" | "calibrated" | "cimloop").evaluate_records(records)
    m = calibrated.design_metrics(space, genomes, load_correction("rram_32nm"))   # CiMLoop-corrected
"""
from cimnas_jax.hw.evaluate import HWResult, evaluate_designs, evaluate_layer_table
from cimnas_jax.hw.model import AREA_COMPONENTS, ENERGY_COMPONENTS
from cimnas_jax.hw.tech import Technology, TechnologyError, load_technology, technology_names


def load_correction(technology_or_path: str):
    """The CiMLoop-trained correction of a technology (shipped: assets/hw_correction/<name>/) or a folder
    (lazy import: ``cimnas_jax.hw.correction_io.load_correction``)."""
    from cimnas_jax.hw.correction_io import load_correction as _load
    return _load(technology_or_path)


BACKENDS = ("analytic", "calibrated", "cimloop")


def get_backend(name: str = "analytic", **kwargs):
    """Backend object with ``.name`` and ``.evaluate_records(records) -> records``."""
    if name == "analytic":
        from cimnas_jax.hw.records import AnalyticBackend
        return AnalyticBackend(**kwargs)
    if name == "calibrated":
        from cimnas_jax.hw.calibrated import CalibratedBackend
        return CalibratedBackend(**kwargs)
    if name == "cimloop":
        import importlib
        mod = importlib.import_module("cimnas_jax.cimloop")
        if hasattr(mod, "get_cimloop_backend"):
            return mod.get_cimloop_backend(**kwargs)
        if hasattr(mod, "get_backend"):
            return mod.get_backend(**kwargs)
        if hasattr(mod, "CimloopBackend"):
            return mod.CimloopBackend(**kwargs)
        raise ImportError("cimnas_jax.cimloop provides neither get_backend nor CimloopBackend")
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


__all__ = ["load_correction", "HWResult", "evaluate_designs", "evaluate_layer_table", "get_backend", "load_technology",
           "Technology", "TechnologyError", "technology_names", "ENERGY_COMPONENTS", "AREA_COMPONENTS"]
