"""The main job: co-design network, quantization and CIM accelerator, then re-verify and report.

  python experiments/cimnas.py --space=mbv2_rram --population=256 --generations=60 --out_dir=runs/main

1. search   GA minimising EDAP / accuracy (CIMNAS's objective) under chip-capacity and area
            constraints; hardware from the embedded analytic CIM model (or its surrogate),
            accuracy from the shipped accuracy surrogate; generations in lax.scan, checkpointed.
2. finalists the best distinct feasible designs, plus the CIMNAS baseline design.
3. verify   hardware recomputed by the analytic model; accuracy MEASURED on held-out test
            images with the shipped quantization-aware supernet (BN re-estimated per subnet),
            optionally after QAT fine-tuning (--finetune_steps); surrogate errors reported.
4. report   report.md (tables), finalists.csv, results.json, convergence.png, finalists.png.

Killed?  Rerun with --resume: the search continues from its last checkpoint.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cimnas_jax.fileio import atomic_write, atomic_write_json  # noqa: E402
from cimnas_jax.pipeline import ACCURACY_SOURCES, HW_SOURCES  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("space", "mbv2_rram", "search space (python -m cimnas_jax.space --describe)")
flags.DEFINE_integer("population", 256, "GA population (mu = lambda)")
flags.DEFINE_integer("generations", 60, "GA generations")
flags.DEFINE_integer("chunk", 10, "generations per lax.scan chunk (progress line + checkpoint)")
flags.DEFINE_integer("seed", 0, "PRNG seed")
flags.DEFINE_string("hw_source", "analytic", f"hardware scores during the search: one of {HW_SOURCES}")
flags.DEFINE_string("accuracy_source", "surrogate", f"accuracy during the search: one of {ACCURACY_SOURCES} "
                    "('constant' = hardware-only search)")
flags.DEFINE_string("surrogate_dir", "", "surrogate set folder ('' = shipped cimnas_jax/assets/<space>/<technology>)")
flags.DEFINE_float("area_limit_mm2", 800.0, "chip area limit, mm^2 (CIMNAS: 8 cm^2); 0 = off")
flags.DEFINE_float("accuracy_floor", 0.0, "minimum predicted accuracy (fraction); 0 = off")
flags.DEFINE_integer("finalists", 5, "designs re-verified")
flags.DEFINE_bool("measure_accuracy", True, "measure finalists' accuracy with the supernet")
flags.DEFINE_string("supernet_dir", "", "supernet folder ('' = shipped cimnas_jax/assets/supernet_fmnist)")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX folder (default: the Debian package's)")
flags.DEFINE_integer("test_images", 2000, "test images per accuracy measurement (0 = all 10 000)")
flags.DEFINE_integer("finetune_steps", 0, "QAT fine-tuning steps for the best finalist and the baseline")
flags.DEFINE_string("out_dir", "runs/main", "output folder")
flags.DEFINE_bool("resume", False, "continue the search from out_dir/checkpoints")


def check_flags():
    def bad(msg):
        raise app.UsageError(msg)
    from cimnas_jax.space import space_names
    if F.space not in space_names():
        bad(f"--space={F.space!r}; allowed: {', '.join(space_names())}")
    if F.hw_source not in HW_SOURCES:
        bad(f"--hw_source={F.hw_source!r}; allowed: {', '.join(HW_SOURCES)}")
    if F.accuracy_source not in ACCURACY_SOURCES:
        bad(f"--accuracy_source={F.accuracy_source!r}; allowed: {', '.join(ACCURACY_SOURCES)}")
    for name, lo in (("population", 4), ("generations", 1), ("chunk", 1), ("finalists", 1)):
        if getattr(F, name) < lo:
            bad(f"--{name}={getattr(F, name)} must be an integer >= {lo}")
    if F.area_limit_mm2 < 0:
        bad(f"--area_limit_mm2={F.area_limit_mm2} must be > 0 (mm^2) or 0 = off")
    if not 0 <= F.accuracy_floor < 1:
        bad(f"--accuracy_floor={F.accuracy_floor} must be in (0, 1) or 0 = off")
    if F.test_images < 0 or F.finetune_steps < 0:
        bad("--test_images and --finetune_steps must be >= 0")


def main(argv):
    del argv
    check_flags()
    logging.set_verbosity(logging.WARNING)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cimnas_jax import pipeline as pl
    from cimnas_jax.search import GA, Search
    from cimnas_jax.search.objectives import Constraints, Objective
    from cimnas_jax.space import get_space

    out = Path(F.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sp = get_space(F.space)
    t_start = time.perf_counter()

    surrogate = None
    if "surrogate" in (F.hw_source, F.accuracy_source):
        from cimnas_jax.surrogate import load_surrogates
        surrogate = load_surrogates(sp.name, F.surrogate_dir or None)
        if F.accuracy_source == "surrogate" and not surrogate.has_accuracy:
            raise app.UsageError(f"the surrogate set for {sp.name} has no accuracy model "
                                 "(no supernet for this space): pass --accuracy_source=constant")
    fitness = pl.make_fitness(sp, F.hw_source, F.accuracy_source, surrogate)
    cons = Constraints(capacity=True, area_limit_mm2=F.area_limit_mm2 or None,
                       accuracy_floor=F.accuracy_floor or None)
    objective = Objective.single("edap_per_accuracy", cons)

    # ---------------------------------------------------------------- 1. search
    ckpt = out / "checkpoints"
    if not F.resume and ckpt.is_dir() and any(ckpt.iterdir()):
        raise app.UsageError(f"--out_dir={out} already holds a search ({ckpt}); pass --resume to "
                             "continue it, or choose a new --out_dir (or delete that folder)")
    print(f"[1/4] search: GA on {sp.name} ({sp.n_genes} genes), population {F.population}, "
          f"{F.generations} generations, objective EDAP/accuracy, hardware {F.hw_source}, "
          f"accuracy {F.accuracy_source}, area limit {F.area_limit_mm2:g} mm^2, "
          f"device {jax.default_backend()}", flush=True)
    algo = GA(sp, F.population)
    config = dict(space=sp.name, hw_source=F.hw_source, accuracy_source=F.accuracy_source,
                  area_limit_mm2=F.area_limit_mm2, accuracy_floor=F.accuracy_floor)
    search = Search(algo, fitness, objective, config=config)
    stamps = []   # (wall time, generation) at each chunk's end; the steady rate skips the first chunk

    def log(line):
        if line.startswith("gen"):
            stamps.append((time.perf_counter(), int(line.split()[1])))
        print("  " + line, flush=True)
    t0 = time.perf_counter()
    state, history = search.run(F.seed, F.generations, F.chunk, checkpoint_dir=str(out / "checkpoints"),
                                resume=F.resume, log=log)
    search_s = time.perf_counter() - t0
    steady = None
    if len(stamps) >= 2 and stamps[-1][0] > stamps[0][0]:
        steady = (stamps[-1][1] - stamps[0][1]) * algo.num_offspring / (stamps[-1][0] - stamps[0][0])
    st = jax.device_get(state.algo)

    # ---------------------------------------------------------------- 2. finalists
    fin = pl.select_finalists(sp, st.population, st.violation, st.fitness, F.finalists)
    if len(fin) == 0:
        print("no feasible design found: every candidate broke a constraint or failed to evaluate",
              file=sys.stderr)
    base = pl.baseline_genome(sp)
    genomes = np.concatenate([base[None], fin], 0)
    names = ["baseline"] + [f"found_{i + 1}" for i in range(len(fin))]
    print(f"[2/4] finalists: {len(fin)} distinct feasible designs + the reference design "
          f"({sp.reference_doc})", flush=True)

    # ---------------------------------------------------------------- 3. verify
    print("[3/4] verify: hardware by the analytic CIM model"
          + (", accuracy measured on test images with the supernet" if F.measure_accuracy else ""), flush=True)
    pred = jax.device_get(jax.jit(fitness)(jnp.asarray(genomes)))
    truth = pl.hardware_truth(sp, genomes)
    hashes = sp.hash_hex(genomes)
    rows = []
    for i, (name, tr) in enumerate(zip(names, truth)):
        rows.append(dict(design=name, design_hash=hashes[i], **tr,
                         predicted_energy_j=float(pred["energy_j"][i]),
                         predicted_latency_s=float(pred["latency_s"][i]),
                         predicted_area_mm2=float(pred["area_mm2"][i]),
                         predicted_accuracy=float(pred["accuracy"][i]) if F.accuracy_source == "surrogate" else None,
                         genome=[int(x) for x in genomes[i]]))
    acc_note = "not measured"
    if F.measure_accuracy:
        acc_note = measure_accuracy(sp, genomes, rows)
    base_row = rows[0]
    for r in rows:
        r["edap_reduction_vs_baseline_x"] = (base_row["edap_j_s_mm2"] / r["edap_j_s_mm2"]
                                             if r["valid"] and base_row["valid"] else None)
        acc = best_accuracy(r)
        r["edap_per_accuracy"] = r["edap_j_s_mm2"] / acc if acc else None

    # ---------------------------------------------------------------- 4. report
    wall = time.perf_counter() - t_start
    write_outputs(out, sp, rows, history, dict(
        config=dict(config, population=F.population, generations=F.generations, seed=F.seed,
                    finalists=F.finalists, test_images=F.test_images, finetune_steps=F.finetune_steps),
        search_seconds=search_s, wall_seconds=wall, evaluations=int(F.generations * algo.num_offspring),
        candidates_per_second=F.generations * algo.num_offspring / search_s,
        steady_candidates_per_second=steady, accuracy_note=acc_note))
    print(f"[4/4] report: {out / 'report.md'}  (total {wall:.0f} s)", flush=True)
    print((out / "report.md").read_text())


def best_accuracy(row):
    """Measured accuracy where there is one, else the surrogate's prediction (or None)."""
    m = row.get("measured_accuracy")
    return m if m is not None else row.get("predicted_accuracy")


