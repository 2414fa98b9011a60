"""Quantization-aware fine-tuning of one subnet at its bits, from the supernet weights.

The subnet is design --index of sp.sample(PRNGKey(--seed), --index + 1) (or --subnet=largest /
smallest).  Reports test accuracy (BN re-estimated on the same fixed calibration images)
before and after --epochs of training (or --steps if given), and writes result.json (and the
fine-tuned params) to --out_dir.

  nice python experiments/finetune.py --seed=0 --index=0 --steps=150 --out_dir=/tmp/ft
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from cimnas_jax.data import load_dataset  # noqa: E402
from cimnas_jax.fileio import atomic_write_json  # noqa: E402
from cimnas_jax.nets.evaluate import evaluator_for  # noqa: E402
from cimnas_jax.nets.family import family_of  # noqa: E402
from cimnas_jax.nets.io import enable_compile_cache, load_supernet, save_supernet, supernet_dir_for, val_split_size  # noqa: E402
from cimnas_jax.nets.train import finetune_subnet  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("jax_cache_dir", "/tmp/cimnas_jax_cache", "persistent compilation cache ('' = off)")
flags.DEFINE_string("supernet_dir", "", "folder with params.msgpack + MANIFEST.json ('' = --space's shipped supernet)")
flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist | npz | folder")
flags.DEFINE_string("data_dir", None, "IDX folder, .npz file or image folder")
flags.DEFINE_string("space", "mbv2_rram", "search space of --seed/--index")
flags.DEFINE_enum("subnet", "sample", ["sample", "largest", "smallest"], "which subnet")
flags.DEFINE_integer("seed", 0, "sp.sample seed (--subnet=sample)")
flags.DEFINE_integer("index", 0, "design index within the sample (--subnet=sample)")
flags.DEFINE_float("epochs", 1.0, "fine-tuning epochs (ignored when --steps > 0)")
flags.DEFINE_integer("steps", 0, "fine-tuning steps (overrides --epochs)")
flags.DEFINE_integer("batch_size", 128, "images per step")
flags.DEFINE_float("lr", 5e-4, "peak learning rate (AdamW, warm-up + cosine)")
flags.DEFINE_integer("n_calib", 1024, "training images for BN re-estimation")
flags.DEFINE_integer("n_test", 0, "test images for before/after (0 = all 10 000)")
flags.DEFINE_string("out_dir", "/tmp/cimnas_finetune", "result.json + fine-tuned params")


def main(argv):
    del argv
    enable_compile_cache(F.jax_cache_dir)
    out = Path(F.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from cimnas_jax.space import get_space

    try:
        sp = get_space(F.space)
        sn_dir = F.supernet_dir or supernet_dir_for(sp)
    except (KeyError, ValueError) as e:
        raise app.UsageError(f"--space / --supernet_dir: {e}")
    model, params, cfg, sn_manifest = load_supernet(sn_dir)
    fam = family_of(model)
    if fam.space != sp.name:
        raise app.UsageError(f"--supernet_dir={sn_dir} is a '{fam.name}' supernet for space {fam.space}, "
                             f"not for --space={sp.name}")
    ds = load_dataset(F.dataset, F.data_dir, val_split_size(sn_manifest), cfg.resolution)
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
    t0 = time.time()
    tuned = finetune_subnet(model, params, ds, arch, total, F.batch_size, F.lr, seed=1234,
                            log=lambda line: print(line, flush=True))
    train_s = time.time() - t0
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


if __name__ == "__main__":
    app.run(main)
