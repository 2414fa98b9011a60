"""cimnas-jax finetune: quantization-aware fine-tuning of one subnet at its bits, from the supernet weights.

The subnet is design --index of sp.sample(PRNGKey(--seed), --index + 1) (or --subnet=largest /
smallest).  Reports test accuracy (BN re-estimated on the same fixed calibration images)
before and after --epochs of training (or --steps if given), and writes result.json (and the
fine-tuned params) to --out_dir.

  nice cimnas-jax finetune --seed=0 --index=0 --steps=150 --out_dir=/tmp/ft
  nice python experiments/finetune.py ...        # the same
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from absl import flags

from cimnas_jax.cli import common as C

F = flags.FLAGS
SUBNETS = ("sample", "largest", "smallest")
DATASETS = ("fashion_mnist", "npz", "folder")
NAMES = ("jax_cache_dir", "supernet_dir", "dataset", "data_dir", "space", "subnet", "seed", "index", "epochs",
         "steps", "batch_size", "lr", "n_calib", "n_test", "out_dir")


def define_flags():
    flags.DEFINE_string("jax_cache_dir", "/tmp/cimnas_jax_cache", "persistent compilation cache ('' = off)")
    flags.DEFINE_string("supernet_dir", "", "folder with params.msgpack + MANIFEST.json ('' = --space's shipped "
                        "supernet)")
    flags.DEFINE_string("dataset", "fashion_mnist", f"one of {DATASETS}")
    flags.DEFINE_string("data_dir", None, "IDX folder, .npz file or image folder")
    flags.DEFINE_string("space", "mbv2_rram", "search space of --seed/--index")
    flags.DEFINE_string("subnet", "sample", f"which subnet, one of {SUBNETS}")
    flags.DEFINE_integer("seed", 0, "sp.sample seed (--subnet=sample)")
    flags.DEFINE_integer("index", 0, "design index within the sample (--subnet=sample)")
    flags.DEFINE_float("epochs", 1.0, "fine-tuning epochs (ignored when --steps > 0)")
    flags.DEFINE_integer("steps", 0, "fine-tuning steps (overrides --epochs)")
    flags.DEFINE_integer("batch_size", 128, "images per step")
    flags.DEFINE_float("lr", 5e-4, "peak learning rate (AdamW, warm-up + cosine)")
    flags.DEFINE_integer("n_calib", 1024, "training images for BN re-estimation")
    flags.DEFINE_integer("n_test", 0, "test images for before/after (0 = all 10 000)")
    flags.DEFINE_string("out_dir", "/tmp/cimnas_finetune", "result.json + fine-tuned params")


def check_dataset(v: dict) -> None:
    """--dataset / --data_dir (shared by the commands that read a dataset)."""
    C.choice(v, "dataset", DATASETS)
    if v["dataset"] != "fashion_mnist" and not v["data_dir"]:
        raise C.FlagError(f"--dataset={v['dataset']} needs --data_dir (an .npz file or an image folder)")
    C.existing(v, "data_dir")


def check_supernet(v: dict, space_name: str):
    """--supernet_dir (or the space's shipped one): the folder; FlagError when absent / incomplete."""
    from cimnas_jax.nets.io import MANIFEST_FILE, PARAMS_FILE, supernet_dir_for
    from cimnas_jax.space import get_space
    if v["supernet_dir"]:
        d = Path(v["supernet_dir"])
    else:
        try:
            d = supernet_dir_for(get_space(space_name))
        except ValueError as e:
            raise C.FlagError(f"--space={space_name}: {e}; give --supernet_dir") from None
    missing = [f for f in (PARAMS_FILE, MANIFEST_FILE) if not (d / f).is_file()]
    if missing:
        raise C.FlagError(f"--supernet_dir={d}: not a supernet folder (lacks {', '.join(missing)}; "
                          "export one with train-supernet --export_dir)")
    return d


def load_checked_supernet(sn_dir, space_name: str):
    """load_supernet with every failure of a damaged / mismatched folder as one FlagError line."""
    from cimnas_jax.nets.family import family_of
    from cimnas_jax.nets.io import load_supernet
    try:
        model, params, cfg, manifest = load_supernet(sn_dir)
    except Exception as e:  # noqa: BLE001 - truncated manifest, corrupt msgpack, wrong shapes: one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise C.FlagError(f"--supernet_dir={sn_dir}: cannot load the supernet ({type(e).__name__}: "
                          f"{msg[:200]})") from None
    fam = family_of(model)
    if fam.space != space_name:
        raise C.FlagError(f"--supernet_dir={sn_dir} is a '{fam.name}' supernet for space {fam.space}, "
                          f"not for --space={space_name}")
    return model, params, cfg, manifest