def measure_accuracy(sp, genomes, rows) -> str:
    """Fill measured_accuracy (and fine-tuned accuracy) in rows; returns a one-line note."""
    import numpy as np
    try:
        from cimnas_jax.data import load_dataset
        from cimnas_jax.nets.evaluate import evaluator_for
        from cimnas_jax.nets.io import load_supernet, val_split_size
        from cimnas_jax.nets.train import finetune_subnet
    except ImportError as e:  # pragma: no cover - the supernet package is part of the project
        return f"not measured ({e})"
    try:
        arch_all = {k: np.asarray(v) for k, v in sp.architecture(genomes).items()}
    except NotImplementedError:
        return f"not measured: no supernet exists for space {sp.name}"
    from cimnas_jax.data import DatasetMissingError
    model, params, cfg, manifest = load_supernet(F.supernet_dir or None)
    try:
        ds = load_dataset("fashion_mnist", F.data_dir, val_split_size(manifest), cfg.resolution)
    except DatasetMissingError as e:
        print(f"  accuracy not measured: {e}", file=sys.stderr)
        return f"not measured ({e})"
    ev = evaluator_for(model, params, ds, "test", F.test_images)
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        arch = {k: v[i] for k, v in arch_all.items()}
        r["measured_accuracy"] = ev.accuracy(arch)["accuracy"]
        if r.get("predicted_accuracy") is not None:
            r["accuracy_surrogate_error"] = r["predicted_accuracy"] - r["measured_accuracy"]
    note = (f"measured on {ev.n_eval} Fashion-MNIST test images with the shipped supernet "
            f"({time.perf_counter() - t0:.0f} s for {len(rows)} subnets)")
    if F.finetune_steps:
        best = 1 + int(np.argmin([r["edap_j_s_mm2"] / r["measured_accuracy"] if r["valid"] else np.inf
                                  for r in rows[1:]])) if len(rows) > 1 else None
        for i in [0] + ([best] if best else []):
            arch = {k: v[i] for k, v in arch_all.items()}
            print(f"  fine-tuning {rows[i]['design']} for {F.finetune_steps} steps", flush=True)
            ft = finetune_subnet(model, params, ds, arch, F.finetune_steps)
            ev.params = ft
            rows[i]["finetuned_accuracy"] = ev.accuracy(arch)["accuracy"]
            ev.params = params
        note += f"; baseline and best design fine-tuned for {F.finetune_steps} QAT steps"
    return note


