"""``python -m cimnas_jax.relax``: refine a saved search output (see cimnas_jax/relax/cli.py)."""
from cimnas_jax.relax.cli import run

run()