def check_flags(v: dict):
    """Validate flag values (name -> value) before any work; returns the supernet folder. Raises
    FlagError naming the flag and its allowed values."""
    from cimnas_jax.space import space_names
    C.choice(v, "space", space_names())
    C.choice(v, "subnet", SUBNETS)
    C.seed(v)
    C.integer(v, "index", 0)
    C.integer(v, "steps", 0, note=" (0 = use --epochs)")
    if v["steps"] == 0:
        C.number(v, "epochs", 0.0, lo_open=True, note=" of epochs (or give --steps)")
    C.integer(v, "batch_size", 1)
    C.number(v, "lr", 0.0, lo_open=True)
    C.integer(v, "n_calib", 1)
    C.integer(v, "n_test", 0, note=" (0 = all)")
    C.required(v, "out_dir", "the output folder")
    C.out_folder(v, "out_dir")
    check_dataset(v)
    return check_supernet(v, v["space"])


def main(argv):
    if len(argv) > 1:
        C.fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    v = C.flag_values(NAMES)
    sn_dir = C.check_or_fail(check_flags, v)
    model, params, cfg, sn_manifest = C.check_or_fail(load_checked_supernet, sn_dir, v["space"])

    import jax
    import numpy as np

    from cimnas_jax.data import load_dataset
    from cimnas_jax.fileio import atomic_write_json
    from cimnas_jax.nets.evaluate import evaluator_for
    from cimnas_jax.nets.family import family_of
    from cimnas_jax.nets.io import enable_compile_cache, save_supernet, val_split_size
    from cimnas_jax.nets.train import finetune_subnet
    from cimnas_jax.space import get_space

    enable_compile_cache(F.jax_cache_dir)
    sp = get_space(F.space)
    fam = family_of(model)
    try:
        ds = load_dataset(F.dataset, F.data_dir, val_split_size(sn_manifest), cfg.resolution)
    except (OSError, ValueError) as e:
        C.fail(f"--dataset={F.dataset} --data_dir={F.data_dir}: {str(e).splitlines()[0]}")
    if len(ds.x_train) < F.batch_size:
        C.fail(f"--batch_size={F.batch_size} must be <= the {len(ds.x_train)} training images")
    out = Path(F.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    genome_hash = None
    if F.subnet == "largest":
        arch = fam.largest_arch(8)
    elif F.subnet == "smallest":
        arch = fam.smallest_arch(4)
    else:
        g = sp.sample(jax.random.PRNGKey(F.seed), F.index + 1)[F.index:F.index + 1]
        arch = {k: np.asarray(v)[0] for k, v in sp.architecture(g).items()}
        genome_hash = sp.hash_hex(g)[0]
    arch = fam.check_arch(arch)

    ev = evaluator_for(model, params, ds, "test", F.n_test, F.n_calib)
    before = ev.accuracy(arch)
    print(f"before: test accuracy {before['accuracy']:.4f} ({before['n_images']} images)", flush=True)

    spe = len(ds.x_train) // F.batch_size
    total = F.steps if F.steps > 0 else int(round(F.epochs * spe))
    if total < 1:
        C.fail(f"--epochs={F.epochs} gives no training step ({spe} steps per epoch); raise it or give --steps")
    t0 = time.time()
    tuned = finetune_subnet(model, params, ds, arch, total, F.batch_size, F.lr, seed=1234,
                            log=lambda line: print(line, flush=True))
    train_s = time.time() - t0
    if not all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tuned)):
        C.fail(f"fine-tuning diverged (non-finite weights) with --lr={F.lr}; nothing saved, lower --lr", code=1)
    ev.params = tuned
    after = ev.accuracy(arch)
    print(f"after {total} steps ({total * F.batch_size / len(ds.x_train):.2f} epochs, {train_s:.0f} s): "
          f"test accuracy {after['accuracy']:.4f}", flush=True)
    result = dict(subnet=F.subnet, seed=F.seed, index=F.index, genome_hash=genome_hash,
                  arch={k: np.asarray(v).tolist() for k, v in arch.items()},
                  steps=total, epochs=total * F.batch_size / len(ds.x_train), batch_size=F.batch_size,
                  lr=F.lr, train_seconds=round(train_s, 1), test_accuracy_before=before["accuracy"],
                  test_accuracy_after=after["accuracy"], n_test=after["n_images"], n_calib=ev.n_calib)
    atomic_write_json(out / "result.json", result, indent=2)
    save_supernet(out / "params", tuned, cfg, dict(finetuned_from=str(sn_dir), **{
        k: v for k, v in result.items() if k != "arch"}))
    print(json.dumps({k: v for k, v in result.items() if k != "arch"}))
