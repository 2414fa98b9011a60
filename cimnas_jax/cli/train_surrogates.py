"""cimnas-jax train-surrogates: train, evaluate and ship surrogate sets (hardware + accuracy), or run the new-node study.

Hardware labels come from the analytic model in-process (``cimnas_jax.hw.evaluate_designs``,
batched and jitted) or from a labelling-pipeline folder (``--labels_dir``, designs.jsonl);
accuracy labels from the supernet's JSONL files (``--accuracy_labels``).
``python experiments/train_surrogates.py`` is the same command. Splits are by
canonical design hash (80/10/10 train/val/test), so one design never sits in two splits.

  # ship mbv2_rram (writes cimnas_jax/assets/mbv2_rram/rram_32nm/)
  cimnas-jax train-surrogates --space=mbv2_rram --accuracy_labels=runs/acc/labels.jsonl
  # ship resnet50_sram7nm (hardware), then add its accuracy ensemble (labels of the ResNet supernet)
  cimnas-jax train-surrogates --space=resnet50_sram7nm
  cimnas-jax train-surrogates --space=resnet50_sram7nm --hw_from=cimnas_jax/assets/resnet50_sram7nm/sram_7nm \
      --accuracy_labels=cimnas_jax/assets/resnet50_sram7nm/accuracy_labels_fmnist --out=cimnas_jax/assets/resnet50_sram7nm/sram_7nm
  # new technology node: transfer the 32 nm RRAM set with 10..300 labels at 7 nm SRAM (physics
  # transfer: re-fit the analytic model's technology coefficients; neural: fine-tunes / ridge heads)
  cimnas-jax train-surrogates --mode=new_node --space=mbv2_rram --technology=sram_7nm \
      --source=cimnas_jax/assets/mbv2_rram/rram_32nm --out=cimnas_jax/assets/mbv2_rram/new_node_sram_7nm --nn_transfer=false
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from cimnas_jax.cli import common as C
from cimnas_jax.fileio import atomic_write_json

FLAGS = flags.FLAGS
ROOT = Path(__file__).resolve().parents[2]      # the checkout (relative --out paths, git provenance)
MODES = ("train", "new_node", "ship")
VARIANTS = ("mlp", "physics", "compare")
ACC_FEATURES = ("arch", "arch_onehot", "full")
NAMES = ('mode', 'space', 'technology', 'out', 'n_labels', 'label_seed', 'labels_dir', 'accuracy_labels', 'variant', 'members', 'hidden', 'acc_features', 'acc_hidden', 'epochs', 'acc_epochs', 'lr', 'batch', 'patience', 'max_minutes', 'seed', 'hw_from', 'source', 'counts', 'n_test', 'ft_steps', 'ft_lr', 'nn_transfer', 'tech_transfer', 'tt_steps', 'tt_lbfgs_steps')


def define_flags():
    flags.DEFINE_string("mode", "train",
                      f"one of {MODES}: train a set, run the new-node fine-tuning study, or rebuild every shipped set (SHIPPED) in turn")
    flags.DEFINE_string("space", "mbv2_rram", "search space name (cimnas_jax.space registry)")
    flags.DEFINE_string("technology", None, "technology of the hardware labels (default: the space's)")
    flags.DEFINE_string("out", None, "output directory (default cimnas_jax/assets/<space>/<technology>)")
    flags.DEFINE_integer("n_labels", 60000, "designs to sample and label with the analytic model")
    flags.DEFINE_integer("label_seed", 0, "sampling seed of the hardware labels")
    flags.DEFINE_string("labels_dir", None, "labelling-pipeline folder (designs.jsonl) to use instead of in-process labels")
    flags.DEFINE_multi_string("accuracy_labels", [], "accuracy label JSONL file(s): genome, hash, accuracy")
    flags.DEFINE_string("variant", "compare",
                      f"one of {VARIANTS}: hardware model: plain MLP, physics-informed correction on the analytic model, or both (keep the winner)")
    flags.DEFINE_integer("members", 4, "ensemble members")
    flags.DEFINE_string("hidden", "256,256", "hardware MLP hidden widths")
    flags.DEFINE_string("acc_features", "arch_onehot", f"one of {ACC_FEATURES}: accuracy inputs: ordinal network/bit "
                      "genes + architecture aggregates (arch; few labels), the same genes one-hot + aggregates "
                      "(arch_onehot; thousands of labels), or every gene + hardware numerics (full)")
    flags.DEFINE_string("acc_hidden", "64", "accuracy MLP hidden widths (small: a few hundred labels; 0 = linear)")
    flags.DEFINE_integer("epochs", 60, "maximum epochs (hardware)")
    flags.DEFINE_integer("acc_epochs", 400, "maximum epochs (accuracy)")
    flags.DEFINE_float("lr", 1e-3, "peak learning rate")
    flags.DEFINE_integer("batch", 256, "designs per step")
    flags.DEFINE_integer("patience", 10, "early-stopping patience (epochs without validation improvement)")
    flags.DEFINE_float("max_minutes", 25.0, "wall-clock cap per ensemble")
    flags.DEFINE_integer("seed", 0, "training seed")
    flags.DEFINE_string("hw_from", None, "reuse the hardware ensemble (and its metrics) of this set; train only accuracy")
    flags.DEFINE_string("source", None, "new_node: the set to fine-tune (a set directory)")
    flags.DEFINE_string("counts", "10,30,100,300", "new_node: label counts")
    flags.DEFINE_integer("n_test", 3000, "new_node: held-out designs of the new node")
    flags.DEFINE_integer("ft_steps", 400, "new_node: optimisation steps per fine-tune / scratch run")
    flags.DEFINE_float("ft_lr", 3e-4, "new_node: peak learning rate of full fine-tuning")
    flags.DEFINE_bool("nn_transfer", True, "new_node: run the neural methods (offset, fine-tunes, ridge heads, scratch nets)")
    flags.DEFINE_bool("tech_transfer", True, "new_node: run the physics transfer (re-fit the analytic model's technology "
                      "coefficients, from the source node's and from a generic start)")
    flags.DEFINE_integer("tt_steps", 1000, "new_node: Adam steps of each technology-coefficient fit")
    flags.DEFINE_integer("tt_lbfgs_steps", 200, "new_node: L-BFGS polishing steps of the chosen technology-coefficient fit")


# The shipped sets, rebuilt in this order by --mode=ship (one command; the hardware model is
# still being calibrated, so rerun this after it changes). --accuracy_labels is passed through.
SHIPPED = (
    ["--space=mbv2_rram", "--n_labels=80000", "--epochs=40", "--members=4", "--hidden=256,256",
     "--max_minutes=14", "--variant=compare"],
    ["--space=resnet50_sram7nm", "--n_labels=100000", "--epochs=40", "--members=4", "--hidden=256,256",
     "--max_minutes=10", "--variant=compare"],
    ["--space=mbv2_rram", "--n_labels=60000", "--epochs=30", "--members=4", "--hidden=256,256",
     "--max_minutes=9", "--variant=mlp", "--out=cimnas_jax/assets/mbv2_rram/rram_32nm_mlp"],
    # new node, neural transfer of the plain-MLP set (fine-tunes, ridge heads, scratch nets)
    ["--mode=new_node", "--space=mbv2_rram", "--technology=sram_7nm", "--source=cimnas_jax/assets/mbv2_rram/rram_32nm_mlp",
     "--out=cimnas_jax/assets/mbv2_rram/new_node_sram_7nm_from_mlp", "--counts=10,30,100,300", "--tech_transfer=false"],
    # new node, physics transfer of the physics-informed set: re-fit its analytic prior's technology
    # coefficients (same labels and test designs as above: same seeds)
    ["--mode=new_node", "--space=mbv2_rram", "--technology=sram_7nm", "--source=cimnas_jax/assets/mbv2_rram/rram_32nm",
     "--out=cimnas_jax/assets/mbv2_rram/new_node_sram_7nm", "--counts=10,30,100,300", "--nn_transfer=false"],
)


def ship_mode(root):
    for args in SHIPPED:
        if "--space=mbv2_rram" in args and "--mode=new_node" not in args and "--variant=mlp" not in args:
            args = args + [f"--accuracy_labels={a}" for a in FLAGS.accuracy_labels]
        cmd = [sys.executable, "-m", "cimnas_jax", "train-surrogates"] + args
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=root, check=True)


def _ints(s, name, allow_empty=False):
    """'256,256' -> (256, 256) ('' or '0' -> () = a linear model, when allow_empty)."""
    return C.check_or_fail(C.int_list, s, name, allow_empty)


def _command(root) -> str:
    """The command line, the script path relative to the checkout (as the manifests always had it)."""
    a0 = sys.argv[0]
    return " ".join([os.path.relpath(a0, root) if os.path.isfile(a0) else a0] + sys.argv[1:])


def _versions():
    import flax, jax, numpy, optax, orbax.checkpoint, scipy
    v = {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
         "optax": optax.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__}
    try:
        from importlib.metadata import version
        v["orbax-checkpoint"] = version("orbax-checkpoint")
    except Exception:  # pragma: no cover
        pass
    return v


def _git(root):
    def run(*a):
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:
            return ""
    return {"commit": run("rev-parse", "HEAD"),
            "dirty_hw_or_space": run("status", "--porcelain", "--", "cimnas_jax/hw", "cimnas_jax/space",
                                     "cimnas_jax/workload").splitlines()}


def tech_provenance(name):
    from cimnas_jax.hw.tech import TECH_DIR
    p = Path(name) if Path(name).suffix == ".json" else TECH_DIR / f"{name}.json"
    sha = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    return {"technology": name, "file": str(p.relative_to(ROOT))
            if p.exists() and p.is_relative_to(ROOT) else str(p), "sha256": sha}


# --------------------------------------------------------------------------- labels
def analytic_labels(sp, technology, n, seed, chunk=4096):
    """Sample n genomes, canonicalise, dedupe by hash; label with the analytic model.

    Returns genomes int32 [N, G], hashes (list[str]), y float64 [N, 3] natural logs (NaN where
    the design is invalid or a metric is not finite), valid bool [N].
    """
    import jax
    import numpy as np
    from cimnas_jax.hw import evaluate_designs, load_technology
    tech = load_technology(technology)
    g = np.asarray(sp.canonicalise(sp.sample(jax.random.PRNGKey(seed), n)))
    hashes = sp.hash_hex(g)
    _, first = np.unique(np.asarray(hashes), return_index=True)
    first = np.sort(first)
    g, hashes = g[first], [hashes[i] for i in first]
    f = jax.jit(lambda x: evaluate_designs(sp, x, tech=tech))
    ys, vs = [], []
    for i in range(0, len(g), chunk):
        c = g[i:i + chunk]
        pad = chunk - len(c)
        r = f(np.concatenate([c, np.repeat(c[:1], pad, 0)]) if pad else c)
        y = np.stack([np.asarray(r.energy_j), np.asarray(r.latency_s), np.asarray(r.area_mm2)], -1)[:len(c)]
        ys.append(y.astype(np.float64)); vs.append(np.asarray(r.valid)[:len(c)])
    y, v = np.concatenate(ys), np.concatenate(vs)
    with np.errstate(invalid="ignore", divide="ignore"):
        ly = np.log(y)
    v = v & np.all(np.isfinite(ly), -1)
    ly[~v] = np.nan
    return g, hashes, ly, v


def dir_labels(sp, path):
    """Hardware labels from a labelling-pipeline folder (designs.jsonl)."""
    import numpy as np
    p = Path(path) / "designs.jsonl"
    if not p.exists():
        C.fail(f"--labels_dir={path}: no designs.jsonl there")
    from cimnas_jax.fileio import parse_jsonl
    read = parse_jsonl(p.read_bytes() + b"\n", required=("genome", "hash"))
    if read.n_skipped:
        print(read.describe(p).replace(", the skipped designs are labelled again", ""), file=sys.stderr, flush=True)
    if not read.records:
        C.fail(f"--labels_dir={path}: designs.jsonl holds no design lines")
    g, h, y, v = [], [], [], []
    for d in read.records:
        g.append(d["genome"]); h.append(d["hash"])
        ok = bool(d.get("valid", False))
        vals = [d.get(k) for k in ("energy_j", "latency_s", "area_mm2")]
        ok = ok and all(isinstance(x, (int, float)) and x is not None and x > 0 for x in vals)
        y.append(np.log(vals) if ok else [np.nan] * 3); v.append(ok)
    try:
        g = sp.check(np.asarray(g))
    except ValueError as e:
        C.fail(f"--labels_dir={path}: {str(e).splitlines()[0]}")
    if [a for a, b in zip(sp.hash_hex(g), h) if a != b]:
        C.fail(f"--labels_dir={path}: design hashes do not match space '{sp.name}'")
    return g, h, np.asarray(y, np.float64), np.asarray(v, bool)


def split_by_hash(hashes, train=16, val=2):
    """By (first 8 hex digits of the hash) mod 20: [0, train) train, then val, rest test."""
    import numpy as np
    b = np.asarray([int(h[:8], 16) % 20 for h in hashes])
    return b < train, (b >= train) & (b < train + val), b >= train + val


# --------------------------------------------------------------------------- evaluation
def evaluate_hw(sp, ens, g, y, v, out_dir=None, tag=""):
    import jax
    import numpy as np
    from cimnas_jax.surrogate import SurrogateSet, fidelity, plot_fidelity, predict
    sset = SurrogateSet(hw=ens, acc=None, space_name=sp.name)
    out = jax.jit(predict)(sset, g)
    res = {}
    for i, t in enumerate(ens.targets):
        true = np.exp(y[v, i])
        m = fidelity(true, np.asarray(out[t])[v], std=np.asarray(out[f"log_{t}_std"])[v])
        res[t] = m
        if out_dir is not None:
            plot_fidelity(Path(out_dir) / f"fidelity_{t}{tag}.png", t, true, np.asarray(out[t])[v],
                          np.asarray(out[f"log_{t}_std"])[v], metrics=m)
    if ens.with_valid:
        pv = np.asarray(out["valid_prob"])
        res["validity_accuracy"] = float(np.mean((pv > 0.5) == v))
    return res


def evaluate_acc(sp, ens, g, a, out_dir=None):
    import jax
    import numpy as np
    from cimnas_jax.surrogate import SurrogateSet, fidelity, plot_fidelity, predict
    out = jax.jit(predict)(SurrogateSet(hw=None, acc=ens, space_name=sp.name), g)
    m = fidelity(a, np.asarray(out["accuracy"]), lower_is_better=False, log_space=False,
                 std=np.asarray(out["accuracy_std"]))
    if out_dir is not None:
        plot_fidelity(Path(out_dir) / "fidelity_accuracy.png", "accuracy", a, np.asarray(out["accuracy"]),
                      np.asarray(out["accuracy_std"]), log_axes=False, metrics=m)
    return m


def _summary(res):
    return {t: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k != "calibration_bins"}
            for t, m in res.items() if isinstance(m, dict)}


# --------------------------------------------------------------------------- modes
def train_mode(sp, root, out_dir, technology):
    import numpy as np
    from cimnas_jax.surrogate import HW_TARGETS, SurrogateSet, TrainConfig, fit_ensemble, save_set
    t_start = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(hidden=_ints(FLAGS.hidden, "hidden"), members=FLAGS.members, lr=FLAGS.lr, batch=FLAGS.batch,
                      max_epochs=FLAGS.epochs, patience=FLAGS.patience, seed=FLAGS.seed,
                      max_seconds=FLAGS.max_minutes * 60)
    if FLAGS.hw_from:
        return _add_accuracy(sp, root, out_dir, cfg, t_start)
    if FLAGS.labels_dir:
        g, h, y, v = dir_labels(sp, FLAGS.labels_dir)
        hw_prov = {"source": f"labelling pipeline folder {FLAGS.labels_dir}"}
    else:
        g, h, y, v = analytic_labels(sp, technology, FLAGS.n_labels, FLAGS.label_seed)
        hw_prov = {"source": "analytic model in-process (cimnas_jax.hw.evaluate_designs)",
                   "sampler": "uniform sp.sample, canonicalised, deduplicated by design hash",
                   "n_sampled": FLAGS.n_labels, "seed": FLAGS.label_seed, **tech_provenance(technology)}
    hw_prov.update({"n_unique": int(len(g)), "n_valid": int(v.sum()),
                    "invalid_handling": "invalid or non-finite designs are excluded from regression targets; "
                                        "they train only the validity head"})
    tr, va, te = split_by_hash(h)
    need_labels(int((tr & v).sum()), int((va & v).sum()), int((te & v).sum()),
                "--labels_dir" if FLAGS.labels_dir else "--n_labels", FLAGS.batch, FLAGS.epochs)
    print(f"hardware labels: {len(g)} designs, {v.sum()} valid; split {tr.sum()}/{va.sum()}/{te.sum()}")
    D = lambda m: {"genomes": g[m], "y": y[m], "valid": v[m]}
    variants = ["mlp", "physics"] if FLAGS.variant == "compare" else [FLAGS.variant]
    results, ensembles, hists = {}, {}, {}
    for var in variants:
        print(f"training hardware ensemble: {var}")
        ens, hist = fit_ensemble(sp, D(tr), D(va), cfg, targets=HW_TARGETS, with_valid=(var == "mlp"),
                                 base_technology=(technology if var == "physics" else None))
        ensembles[var], hists[var] = ens, hist
        results[var] = evaluate_hw(sp, ens, g[te], y[te], v[te])
        print(json.dumps({var: _summary(results[var])}, indent=1))
    mean_mape = {k: float(np.mean([results[k][t]["mape_pct"] for t in HW_TARGETS])) for k in results}
    winner = min(mean_mape, key=mean_mape.get)
    hw_test = evaluate_hw(sp, ensembles[winner], g[te], y[te], v[te], out_dir)
    comparison = {"mean_test_mape_pct": mean_mape, "winner": winner,
                  "per_variant_test": {k: _summary(r) for k, r in results.items()}}
    if len(results) == 2:
        other = [k for k in results if k != winner][0]
        comparison["margin"] = (f"{winner} mean MAPE {mean_mape[winner]:.3f}% vs {other} {mean_mape[other]:.3f}% "
                                f"({mean_mape[other] / max(mean_mape[winner], 1e-9):.1f}x lower)")
    acc_ens, acc_test, acc_prov = _train_accuracy(sp, out_dir)
    sset = SurrogateSet(hw=ensembles[winner], acc=acc_ens, space_name=sp.name)
    manifest = {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": _command(root),
        "versions": _versions(), "git": _git(root),
        "labels": {"hardware": hw_prov, "accuracy": acc_prov or _no_acc(sp)},
        "splits": {"rule": "int(hash[:8], 16) % 20: 0-15 train, 16-17 val, 18-19 test",
                   "hardware": {"train": int(tr.sum()), "val": int(va.sum()), "test": int(te.sum()),
                                "test_valid": int(v[te].sum())}},
        "train": {"config": cfg.__dict__ | {"max_seconds": cfg.max_seconds}, "variant": winner,
                  "epochs": {k: h_["epochs"] for k, h_ in hists.items()},
                  "seconds": {k: round(h_["seconds"], 1) for k, h_ in hists.items()}},
        "metrics": {"test": {**hw_test, **({"accuracy": acc_test} if acc_test else {})}},
        "comparison": comparison,
        "total_seconds": round(time.time() - t_start, 1),
    }
    save_set(out_dir, sset, sp, manifest)
    print(f"wrote {out_dir} (winner {winner}; {comparison.get('margin', '')})")


def _no_acc(sp):
    return {"absent": "no accuracy labels were given (--accuracy_labels); predict() returns no accuracy"}


def _add_accuracy(sp, root, out_dir, cfg, t_start):
    """Reuse a set's hardware ensemble and manifest; (re)train only the accuracy ensemble."""
    from cimnas_jax.surrogate import SurrogateSet, load_set, read_manifest, save_set
    old = load_set(FLAGS.hw_from, sp)
    man = read_manifest(FLAGS.hw_from)
    acc_ens, acc_test, acc_prov = _train_accuracy(sp, out_dir)
    if acc_ens is None:
        C.fail("--hw_from needs --accuracy_labels")
    man["labels"]["accuracy"] = acc_prov
    man["metrics"]["test"]["accuracy"] = acc_test
    man["command_accuracy"] = _command(root)
    man["versions"] = _versions()
    for k in ("format", "space", "n_genes", "choices_hash", "model", "numeric_features", "onehot_width"):
        man.pop(k, None)
    save_set(out_dir, SurrogateSet(hw=old.hw, acc=acc_ens, space_name=sp.name), sp, man)
    print(f"wrote {out_dir} (hardware from {FLAGS.hw_from}, accuracy retrained)")


