"""Quantization-aware fine-tuning of one subnet at its bits, from the supernet weights.

  nice python experiments/finetune.py --seed=0 --index=0 --steps=150 --out_dir=/tmp/ft

The same as ``cimnas-jax finetune`` (flags: ``--helpshort``; the code is cimnas_jax/cli/finetune.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("finetune")
