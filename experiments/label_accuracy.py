"""Label sampled designs with real accuracy from the trained supernet (resumable).

  nice python experiments/label_accuracy.py --n=200 --out_dir=/tmp/acc_labels

The same as ``cimnas-jax label-accuracy`` (flags: ``--helpshort``; the code is
cimnas_jax/cli/label_accuracy.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("label-accuracy")