def _train_accuracy(sp, out_dir):
    from cimnas_jax.surrogate.labels import read_accuracy_labels
    import numpy as np
    from cimnas_jax.surrogate import ACC_TARGETS, TrainConfig, fit_ensemble
    acc_ens, acc_test, acc_prov = None, None, None
    if FLAGS.accuracy_labels:
        try:
            ga, ha, a = read_accuracy_labels(sp, FLAGS.accuracy_labels)
        except ValueError as e:
            C.fail(f"--accuracy_labels: {e}")
        ok = np.isfinite(a)
        ga, ha, a = ga[ok], [x for x, o in zip(ha, ok) if o], a[ok]
        atr, ava, ate = split_by_hash(ha, 14, 2)   # 70/10/20: small sets need a bigger test split
        need_labels(int(atr.sum()), int(ava.sum()), int(ate.sum()), "--accuracy_labels", 32, FLAGS.acc_epochs)
        acfg = TrainConfig(hidden=_ints(FLAGS.acc_hidden, "acc_hidden", allow_empty=True), members=FLAGS.members, lr=FLAGS.lr,
                           batch=min(32, int(atr.sum())), max_epochs=FLAGS.acc_epochs, patience=60, beta=1.0,
                           weight_decay=1e-2, seed=FLAGS.seed, max_seconds=FLAGS.max_minutes * 60, select="mse")
        print(f"accuracy labels: {len(a)} subnets; split {atr.sum()}/{ava.sum()}/{ate.sum()}")
        acc_ens, acc_hist = fit_ensemble(sp, {"genomes": ga[atr], "y": a[atr, None]},
                                         {"genomes": ga[ava], "y": a[ava, None]}, acfg, targets=ACC_TARGETS,
                                         features=FLAGS.acc_features)
        acc_test = evaluate_acc(sp, acc_ens, ga[ate], a[ate], out_dir)
        print(json.dumps({"accuracy": _summary({"accuracy": acc_test})}, indent=1))
        acc_prov = {"source": [str(p) for p in FLAGS.accuracy_labels],
                    "split_rule": "int(hash[:8], 16) % 20: 0-13 train, 14-15 val, 16-19 test",
                    "n": int(len(a)), "split": {"train": int(atr.sum()), "val": int(ava.sum()), "test": int(ate.sum())},
                    "train": {"config": acfg.__dict__ | {"max_seconds": None}, "epochs": acc_hist["epochs"],
                              "seconds": round(acc_hist["seconds"], 1)}}
    return acc_ens, acc_test, acc_prov


