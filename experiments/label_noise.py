"""How much of an accuracy label is measurement noise: re-measure labelled designs.

  nice python experiments/label_noise.py --space=resnet50_sram7nm \
      --labels=cimnas_jax/assets/resnet50_sram7nm/accuracy_labels_fmnist --n=30

The same as ``cimnas-jax label-noise`` (flags: ``--helpshort``; the code is cimnas_jax/cli/label_noise.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("label-noise")
