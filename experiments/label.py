"""Label designs with a hardware backend into a resumable dataset folder.

  python experiments/label.py --out_dir=/tmp/labels --n=100 --backend=analytic

The same as ``cimnas-jax label`` (flags: ``--helpshort``; the code is cimnas_jax/cli/label.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("label")
