"""Data shipped with the package: trained surrogate sets, the accuracy supernet, their labels.

Layout (one folder per space, then per technology; supernets by name):

    assets/<space>/<technology>/        surrogate set (manifest.json + orbax checkpoint/)
    assets/<space>/accuracy_labels_*/   the real accuracy labels the set was trained on
    assets/supernet_<dataset>/          quantization-aware supernet (params.msgpack + MANIFEST.json)

Everything is found through the installed package (``importlib.resources``), so it works from a
wheel as well as from a source checkout; ``CIMNAS_ASSETS_DIR`` points the lookup at another folder
with the same layout (e.g. freshly trained sets).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ENV_ASSETS_DIR = "CIMNAS_ASSETS_DIR"


def assets_root() -> Path:
    """The folder holding the shipped assets (``$CIMNAS_ASSETS_DIR`` overrides)."""
    env = os.environ.get(ENV_ASSETS_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return Path(str(resources.files(__name__)))


def asset_path(*parts: str) -> Path:
    """Path of a shipped asset, e.g. ``asset_path("mbv2_rram", "rram_32nm")`` (may not exist)."""
    return assets_root().joinpath(*parts)
