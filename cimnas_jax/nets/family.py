"""Supernet families: one record per network family, so the evaluator, the training and
fine-tuning steps, export/load and the scripts work for every family without family-specific
constants.

* ``mbv2``: the elastic MobileNetV2 of the ``mbv2_rram`` space (``supernet.py``, ``arch.py``).
* ``resnet``: the elastic ResNet50-style net of the ``resnet50_sram7nm`` space
  (``resnet_supernet.py``, ``resnet_arch.py``).

A family is found from its name (``get_family``; export manifests record it, absent = ``mbv2``),
from a config or a model (``family_of``: the config class's ``family`` attribute).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Callable

FAMILIES = ("mbv2", "resnet")
DEFAULT_FAMILY = "mbv2"


@dataclasses.dataclass(frozen=True)
class Family:
    """What the generic code needs of a supernet family (all host-side helpers are numpy)."""

    name: str
    space: str                       # the search space whose sp.architecture it consumes
    config_cls: type                 # SupernetConfig / ResNetConfig (from_dict, to_dict, resolution)
    model_cls: type                  # flax module: model(cfg)(x, arch, train)
    arch_keys: tuple[str, ...]
    check_arch: Callable[[Any], dict]
    to_device: Callable[[Any], dict]
    index_arch: Callable[[Any, int], dict]
    stack_archs: Callable[[list], dict]
    largest_arch: Callable[..., dict]   # largest_arch(bits=8)
    smallest_arch: Callable[..., dict]  # smallest_arch(bits=4)
    random_arch: Callable[..., dict]    # random_arch(rng, n=None, bits=None)
    init_params: Callable               # init_params(cfg, seed)
    param_shapes: Callable              # param_shapes(cfg)
    subnet_map: str                     # how a training step runs its K subnets: "vmap" | "loop"
    default_width_mult: float
    arch_module: ModuleType


def _mbv2() -> Family:
    from cimnas_jax.nets import arch, config, supernet
    return Family("mbv2", "mbv2_rram", config.SupernetConfig, supernet.Supernet, config.ARCH_KEYS,
                  arch.check_arch, arch.to_device, arch.index_arch, arch.stack_archs, arch.largest_arch,
                  arch.smallest_arch, arch.random_arch, supernet.init_params, supernet.param_shapes,
                  "vmap", 0.35, arch)


def _resnet() -> Family:
    from cimnas_jax.nets import resnet_arch as arch, resnet_config as config, resnet_supernet as supernet
    return Family("resnet", config.SPACE, config.ResNetConfig, supernet.ResNetSupernet, config.ARCH_KEYS,
                  arch.check_arch, arch.to_device, arch.index_arch, arch.stack_archs, arch.largest_arch,
                  arch.smallest_arch, arch.random_arch, supernet.init_params, supernet.param_shapes,
                  "loop", 0.125, arch)


_BUILDERS = {"mbv2": _mbv2, "resnet": _resnet}
_CACHE: dict[str, Family] = {}


def get_family(name: str | None) -> Family:
    """Family by name (None = mbv2, the family of manifests that predate the field)."""
    name = name or DEFAULT_FAMILY
    if name not in _BUILDERS:
        raise ValueError(f"supernet family must be one of {FAMILIES}; got {name!r}")
    if name not in _CACHE:
        _CACHE[name] = _BUILDERS[name]()
    return _CACHE[name]


def family_of(obj) -> Family:
    """Family of a config, a model (its ``cfg``) or a family name."""
    if isinstance(obj, Family):
        return obj
    if isinstance(obj, str) or obj is None:
        return get_family(obj)
    cfg = getattr(obj, "cfg", obj)
    return get_family(getattr(cfg, "family", DEFAULT_FAMILY))


def family_for_space(space_name: str) -> Family:
    """The family whose genes are those of ``space_name``."""
    for name in FAMILIES:
        if get_family(name).space == space_name:
            return get_family(name)
    raise ValueError(f"no supernet family for space {space_name!r} (families: "
                     f"{ {n: get_family(n).space for n in FAMILIES} })")
