"""Label sampled designs with real accuracy from the trained supernet (resumable).

Samples --n genomes (--sampler: sp.sample or sp.sample_mixed, PRNGKey(--seed)), evaluates each subnet at its bits
(BN statistics re-estimated per subnet on --n_calib training images) on --split, and writes
one JSONL part file per --chunk records into --out_dir (tmp file + os.replace, so a kill
loses at most the chunk in flight) plus manifest.json.  Rerunning skips designs whose
canonical hash is already labelled; no duplicates.

  nice python experiments/label_accuracy.py --n=200 --out_dir=/tmp/acc_labels
  nice python experiments/label_accuracy.py --space=resnet50_sram7nm --n=200 --out_dir=/tmp/rn_labels

--supernet_dir defaults to the space's own shipped supernet (``sp.supernet``); a supernet of
another family than the space's is refused.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from cimnas_jax.data import load_dataset  # noqa: E402
from cimnas_jax.nets.evaluate import evaluator_for  # noqa: E402
from cimnas_jax.fileio import atomic_write  # noqa: E402
from cimnas_jax.nets.family import family_of  # noqa: E402
from cimnas_jax.nets.io import PARAMS_FILE, enable_compile_cache, load_supernet, supernet_dir_for, val_split_size  # noqa: E402
from cimnas_jax.space import get_space  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("jax_cache_dir", "/tmp/cimnas_jax_cache", "persistent compilation cache ('' = off)")
flags.DEFINE_string("space", "mbv2_rram", "search space (needs an architecture decoder)")
flags.DEFINE_string("supernet_dir", "", "folder with params.msgpack + MANIFEST.json ('' = the space's shipped "
                    "supernet: cimnas_jax/assets/supernet_fmnist for mbv2_rram, supernet_resnet_fmnist for "
                    "resnet50_sram7nm)")
flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist | npz | folder")
flags.DEFINE_string("data_dir", None, "IDX folder, .npz file or image folder")
flags.DEFINE_string("out_dir", "/tmp/cimnas_acc_labels", "dataset folder: part-*.jsonl + manifest.json")
flags.DEFINE_integer("n", 200, "designs to sample")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_enum("sampler", "uniform", ["uniform", "mixed"], "uniform: sp.sample (every gene "
                  "uniform); mixed: sp.sample_mixed (per-design Dirichlet over each gene kind, reaching "
                  "corners such as all-4-bit activations, where search finalists sit)")
flags.DEFINE_enum("split", "val", ["val", "test", "train"], "split the accuracy is measured on")
flags.DEFINE_integer("n_images", 2000, "images of the split (0 = all)")
flags.DEFINE_integer("n_calib", 1024, "training images for per-subnet BN re-estimation")
flags.DEFINE_integer("chunk", 10, "records per part file")


def read_labels(out_dir) -> list[dict]:
    """All records of a label folder (part files in name order)."""
    recs = []
    for p in sorted(glob.glob(os.path.join(out_dir, "part-*.jsonl"))):
        with open(p) as f:
            recs += [json.loads(line) for line in f if line.strip()]
    return recs


def arch_key(arch: dict) -> str:
    """sha1 of the supernet-relevant arrays (designs differing only in hardware share it)."""
    h = hashlib.sha1()
    for k in sorted(arch):
        h.update(k.encode() + np.ascontiguousarray(arch[k]).astype(np.int32).tobytes())
    return h.hexdigest()[:16]


def main(argv):
    del argv
    enable_compile_cache(F.jax_cache_dir)
    out = Path(F.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        sp = get_space(F.space)
        sn_dir = Path(F.supernet_dir) if F.supernet_dir else supernet_dir_for(sp)
    except (KeyError, ValueError) as e:
        raise app.UsageError(f"--space / --supernet_dir: {e}")
    model, params, cfg, sn_manifest = load_supernet(sn_dir)
    if family_of(model).space != sp.name:
        raise app.UsageError(f"--supernet_dir={sn_dir} is a '{family_of(model).name}' supernet for space "
                             f"{family_of(model).space}, not for --space={sp.name}")
    sn_sha = hashlib.sha256((sn_dir / PARAMS_FILE).read_bytes()).hexdigest()[:16]
    ds = load_dataset(F.dataset, F.data_dir, val_split_size(sn_manifest), cfg.resolution)
    settings = dict(space=F.space, supernet_sha256=sn_sha, supernet_config=cfg.to_dict(),
                    dataset=ds.name, split=F.split, n_images=F.n_images or len(ds.split(F.split)[0]),
                    n_calib=F.n_calib, calib_seed=1)
    man_path = out / "manifest.json"
    if man_path.exists():
        old = json.loads(man_path.read_text())
        if old.get("settings") != settings:
            raise ValueError(f"{out} holds labels made with other settings:\n{old.get('settings')}\n"
                             f"vs now\n{settings}\nuse another --out_dir")
    done = {r["hash"] for r in read_labels(out)}

    sample = sp.sample if F.sampler == "uniform" else sp.sample_mixed
    genomes = np.asarray(sample(jax.random.PRNGKey(F.seed), F.n))
    hashes = sp.hash_hex(genomes)
    canon = np.asarray(sp.canonicalise(genomes))
    archs = {k: np.asarray(v) for k, v in sp.architecture(genomes).items()}
    todo, seen = [], set(done)
    for i, h in enumerate(hashes):
        if h not in seen:
            todo.append(i)
            seen.add(h)
    print(f"{len(done)} labelled already, {len(todo)} to do of {F.n} sampled (seed {F.seed})", flush=True)

    ev = evaluator_for(model, params, ds, F.split, F.n_images, F.n_calib)
    buf, t0, n_done = [], time.time(), 0
    for j, i in enumerate(todo):
        a = {k: v[i] for k, v in archs.items()}
        r = ev.accuracy(a)
        buf.append(dict(hash=hashes[i], arch_key=arch_key(a), genome=canon[i].tolist(),
                        accuracy=r["accuracy"], loss=round(r["loss"], 5), split=F.split,
                        n_images=r["n_images"], n_calib=ev.n_calib, seconds=round(r["seconds"], 3),
                        sampler=F.sampler, sample_seed=F.seed, sample_index=int(i),
                        supernet_sha256=sn_sha))
        n_done += 1
        if len(buf) == F.chunk or j == len(todo) - 1:
            atomic_write(out / f"part-{time.time_ns():020d}.jsonl",
                          "".join(json.dumps(b) + "\n" for b in buf))
            buf = []
            recs = read_labels(out)
            acc = np.array([r["accuracy"] for r in recs])
            atomic_write(man_path, json.dumps(dict(
                settings=settings, n_records=len(recs), genome_is="canonical gene indices (sp.canonicalise)",
                accuracy_min=float(acc.min()), accuracy_median=float(np.median(acc)),
                accuracy_max=float(acc.max()), supernet_manifest=sn_manifest.get("command")), indent=2) + "\n")
            dt = time.time() - t0
            print(f"{len(recs)} records; {dt / n_done:.2f} s per labelled subnet "
                  f"(incl. {ev.n_traces} compile); last acc {r['accuracy']:.4f}", flush=True)
    recs = read_labels(out)
    if recs:
        acc = np.array([r["accuracy"] for r in recs])
        print(f"accuracy over {len(recs)} designs ({F.split}, {settings['n_images']} images): "
              f"min {acc.min():.4f} median {np.median(acc):.4f} max {acc.max():.4f}")


if __name__ == "__main__":
    app.run(main)
