"""Active learning (``--active_rounds=N``): the ground truth corrects the model where the search goes.

Round r (1..N), in ``<out_dir>/round_<r>/`` (a complete main-job run folder of its own):

    search   --hw_source=calibrated with the current correction (round 1: --hw_correction or the
             shipped one; round r > 1: ``round_<r-1>/correction``)
    verify   the finalists and the baseline by the ground truth (--verify_hw: CiMLoop, or the analytic
             record backend standing in), their per-layer records in ``round_<r>/verify_labels/``
    retrain  ``hw.correction_io.retrain(technology, label_dirs=every round's verify_labels so far)``,
             saved to ``round_<r>/correction/`` (never into the package assets)
    summary  ``round_<r>/round.json``: the chosen design (the search's best, found_1) with its
             search-model, analytic and ground-truth EDAP and the model's errors on it, the best
             finalist by the ground truth, the retrained correction's id, hash and held-out metrics

``round.json`` is written last: a round without it is unfinished, and a rerun with ``--resume``
reuses every finished round (checking its configuration) and restarts at the first unfinished one
(its search continues from its checkpoints). ``<out_dir>/results.json`` and ``report.md`` give the
per-round table.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from cimnas_jax.fileio import atomic_write, atomic_write_json
from cimnas_jax.pipeline.results import clean

ROUND_FILE = "round.json"
# fields a finished round must share with the configuration that resumes it
ROUND_FIELDS_EXTRA = ("verify_hw", "active_fit_steps", "active_fit_members", "active_fit_hidden", "active_fit_folds")


def round_dir(out_dir, r: int) -> Path:
    return Path(out_dir) / f"round_{r}"


def existing_rounds(out_dir) -> list[int]:
    out = Path(out_dir)
    if not out.is_dir():
        return []
    rs = []
    for p in out.glob("round_*"):
        try:
            rs.append(int(p.name.split("_", 1)[1]))
        except ValueError:
            continue
    return sorted(rs)


def check_folder(cfg, out_dir, resume: bool) -> None:
    """Run-folder checks of an active-learning run (before any work)."""
    from cimnas_jax.pipeline import SEARCH_FIELDS, RunFolderError
    from cimnas_jax.pipeline.config import ConfigError, load_config
    out = Path(out_dir)
    have = existing_rounds(out)
    if have and not resume:
        raise RunFolderError(f"--out_dir={out} already holds active-learning rounds {have}; pass --resume to "
                             "continue at the first unfinished round, or choose a new --out_dir")
    if resume and not have:
        raise RunFolderError(f"--resume: {out} holds no active-learning round to continue; drop --resume to start")
    saved = out / "config.json"
    if resume and saved.is_file():
        try:
            old = load_config(saved)
        except ConfigError:
            return
        for k in SEARCH_FIELDS + ROUND_FIELDS_EXTRA:
            if k in ("generations",):
                continue
            if getattr(old, k) != getattr(cfg, k):
                raise RunFolderError(f"--resume: the active-learning run in {out} ran with {k}={getattr(old, k)!r}, "
                                     f"this configuration has {k}={getattr(cfg, k)!r}; resume with the same "
                                     "settings or start a new --out_dir")


def round_config(cfg, out_dir, r: int):
    """The main-job configuration of round ``r``: active learning off, the round's correction."""
    corr = cfg.hw_correction if r == 1 else str(round_dir(out_dir, r - 1) / "correction")
    return cfg.replace(active_rounds=0, hw_correction=corr)


def truth_backend(cfg):
    """The record backend of the rounds' verification: None (verify's own CiMLoop backend) when
    --verify_hw resolves to CiMLoop, else the analytic record backend standing in (its per-layer
    records go into verify_labels like CiMLoop's)."""
    from cimnas_jax.pipeline.verify import resolve_truth
    source, _ = resolve_truth(cfg)
    if source == "cimloop":
        return None
    from cimnas_jax.hw import get_backend
    return get_backend("analytic")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ratio_err(pred, truth):
    return (pred / truth - 1.0) if (pred is not None and truth) else None


