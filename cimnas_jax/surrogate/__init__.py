"""Flax deep-ensemble surrogates for energy, latency, area (and accuracy) of genome batches.

    from cimnas_jax.surrogate import load_surrogates, predict
    s = load_surrogates("mbv2_rram")            # checks the set matches the space
    out = s(genomes)                            # host-checked; or jax.jit(predict)(s.sset, genomes)
    out["energy_j"], out["energy_j_std"], out["accuracy"], ...
"""
from cimnas_jax.surrogate.features import NUMERIC_NAMES, space_fingerprint
from cimnas_jax.surrogate.io import (Surrogate, SurrogateMismatch, load_set, load_surrogates,
                                     read_manifest, save_set)
from cimnas_jax.surrogate.metrics import fidelity, plot_fidelity
from cimnas_jax.surrogate.model import (ACC_TARGETS, HW_TARGETS, Ensemble, SurrogateSet,
                                        check_genomes, physics_base, predict)
from cimnas_jax.surrogate.train import TrainConfig, featurise, fit_ensemble

__all__ = ["Ensemble", "SurrogateSet", "Surrogate", "SurrogateMismatch", "TrainConfig", "predict",
           "load_surrogates", "load_set", "save_set", "read_manifest", "fit_ensemble", "featurise",
           "fidelity", "plot_fidelity", "check_genomes", "physics_base", "space_fingerprint",
           "HW_TARGETS", "ACC_TARGETS", "NUMERIC_NAMES"]
