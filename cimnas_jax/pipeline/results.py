"""What the stages hand to each other: plain dataclasses, saved as JSON in the run folder so any
stage can be rerun alone on the previous stage's saved output.

    search  -> SearchResult (stage_search.json) + Finalists (finalists from the search)
    refine  -> Finalists (stage_refine.json; a copy when refinement is off)
    verify  -> Verification (stage_verify.json)
    report  -> report.md, results.json, finalists.csv, *.png
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional

from cimnas_jax.fileio import atomic_write_json

FILES = {"search": "stage_search.json", "refine": "stage_refine.json", "verify": "stage_verify.json"}


def clean(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to None."""
    import numpy as np
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


@dataclasses.dataclass
class Candidate:
    """One design handed between stages.

    name: baseline, found_1, ...; genome: canonical gene indices; hash: Space.hash_hex;
    origin: "reference" (the space's baseline), "search" or "refine"; search_objective: the
    exact objective value(s) under the search's fitness (None for the reference when it was not
    scored); provenance: where it came from (e.g. refinement's start design and steps)."""

    name: str
    genome: list
    hash: str
    origin: str
    search_objective: Optional[list] = None
    search_violation: Optional[float] = None
    provenance: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Finalists:
    """The reference design first, then the chosen designs; ``rule`` says how they were chosen."""

    candidates: list
    rule: str = ""
    note: str = ""

    @property
    def found(self) -> list:
        return [c for c in self.candidates if c.origin != "reference"]

    def to_dict(self) -> dict:
        return {"rule": self.rule, "note": self.note, "candidates": [dataclasses.asdict(c) for c in self.candidates]}

    @classmethod
    def from_dict(cls, d: dict) -> "Finalists":
        return cls(candidates=[Candidate(**c) for c in d["candidates"]], rule=d.get("rule", ""),
                   note=d.get("note", ""))


@dataclasses.dataclass
class SearchResult:
    """The search stage's summary: what ran, how fast, its history and its final designs."""

    algorithm: str
    objective: str
    objective_terms: list
    evaluations: int
    seconds: float                      # wall time of the search, compilation included
    candidates_per_second: float        # evaluations / seconds
    steady_candidates_per_second: Optional[float]   # after the first chunk (compiled)
    device: str
    history: list
    hypervolume_normalised: Optional[float] = None
    resumed: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchResult":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclasses.dataclass
class Verification:
    """Per design: the search model's figures, the ground truth's, their errors, and accuracy.

    rows: one dict per candidate (keys documented in ``verify.py``); hw_truth: the ground-truth
    source (e.g. "analytic CIM model", "CiMLoop"), hw_truth_why: why that source; accuracy_note:
    how accuracy was measured."""

    rows: list
    hw_truth: str
    hw_truth_why: str
    accuracy_note: str
    seconds: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Verification":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def save_stage(out_dir: Path, stage: str, payload: dict, config: dict) -> Path:
    """Write a stage's output atomically as ``stage_<name>.json`` with the config it ran under."""
    path = Path(out_dir) / FILES[stage]
    atomic_write_json(path, clean({"stage": stage, "config": config, **payload}), indent=1, allow_nan=False)
    return path


def load_stage(out_dir: Path, stage: str) -> dict:
    """A stage's saved output; raises FileNotFoundError saying which stage to run first."""
    path = Path(out_dir) / FILES[stage]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the '{stage}' stage first (--stages={stage},...)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FileNotFoundError(f"{path} is damaged ({e}); rerun the '{stage}' stage") from None


def has_stage(out_dir: Path, stage: str) -> bool:
    return (Path(out_dir) / FILES[stage]).is_file()