def new_node_mode(sp, root, out_dir, technology):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from cimnas_jax.surrogate import TrainConfig, fit_ensemble, load_set, read_manifest
    from cimnas_jax.surrogate.model import ensemble_stats, inputs, physics_base
    if not FLAGS.source:
        C.fail("--mode=new_node needs --source=<set directory>")
    counts = _ints(FLAGS.counts, "counts")
    t_start = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    src = load_set(FLAGS.source, sp).hw
    src_man = read_manifest(FLAGS.source)
    g, h, y, v = analytic_labels(sp, technology, 4 * (max(counts) + FLAGS.n_test), FLAGS.label_seed + 1000)
    idx = np.flatnonzero(v)
    rng = np.random.default_rng(FLAGS.seed)
    idx = rng.permutation(idx)
    pool, test = idx[:max(counts)], idx[max(counts):max(counts) + FLAGS.n_test]
    print(f"new node {technology}: {len(idx)} valid designs; pool {len(pool)}, test {len(test)}")

    def predict_logs(ens, gg):
        gg = jnp.asarray(gg)
        base = physics_base(sp, gg, ens.base_technology)[0] if ens.base_technology else None
        return np.asarray(ensemble_stats(ens, inputs(sp, gg, ens, base), base)[0])

    def score(ens):
        p = predict_logs(ens, g[test])
        from cimnas_jax.surrogate import fidelity
        return {t: {k: round(val, 4) for k, val in fidelity(np.exp(y[test, i]), np.exp(p[:, i])).items()
                    if k in ("mape_pct", "kendall_tau", "spearman", "top10_recall")}
                for i, t in enumerate(src.targets)}

    # head-only fine-tuning: ridge (leave-one-out-chosen penalty) on the frozen source network's
    # last hidden layer + its own prediction, per member; "ridge from scratch" uses the raw
    # inputs (one-hot + numeric features) instead - same labels, same solver.
    def frozen_feats(gg, ens=src):
        gg = jnp.asarray(gg)
        base = physics_base(sp, gg, ens.base_technology)[0] if ens.base_technology else None
        x = inputs(sp, gg, ens, base)
        def one(p):
            h = x
            for i in range(len(ens.hidden)):
                d = p["params"][f"Dense_{i}"]
                h = jax.nn.gelu(h @ d["kernel"] + d["bias"])
            return h
        hid = np.asarray(jax.vmap(one)(ens.params))                      # [M, P, H]
        pred = np.asarray(ensemble_stats(ens, x, base)[0])               # [P, T]
        return [np.concatenate([hm, pred], -1) for hm in hid], np.asarray(x)
    test_hid, test_x = frozen_feats(g[test])
    pool_hid, pool_x = frozen_feats(g[pool])

    def ridge_score(train_z, test_z, yy):
        preds = np.mean([_ridge_loo(zt, yy, ze) for zt, ze in zip(train_z, test_z)], 0)
        from cimnas_jax.surrogate import fidelity
        return {t: {k: round(val, 4) for k, val in fidelity(np.exp(y[test, i]), np.exp(preds[:, i])).items()
                    if k in ("mape_pct", "kendall_tau", "spearman", "top10_recall")}
                for i, t in enumerate(src.targets)}

    rows = {"source_zero_shot": score(src)}
    print("zero-shot", rows["source_zero_shot"])
    tt = _TechTransfer(sp, src_man, technology, g, y, test, out_dir) if FLAGS.tech_transfer else None
    if tt is not None:
        rows.update(tt.zero_shot())
    for n in counts:
        sel = pool[:n]
        if tt is not None:
            rows.update(tt.fit(sel, n))
            print(n, {k: rows[f"{k}_{n}"] for k in TT_KINDS})
        if not FLAGS.nn_transfer:
            continue
        d = {"genomes": g[sel], "y": y[sel], "valid": v[sel]}
        shift = np.mean(y[sel] - predict_logs(src, g[sel]), 0)
        shifted = src.replace(y_mean=src.y_mean + jnp.asarray(shift, jnp.float32))
        rows[f"offset_only_{n}"] = score(shifted)
        B = min(n, 64)
        epochs = max(1, FLAGS.ft_steps // max(n // B, 1))
        ft_cfg = TrainConfig(hidden=src.hidden, members=src.n_members, lr=FLAGS.ft_lr, batch=B, max_epochs=epochs,
                             weight_decay=1e-4, seed=FLAGS.seed)
        sc_cfg = TrainConfig(hidden=src.hidden, members=src.n_members, lr=1e-3, batch=B, max_epochs=epochs,
                             weight_decay=1e-4, seed=FLAGS.seed)
        ft, _ = fit_ensemble(sp, d, None, ft_cfg, targets=src.targets, with_valid=False,
                             base_technology=src.base_technology, init=shifted, log=lambda *_: None)
        sc, _ = fit_ensemble(sp, d, None, sc_cfg, targets=src.targets, with_valid=False,
                             base_technology=src.base_technology, log=lambda *_: None)
        rows[f"finetune_{n}"], rows[f"scratch_{n}"] = score(ft), score(sc)
        rows[f"head_finetune_{n}"] = ridge_score([h_[:n] for h_ in pool_hid], test_hid, y[sel])
        rows[f"ridge_scratch_{n}"] = ridge_score([pool_x[:n]], [test_x], y[sel])
        ft_test, _ = frozen_feats(g[test], ft)
        ft_pool, _ = frozen_feats(g[sel], ft)
        rows[f"finetune_then_head_{n}"] = ridge_score(ft_pool, ft_test, y[sel])
        print(n, {k: rows[f"{k}_{n}"] for k in KINDS})
    report = {"command": _command(root),
              "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "source_set": str(FLAGS.source), "source_variant": src_man["train"]["variant"],
              "source_technology": src_man["labels"]["hardware"].get("technology"),
              "target": tech_provenance(technology), "counts": list(counts), "n_test": int(len(test)),
              "ft_steps": FLAGS.ft_steps, "versions": _versions(), "git": _git(root), "results": rows,
              "seconds": round(time.time() - t_start, 1)}
    if tt is not None:
        report["tech_transfer"] = tt.provenance()
    kinds = (KINDS if FLAGS.nn_transfer else ()) + (TT_KINDS if tt is not None else ())
    atomic_write_json(out_dir / "report.json", report)
    _plot_new_node(out_dir, counts, rows, src.targets, kinds)
    table = _new_node_table(rows, counts, src.targets, kinds)
    (out_dir / "table.md").write_text(table)
    print(table)
    print(f"wrote {out_dir}/report.json, table.md, new_node.png ({report['seconds']:.0f} s)")


KINDS = ("offset_only", "finetune", "scratch", "head_finetune", "ridge_scratch", "finetune_then_head")
TT_KINDS = ("tech_transfer", "tech_scratch")
KIND_LABELS = {
    "source_zero_shot": "zero-shot (source as is)",
    "tech_transfer_zero_shot": "zero-shot physics (source node's coefficients, new node's description)",
    "tech_scratch_zero_shot": "zero-shot physics (generic start, new node's description)",
    "offset_only": "source + fitted offset", "finetune": "full fine-tune", "scratch": "full net from scratch",
    "head_finetune": "head fine-tune (ridge on frozen source features)",
    "ridge_scratch": "ridge from scratch (raw inputs)", "finetune_then_head": "full fine-tune, then ridge head",
    "tech_transfer": "**physics transfer** (source node's technology coefficients re-fitted)",
    "tech_scratch": "physics fit from a generic start (no source knowledge)",
}


def _new_node_table(rows, counts, targets, kinds):
    """Markdown table: tau and MAPE per target for every method and label count."""
    head = "| labels | method | " + " | ".join(f"{t} τ | {t} MAPE %" for t in targets) + " |\n"
    head += "|---|---|" + "---|---|" * len(targets) + "\n"
    line = lambda n, key, label: (f"| {n} | {label} | " + " | ".join(
        f"{rows[key][t]['kendall_tau']:.3f} | {rows[key][t]['mape_pct']:.1f}" for t in targets) + " |\n")
    out = head
    for key in ("source_zero_shot", "tech_transfer_zero_shot", "tech_scratch_zero_shot"):
        if key in rows:
            out += line(0, key, KIND_LABELS[key])
    for n in counts:
        for k in kinds:
            if f"{k}_{n}" in rows:
                out += line(n, f"{k}_{n}", KIND_LABELS[k])
    return out


class _TechTransfer:
    """Physics transfer rows of the new-node study (cimnas_jax.surrogate.tech_transfer).

    Start: the source node's technology file (its calibrated coefficients and GLB area table) with
    the new node's *description* only (node nm, cell type / area / bits, absent components) - never
    the new node's calibrated coefficients, which generate the labels. "Scratch" in the same family
    starts from calibrate.INIT (fitted to no node) instead. Each fit sees only the n pool labels;
    its fitted technology is written to <out>/tech_transfer_<n>.json for inspection.
    """

    def __init__(self, sp, src_man, technology, g, y, test, out_dir):
        import numpy as np
        from cimnas_jax.hw import load_technology
        from cimnas_jax.surrogate import tech_transfer as TT
        self.TT, self.sp, self.g, self.y, self.test, self.out_dir = TT, sp, g, y, test, out_dir
        self.source_technology = src_man["labels"]["hardware"].get("technology") or sp.technology
        desc = TT.node_description(load_technology(technology))
        self.start = TT.start_technology(load_technology(self.source_technology), desc)
        self.generic = TT.generic_technology(desc)
        self.cfg = TT.TransferConfig(adam_steps=FLAGS.tt_steps, lbfgs_steps=FLAGS.tt_lbfgs_steps, seed=FLAGS.seed)
        self.layers_test, self.hw_test = TT.designs(sp, g[test])
        self.description = {k: (list(v) if isinstance(v, tuple) else v) for k, v in desc.items()}
        self.fits = {}
        self._np = np

    def _score(self, tech):
        import jax
        np = self._np
        from cimnas_jax.surrogate import fidelity
        p = np.asarray(jax.jit(self.TT.predict_logs)(tech, self.layers_test, self.hw_test))
        return {t: {k: round(val, 4) for k, val in fidelity(np.exp(self.y[self.test, i]), np.exp(p[:, i])).items()
                    if k in ("mape_pct", "kendall_tau", "spearman", "top10_recall")}
                for i, t in enumerate(("energy_j", "latency_s", "area_mm2"))}

    def zero_shot(self):
        return {"tech_transfer_zero_shot": self._score(self.start), "tech_scratch_zero_shot": self._score(self.generic)}

    def fit(self, sel, n):
        from cimnas_jax.fileio import atomic_write_json
        from cimnas_jax.hw.tech import technology_to_dict
        layers, hw = self.TT.designs(self.sp, self.g[sel])
        rows = {}
        for kind, tech0 in (("tech_transfer", self.start), ("tech_scratch", self.generic)):
            t0 = time.time()
            tech, info = self.TT.fit_technology(tech0, layers, hw, self.y[sel], cfg=self.cfg)
            rows[f"{kind}_{n}"] = self._score(tech)
            self.fits[f"{kind}_{n}"] = {"noise": info["noise"], "cv_mse": info.get("cv_mse"),
                                        "seconds": round(time.time() - t0, 1)}
            if kind == "tech_transfer":
                atomic_write_json(self.out_dir / f"tech_transfer_{n}.json", technology_to_dict(
                    tech.replace(version=f"transfer-from-{self.source_technology}-{n}-labels"),
                    {"fitted": info["names"], "noise": info["noise"], "n_labels": n}))
        return rows

    def provenance(self):
        return {"source_technology": tech_provenance(self.source_technology),
                "new_node_description_used": self.description,
                "free_coefficients": list(self.TT.free_names(self.start)),
                "config": self.cfg.__dict__, "fits": self.fits}


def _ridge_loo(z, y, z_test):
    """Ridge regression of y [n, T] on z [n, D] with the penalty chosen per target by exact
    leave-one-out error (SVD); returns predictions for z_test [m, D]."""
    import numpy as np
    alphas = 10.0 ** np.arange(-3, 6, 0.5)
    mu, sd = z.mean(0), z.std(0) + 1e-6
    zs, zt = (z - mu) / sd, (z_test - mu) / sd
    ym = y.mean(0)
    yc = y - ym
    n = len(y)
    U, S, Vt = np.linalg.svd(zs, full_matrices=False)
    out = np.zeros((len(z_test), y.shape[1]))
    for j in range(y.shape[1]):
        best, best_a = np.inf, alphas[0]
        uty = U.T @ yc[:, j]
        for a in alphas:
            f = S ** 2 / (S ** 2 + a)
            fitted = U @ (f * uty)
            hdiag = np.sum(U ** 2 * f, 1) + 1.0 / n
            loo = np.mean(((yc[:, j] - fitted) / np.maximum(1 - hdiag, 1e-6)) ** 2) if n > 1 else 0.0
            if loo < best:
                best, best_a = loo, a
        coef = Vt.T @ (S / (S ** 2 + best_a) * uty)
        out[:, j] = zt @ coef + ym[j]
    return out


def _plot_new_node(out_dir, counts, rows, targets, kinds=KINDS):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(targets), figsize=(4 * len(targets), 7))
    for j, t in enumerate(targets):
        for r, metric in enumerate(("kendall_tau", "mape_pct")):
            ax = axes[r, j]
            for kind, st in (("finetune", "o-"), ("scratch", "s--"), ("offset_only", "^:"),
                             ("head_finetune", "D-"), ("ridge_scratch", "x--"), ("finetune_then_head", "v-"),
                             ("tech_transfer", "*-"), ("tech_scratch", "+--")):
                if kind not in kinds:
                    continue
                ax.plot(counts, [rows[f"{kind}_{n}"][t][metric] for n in counts], st, label=kind)
            ax.axhline(rows["source_zero_shot"][t][metric], color="gray", lw=1, label="zero-shot")
            ax.set_xscale("log"); ax.set_xlabel("new-node labels"); ax.set_title(f"{t}: {metric}")
            if metric == "mape_pct":
                ax.set_yscale("log")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "new_node.png", dpi=90)
    plt.close(fig)


