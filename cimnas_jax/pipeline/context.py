"""The run folder and what every stage needs besides the configuration."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable


@dataclasses.dataclass
class RunContext:
    """out_dir: the run folder; resume: continue a search from its checkpoints; log: progress lines."""

    out_dir: Path
    resume: bool = False
    log: Callable[[str], None] = print
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
