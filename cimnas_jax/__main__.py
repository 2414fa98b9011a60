"""``python -m cimnas_jax <command> [flags]``: see ``cimnas_jax.cli``."""
import sys

from cimnas_jax.cli import main

sys.exit(main())