def write_outputs(out, sp, rows, history, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cimnas_jax import pipeline as pl

    hw_names = [g.name for g in sp.genes if g.group.startswith("hardware")]
    for i, r in enumerate(rows):
        r["hardware"] = {n: sp.genes[sp.index[n]].choices[r["genome"][sp.index[n]]] for n in hw_names}
    atomic_write_json(out / "results.json", dict(meta, units=UNITS, designs=rows, history=history))

    cols = ["design", "design_hash", "valid", "energy_j", "latency_s", "area_mm2", "edap_j_s_mm2",
            "edap_reduction_vs_baseline_x", "tops_per_w", "tops_per_mm2", "predicted_accuracy",
            "measured_accuracy", "finetuned_accuracy", "predicted_energy_j", "predicted_latency_s",
            "predicted_area_mm2"] + hw_names
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([{**r["hardware"], **r}.get(c, "") for c in cols])
    atomic_write(out / "finalists.csv", buf.getvalue())

    def save(fig, ax, title, name):
        ax.set_title(f"{sp.name}: {title}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy([h["generation"] for h in history], [h["best"][0] for h in history])
    ax.set_xlabel("generation")
    ax.set_ylabel("best EDAP / accuracy  [J·s·mm² / fraction]")
    save(fig, ax, "best feasible design so far", "convergence.png")
    # finalists: accuracy vs EDAP (or EDAP alone when accuracy was neither predicted nor measured)
    fig, ax = plt.subplots(figsize=(6, 4))
    accs = [best_accuracy(r) for r in rows]
    if all(a is not None for a in accs):
        for r, acc in zip(rows, accs):
            ax.scatter(r["edap_j_s_mm2"], acc, marker="*" if r["design"] == "baseline" else "o", s=90)
            ax.annotate(r["design"], (r["edap_j_s_mm2"], acc), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_ylabel("accuracy  [fraction]  ("
                      + ("measured" if rows[0].get("measured_accuracy") is not None else "predicted") + ")")
    else:
        ax.barh([r["design"] for r in rows], [r["edap_j_s_mm2"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("EDAP  [J·s·mm²]  (analytic CIM model)")
    save(fig, ax, "re-verified finalists vs reference design", "finalists.png")

    f = pl.fmt
    lines = [f"# CIMNAS-JAX run: {sp.name}", "",
             f"- search: GA, population {meta['config']['population']}, {meta['config']['generations']} generations, "
             f"{meta['evaluations']} evaluations in {meta['search_seconds']:.1f} s including compilation"
             + (f" ({meta['steady_candidates_per_second']:.3g} candidates/s once compiled, checkpoint writes included)"
                if meta.get("steady_candidates_per_second") else "") + ", objective EDAP / accuracy; "
             f"hardware scores: {meta['config']['hw_source']}; accuracy: {meta['config']['accuracy_source']}",
             f"- hardware re-verified with the analytic CIM model (technology {sp.technology}); "
             f"accuracy {meta['accuracy_note']}",
             f"- reference design: {sp.reference_doc}",
             f"- total wall time {meta['wall_seconds']:.0f} s", "",
             "| design | valid | energy [J] | latency [s] | area [mm²] | EDAP [J·s·mm²] | EDAP reduction [×] "
             "| TOPS/W | TOPS/mm² | accuracy predicted | accuracy measured | accuracy fine-tuned |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        red = r.get("edap_reduction_vs_baseline_x")
        lines.append(
            f"| {r['design']} | {'yes' if r['valid'] else 'NO'} | {f(r['energy_j'])} | {f(r['latency_s'])} | "
            f"{f(r['area_mm2'], '.1f')} | {f(r['edap_j_s_mm2'])} | {f(red, '.1f') if red else 'n/a'} | "
            f"{f(r['tops_per_w'], '.3f')} | {f(r['tops_per_mm2'], '.4f')} | "
            f"{f(r.get('predicted_accuracy'), '.4f')} | {f(r.get('measured_accuracy'), '.4f')} | "
            f"{f(r.get('finetuned_accuracy'), '.4f')} |")
    hw_sur = meta["config"]["hw_source"] == "surrogate"
    acc_sur = any(r.get("accuracy_surrogate_error") is not None for r in rows)
    if hw_sur or acc_sur:
        lines += ["", "Surrogate error on these designs (predicted − verified; hardware relative, accuracy "
                  "absolute):", "", "| design | energy | latency | area | accuracy |", "|---|---|---|---|---|"]
        for r in rows:
            rel = (lambda k: f"{(r[f'predicted_{k}'] / r[k] - 1) * 100:+.2f} %") if hw_sur else (lambda k: "exact")
            ae = r.get("accuracy_surrogate_error")
            lines.append(f"| {r['design']} | {rel('energy_j')} | {rel('latency_s')} | {rel('area_mm2')} | "
                         f"{f(ae, '+.4f') if ae is not None else 'n/a'} |")
    lines += ["", "Hardware of each design:", "", "| design | " + " | ".join(hw_names) + " |",
              "|---|" + "---|" * len(hw_names)]
    for r in rows:
        lines.append(f"| {r['design']} | " + " | ".join(f"{r['hardware'][n]:g}" for n in hw_names) + " |")
    lines += ["", "Files: results.json (everything, with units), finalists.csv, convergence.png, finalists.png.", ""]
    atomic_write(out / "report.md", "\n".join(lines))


UNITS = dict(energy_j="J", latency_s="s", area_mm2="mm^2", edap_j_s_mm2="J*s*mm^2", tops_per_w="TOPS/W",
             tops_per_mm2="TOPS/mm^2", accuracy="fraction of test images classified correctly",
             edap_reduction_vs_baseline_x="baseline EDAP / design EDAP", cells_needed="crossbar cells",
             cells_available="crossbar cells", macs="multiply-accumulates per inference")


if __name__ == "__main__":
    app.run(main)
