"""cimnas-jax paper: the CIMNAS paper's experiments, reproduced and extended, one command each.

  cimnas-jax paper --experiment=mbv2_table --small --out_dir=runs/paper    # < 20 min on 2 CPU cores
  cimnas-jax paper --experiment=all --out_dir=runs/paper                    # the full settings
  cimnas-jax paper --experiment=pareto,priority --tiny --out_dir=/tmp/p     # the tests' settings

Experiments: mbv2_table, parameter_effects, top_designs, priority, resnet50_sram7nm, pareto (see
cimnas_jax/paper/). Each writes <out_dir>/<experiment>/{results.json, table.md, *.png} and keeps its
pipeline runs under runs/ and verify/ there: rerunning the same command reuses finished sub-runs.
"""
from __future__ import annotations

import os

from absl import flags

FLAGS = flags.FLAGS
VERIFY_HW = ("", "analytic", "auto", "cimloop")


def define_flags():
    flags.DEFINE_string("experiment", None, "experiment(s), comma-separated, or 'all'")
    flags.DEFINE_bool("small", False, "the small settings (each experiment < 20 min on a 2-core CPU)")
    flags.DEFINE_bool("tiny", False, "the smallest settings (the tests; seconds to a minute each)")
    flags.DEFINE_string("out_dir", "runs/paper", "output folder; each experiment writes <out_dir>/<experiment>/")
    flags.DEFINE_integer("seeds", 0, "seeds per setting (0 = the scale's default: 5 for small and full, 2 for tiny)")
    flags.DEFINE_string("verify_hw", "", "hardware ground truth of the verification: '' = the experiment's default "
                        "(mbv2_table full: auto = real CiMLoop for the headline designs where installed; else the "
                        "analytic model), analytic, auto, cimloop")
    flags.DEFINE_string("collect", "", "instead of running: copy the finished experiments' tables and figures "
                        "(PNGs < 300 kB) from --out_dir into this docs folder, e.g. docs/results")
    flags.DEFINE_string("xla_cache_dir", os.path.join(os.path.expanduser("~"), ".cache", "cimnas_jax", "xla"),
                        "persistent XLA compilation cache (the many pipeline runs share compiled code); '' = off")


def parse_experiments(text):
    from cimnas_jax.paper import EXPERIMENTS
    if not text:
        return None, f"--experiment is required: one or more of {', '.join(EXPERIMENTS)} (comma-separated) or all"
    names = list(EXPERIMENTS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad or not names:
        return None, f"--experiment={text!r}: unknown {bad or text!r}; allowed: {', '.join(EXPERIMENTS)}, all"
    return names, None


NAMES = ("experiment", "small", "tiny", "out_dir", "seeds", "verify_hw", "collect")


def check_flags(v: dict) -> list:
    """Validate flag values before any work; returns the experiment names (FlagError otherwise)."""
    from cimnas_jax.cli.common import FlagError
    names, err = parse_experiments(v["experiment"])
    if err:
        raise FlagError(err)
    if v["small"] and v["tiny"]:
        raise FlagError("--small and --tiny exclude each other: pick one scale (neither = the full settings)")
    if not isinstance(v["seeds"], int) or v["seeds"] < 0:
        raise FlagError(f"--seeds={v['seeds']} must be an integer >= 0 (0 = the scale's default)")
    if v["verify_hw"] not in VERIFY_HW:
        raise FlagError(f"--verify_hw={v['verify_hw']!r}; allowed: '' (the experiment's default), analytic, auto, "
                        "cimloop")
    if not v["out_dir"]:
        raise FlagError("--out_dir is required (each experiment writes <out_dir>/<experiment>/)")
    if os.path.exists(v["out_dir"]) and not os.path.isdir(v["out_dir"]):
        raise FlagError(f"--out_dir={v['out_dir']} is a file, not a folder")
    if v["collect"] and not os.path.isdir(v["out_dir"]):
        raise FlagError(f"--collect needs finished experiments in --out_dir={v['out_dir']}, which does not exist")
    return names


def main(argv):
    from absl import logging
    from cimnas_jax.cli.common import check_or_fail, fail, log
    logging.set_verbosity(logging.WARNING)          # orbax logs every checkpoint at INFO
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    names = check_or_fail(check_flags, {n: FLAGS[n].value for n in NAMES})
    if FLAGS.collect:
        from cimnas_jax.paper.collect import collect
        try:
            for p in collect(FLAGS.out_dir, FLAGS.collect, names):
                log(f"wrote {p}")
        except FileNotFoundError as e:
            fail(str(e))
        return
    if FLAGS.verify_hw == "cimloop":
        from cimnas_jax.cimloop import cimloop_available
        ok, why = cimloop_available()
        if not ok:
            fail(f"--verify_hw=cimloop: CiMLoop is not usable here: {why.splitlines()[0]}")
    if FLAGS.xla_cache_dir:
        import jax
        jax.config.update("jax_compilation_cache_dir", FLAGS.xla_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from cimnas_jax.fileio import FolderBusy
    from cimnas_jax.paper import run_experiment
    from cimnas_jax.pipeline import ConfigError
    scale = "tiny" if FLAGS.tiny else "small" if FLAGS.small else "full"
    for name in names:
        try:
            run_experiment(name, scale, FLAGS.out_dir, FLAGS.seeds, FLAGS.verify_hw, log=log)
        except (ConfigError, FolderBusy) as e:
            fail(f"{name}: {e}")
