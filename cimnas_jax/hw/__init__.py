"""Hardware evaluator: analytic CIM model (default, pure JAX) and a lazily imported CiMLoop backend.

    res = evaluate_designs(space, genomes)          # HWResult per design
    res = evaluate_layer_table(tech, layers, hw)    # LayerTable [P,L] + HardwareParams [P]
    get_backend("analytic" | "cimloop").evaluate_records(records)
"""
from cimnas_jax.hw.evaluate import HWResult, evaluate_designs, evaluate_layer_table
from cimnas_jax.hw.model import AREA_COMPONENTS, ENERGY_COMPONENTS
from cimnas_jax.hw.tech import Technology, TechnologyError, load_technology, technology_names

BACKENDS = ("analytic", "cimloop")


def get_backend(name: str = "analytic", **kwargs):
    """Backend object with ``.name`` and ``.evaluate_records(records) -> records``."""
    if name == "analytic":
        from cimnas_jax.hw.records import AnalyticBackend
        return AnalyticBackend(**kwargs)
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


__all__ = ["HWResult", "evaluate_designs", "evaluate_layer_table", "get_backend", "load_technology",
           "Technology", "TechnologyError", "technology_names", "ENERGY_COMPONENTS", "AREA_COMPONENTS"]