def need_labels(n_train: int, n_val: int, n_test: int, flag: str, batch: int = 256, epochs: int = 2) -> None:
    """Refuse (one line, before training) a label set too small to fit and score an ensemble: fewer
    than 8 training, 1 validation or 3 test designs (the test metrics need 3), or a schedule of a
    single optimisation step (one batch, one epoch: optax's cosine decay would get 0 steps)."""
    if n_train < 8 or n_val < 1 or n_test < 3:
        C.fail(f"{flag}: too few labels: {n_train} training / {n_val} validation / {n_test} test designs "
               "(valid); need >= 8, >= 1 and >= 3: give more labels")
    if max(n_train // max(min(batch, n_train), 1), 1) * epochs < 2:
        C.fail(f"--{'acc_' if flag == '--accuracy_labels' else ''}epochs={epochs} with {n_train} training designs "
               f"(one batch) is a single optimisation step; use >= 2 epochs")


def check_flags(v: dict) -> None:
    """Validate flag values (name -> value) before any work; FlagError names the flag and what is allowed."""
    from cimnas_jax.hw import technology_names
    from cimnas_jax.space import space_names
    C.choice(v, "mode", MODES)
    C.choice(v, "space", space_names())
    if v["technology"] and v["technology"] not in technology_names() and not Path(v["technology"]).is_file():
        raise C.FlagError(f"--technology={v['technology']!r} is not allowed; use one of {technology_names()} "
                          "or a technology JSON file")
    if v["out"]:
        C.out_folder(v, "out")
    C.integer(v, "n_labels", 30)
    C.seed(v, "label_seed")
    C.existing(v, "labels_dir", "dir")
    for p in v["accuracy_labels"]:
        if not Path(p).exists():
            raise C.FlagError(f"--accuracy_labels={p}: no such file or folder (JSONL labels of label-accuracy)")
    C.choice(v, "variant", VARIANTS)
    C.integer(v, "members", 1)
    C.int_list(v["hidden"], "hidden")
    C.choice(v, "acc_features", ACC_FEATURES)
    C.int_list(v["acc_hidden"], "acc_hidden", allow_empty=True)
    C.integer(v, "epochs", 1)
    C.integer(v, "acc_epochs", 1)
    C.number(v, "lr", 0.0, lo_open=True)
    C.integer(v, "batch", 1)
    C.integer(v, "patience", 1)
    C.number(v, "max_minutes", 0.0, lo_open=True)
    C.seed(v)
    C.existing(v, "hw_from", "dir")
    if v["hw_from"] and not v["accuracy_labels"]:
        raise C.FlagError("--hw_from needs --accuracy_labels (it retrains only the accuracy ensemble)")
    if v["mode"] == "new_node":
        if not v["source"]:
            raise C.FlagError("--mode=new_node needs --source=<set directory>")
        C.existing(v, "source", "dir")
        C.int_list(v["counts"], "counts")
    C.integer(v, "n_test", 3)
    C.integer(v, "ft_steps", 1)
    C.number(v, "ft_lr", 0.0, lo_open=True)
    C.integer(v, "tt_steps", 1)
    C.integer(v, "tt_lbfgs_steps", 0)


def main(argv):
    if len(argv) > 1:
        C.fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    from absl import logging
    logging.set_verbosity(logging.WARNING)       # orbax logs every save at INFO
    sys.stdout.reconfigure(line_buffering=True)
    C.check_or_fail(check_flags, C.flag_values(NAMES))
    if FLAGS.mode == "ship":
        return ship_mode(ROOT)
    from cimnas_jax.space import get_space
    sp = get_space(FLAGS.space)
    technology = FLAGS.technology or sp.technology
    root = ROOT
    from cimnas_jax.surrogate.io import default_set_path
    out_dir = Path(FLAGS.out) if FLAGS.out else default_set_path(sp, technology)
    (train_mode if FLAGS.mode == "train" else new_node_mode)(sp, root, out_dir, technology)

