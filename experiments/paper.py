"""The CIMNAS paper's experiments, reproduced and extended, one command each.

  python experiments/paper.py --experiment=mbv2_table --small --out_dir=runs/paper
  python experiments/paper.py --experiment=all --out_dir=runs/paper        # the full settings

The same as ``cimnas-jax paper`` (flags: ``--helpshort``); the experiments live in
``cimnas_jax/paper/``, results in docs/results.md.
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("paper")
