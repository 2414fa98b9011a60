"""Train, evaluate and ship the CiMLoop-trained hardware correction (``cimnas_jax.hw.correction``).

    python -m cimnas_jax.hw.train_correction                         # both nodes -> assets/hw_correction/
    python -m cimnas_jax.hw.train_correction --technology=rram_32nm --labels_dir=runs/cl_labels \\
        --out=runs/corr_rram                                         # retrain with extra CiMLoop labels

Training rows: the shared reference layer records of the node, split by calibrate.py's rule (held-out
groups never train; RRAM network layers train), plus every layer of each ``--labels_dir`` folder
(``experiments/label.py --backend=cimloop`` output) at that node. The correction's per-target shrink
comes from grouped cross-validation on the training rows. Reported (and written to manifest.json):
held-out layers, analytic vs calibrated, MAPE and Kendall tau per metric; for RRAM also the three
reference networks, each evaluated by a correction trained without that network's layers
(leave-one-network-out), per network and per layer.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
from absl import app, flags

from cimnas_jax.hw import correction as C
from cimnas_jax.hw import correction_io as IO
from cimnas_jax.hw.tech import load_technology

FLAGS = flags.FLAGS
flags.DEFINE_list("technology", ["rram_32nm", "sram_7nm"], "technologies to train (rram_32nm, sram_7nm)")
flags.DEFINE_multi_string("labels_dir", [], "extra experiments/label.py output folder(s) (CiMLoop labels)")
flags.DEFINE_string("out", None, "output folder (one technology only; default cimnas_jax/assets/hw_correction/<tech>)")
flags.DEFINE_list("hidden", ["128", "128"], "MLP hidden widths")
flags.DEFINE_integer("members", 8, "ensemble members")
flags.DEFINE_integer("steps", 1000, "full-batch AdamW steps per fit")
flags.DEFINE_integer("folds", 5, "grouped cross-validation folds (per-target shrink)")
flags.DEFINE_integer("seed", 0, "training seed")
flags.DEFINE_bool("network_cv", True, "RRAM: evaluate the reference networks leave-one-network-out (3 more fits)")


def _kendall(a, b):
    from scipy import stats
    return float(stats.kendalltau(a, b)[0]) if len(a) > 2 else float("nan")


def network_cv(technology: str, cfg: C.FitConfig, folds: int, label_dirs, log=print) -> dict:
    """Leave-one-network-out: for each reference network, a correction trained on everything else
    (reference train split, the other networks, label folders) predicts that network's layers."""
    data, train, totals = IO.reference_data(technology)
    nets = [n for n in totals if (data.group.astype(str) == n).any()]
    extra = [IO.label_dir_data(p, technology)[0] for p in label_dirs]
    pred = np.full(data.truth.shape, np.nan)
    for n in nets:
        held = data.group.astype(str) == n
        tr = C.LayerData.concat([data.take(train & ~held), *extra])
        corr, _ = C.fit_correction_cv(load_technology(technology), tr, cfg, folds, log=lambda *a: None)
        pred[held] = C.corrected(corr, data.take(held))
        log(f"  leave-one-network-out: {n} done (shrink {np.asarray(corr.shrink).round(2).tolist()})")
    sel = np.isin(data.group.astype(str), nets)
    sub = data.take(sel)
    out = {"networks": nets, "rule": "correction trained without the network's layers",
           "per_layer": {"analytic": C.layer_metrics(sub.analytic, sub.truth),
                         "calibrated": C.layer_metrics(pred[sel], sub.truth), "n": int(sel.sum())},
           "per_network": {"analytic": C.network_errors(sub.analytic, sub, totals),
                           "calibrated": C.network_errors(pred[sel], sub, totals)}}
    for k in ("analytic", "calibrated"):
        pn = out["per_network"][k]
        summ = {}
        for i, t in enumerate(C.TARGETS):
            err = np.array([pn[n][f"{t}_err"] for n in nets])
            ref = np.array([totals[n][i] for n in nets])
            summ[t] = {"mape_pct": float(np.mean(np.abs(err)) * 100), "kendall_tau": _kendall(ref * (1 + err), ref),
                       "n_networks": len(nets)}
        out["per_network"][f"{k}_summary"] = summ
    return out


def table(report: dict) -> str:
    """Markdown: analytic vs calibrated, MAPE % and tau per metric."""
    rows = ["| records | metric | analytic MAPE | analytic τ | calibrated MAPE | calibrated τ |", "|---|---|---|---|---|---|"]

    def add(name, a, c):
        for t in C.TARGETS:
            rows.append(f"| {name} | {t} | {a[t]['mape_pct']:.2f} % | {a[t]['kendall_tau']:.3f} | "
                        f"{c[t]['mape_pct']:.2f} % | {c[t]['kendall_tau']:.3f} |")
            name = ""
    h = report.get("held_out_layers")
    if h:
        add(f"{report['technology']} held-out layers (n = {h['n']})", h["analytic"], h["calibrated"])
    n = report.get("network_cv")
    if n:
        add(f"{report['technology']} network layers, leave-one-network-out (n = {n['per_layer']['n']})",
            n["per_layer"]["analytic"], n["per_layer"]["calibrated"])
        add(f"{report['technology']} whole networks (n = {len(n['networks'])})", n["per_network"]["analytic_summary"],
            n["per_network"]["calibrated_summary"])
    return "\n".join(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [t for t in FLAGS.technology if t not in IO.REFERENCE_FILES]
    if bad:
        raise app.UsageError(f"--technology must be among {sorted(IO.REFERENCE_FILES)}, got {bad}")
    if FLAGS.out and len(FLAGS.technology) != 1:
        raise app.UsageError("--out needs exactly one --technology")
    try:
        hidden = tuple(int(h) for h in FLAGS.hidden)
    except ValueError:
        raise app.UsageError(f"--hidden must be integers, got {FLAGS.hidden}")
    if FLAGS.members < 1 or FLAGS.steps < 1 or FLAGS.folds < 2 or any(h < 1 for h in hidden):
        raise app.UsageError("--members, --steps and --hidden must be >= 1, --folds >= 2")
    cfg = C.FitConfig(hidden=hidden, members=FLAGS.members, steps=FLAGS.steps, seed=FLAGS.seed)
    for tname in FLAGS.technology:
        t0 = time.time()
        print(f"{tname}: training the correction", flush=True)
        try:
            corr, report = IO.retrain(tname, FLAGS.labels_dir, cfg, FLAGS.folds)
        except FileNotFoundError as e:
            raise app.UsageError(str(e))
        if FLAGS.network_cv and IO.reference_data(tname)[2]:
            report["network_cv"] = network_cv(tname, cfg, FLAGS.folds, FLAGS.labels_dir)
        report["seconds"] = time.time() - t0
        out = FLAGS.out or IO.correction_path(tname)
        manifest = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "command": " ".join(["python -m cimnas_jax.hw.train_correction"] + sys.argv[1:]),
                    "what": "per layer log(CiMLoop / analytic) of energy, latency, area; analytic model "
                            f"cimnas_jax/hw/tech/{tname}.json", **report}
        IO.save_correction(out, corr, manifest)
        print(table(report))
        print(f"wrote {out} ({report['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    app.run(main)
