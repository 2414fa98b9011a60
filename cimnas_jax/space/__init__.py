"""Search spaces. ``get_space(name)`` returns a registered ``Space``; a new space is a new module
here that calls ``register_space`` (and is imported below)."""
from cimnas_jax.space.core import GROUPS, Blocks, Gene, Space, get_space, register_space, space_names
from cimnas_jax.space import mbv2_rram, resnet50_sram7nm  # noqa: F401  (registers the spaces)

__all__ = ["GROUPS", "Blocks", "Gene", "Space", "get_space", "register_space", "space_names"]
