"""Train, evaluate and ship surrogate sets (hardware + accuracy), or run the new-node study.

  python experiments/train_surrogates.py --space=mbv2_rram --accuracy_labels=runs/acc/labels.jsonl

The same as ``cimnas-jax train-surrogates`` (flags: ``--helpshort``; the code and the other modes'
examples are in cimnas_jax/cli/train_surrogates.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("train-surrogates")
