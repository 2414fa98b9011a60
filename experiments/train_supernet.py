"""Train a quantization-aware elastic supernet (resumable), --family=mbv2 or --family=resnet.

  nice python experiments/train_supernet.py --out_dir=/tmp/supernet --export_dir=cimnas_jax/assets/supernet_fmnist

The same as ``cimnas-jax train-supernet`` (flags: ``--helpshort``; the code is
cimnas_jax/cli/train_supernet.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("train-supernet")
