"""Command-line entry points. ``cimnas-jax <command> [flags]`` (or ``python -m cimnas_jax <command>``)
dispatches to ``cimnas_jax.cli.<module>.main``; the scripts in ``experiments/`` call the same mains.

Each command validates its flags before any work and reports a bad value in one line naming the
flag and the allowed values (``common.fail``), with exit status 2 and no traceback.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("cimnas_jax.cli.run", "the main job: search -> refine -> verify -> report"),
    "search": ("cimnas_jax.cli.search", "a search alone (GA, NSGA-II, random) with results.json/.csv and a plot"),
    "label": ("cimnas_jax.cli.label", "label designs with a hardware backend (analytic / cimloop) into a dataset folder"),
    "label-accuracy": ("cimnas_jax.cli.label_accuracy", "label sampled designs with measured accuracy from the "
                       "trained supernet (resumable)"),
    "label-noise": ("cimnas_jax.cli.label_noise", "re-measure labelled designs: how much of an accuracy label is noise"),
    "finetune": ("cimnas_jax.cli.finetune", "quantization-aware fine-tuning of one subnet from the supernet"),
    "train-supernet": ("cimnas_jax.cli.train_supernet", "train a quantization-aware elastic supernet (resumable)"),
    "train-surrogates": ("cimnas_jax.cli.train_surrogates", "train / ship the hardware and accuracy surrogate "
                         "sets, or run the new-node study"),
    "hw": ("cimnas_jax.hw.__main__", "evaluate CiMLoop-format layer records (analytic / cimloop backend)"),
    "space": ("cimnas_jax.space.__main__", "describe a search space, decode sampled designs"),
    "refine": ("cimnas_jax.relax.cli", "gradient refinement (Gumbel-softmax) of a saved search output"),
    "calibrate": ("cimnas_jax.hw.calibrate", "refit a technology's analytic model to the CiMLoop reference records"),
    "paper": ("cimnas_jax.cli.paper", "the CIMNAS paper's experiments (mbv2_table, parameter_effects, top_designs, "
              "priority, resnet50_sram7nm, pareto)"),
}


def run_command(name: str, argv=None) -> None:
    """Define command ``name``'s flags, parse ``argv`` (default sys.argv) and run its main."""
    from absl import app
    mod = importlib.import_module(COMMANDS[name][0])
    if hasattr(mod, "define_flags"):
        mod.define_flags()
    if argv is not None:
        sys.argv = list(argv)
    app.run(mod.main)


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print("usage: cimnas-jax <command> [--flags]   (cimnas-jax <command> --helpshort for its flags)\n")
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:<16} {doc}")
        return 0 if len(argv) >= 2 else 2
    name = argv[1]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    run_command(name, [f"cimnas-jax {name}"] + argv[2:])
    return 0