def summarise_round(r: int, space, cfg_r, ver, info_used: dict, technology: str) -> dict:
    """Per-round figures from the round's Verification (rows: baseline first, then found_1..)."""
    from cimnas_jax.pipeline.verify import hardware_truth
    rows = ver.rows
    found = [x for x in rows if x["origin"] != "reference"]
    out = {"round": r, "search_model_correction": info_used, "ground_truth": ver.hw_truth,
           "ground_truth_why": ver.hw_truth_why, "n_designs_verified": len(rows)}
    if not found:
        out["chosen"] = None
        out["note"] = "the search found no feasible design"
        return out
    genomes = np.asarray([x["genome"] for x in rows], np.int32)
    analytic = hardware_truth(space, genomes, technology)
    per = []
    for x, a in zip(rows, analytic):
        d = {"design": x["design"], "design_hash": x["design_hash"], "valid": x["valid"],
             "search_model_edap_j_s_mm2": x.get("predicted_edap_j_s_mm2"),
             "analytic_edap_j_s_mm2": a["edap_j_s_mm2"], "truth_edap_j_s_mm2": x.get("edap_j_s_mm2"),
             "truth_energy_j": x.get("energy_j"), "truth_latency_s": x.get("latency_s"),
             "truth_area_mm2": x.get("area_mm2"),
             "truth_errors": [str(e)[:300] for e in (x.get("truth_errors") or [])][:3]}
        d["search_model_error_edap"] = _ratio_err(d["search_model_edap_j_s_mm2"], d["truth_edap_j_s_mm2"])
        d["analytic_error_edap"] = _ratio_err(d["analytic_edap_j_s_mm2"], d["truth_edap_j_s_mm2"])
        for m in ("energy", "latency", "area"):
            d[f"search_model_error_{m}"] = x.get(f"predicted_error_{m}")
            k = {"energy": "energy_j", "latency": "latency_s", "area": "area_mm2"}[m]
            d[f"analytic_error_{m}"] = _ratio_err(a[k], x.get(k))
        d["edap_reduction_vs_baseline_x"] = x.get("edap_reduction_vs_baseline_x")
        per.append(d)
    out["designs"] = per
    out["chosen"] = per[1]          # found_1: the search model's best design
    ok = [d for d in per[1:] if d["valid"] and d["truth_edap_j_s_mm2"]]
    out["best_by_truth"] = min(ok, key=lambda d: d["truth_edap_j_s_mm2"]) if ok else None
    out["baseline"] = per[0]
    return out


