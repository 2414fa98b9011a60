"""cimnas-jax train-supernet: train a quantization-aware elastic supernet (resumable): --family=mbv2 (MobileNetV2, the
mbv2_rram space; default) or --family=resnet (ResNet50-style, the resnet50_sram7nm space).

Phase 1 (--full_epochs): only the largest subnet at 8 bit.  Phase 2 (--epochs): sandwich rule
per step -- largest @ 8 bit (teacher), smallest @ 4 bit, 2 random subnets with random
per-layer bits -- with in-place distillation.  AdamW + warm-up/cosine over both phases.
Orbax checkpoints in --out_dir/ckpt every --ckpt_every steps and when --max_minutes runs out;
rerunning the same command continues where it stopped (same batches, same subnets).

  nice cimnas-jax train-supernet --out_dir=/tmp/supernet \
      --export_dir=cimnas_jax/assets/supernet_fmnist
  # the shipped ResNet one: see cimnas_jax/assets/supernet_resnet_fmnist/MANIFEST.json
  nice python experiments/train_supernet.py --family=resnet --width_mult=0.125 --resolution=28 \
      --stem_stride=2 --time_budget_minutes=90 --out_dir=/tmp/rn --export_dir=/tmp/rn_export
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import flags

from cimnas_jax.cli import common as C

F = flags.FLAGS
NAMES = ('jax_cache_dir', 'dataset', 'data_dir', 'out_dir', 'export_dir', 'family', 'width_mult', 'resolution', 'stem_stride', 'batch_size', 'full_epochs', 'epochs', 'n_random', 'lr', 'weight_decay', 'kd_weight', 'n_train', 'n_val', 'seed', 'log_every', 'eval_every', 'n_val_eval', 'ckpt_every', 'init_from', 'final_val', 'n_test_report', 'n_calib', 'max_minutes', 'time_budget_minutes', 'full_time_frac')


def define_flags():
    flags.DEFINE_string("jax_cache_dir", "/tmp/cimnas_jax_cache", "persistent compilation cache ('' = off)")
    flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist | npz | folder")
    flags.DEFINE_string("data_dir", None, "IDX folder (fashion_mnist), .npz file or image folder")
    flags.DEFINE_string("out_dir", "/tmp/cimnas_supernet", "checkpoints + log (resumable)")
    flags.DEFINE_string("export_dir", None, "if set, write params.msgpack + MANIFEST.json here at the end")
    flags.DEFINE_string("family", "mbv2", "network family: mbv2 (MobileNetV2, mbv2_rram genes) "
                      "or resnet (ResNet50-style bottlenecks, resnet50_sram7nm genes)")
    flags.DEFINE_float("width_mult", None, "channel width multiplier (1.0 = full size; default 0.35 for mbv2, "
                       "0.125 for resnet)")
    flags.DEFINE_integer("resolution", 32, "input resolution (Fashion-MNIST 28x28 is zero-padded)")
    flags.DEFINE_integer("stem_stride", 2, "first-conv stride (0 = auto: 2 if resolution >= 128 else 1; resnet "
                         "at >= 128 px always uses the 7x7 s2 conv + max-pool)")
    flags.DEFINE_integer("batch_size", 128, "images per step (every subnet of a step sees the same batch)")
    flags.DEFINE_float("full_epochs", 1.0, "phase 1: epochs of largest-only training")
    flags.DEFINE_float("epochs", 2.0, "phase 2: epochs of sandwich training")
    flags.DEFINE_integer("n_random", 2, "random subnets per sandwich step")
    flags.DEFINE_float("lr", 3e-3, "peak learning rate")
    flags.DEFINE_float("weight_decay", 5e-5, "AdamW weight decay")
    flags.DEFINE_float("kd_weight", 0.5, "distillation weight for non-teacher subnets")
    flags.DEFINE_integer("n_train", 0, "use only the first n training images (0 = all)")
    flags.DEFINE_integer("n_val", 5000, "validation images split off the training set (fixed seed)")
    flags.DEFINE_integer("seed", 0, "init / batch order / subnet sampling seed")
    flags.DEFINE_integer("log_every", 20, "steps between progress lines")
    flags.DEFINE_integer("eval_every", 200, "steps between validation checks (0 = only at the end)")
    flags.DEFINE_integer("n_val_eval", 1000, "validation images per check")
    flags.DEFINE_integer("ckpt_every", 100, "steps between checkpoints")
    flags.DEFINE_string("init_from", None, "start from the params of another run: its --out_dir (latest "
                        "orbax checkpoint) or an export folder (params.msgpack); optimizer starts fresh")
    flags.DEFINE_bool("final_val", True, "validate largest/smallest at the end (one more compile)")
    flags.DEFINE_integer("n_test_report", 10000, "test images for the export's reference subnets (0 = skip)")
    flags.DEFINE_integer("n_calib", 1024, "calibration images (BN re-estimation) for the export report")
    flags.DEFINE_float("max_minutes", 0.0, "stop (after checkpointing) after this many minutes; 0 = no limit")
    flags.DEFINE_float("time_budget_minutes", 0.0, "train for this many minutes of wall time instead of "
                       "--full_epochs/--epochs: the learning-rate schedule and the phase switch follow the "
                       "elapsed fraction of the budget (compiles included), so the run ends annealed on time; "
                       "0 = epoch-based")
    flags.DEFINE_float("full_time_frac", 0.4, "with --time_budget_minutes: fraction of the budget spent "
                       "in phase 1 (largest only); the rest is sandwich training")


def _state_to_tree(state):
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def _load_init(src, state, tx):
    """Params of another run (orbax ckpt in src/ckpt) or of an export folder (params.msgpack)."""
    import jax
    import orbax.checkpoint as ocp
    src = Path(src)
    if (src / "params.msgpack").exists():
        from cimnas_jax.nets.io import load_supernet
        return load_supernet(src)[1]
    mngr = ocp.CheckpointManager(str((src / "ckpt").resolve()))
    if mngr.latest_step() is None:
        raise ValueError(f"--init_from={src}: neither params.msgpack nor checkpoints in {src}/ckpt")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_to_tree(state))
    return mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract))["params"]


def check_flags(v: dict) -> None:
    """Validate flag values (name -> value) before any work; FlagError names the flag and what is allowed."""
    from cimnas_jax.cli.finetune import check_dataset
    from cimnas_jax.nets.family import FAMILIES
    check_dataset(v)
    C.required(v, "out_dir", "the checkpoint folder")
    C.out_folder(v, "out_dir")
    if v["export_dir"]:
        C.out_folder(v, "export_dir")
    C.choice(v, "family", tuple(FAMILIES))
    if v["width_mult"] is not None:
        C.number(v, "width_mult", 0.0, 8.0, lo_open=True)
    C.integer(v, "resolution", 8, 1024)
    C.integer(v, "stem_stride", 0, 4, note=" (0 = auto)")
    C.integer(v, "batch_size", 1)
    C.number(v, "full_epochs", 0.0)
    C.number(v, "epochs", 0.0)
    C.integer(v, "n_random", 0)
    C.number(v, "lr", 0.0, lo_open=True)
    C.number(v, "weight_decay", 0.0)
    C.number(v, "kd_weight", 0.0)
    C.integer(v, "n_train", 0, note=" (0 = all)")
    C.integer(v, "n_val", 1)
    C.seed(v)
    C.integer(v, "log_every", 1)
    C.integer(v, "eval_every", 0, note=" (0 = only at the end)")
    C.integer(v, "n_val_eval", 1)
    C.integer(v, "ckpt_every", 1)
    C.existing(v, "init_from", "dir")
    C.integer(v, "n_test_report", 0, note=" (0 = skip)")
    C.integer(v, "n_calib", 1)
    C.number(v, "max_minutes", 0.0, note=" (0 = no limit)")
    C.number(v, "time_budget_minutes", 0.0, note=" (0 = epoch-based)")
    C.number(v, "full_time_frac", 0.0, 1.0)
    if v["time_budget_minutes"] == 0 and v["full_epochs"] + v["epochs"] <= 0:
        raise C.FlagError(f"--full_epochs={v['full_epochs']} + --epochs={v['epochs']} gives no training steps; "
                          "give a positive sum, or --time_budget_minutes")


def main(argv):
    if len(argv) > 1:
        C.fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    C.check_or_fail(check_flags, C.flag_values(NAMES))
    import jax
    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp

    from cimnas_jax.data import batches, load_dataset, preprocess
    from cimnas_jax.fileio import atomic_write_json
    from cimnas_jax.nets.evaluate import SubnetEvaluator
    from cimnas_jax.nets.family import get_family
    from cimnas_jax.nets.io import enable_compile_cache, save_supernet
    from cimnas_jax.nets.train import (fixed_archs, init_state, lr_at, make_budget_optimizer,
                                       make_optimizer, make_train_step, sandwich_archs,
                                       set_learning_rate)
    enable_compile_cache(F.jax_cache_dir)
    t_start = time.time()
    out = Path(F.out_dir)
    try:
        ds = load_dataset(F.dataset, F.data_dir, F.n_val, F.resolution)
    except (OSError, ValueError) as e:
        C.fail(f"--dataset={F.dataset} --data_dir={F.data_dir}: {str(e).splitlines()[0]}")
    x_tr, y_tr = ds.x_train, ds.y_train
    if F.n_train:
        x_tr, y_tr = x_tr[:F.n_train], y_tr[:F.n_train]
    fam = get_family(F.family)
    cfg = fam.config_cls(width_mult=fam.default_width_mult if F.width_mult is None else F.width_mult,
                         resolution=F.resolution, in_channels=ds.image_shape[-1], num_classes=ds.num_classes,
                         stem_stride=F.stem_stride or None)
    spe = len(x_tr) // F.batch_size
    budget_s = 60.0 * F.time_budget_minutes
    if spe < 1:
        C.fail(f"--batch_size={F.batch_size} must be <= the {len(x_tr)} training images")
    if budget_s:
        n_full, total = 0, 2**31 - 1  # phases and end set by the clock
    else:
        n_full, n_sand = int(round(F.full_epochs * spe)), int(round(F.epochs * spe))
        total = n_full + n_sand
    if total <= 0:
        C.fail(f"--full_epochs={F.full_epochs} + --epochs={F.epochs} gives no training steps ({spe} per epoch)")
    model = fam.model_cls(cfg)
    tx = make_budget_optimizer(F.lr, F.weight_decay) if budget_s else make_optimizer(total, F.lr, F.weight_decay)
    state = init_state(fam.init_params(cfg, F.seed), tx)

    out.mkdir(parents=True, exist_ok=True)
    mngr = ocp.CheckpointManager(str((out / "ckpt").resolve()),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
    run_info = dict(cfg=cfg.to_dict(), batch_size=F.batch_size, full_epochs=F.full_epochs,
                    epochs=F.epochs, lr=F.lr, weight_decay=F.weight_decay, kd_weight=F.kd_weight,
                    n_random=F.n_random, seed=F.seed, n_train=len(x_tr), n_val=F.n_val, dataset=ds.name,
                    init_from=F.init_from)
    if fam.name != "mbv2":  # mbv2 run records stay as they were (resumable)
        run_info["family"] = fam.name
    if budget_s:
        run_info.update(time_budget_minutes=F.time_budget_minutes, full_time_frac=F.full_time_frac)
        del run_info["full_epochs"], run_info["epochs"]
    info_path = out / "run.json"
    prev = json.loads(info_path.read_text()) if info_path.exists() else None
    elapsed_before = 0.0
    if mngr.latest_step() is not None:
        if prev and prev.get("run") != run_info:
            C.fail(f"--out_dir={out} holds a run with different settings {prev.get('run')}; "
                   "use another --out_dir")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_to_tree(state))
        tree = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract))
        state = state.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"])
        elapsed_before = float(prev.get("train_seconds", 0.0)) if prev else 0.0
        print(f"resumed from step {int(state.step)} of {'the time budget' if budget_s else total}", flush=True)
    elif F.init_from:
        try:
            state = state.replace(params=_load_init(F.init_from, state, tx))
        except ValueError as e:
            C.fail(str(e).splitlines()[0])
        print(f"initialised params from {F.init_from}", flush=True)

    def write_info(**extra):
        d = dict(run=run_info, train_seconds=elapsed_before + time.time() - t_start, **extra)
        atomic_write_json(info_path, d, indent=2)

    write_info(step=int(state.step), total_steps=total)
    step_fn = make_train_step(model, tx, F.kd_weight)
    rng_calib = np.random.default_rng(F.seed + 1)
    calib = preprocess(x_tr[rng_calib.choice(len(x_tr), 512, replace=False)], F.resolution)
    x_va = preprocess(ds.x_val[:F.n_val_eval], F.resolution)

    ev = SubnetEvaluator(model, state.params, calib, x_va, ds.y_val[:F.n_val_eval])

    def validate(params):
        ev.params = params  # same compiled function for every check
        return {name: ev.accuracy(a)["accuracy"] for name, a in
                (("largest8", fam.largest_arch(8)), ("smallest4", fam.smallest_arch(4)))}

    def save(step):
        if mngr.latest_step() == step:
            return
        mngr.save(step, args=ocp.args.StandardSave(_state_to_tree(state)), force=True)
        mngr.wait_until_finished()

    if budget_s:
        if prev and mngr.latest_step() is not None:
            n_full = int(prev.get("steps_full", 0))   # phase-1 steps of the runs resumed from
        print(f"config {cfg.to_json()}  steps/epoch {spe}  time budget {F.time_budget_minutes} min "
              f"({F.full_time_frac:.0%} largest-only)  train images {len(x_tr)}", flush=True)
    else:
        print(f"config {cfg.to_json()}  steps/epoch {spe}  phase1 {n_full}  phase2 {n_sand}  "
              f"train images {len(x_tr)}", flush=True)
    t_loop = time.time()

    def progress():  # fraction of the time budget used, earlier runs of this out_dir included
        return (elapsed_before + time.time() - t_loop) / budget_s

    s = int(state.step)
    t_log, n_img_log, n_sub_log, last_val = time.time(), 0, 0, None
    stopped = False
    while s < total:
        epoch, skip = divmod(s, spe)
        for bi, (xb, yb) in enumerate(batches(x_tr, y_tr, F.batch_size, F.seed, epoch)):
            if bi < skip:
                continue
            if budget_s:
                frac = progress()
                if frac >= 1.0:
                    total = s
                    break
                full = frac < F.full_time_frac
                if full:
                    n_full = s + 1
                state = set_learning_rate(state, lr_at(frac, F.lr))
            else:
                full = s < n_full
            archs = fixed_archs(fam.largest_arch(8)) if full else sandwich_archs(F.seed, s, F.n_random, fam)
            state, m = step_fn(state, jnp.asarray(preprocess(xb, F.resolution)), jnp.asarray(yb),
                               fam.to_device(archs))
            s += 1
            n_img_log += len(xb)
            n_sub_log += len(xb) * archs["depths"].shape[0]
            if s % F.log_every == 0 or s == total:
                loss = float(m["loss"])
                dt = time.time() - t_log
                print(f"step {s}/{'?' if budget_s else total} ep {s / spe:.2f} "
                      f"{'full' if s <= n_full else 'sandwich'} "
                      f"loss {loss:.4f} acc {np.round(np.asarray(m['acc']), 3).tolist()} "
                      f"{n_img_log / dt:.1f} img/s ({n_sub_log / dt:.1f} subnet-img/s)", flush=True)
                t_log, n_img_log, n_sub_log = time.time(), 0, 0
            if F.eval_every and s % F.eval_every == 0:
                last_val = validate(state.params)
                print(f"  val ({F.n_val_eval} img): {last_val}", flush=True)
                t_log, n_img_log, n_sub_log = time.time(), 0, 0
            if s % F.ckpt_every == 0:
                save(s)
                write_info(step=s, total_steps=total, last_val=last_val, steps_full=n_full)
            if F.max_minutes and time.time() - t_start > 60 * F.max_minutes:
                stopped = True
                break
            if s >= total:
                break
        if stopped or (budget_s and s >= total):
            break
    save(s)
    write_info(step=s, total_steps=total, last_val=last_val, steps_full=n_full)
    if s < total:
        print(f"stopped at step {s}/{total} (--max_minutes); rerun the same command to continue")
        return
    if F.final_val:
        last_val = validate(state.params)
        print(f"final val ({F.n_val_eval} img): {last_val}", flush=True)
    train_seconds = elapsed_before + time.time() - t_start
    write_info(step=s, total_steps=total, last_val=last_val, steps_full=n_full, done=True)
    if F.export_dir:
        cmd = "python " + " ".join(sys.argv)
        manifest = dict(command=cmd, run=run_info, steps=s, steps_largest_only=n_full,
                        epochs_largest_only=round(n_full / spe, 2), epochs_sandwich=round((s - n_full) / spe, 2),
                        train_seconds=round(train_seconds, 1),
                        final_val=last_val, n_val_eval=F.n_val_eval, jax=jax.__version__,
                        machine=f"{os.cpu_count()}-core host, {jax.default_backend()}: {jax.devices()[0].device_kind}")
        save_supernet(F.export_dir, state.params, cfg, manifest)
        print(f"exported to {F.export_dir}", flush=True)
        if F.n_test_report:
            manifest["test_report"] = reference_report(model, state.params, ds, F.n_test_report, F.n_calib)
            save_supernet(F.export_dir, state.params, cfg, manifest)
            print(json.dumps(manifest["test_report"], indent=1), flush=True)


def reference_report(model, params, ds, n_test, n_calib):
    """Test accuracy of the largest / smallest subnet at uniform 8, 6, 4 bits."""
    from cimnas_jax.nets.evaluate import evaluator_for
    from cimnas_jax.nets.family import get_family

    fam = get_family(getattr(model.cfg, "family", None))
    ev = evaluator_for(model, params, ds, "test", n_test, n_calib)
    rep = dict(split="test", n_images=min(n_test, len(ds.x_test)), n_calib=ev.n_calib)
    for name, fn in (("largest", fam.largest_arch), ("smallest", fam.smallest_arch)):
        for b in (8, 6, 4):
            r = ev.accuracy(fn(b))
            rep[f"{name}_{b}bit"] = r["accuracy"]
            rep[f"{name}_{b}bit_eval_seconds"] = round(r["seconds"], 2)
            print(f"  test {name} @{b} bit: {r['accuracy']:.4f} ({r['seconds']:.1f} s)", flush=True)
    return rep

