"""cimnas-jax label-accuracy: label sampled designs with real accuracy from the trained supernet (resumable).

Samples --n genomes (--sampler: sp.sample or sp.sample_mixed, PRNGKey(--seed)), evaluates each subnet at its bits
(BN statistics re-estimated per subnet on --n_calib training images) on --split, and writes
one JSONL part file per --chunk records into --out_dir (tmp file + os.replace, so a kill
loses at most the chunk in flight) plus manifest.json.  Rerunning skips designs whose
canonical hash is already labelled; no duplicates. A corrupt line in a part file is skipped
(its design labelled again), counted and reported; the good lines around it are kept.

  nice cimnas-jax label-accuracy --n=200 --out_dir=/tmp/acc_labels
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

from absl import flags

from cimnas_jax.cli import common as C

F = flags.FLAGS
SAMPLERS = ("uniform", "mixed")
SPLITS = ("val", "test", "train")
NAMES = ("jax_cache_dir", "space", "supernet_dir", "dataset", "data_dir", "out_dir", "n", "seed", "sampler",
         "split", "n_images", "n_calib", "chunk")


def define_flags():
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
    flags.DEFINE_string("sampler", "uniform", "uniform: sp.sample (every gene uniform); mixed: sp.sample_mixed "
                        "(per-design Dirichlet over each gene kind, reaching corners such as all-4-bit "
                        "activations, where search finalists sit)")
    flags.DEFINE_string("split", "val", f"split the accuracy is measured on, one of {SPLITS}")
    flags.DEFINE_integer("n_images", 2000, "images of the split (0 = all)")
    flags.DEFINE_integer("n_calib", 1024, "training images for per-subnet BN re-estimation")
    flags.DEFINE_integer("chunk", 10, "records per part file")


class LabelRead(list):
    """The records of a label folder (a list) plus ``skipped``: {part file: warning line} for the
    corrupt or truncated lines that were skipped."""
    skipped: dict

    @property
    def n_skipped(self) -> int:
        return sum(self._counts.values())


def read_labels(out_dir, warn=None) -> LabelRead:
    """All records of a label folder (part files in name order). A corrupt line (not JSON, not a record
    with hash/accuracy, or a truncated last line) is skipped, never the good lines after it; each file
    with skips gives one warning line through ``warn`` (default: stderr) and is listed in ``.skipped``."""
    from cimnas_jax.fileio import parse_jsonl
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    recs = LabelRead()
    recs.skipped, recs._counts = {}, {}
    for p in sorted(glob.glob(os.path.join(out_dir, "part-*.jsonl"))):
        with open(p, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            data += b"\n"            # a part file is written whole: a missing newline is not a torn append
        r = parse_jsonl(data, required=("hash", "accuracy"), accept=lambda d: isinstance(d["hash"], str))
        recs += r.records
        if r.n_skipped:
            recs.skipped[os.path.basename(p)] = r.describe(p)
            recs._counts[os.path.basename(p)] = r.n_skipped
            warn(r.describe(p))
    return recs


def arch_key(arch: dict) -> str:
    """sha1 of the supernet-relevant arrays (designs differing only in hardware share it)."""
    import numpy as np
    h = hashlib.sha1()
    for k in sorted(arch):
        h.update(k.encode() + np.ascontiguousarray(arch[k]).astype(np.int32).tobytes())
    return h.hexdigest()[:16]


def check_flags(v: dict):
    """Validate flag values before any work; returns the supernet folder (FlagError otherwise)."""
    from cimnas_jax.cli.finetune import check_dataset, check_supernet
    from cimnas_jax.space import space_names
    C.choice(v, "space", space_names())
    C.choice(v, "sampler", SAMPLERS)
    C.choice(v, "split", SPLITS)
    C.integer(v, "n", 1)
    C.seed(v)
    C.integer(v, "n_images", 0, note=" (0 = all)")
    C.integer(v, "n_calib", 1)
    C.integer(v, "chunk", 1)
    C.required(v, "out_dir", "the label folder")
    C.out_folder(v, "out_dir")
    check_dataset(v)
    return check_supernet(v, v["space"])


def main(argv):
    if len(argv) > 1:
        C.fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    v = C.flag_values(NAMES)
    sn_dir = Path(C.check_or_fail(check_flags, v))
    from cimnas_jax.cli.finetune import load_checked_supernet
    model, params, cfg, sn_manifest = C.check_or_fail(load_checked_supernet, sn_dir, v["space"])

    import jax
    import numpy as np

    from cimnas_jax.data import load_dataset
    from cimnas_jax.fileio import atomic_write
    from cimnas_jax.nets.evaluate import evaluator_for
    from cimnas_jax.nets.io import PARAMS_FILE, enable_compile_cache, val_split_size
    from cimnas_jax.space import get_space

    enable_compile_cache(F.jax_cache_dir)
    sp = get_space(F.space)
    sn_sha = hashlib.sha256((sn_dir / PARAMS_FILE).read_bytes()).hexdigest()[:16]
    try:
        ds = load_dataset(F.dataset, F.data_dir, val_split_size(sn_manifest), cfg.resolution)
    except (OSError, ValueError) as e:
        C.fail(f"--dataset={F.dataset} --data_dir={F.data_dir}: {str(e).splitlines()[0]}")
    settings = dict(space=F.space, supernet_sha256=sn_sha, supernet_config=cfg.to_dict(),
                    dataset=ds.name, split=F.split, n_images=F.n_images or len(ds.split(F.split)[0]),
                    n_calib=F.n_calib, calib_seed=1)
    out = Path(F.out_dir)
    man_path = out / "manifest.json"
    if man_path.exists():
        try:
            old = json.loads(man_path.read_text())
        except ValueError as e:
            C.fail(f"--out_dir={out}: manifest.json is not valid JSON ({e}); use another --out_dir")
        if old.get("settings") != settings:
            C.fail(f"--out_dir={out} holds labels made with other settings ({old.get('settings')}); "
                   "use another --out_dir")
    out.mkdir(parents=True, exist_ok=True)
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
    quiet = lambda line: None       # noqa: E731 - skips are warned once, at the start
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
            recs = read_labels(out, warn=quiet)
            acc = np.array([r["accuracy"] for r in recs])
            atomic_write(man_path, json.dumps(dict(
                settings=settings, n_records=len(recs), genome_is="canonical gene indices (sp.canonicalise)",
                accuracy_min=float(acc.min()), accuracy_median=float(np.median(acc)),
                accuracy_max=float(acc.max()), supernet_manifest=sn_manifest.get("command"),
                lines_skipped_corrupt=recs.n_skipped, skipped=recs.skipped), indent=2) + "\n")
            dt = time.time() - t0
            print(f"{len(recs)} records; {dt / n_done:.2f} s per labelled subnet "
                  f"(incl. {ev.n_traces} compile); last acc {r['accuracy']:.4f}", flush=True)
    recs = read_labels(out, warn=quiet)
    if recs:
        acc = np.array([r["accuracy"] for r in recs])
        print(f"accuracy over {len(recs)} designs ({F.split}, {settings['n_images']} images): "
              f"min {acc.min():.4f} median {np.median(acc):.4f} max {acc.max():.4f}"
              + (f"; {recs.n_skipped} corrupt line(s) skipped in {sorted(recs.skipped)}" if recs.n_skipped else ""))
