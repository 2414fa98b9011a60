"""The main job: co-design network, quantization and CIM accelerator, then verify and report.

  python experiments/cimnas.py --space=mbv2_rram --population=256 --generations=60 --out_dir=runs/main

The same as ``cimnas-jax run`` (flags: ``--helpshort``); the job itself is the pipeline of stages in
``cimnas_jax/pipeline/`` (search -> refine -> verify -> report) behind one RunConfig.
"""
from cimnas_jax.cli import run_command

if __name__ == "__main__":
    run_command("run")
