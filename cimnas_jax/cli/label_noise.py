"""cimnas-jax label-noise: how much of an accuracy label is measurement noise: re-measure labelled designs.

Takes the first --n records of a label folder (experiments/label_accuracy.py), decodes their
genomes with the space, and measures each subnet (a) on the two halves of the labels' split
with the labels' own BN calibration and (b) on the first half with BN re-estimated on another
calibration draw (--other_calib_seed).  Prints and writes (--out) the agreement (Pearson,
Kendall tau), the implied noise of a full-split label from each source, the spread between the
labels, the reliability (share of the label variance that is signal) and the Kendall tau a
perfect predictor would reach on such labels ((2/pi) asin(sqrt(reliability)), bivariate normal).

  nice cimnas-jax label-noise --space=resnet50_sram7nm \
      --labels=cimnas_jax/assets/resnet50_sram7nm/accuracy_labels_fmnist --n=30
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from cimnas_jax.cli import common as C

F = flags.FLAGS
NAMES = ("space", "labels", "supernet_dir", "data_dir", "n", "other_calib_seed", "out", "jax_cache_dir")


def define_flags():
    flags.DEFINE_string("space", "mbv2_rram", "search space of the labels")
    flags.DEFINE_string("labels", None, "label folder (part-*.jsonl + manifest*.json)")
    flags.DEFINE_string("supernet_dir", "", "supernet ('' = the space's shipped one)")
    flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX folder (default: the Debian package's)")
    flags.DEFINE_integer("n", 30, "designs to re-measure (the first n records in file order)")
    flags.DEFINE_integer("other_calib_seed", 2, "seed of the second calibration draw")
    flags.DEFINE_string("out", "", "write the report as JSON here ('' = print only)")
    flags.DEFINE_string("jax_cache_dir", "/tmp/cimnas_jax_cache", "persistent compilation cache ('' = off)")


def read_labels(out_dir) -> list[dict]:
    """All records of a label folder (label_accuracy.read_labels: corrupt lines skipped and reported)."""
    from cimnas_jax.cli.label_accuracy import read_labels as read
    return read(out_dir)


def kendall_tau(a, b) -> float:
    import numpy as np
    a, b = np.asarray(a), np.asarray(b)
    s = np.sign(a[:, None] - a[None]) * np.sign(b[:, None] - b[None])
    n = len(a)
    return float(s[np.triu_indices(n, 1)].sum() / (n * (n - 1) / 2))


def tau_of_reliability(r: float) -> float:
    import numpy as np
    return float(2 / np.pi * np.arcsin(np.sqrt(min(max(r, 0.0), 1.0))))


def check_flags(v: dict):
    """Validate flag values before any work; returns the supernet folder (FlagError otherwise)."""
    from cimnas_jax.cli.finetune import check_supernet
    from cimnas_jax.space import space_names
    C.choice(v, "space", space_names())
    C.required(v, "labels", "a label folder written by label-accuracy")
    C.existing(v, "labels", "dir")
    C.integer(v, "n", 4)
    C.seed(v, "other_calib_seed")
    if v["out"]:
        C.out_file(v, "out")
    return check_supernet(v, v["space"])


def main(argv):
    if len(argv) > 1:
        C.fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    v = C.flag_values(NAMES)
    sn_dir = C.check_or_fail(check_flags, v)
    from cimnas_jax.cli.label_accuracy import read_labels
    recs = read_labels(F.labels)
    if len(recs) < 4:
        C.fail(f"--labels={F.labels}: {len(recs)} records; need at least 4")
    for key in ("genome", "split", "n_calib", "n_images"):
        if any(key not in r for r in recs[:F.n]):
            C.fail(f"--labels={F.labels}: records lack {key!r}; expected a folder written by label-accuracy")
    from cimnas_jax.cli.finetune import load_checked_supernet
    model, params, cfg, man = C.check_or_fail(load_checked_supernet, sn_dir, v["space"])

    import numpy as np

    from cimnas_jax.data import load_dataset, preprocess
    from cimnas_jax.nets.evaluate import SubnetEvaluator
    from cimnas_jax.nets.io import enable_compile_cache, val_split_size
    from cimnas_jax.space import get_space

    enable_compile_cache(F.jax_cache_dir)
    sp = get_space(F.space)
    all_acc = np.array([r["accuracy"] for r in recs])
    recs = recs[:F.n]
    split, n_calib = recs[0]["split"], recs[0]["n_calib"]
    ds = load_dataset("fashion_mnist", F.data_dir, val_split_size(man), cfg.resolution)
    x, y = ds.split(split)
    x, y = x[:recs[0]["n_images"]], y[:recs[0]["n_images"]]
    h = len(x) // 2

    def calib(seed):
        rng = np.random.default_rng(seed)
        return preprocess(ds.x_train[rng.choice(len(ds.x_train), min(n_calib, len(ds.x_train)), replace=False)],
                          cfg.resolution)

    c1, c2 = calib(1), calib(F.other_calib_seed)   # seed 1 = label_accuracy's calibration
    px = preprocess(x, cfg.resolution)
    ev_a = SubnetEvaluator(model, params, c1, px[:h], y[:h])
    ev_b = SubnetEvaluator(model, params, c1, px[h:2 * h], y[h:2 * h])
    ev_c = SubnetEvaluator(model, params, c2, px[:h], y[:h])
    g = np.asarray([r["genome"] for r in recs], np.int32)
    archs = {k: np.asarray(v) for k, v in sp.architecture(g).items()}
    a, b, c = [], [], []
    for i in range(len(recs)):
        arch = {k: v[i] for k, v in archs.items()}
        a.append(ev_a.accuracy(arch)["accuracy"])
        b.append(ev_b.accuracy(arch)["accuracy"])
        c.append(ev_c.accuracy(arch)["accuracy"])
        print(f"{i + 1}/{len(recs)}: label {recs[i]['accuracy']:.4f}  half A {a[-1]:.4f}  half B {b[-1]:.4f}  "
              f"half A other calibration {c[-1]:.4f}", flush=True)
    a, b, c = map(np.asarray, (a, b, c))
    # a label averages both halves: noise sd of a full-split label = sd(A - B) / 2
    sd_images = float(np.std(a - b, ddof=1) / 2)
    # another calibration draw on the same images: sd of one label's calibration part = sd(A - C) / sqrt 2
    sd_calib = float(np.std(a - c, ddof=1) / np.sqrt(2))
    sd_between = float(np.std(all_acc, ddof=1))
    rel_images = 1 - sd_images ** 2 / sd_between ** 2
    rel_both = 1 - (sd_images ** 2 + sd_calib ** 2) / sd_between ** 2
    rep = dict(space=sp.name, labels=str(F.labels), n_designs=len(recs), split=split,
               n_images_per_label=int(2 * h), n_calib=int(n_calib), other_calib_seed=F.other_calib_seed,
               halves=dict(pearson=float(np.corrcoef(a, b)[0, 1]), kendall_tau=kendall_tau(a, b)),
               calibration=dict(pearson=float(np.corrcoef(a, c)[0, 1]), kendall_tau=kendall_tau(a, c)),
               label_noise_sd_images=sd_images, label_noise_sd_calibration=sd_calib,
               label_sd_between_designs=sd_between, n_labels_for_sd=int(len(all_acc)),
               reliability_images_only=rel_images, reliability_both=rel_both,
               perfect_predictor_tau_images_only=tau_of_reliability(rel_images),
               perfect_predictor_tau_both=tau_of_reliability(rel_both),
               measured=dict(half_a=a.tolist(), half_b=b.tolist(), half_a_other_calibration=c.tolist()))
    print(json.dumps({k: v for k, v in rep.items() if k != "measured"}, indent=1))
    if F.out:
        from cimnas_jax.fileio import atomic_write
        atomic_write(Path(F.out), json.dumps(rep, indent=1) + "\n")

