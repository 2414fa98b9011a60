"""Static description of the elastic MobileNetV2 supernet and its CPU-scaling rule.

The searchable choices are exactly the ``mbv2_rram`` genes (depth per stage, depthwise kernel
3/5/7, middle channels per block at FULL width, 4/6/8-bit weights/activations).  A width
multiplier ``w`` scales every channel count c to ``ceil(c * w)`` -- including a genome's
middle-channel choice m -> ceil(m * w) -- so the genome means the same thing at every scale.
For small inputs (resolution < 128) the first conv runs at stride 1 instead of 2; the six
stage strides 2, 2, 2, 1, 2, 1 never change (32x32 input: 32 -> 32 -> 16 -> 8 -> 4 -> 4 -> 2 -> 2).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional


# The network the genes describe is defined once, by the space (cimnas_jax/space/mbv2_rram.py).
from cimnas_jax.space.mbv2_rram import (  # noqa: E402,F401  (re-exported for the nets package)
    BIT_CHOICES, BLOCK_POS, BLOCK_STAGE, BLOCKS, DEPTH_CHOICES, KERNEL_CHOICES, STAGE_MAX_BLOCKS, mid_choices)
MAX_KERNEL = 7
N_BLOCKS = sum(STAGE_MAX_BLOCKS)  # 21
ARCH_KEYS = ("depths", "kernel", "mid_channels", "pw_w_bits", "pw_a_bits", "dw_w_bits",
             "dw_a_bits", "block_active")


def scaled(c: float, width_mult: float) -> int:
    """Channel rule: ceil(c * width_mult) (rounded to 1e-6 first, so 320 * 0.35 -> 112)."""
    return max(1, int(math.ceil(round(c * width_mult, 6))))


MID_CHOICES = tuple(mid_choices(b["in_w"]) for b in BLOCKS)


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """Size of one supernet instance.  Full size: width_mult=1, resolution=224, in_channels=3,
    num_classes=1000.  CPU size used here: width_mult=0.35, resolution=32, in_channels=1, 10 classes."""

    width_mult: float = 1.0
    resolution: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    stem_stride: Optional[int] = None  # None: 2 if resolution >= 128 else 1

    family = "mbv2"  # class attribute, not a field (cimnas_jax.nets.family)

    def __post_init__(self):
        if not 0.05 <= self.width_mult <= 4.0:
            raise ValueError(f"width_mult must be in [0.05, 4]; got {self.width_mult}")
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8; got {self.resolution}")
        if self.stem_stride not in (None, 1, 2):
            raise ValueError(f"stem_stride must be None, 1 or 2; got {self.stem_stride}")

    @property
    def first_stride(self) -> int:
        return self.stem_stride or (2 if self.resolution >= 128 else 1)

    def ch(self, c: float) -> int:
        return scaled(c, self.width_mult)

    @property
    def block_in(self) -> tuple[int, ...]:
        return tuple(self.ch(b["in_w"]) for b in BLOCKS)

    @property
    def block_out(self) -> tuple[int, ...]:
        return tuple(self.ch(b["out_w"]) for b in BLOCKS)

    @property
    def block_max_mid(self) -> tuple[int, ...]:
        return tuple(self.ch(max(c)) for c in MID_CHOICES)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SupernetConfig":
        return cls(**{k: d[k] for k in ("width_mult", "resolution", "in_channels", "num_classes",
                                          "stem_stride") if k in d})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
