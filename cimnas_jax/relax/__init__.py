"""Gradient refinement: Gumbel-softmax relaxation of genomes through the analytic CIM model and
the Flax surrogates, judged by the search's exact fitness (see docs/refine.md).

    from cimnas_jax.relax import RefineConfig, make_soft_fitness, refine
    soft = make_soft_fitness(space, "analytic", "surrogate", surrogate)     # mirrors make_fitness
    res = refine(space, exact_fitness, soft, objective, start_genomes, RefineConfig(steps=60), key)
    res.genomes, res.objective, res.accepted, res.summary(space)

Modules: ``logits`` (masked per-gene logits, Gumbel-softmax, discretise), ``decode`` (soft
values, block/gene activity, layer tables, hardware), ``analytic`` (the CIM model on relaxed
layer tables), ``features`` (surrogate inputs from probabilities), ``straight_through``
(ceil/floor with identity derivative), ``fitness`` (soft fitness builders), ``loss`` (the
Objective and constraints as a loss), ``refine`` (the loop and its result), ``cli`` (the
command line; not imported here, it defines absl flags).
"""
from cimnas_jax.relax.decode import SoftDesign, gene_activity_map, soft_decode
from cimnas_jax.relax.fitness import (make_soft_fitness, soft_accuracy_surrogate, soft_constant_accuracy,
                                      soft_hardware_fitness, soft_surrogate_fitness)
from cimnas_jax.relax.logits import discretise, gumbel_softmax, one_hot, peaked_logits, uniform_logits
from cimnas_jax.relax.loss import log_objective, relaxed_loss, soft_violation
from cimnas_jax.relax.refine import RefineConfig, RefineResult, better, refine
from cimnas_jax.relax.straight_through import straight_through

__all__ = ["RefineConfig", "RefineResult", "refine", "better", "make_soft_fitness", "soft_hardware_fitness",
           "soft_surrogate_fitness", "soft_accuracy_surrogate", "soft_constant_accuracy", "soft_decode",
           "SoftDesign", "gene_activity_map", "discretise", "gumbel_softmax", "one_hot", "peaked_logits",
           "uniform_logits", "log_objective", "relaxed_loss", "soft_violation", "straight_through"]
