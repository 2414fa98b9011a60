"""On-device evolutionary search over a CIM co-design space (GA, NSGA-II, random, ...).

  python experiments/search.py --space=mbv2_rram --algorithm=ga --population=150 \
      --generations=100 --output_dir=/tmp/search_ga --checkpoint_dir=/tmp/search_ga/ckpt

The same as ``cimnas-jax search`` (flags: ``--helpshort``; the code is cimnas_jax/cli/search.py).
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("search")
