"""Labelling pipeline: sample designs, evaluate them with a hardware backend, write
per-layer and per-design labels with units to a resumable dataset folder."""
from .pipeline import (assemble_design, design_layer_records, key_statistics,
                       label_batch_analytic, label_batch_records, run_labelling)
from .sampling import SAMPLERS, make_genomes, read_genomes, sample_lhs, sample_uniform
from .store import UNITS, LabelStore

__all__ = ["assemble_design", "design_layer_records", "key_statistics", "label_batch_analytic",
           "label_batch_records", "run_labelling", "SAMPLERS", "make_genomes", "read_genomes",
           "sample_lhs", "sample_uniform", "UNITS", "LabelStore"]
