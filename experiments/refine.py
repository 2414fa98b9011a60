"""Refine a saved search output by Gumbel-softmax gradient steps (the CLI of cimnas_jax.relax).

  python experiments/refine.py --input=runs/ga/results.json --steps=60 --candidates=16

Needs the package importable (``pip install -e .``, or run ``python -m cimnas_jax.relax`` from
the repository root). Flags and output: ``python -m cimnas_jax.relax --helpshort`` and
docs/refine.md.
"""
from cimnas_jax.relax.cli import run

if __name__ == "__main__":
    run()