def retrain_round(cfg, out_dir, r: int, technology: str, log) -> dict:
    """Retrain the correction on the reference records + every finished round's verify_labels;
    save it to round_<r>/correction. Returns its info and held-out metrics."""
    from cimnas_jax.hw import correction as C
    from cimnas_jax.hw.correction_io import retrain, save_correction
    label_dirs = [round_dir(out_dir, k) / "verify_labels" for k in range(1, r + 1)]
    label_dirs = [d for d in label_dirs if (d / "designs.jsonl").is_file()]
    fit = C.FitConfig(hidden=cfg.active_hidden, members=cfg.active_fit_members, steps=cfg.active_fit_steps,
                      seed=cfg.seed)
    t0 = time.perf_counter()
    log(f"  retraining the {technology} correction on the reference records + {len(label_dirs)} round(s) of "
        f"ground-truth layer records ({cfg.active_fit_members} members, {cfg.active_fit_steps} steps, "
        f"{cfg.active_fit_folds}-fold CV)")
    corr, rep = retrain(technology, label_dirs, fit, cfg.active_fit_folds, log=lambda line: log("  " + line))
    seconds = time.perf_counter() - t0
    path = round_dir(out_dir, r) / "correction"
    cid = f"{technology}@{Path(out_dir).name}/round_{r}"
    save_correction(path, corr, {"id": cid, "what": f"active-learning round {r}: per layer log(ground truth / "
                                 "analytic) of energy, latency, area", "created_utc": time.strftime(
                                     "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
                                 **{k: v for k, v in rep.items() if k != "config"}, "config": rep["config"]})
    info = {"id": cid, "path": str(path), "params_sha256": _sha(path / "params.msgpack"),
            "n_train_rows": rep["n_train_rows"], "label_dirs": [str(d) for d in label_dirs],
            "data": rep["data"], "shrink": [float(x) for x in np.asarray(corr.shrink)],
            "held_out_layers": rep.get("held_out_layers"), "seconds": seconds}
    return info


def run_active(cfg, out_dir, resume: bool = False, log=print) -> dict:
    """Run (or resume) ``cfg.active_rounds`` rounds into ``out_dir``; returns {rounds, report}."""
    from cimnas_jax.fileio import FolderLock
    from cimnas_jax.pipeline import run as run_main
    from cimnas_jax.pipeline.config import save_config
    from cimnas_jax.pipeline.fitness import correction_info
    from cimnas_jax.space import get_space
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(cfg.space)
    technology = cfg.technology or space.technology
    started = time.perf_counter()
    rounds = []
    with FolderLock(out, "cimnas-jax run (active learning)"):
        save_config(cfg, out / "config.json")
        for r in range(1, cfg.active_rounds + 1):
            rd = round_dir(out, r)
            cfg_r = round_config(cfg, out, r)
            done = rd / ROUND_FILE
            if done.is_file():
                saved = json.loads(done.read_text())
                want = clean(cfg_r.to_dict())
                diff = [k for k in want if saved.get("config", {}).get(k) != want[k]]
                if diff:
                    from cimnas_jax.pipeline import RunFolderError
                    raise RunFolderError(f"--resume: {done} ran with {diff[0]}={saved['config'].get(diff[0])!r}, this "
                                         f"run's round {r} has {diff[0]}={want[diff[0]]!r}; start a new --out_dir")
                log(f"=== active learning round {r}/{cfg.active_rounds}: finished earlier ({done}), reused")
                rounds.append(saved["summary"])
                continue
            t0 = time.perf_counter()
            info_used = correction_info(technology, cfg_r.hw_correction)
            log(f"=== active learning round {r}/{cfg.active_rounds}: search with correction {info_used['id']} "
                f"(sha256 {info_used['params_sha256'][:12]})")
            ckpt = rd / "checkpoints"
            again = ckpt.is_dir() and any(ckpt.iterdir())
            res = run_main(cfg_r, rd, resume=again, log=log, truth_backend=truth_backend(cfg))
            summary = summarise_round(r, space, cfg_r, res["verification"], info_used, technology)
            summary["trained_correction"] = retrain_round(cfg, out, r, technology, log)
            prev = rounds[-1] if rounds else None
            if prev and prev.get("chosen") and summary.get("chosen"):
                a, b = prev["chosen"], summary["chosen"]
                summary["chosen_changed"] = a["design_hash"] != b["design_hash"]
                summary["truth_edap_vs_previous_round_x"] = (b["truth_edap_j_s_mm2"] / a["truth_edap_j_s_mm2"]
                                                             if a["truth_edap_j_s_mm2"] and b["truth_edap_j_s_mm2"]
                                                             else None)
            summary["seconds"] = time.perf_counter() - t0
            atomic_write_json(done, clean({"round": r, "config": cfg_r.to_dict(), "summary": summary}), indent=1,
                              allow_nan=False)
            rounds.append(summary)
            c = summary.get("chosen")
            if c:
                log(f"  round {r}: chosen {c['design_hash'][:12]} EDAP search model {c['search_model_edap_j_s_mm2']:.4g}, "
                    f"ground truth {_g(c['truth_edap_j_s_mm2'])} J*s*mm^2 (model error {_p(c['search_model_error_edap'])})")
        wall = time.perf_counter() - started
        report = write_report(out, cfg, space, rounds, wall)
    log(f"active learning: {report}")
    return {"rounds": rounds, "report": report}


def _g(x):
    return "n/a" if x is None else f"{x:.4g}"


def _p(x):
    return "n/a" if x is None else f"{100 * x:+.2f} %"


def round_table(rounds: list[dict]) -> str:
    """Markdown: per round the chosen design, its EDAP under each model, errors, correction metrics."""
    from cimnas_jax.report.tables import markdown_table
    rows = []
    for s in rounds:
        c = s.get("chosen") or {}
        tc = s.get("trained_correction") or {}
        ho = (tc.get("held_out_layers") or {})
        e_a = ((ho.get("analytic") or {}).get("energy") or {}).get("mape_pct")
        e_c = ((ho.get("calibrated") or {}).get("energy") or {}).get("mape_pct")
        best = s.get("best_by_truth") or {}
        rows.append({
            "round": s["round"], "search correction": s["search_model_correction"]["id"],
            "chosen (found_1)": c.get("design_hash", "none")[:12],
            "changed": {True: "yes", False: "no"}.get(s.get("chosen_changed"), "–"),
            "search-model EDAP": _g(c.get("search_model_edap_j_s_mm2")),
            "ground-truth EDAP": (_g(c.get("truth_edap_j_s_mm2")) if c.get("valid", True)
                                  else "failed (invalid under the ground truth)"),
            "search-model error": _p(c.get("search_model_error_edap")),
            "analytic error": _p(c.get("analytic_error_edap")),
            "truth reduction vs baseline": (f"{c['edap_reduction_vs_baseline_x']:.1f}×"
                                            if c.get("edap_reduction_vs_baseline_x") else "n/a"),
            "best by truth": (f"{best['design']} {best['design_hash'][:12]} {_g(best['truth_edap_j_s_mm2'])} "
                              f"({best['edap_reduction_vs_baseline_x']:.1f}×, model error "
                              f"{_p(best['search_model_error_edap'])})" if best else "none valid"),
            "retrained: rows": tc.get("n_train_rows"),
            "held-out energy MAPE analytic → calibrated": f"{_g(e_a)} → {_g(e_c)} %",
            "s": f"{s.get('seconds', 0):.0f}"})
    cols = list(rows[0]) if rows else []
    return "\n".join(markdown_table(cols, [[r[c] for c in cols] for r in rows]))


def write_report(out: Path, cfg, space, rounds: list[dict], wall: float) -> Path:
    truth = rounds[0]["ground_truth"] if rounds else "n/a"
    results = {"config": cfg.to_dict(), "active_learning": {
        "rounds": rounds, "ground_truth": truth, "ground_truth_why": rounds[0]["ground_truth_why"] if rounds else "",
        "units": {"edap": "J*s*mm^2 (energy x latency x chip area)", "errors": "model / ground truth - 1",
                  "mape_pct": "mean absolute percentage error over held-out reference layer records"},
        "round_folders": [str(round_dir(out, s["round"])) for s in rounds]}, "wall_seconds": wall}
    atomic_write_json(out / "results.json", clean(results), indent=1, allow_nan=False)
    lines = [f"# Active learning: {space.name}, {len(rounds)} round(s)", "",
             f"Each round searches with the analytic model + CiMLoop-trained correction (round 1: "
             f"{rounds[0]['search_model_correction']['id'] if rounds else 'n/a'}; later rounds: the previous round's "
             f"retrained correction), verifies the finalists and the baseline with **{truth}** "
             f"({rounds[0]['ground_truth_why'] if rounds else ''}), adds their layer records to the correction's "
             "training set and retrains it into `round_<r>/correction/`.", "",
             "EDAP in J·s·mm²; chosen = the search model's best design (found_1); errors = model / ground truth − 1; "
             "held-out energy MAPE: the retrained correction on the held-out reference layer records (analytic "
             "model → calibrated).", "", round_table(rounds), "",
             "Per-round reports: " + ", ".join(f"[round {s['round']}](round_{s['round']}/report.md)" for s in rounds),
             "", f"Wall time {wall:.0f} s (this invocation)."]
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
