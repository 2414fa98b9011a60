"""cimnas-jax run: co-design network, quantization and CIM accelerator, verify and report.

  cimnas-jax run --space=mbv2_rram --population=256 --generations=60 --out_dir=runs/main
  cimnas-jax run --config=runs/main/config.json --out_dir=runs/again       # repeat a run exactly
  cimnas-jax run --out_dir=runs/main --stages=verify,report --test_images=0  # re-verify only

Killed? Rerun with --resume: the search continues from its last checkpoint.

Several processes / hosts (jax.distributed; the population sharded over all their devices):
  cimnas-jax run ... --coordinator_address=host0:1234 --num_processes=2 --process_id=$RANK
  cimnas-jax run ... --distributed_auto          # Slurm / Open MPI / Kubernetes auto-detection
Process 0 runs the later stages and writes the run folder (which must be shared for the checkpoints).
"""
from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    """One flag per RunConfig field, plus --config, --out_dir and --resume."""
    from cimnas_jax.pipeline.config import define_flags as define_config_flags
    define_config_flags()
    flags.DEFINE_string("out_dir", "runs/main", "run folder (config.json, stage_*.json, checkpoints/, report)")
    flags.DEFINE_bool("resume", False, "continue the search from out_dir/checkpoints")
    from cimnas_jax.cli.search import define_distributed_flags
    define_distributed_flags()


def main(argv):
    from cimnas_jax.cli.common import fail, log
    from cimnas_jax.fileio import FolderBusy
    from cimnas_jax.pipeline import ConfigError, RunFolderError, check, config_from_flags, run
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint save at INFO
    from cimnas_jax.cli.search import init_distributed_from_flags
    init_distributed_from_flags()        # before anything touches a JAX backend
    try:
        cfg = config_from_flags()
        check(cfg, FLAGS.out_dir, FLAGS.resume)
    except (ConfigError, RunFolderError) as e:
        fail(str(e))
    try:
        out = run(cfg, FLAGS.out_dir, FLAGS.resume, log=log)
    except (ConfigError, RunFolderError, FolderBusy) as e:
        fail(str(e))
    if out.get("report") is not None:
        print(out["report"].read_text())
