"""Static description of the elastic ResNet50-style supernet and its CPU-scaling rule.

The searchable choices are exactly the ``resnet50_sram7nm`` genes: depth per stage (2-4, 2-4,
4-6, 2-4 bottlenecks), width multiplier 0.65/0.8/1.0 for the stem and each stage, bottleneck
(expand) ratio 0.2/0.25/0.35 per block, and 4/6/8-bit weights and activations for each block's
reduce 1x1, 3x3 and expand 1x1 conv (the first block's downsample 1x1 shares the expand conv's
bits); stem and classifier are 8-bit.  The architecture dict carries the FULL-SIZE channel
counts the space computes (``make_divisible(base * ratio * multiplier, 8)``).

Scaling: a global width multiplier ``w`` maps every full-size channel count c to
``ceil(c * w)`` -- the genome's stem, stage and middle widths included -- so the genome means the
same thing at every scale (the same fractions of the same layers, the same bits).  At w = 0.125
every choice of the space stays a distinct channel count (tests check it).  At resolution >= 128
the stem is torchvision's 7x7 stride-2 conv + 3x3 stride-2 max-pool (224 -> 112 -> 56 -> 56 ->
28 -> 14 -> 7); below, a 3x3 conv at ``stem_stride`` (default 1) and no max-pool (the CIFAR
ResNet stem), so 28x28 Fashion-MNIST runs 28 -> 28 -> 14 -> 7 -> 4 through the four stages.
The stage strides 1, 2, 2, 2 never change.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

from cimnas_jax.space.resnet50_sram7nm import (  # noqa: F401  (re-exported for the nets package)
    BIT_CHOICES, BLOCK_POS, BLOCK_STAGE, CONVS, DEPTH_CHOICES, EXPAND_CHOICES, N_BLOCKS,
    STAGE_BASE_WIDTHS, STAGE_MAX_BLOCKS, STAGE_STRIDES, STEM_BASE, WIDTH_CHOICES)

FAMILY = "resnet"
SPACE = "resnet50_sram7nm"
ARCH_KEYS = ("depths", "stem_channels", "stage_channels", "mid_channels", "w_bits", "a_bits",
             "block_active")
FC_BITS = STEM_BITS = 8


def make_divisible(v: float, divisor: int = 8) -> int:
    """Host-side twin of ``resnet50_sram7nm.make_divisible`` (nearest multiple of ``divisor``,
    never below 90 % of v); ``tests/test_nets_resnet.py`` checks they agree on every choice."""
    new = max(divisor, math.floor((v + divisor / 2) / divisor) * divisor)
    return int(new + divisor if new < 0.9 * v else new)


def scaled(c: float, width_mult: float) -> int:
    """Channel rule: ceil(c * width_mult) (rounded to 1e-6 first)."""
    return max(1, int(math.ceil(round(c * width_mult, 6))))


STEM_CHOICES = tuple(sorted({make_divisible(STEM_BASE * w) for w in WIDTH_CHOICES}))
STAGE_CHOICES = tuple(tuple(sorted({make_divisible(b * w) for w in WIDTH_CHOICES})) for b in STAGE_BASE_WIDTHS)
# middle widths a block of stage s can have: base(s) x ratio x the stage's multiplier
STAGE_MID_CHOICES = tuple(tuple(sorted({make_divisible(b * e * w) for e in EXPAND_CHOICES for w in WIDTH_CHOICES}))
                          for b in STAGE_BASE_WIDTHS)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Size of one ResNet supernet instance.  Full size: width_mult=1, resolution=224,
    in_channels=3, num_classes=1000 (the largest subnet at ratio 0.25 is exactly ResNet50).
    CPU size used here: width_mult=0.125, resolution=28, in_channels=1, 10 classes, stem_stride=1."""

    width_mult: float = 1.0
    resolution: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    stem_stride: Optional[int] = None  # small-resolution stem only; None = 1

    def __post_init__(self):
        if not 0.02 <= self.width_mult <= 4.0:
            raise ValueError(f"width_mult must be in [0.02, 4]; got {self.width_mult}")
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8; got {self.resolution}")
        if self.stem_stride not in (None, 1, 2):
            raise ValueError(f"stem_stride must be None, 1 or 2; got {self.stem_stride}")
        if self.large_stem and self.stem_stride not in (None, 2):
            raise ValueError(f"stem_stride: the 7x7 stem at resolution >= 128 has stride 2; got {self.stem_stride}")

    family = FAMILY  # class attribute, not a field

    @property
    def large_stem(self) -> bool:
        """torchvision stem (7x7 s2 conv + 3x3 s2 max-pool) at resolution >= 128."""
        return self.resolution >= 128

    @property
    def stem_kernel(self) -> int:
        return 7 if self.large_stem else 3

    @property
    def first_stride(self) -> int:
        return 2 if self.large_stem else (self.stem_stride or 1)

    def ch(self, c: float) -> int:
        return scaled(c, self.width_mult)

    @property
    def stem_max(self) -> int:
        return self.ch(max(STEM_CHOICES))

    @property
    def stage_max(self) -> tuple[int, ...]:
        return tuple(self.ch(max(c)) for c in STAGE_CHOICES)

    @property
    def mid_max(self) -> tuple[int, ...]:
        """Middle-channel buffer of every block of a stage (its largest choice, scaled)."""
        return tuple(self.ch(max(c)) for c in STAGE_MID_CHOICES)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResNetConfig":
        return cls(**{k: d[k] for k in ("width_mult", "resolution", "in_channels", "num_classes",
                                          "stem_stride") if k in d})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
