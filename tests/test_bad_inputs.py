"""Bad input gets a clear error before any work: every case names the flag (or field) and what is
allowed, in a line or two, with no traceback and nothing written.

In-process cases go through the same validation functions the CLIs call (fast); a few subprocess cases
per entry point check the whole path: exit status, the message, the output size, no traceback, no
files written.

Cases per entry point (``CASES_PER_ENTRY_POINT``, checked by test_the_table_covers_every_entry_point;
"before" = this file before issue 17's extension):

    entry point         before  now
    run                   64     83   (incl. refinement and active-learning flags)
    search                29     29
    label                  0     40   (18 flags, 20 genome files, 2 subprocess)
    label-accuracy         0     15
    finetune               0     34   (23 flags, 7 damaged supernet folders, wrong space, 3 subprocess)
    train-surrogates       0     37   (32 flags, 4 too-few-labels, 1 subprocess)
    train-supernet         0     32
    label-noise            0      1
    hw                     0     14
    space                  0      6
    calibrate              0      6   (incl. the reference data absent, as in a fresh clone)
    refine                 0     12   (plus those of tests/test_relax_cli.py)
    paper                  0     10
    unknown command        1      1
    total                 94    320
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}

# ----------------------------------------------------------------------------- cimnas-jax run (RunConfig)
RUN_CASES = [  # (field overrides, text the error must contain)
    (dict(space="mbv3"), "--space='mbv3'; allowed: mbv2_rram"),
    (dict(technology="gaas_5nm"), "--technology='gaas_5nm'; allowed: rram_32nm"),
    (dict(algorithm="pso"), "--algorithm='pso'; allowed: ga, nsga2, random"),
    (dict(hw_source="cimloop_live"), "--hw_source='cimloop_live'; allowed: analytic"),
    (dict(accuracy_source="apq"), "--accuracy_source='apq'; allowed: surrogate, constant"),
    (dict(verify_hw="spice"), "--verify_hw='spice'; allowed: auto, analytic, cimloop"),
    (dict(crossover="sbx"), "--crossover='sbx'; allowed: uniform"),
    (dict(mutation="pm"), "--mutation='pm'; allowed: sparse, dense"),
    (dict(rng_impl="philox"), "--rng_impl='philox'; allowed: threefry2x32"),
    (dict(finalist_rule="best"), "--finalist_rule='best'; allowed: distinct_hardware"),
    (dict(population=1), "--population=1 must be an integer >= 4"),
    (dict(population=-5), "--population=-5 must be an integer >= 4"),
    (dict(generations=0), "--generations=0 must be an integer >= 1"),
    (dict(chunk=0), "--chunk=0 must be an integer >= 1"),
    (dict(offspring=-1), "--offspring=-1 must be an integer >= 0"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(seed=2 ** 40), "--seed=1099511627776 must be an integer in [0, 2147483647]"),
    (dict(finalists=0), "--finalists=0 must be an integer >= 1"),
    (dict(archive_size=1), "--archive_size=1 must be an integer >= 2"),
    (dict(area_limit_mm2=float("nan")), "--area_limit_mm2=nan must be a finite number"),
    (dict(area_limit_mm2=float("inf")), "--area_limit_mm2=inf must be a finite number"),
    (dict(area_limit_mm2=-3.0), "--area_limit_mm2=-3.0 must be a number >= 0.0"),
    (dict(accuracy_floor=1.5), "--accuracy_floor=1.5 must be a number in [0.0, 0.9999]"),
    (dict(accuracy_floor=-0.1), "--accuracy_floor=-0.1 must be a number in [0.0, 0.9999]"),
    (dict(accuracy_floor=0.8, accuracy_source="constant"), "--accuracy_floor=0.8 needs a real accuracy source"),
    (dict(crossover_prob=1.2), "--crossover_prob=1.2 must be a number in [0.0, 1.0]"),
    (dict(crossover_prob=float("nan")), "--crossover_prob=nan must be a finite number"),
    (dict(mutation_rate=2.0), "--mutation_rate=2.0 must be a number in [0.0, 1.0]"),
    (dict(test_images=-5), "--test_images=-5 must be an integer >= 0"),
    (dict(finetune_steps=-1), "--finetune_steps=-1 must be an integer >= 0"),
    (dict(finetune_designs=-1), "--finetune_designs=-1 must be an integer >= 0"),
    (dict(refine_steps=-1), "--refine_steps=-1 must be an integer >= 0"),
    (dict(refine_candidates=0), "--refine_candidates=0 must be an integer >= 1"),
    (dict(refine_lr=0.0), "--refine_lr=0.0 must be a number >= 1e-09"),
    (dict(refine_tau_start=0.5, refine_tau_end=1.0), "--refine_tau_end=1 must be <= --refine_tau_start=0.5"),
    (dict(refine_steps=-20), "--refine_steps=-20 must be an integer >= 0"),
    (dict(refine_candidates=-3), "--refine_candidates=-3 must be an integer >= 1"),
    (dict(refine_lr=-0.1), "--refine_lr=-0.1 must be a number >= 1e-09"),
    (dict(refine_lr=float("nan")), "--refine_lr=nan must be a finite number"),
    (dict(refine_tau_end=0.0), "--refine_tau_end=0.0 must be a number >= 1e-06"),
    (dict(refine_tau_start=0.05), "--refine_tau_end=0.1 must be <= --refine_tau_start=0.05"),
    (dict(refine_steps=5, algorithm="nsga2", objective="energy,latency"),
     "--refine_steps=5: gradient refinement follows one scalar objective"),
    (dict(verify_tolerance=-0.1), "--verify_tolerance=-0.1 must be a number >= 0.0"),
    (dict(cimloop_timeout_s=0.0), "--cimloop_timeout_s=0.0 must be a number >= 1.0"),
    (dict(cimloop_workers=-2), "--cimloop_workers=-2 must be an integer >= 0"),
    (dict(cimloop_executor="ray"), "--cimloop_executor='ray'; allowed: local, dask"),
    (dict(dask_scheduler="tcp://x:8786"), "--dask_scheduler='tcp://x:8786' is used only with --cimloop_executor=dask"),
    (dict(active_rounds=-1), "--active_rounds=-1 must be an integer >= 0"),
    (dict(active_rounds=2), "--active_rounds=2 needs --hw_source=calibrated"),
    (dict(active_rounds=2, hw_source="surrogate"), "--active_rounds=2 needs --hw_source=calibrated"),
    (dict(active_rounds=2, hw_source="calibrated", stages="search,verify,report"), "--active_rounds=2 runs every stage"),
    (dict(active_rounds=1, hw_source="calibrated", active_fit_hidden="wide"), "--active_fit_hidden='wide' must be"),
    (dict(active_rounds=1, hw_source="calibrated", active_fit_folds=1), "--active_fit_folds=1 must be an integer >= 2"),
    (dict(active_rounds=1, hw_source="calibrated", active_fit_steps=0), "--active_fit_steps=0 must be an integer >= 1"),
    (dict(hw_correction="corr"), "--hw_correction='corr' is used only with --hw_source=calibrated"),
    (dict(hw_source="calibrated", hw_correction="/nonexistent/corr"), "--hw_correction=/nonexistent/corr: no hardware "
                                                                      "correction"),
    (dict(hw_source="calibrated", hw_correction=str(ROOT / "cimnas_jax" / "assets" / "hw_correction" / "sram_7nm")),
     "is for 'sram_7nm', the search evaluates 'rram_32nm'"),
    (dict(stages="search,report,verify"), "stages must be distinct and in pipeline order"),
    (dict(stages="search,deploy"), "--stages='search,deploy': allowed a comma-separated subset of"),
    (dict(stages=""), "--stages='': allowed a comma-separated subset of"),
    (dict(objective="energy*speed"), "--objective='energy*speed' with --algorithm=ga"),
    (dict(objective="edap", algorithm="nsga2"), "nsga2 needs 2-4 objectives"),
    (dict(objective="energy,latency", algorithm="ga"), "--objective='energy,latency' with --algorithm=ga"),
    (dict(objective="error,error", algorithm="nsga2"), "need 2-4 distinct terms"),
    (dict(objective="edap", coefficients="energy=1"), "--coefficients/--bounds are used only by --objective=priority"),
    (dict(objective="priority", coefficients="energy=1"), "needs fixed (lo, hi) bounds"),
    (dict(objective="priority", coefficients="energy"), "--coefficients: expected term=value pairs"),
    (dict(objective="priority", coefficients="speed=1", bounds="speed=0:1"), "priority term 'speed'"),
    (dict(objective="priority", coefficients="energy=1", bounds="energy=5"), "--bounds: expected term=lo:hi"),
    (dict(objective="priority", coefficients="energy=1", bounds="energy=5:1"), "need hi > lo"),
]


@pytest.mark.parametrize("over, msg", RUN_CASES, ids=[str(o) for o, _ in RUN_CASES])
def test_run_config_rejects(over, msg, tmp_path):
    from cimnas_jax.pipeline import ConfigError, RunConfig, check
    with pytest.raises(ConfigError) as e:
        check(RunConfig(measure_accuracy=False).replace(**over), tmp_path / "run")
    assert msg in str(e.value) and len(str(e.value).splitlines()) <= 2, str(e.value)
    assert not (tmp_path / "run").exists()                                  # nothing written


RUN_FILE_CASES = [  # (how to prepare, text)
    ("out_is_file", "is a file, not a folder"),
    ("resume_nothing", "holds no search checkpoint to continue"),
    ("stages_without_search", "holds no search output (stage_search.json)"),
    ("config_missing", "no such file"),
    ("config_not_json", "not valid JSON"),
    ("config_unknown_field", "unknown field(s) ['populaton']"),
    ("config_wrong_type", "field 'population' must be an integer"),
    ("config_py_without_get_config", "must define get_config()"),
    ("supernet_missing", "--supernet_dir="),
    ("active_rounds_exist", "already holds active-learning rounds [1]; pass --resume"),
    ("active_resume_nothing", "holds no active-learning round to continue"),
]


@pytest.mark.parametrize("case, msg", RUN_FILE_CASES)
def test_run_inputs_and_folders_rejected_before_work(case, msg, tmp_path):
    from cimnas_jax.pipeline import ConfigError, RunConfig, RunFolderError, check, load_config
    cfg, out, resume = RunConfig(measure_accuracy=False), tmp_path / "run", False
    if case == "out_is_file":
        out.write_text("x")
    elif case == "resume_nothing":
        resume = True
    elif case == "stages_without_search":
        cfg = cfg.replace(stages="verify,report")
    elif case.startswith("config"):
        p = tmp_path / ("c.py" if case.endswith("get_config") else "c.json")
        p.write_text({"config_missing": None, "config_not_json": "{pop", "config_unknown_field": '{"populaton": 3}',
                      "config_wrong_type": '{"population": "many"}',
                      "config_py_without_get_config": "x = 1\n"}[case] or "") if case != "config_missing" else None
        with pytest.raises(ConfigError) as e:
            load_config(tmp_path / "nope.json" if case == "config_missing" else p)
        assert msg in str(e.value)
        return
    elif case == "supernet_missing":
        cfg = RunConfig(supernet_dir=str(tmp_path / "no_supernet"))
    elif case.startswith("active"):
        cfg = cfg.replace(active_rounds=2, hw_source="calibrated")
        if case == "active_rounds_exist":
            (out / "round_1").mkdir(parents=True)
        else:
            resume = True
    with pytest.raises((ConfigError, RunFolderError)) as e:
        check(cfg, out, resume)
    assert msg in str(e.value) and len(str(e.value).splitlines()) <= 2, str(e.value)


# ----------------------------------------------------------------------------- cimnas-jax search
SEARCH_CASES = [
    ("space", "mbv3", "mbv2_rram"), ("algorithm", "pso", "nsga2"), ("fitness", "cimloop", "analytic"),
    ("accuracy", "apq", "constant"), ("crossover", "sbx", "group"), ("mutation", "pm", "dense"),
    ("rng_impl", "philox", "unsafe_rbg"), ("population", 1, ">= 2"), ("generations", 0, ">= 1"),
    ("chunk", 0, ">= 1"), ("archive_size", 0, ">= 2"), ("top", 0, ">= 1"), ("seed", -3, "[0, 2^31)"),
    ("seed", 2 ** 33, "[0, 2^31)"), ("offspring", -1, ">= 0"), ("mutation_rate", 1.5, "[0, 1]"),
    ("crossover_prob", -0.1, "[0, 1]"), ("accuracy_floor", 2.0, "(0, 1]"), ("area_limit_mm2", -5.0, "0 = off"),
    ("area_limit_mm2", float("nan"), "finite"), ("accuracy_value", 0.0, "(0, 1]"),
    ("accuracy_value", float("nan"), "finite"), ("objective", "energy*speed", "edap_per_accuracy"),
    ("output_dir", "", "required"),
]


@pytest.mark.parametrize("flag, value, allowed", SEARCH_CASES, ids=[f"{f}={v}" for f, v, _ in SEARCH_CASES])
def test_search_flags_rejected(flag, value, allowed):
    import cimnas_jax.cli.search as cli
    base = dict(space="mbv2_rram", algorithm="ga", objective="", coefficients="", bounds="", area_limit_mm2=800.0,
                accuracy_floor=0.0, capacity=True, fitness="analytic", accuracy="constant", accuracy_value=1.0,
                population=150, offspring=0, generations=100, chunk=10, seed=1, crossover="uniform",
                mutation="sparse", crossover_prob=0.9, mutation_rate=0.0, archive_size=256,
                rng_impl="threefry2x32", top=20, checkpoint_dir="", output_dir="/tmp/x", resume=False)
    with pytest.raises(cli.FlagError) as e:
        cli.check_flags({**base, flag: value})
    assert f"--{flag}" in str(e.value) and allowed in str(e.value), str(e.value)


def test_search_flag_combinations_rejected():
    import cimnas_jax.cli.search as cli
    base = dict(space="mbv2_rram", algorithm="ga", objective="", coefficients="", bounds="", area_limit_mm2=800.0,
                accuracy_floor=0.0, capacity=True, fitness="analytic", accuracy="constant", accuracy_value=1.0,
                population=150, offspring=0, generations=100, chunk=10, seed=1, crossover="uniform",
                mutation="sparse", crossover_prob=0.9, mutation_rate=0.0, archive_size=256,
                rng_impl="threefry2x32", top=20, checkpoint_dir="", output_dir="/tmp/x", resume=False)
    for over, msg in ((dict(accuracy="surrogate", fitness="linear"), "--accuracy=surrogate needs --fitness"),
                      (dict(accuracy_floor=0.8), "--accuracy_floor needs a real accuracy source"),
                      (dict(coefficients="energy=1"), "--coefficients/--bounds are used only by"),
                      (dict(resume=True), "--resume needs --checkpoint_dir"),
                      (dict(hw_correction="corr"), "--hw_correction='corr' is used only with --fitness=calibrated")):
        with pytest.raises(cli.FlagError, match=msg.replace("(", r"\(")):
            cli.check_flags({**base, **over})


# ----------------------------------------------------------------------------- whole path, one per entry point
def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "cimnas_jax", *args], capture_output=True, text=True,
                          timeout=180, env=ENV, cwd=cwd)


@pytest.mark.parametrize("args, msg", [
    (["run", "--population=1", "--out_dir=out"], "--population=1 must be an integer >= 4"),
    (["run", "--seed=1e20", "--out_dir=out"], "--seed=1e20"),
    (["search", "--algorithm=pso", "--output_dir=out"], "--algorithm='pso' is not allowed"),
    (["nonsense"], "unknown command 'nonsense'"),
])
def test_cli_error_is_short_and_writes_nothing(args, msg, tmp_path):
    r = _cli(args, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and msg in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
    assert not (tmp_path / "out").exists()


# ============================================================================= the other entry points
# Each table row: (flag overrides, text the one- or two-line error must contain). The in-process cases
# call the same check functions the commands' mains call before any work; the folder passed as the
# output is checked to be absent afterwards (nothing written).
def _rejects(check, v, msg, *absent):
    with pytest.raises(ValueError) as e:
        check(v)
    s = str(e.value)
    assert msg in s and len(s.splitlines()) <= 2 and "Traceback" not in s, s
    for p in absent:
        assert not Path(p).exists(), f"{p} was created"
    return s


def _special(v, tmp_path):
    """Values 'FILE' / 'MISSING' / 'DIR' become a plain file / an absent path / a folder in tmp_path."""
    out = {}
    for k, x in v.items():
        if x == "FILE":
            (tmp_path / "a_file").write_text("x")
            x = str(tmp_path / "a_file")
        elif x == "MISSING":
            x = str(tmp_path / "missing")
        elif x == "DIR":
            (tmp_path / "a_dir").mkdir(exist_ok=True)
            x = str(tmp_path / "a_dir")
        out[k] = x
    return out


# ----------------------------------------------------------------------------- cimnas-jax label
LABEL_CASES = [
    (dict(space="mbv3"), "--space='mbv3' is not allowed; use one of"),
    (dict(backend="spice"), "--backend='spice' is not allowed; use one of ('analytic'"),
    (dict(sampler="sobol"), "--sampler='sobol' is not allowed; use one of ('uniform'"),
    (dict(out_dir=""), "--out_dir is required"),
    (dict(out_dir="FILE"), "is a file, not a folder"),
    (dict(n=-1), "--n=-1 must be > 0"),
    (dict(n=0), "--n=0 must be > 0 (0 = all, only with --sampler=file)"),
    (dict(sampler="file"), "--sampler=file needs --genomes_file"),
    (dict(chunk_size=0), "--chunk_size=0 must be an integer >= 1"),
    (dict(workers=-1), "--workers=-1 must be >= 0"),
    (dict(timeout_s=-1.0), "--timeout_s=-1.0 must be > 0 seconds, or 0 = no limit"),
    (dict(timeout_s=float("nan")), "--timeout_s=nan must be > 0 seconds"),
    (dict(executor="ray"), "--executor='ray' is not allowed; use one of ('local', 'dask')"),
    (dict(executor="dask"), "--executor=dask runs layer evaluations: it needs --backend in"),
    (dict(dask_scheduler="tcp://x:8786"), "--dask_scheduler needs --executor=dask"),
    (dict(dask_retries=-1), "--dask_retries=-1 must be an integer >= 0"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(seed=2 ** 40), "--seed=1099511627776 must be an integer in [0, 2147483647]"),
]


@pytest.mark.parametrize("over, msg", LABEL_CASES, ids=[str(o) for o, _ in LABEL_CASES])
def test_label_flags_rejected(over, msg, tmp_path):
    import cimnas_jax.cli.label as cli
    out = tmp_path / "labels"
    base = dict(space="mbv2_rram", backend="analytic", n=10, sampler="uniform", genomes_file=None, seed=0,
                out_dir=str(out), chunk_size=32, workers=0, timeout_s=900.0, executor="local", dask_scheduler="",
                dask_retries=1)
    _rejects(cli.check_flags, _special({**base, **over}, tmp_path), msg, out)


N_GENES = 141  # mbv2_rram (checked in the test)
GENOME_FILE_CASES = [  # (file name, content (str / bytes / None = absent / 'DIR'), text of the error)
    ("missing.json", None, "does not exist"),
    ("folder.json", "DIR", "is a folder, not a file"),
    ("empty.json", "", "not valid JSON"),
    ("truncated.json", "[[0, 1, 2", "not valid JSON"),
    ("extra.json", "[[0]] [[1]]", "not valid JSON"),
    ("bad_line.jsonl", "[" + ",".join(["0"] * N_GENES) + "]\n{oops\n", "not valid JSON lines"),
    ("scalar.json", "5", "no genomes"),
    ("empty_list.json", "[]", "no genomes"),
    ("object.json", '{"x": 1}', "JSON object needs a 'genomes' list"),
    ("ints.json", "[1, 2, 3]", "row 0: expected a list of 141 gene indices"),
    ("ragged.json", "[[" + ",".join(["0"] * N_GENES) + "], [0, 0]]", "row 1: 2 genes; expected rows of 141"),
    ("short.json", "[[0, 0, 0]]", "row 0: 3 genes; expected rows of 141"),
    ("strings.json", '[["a"' + ', "b"' * (N_GENES - 1) + "]]", "gene value 'a' is not an integer index"),
    ("nan.json", "[[NaN" + ", 0" * (N_GENES - 1) + "]]", "gene value nan is not an integer index"),
    ("fraction.json", "[[0.5" + ", 0" * (N_GENES - 1) + "]]", "gene value 0.5 is not an integer index"),
    ("float.npy", "NPY_FLOAT", "genes must be integer indices"),
    ("corrupt.npy", b"\x93NUMPY garbage", "not a genomes file"),
    ("genomes.txt", "0 1 2", "extension must be .npy, .json, .jsonl or .csv"),
    ("range.json", "[[99" + ", 0" * (N_GENES - 1) + "]]", "gene"),
    ("csv_bad.csv", "genome\n[0, 1\n", "genome cell is not a JSON list"),
]


@pytest.mark.parametrize("name, content, msg", GENOME_FILE_CASES, ids=[c[0] for c in GENOME_FILE_CASES])
def test_label_genome_files_rejected(name, content, msg, tmp_path):
    """label --sampler=file: each bad genome file is one ValueError line (main turns it into `error:`),
    raised before the output folder exists (main reads the file before taking the folder's lock)."""
    import numpy as np
    from cimnas_jax.label import make_genomes
    from cimnas_jax.space import get_space
    sp = get_space("mbv2_rram")
    assert sp.n_genes == N_GENES
    p = tmp_path / name
    if content == "DIR":
        p.mkdir()
    elif content == "NPY_FLOAT":
        np.save(p, np.full((2, N_GENES), 0.5))
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    _rejects(lambda v: make_genomes(sp, "file", 0, 0, v["f"]), {"f": str(p)}, msg)


def test_label_reads_the_csv_that_search_writes(tmp_path):
    """The results.csv of the standalone search (genome as space-separated indices) is a genome file."""
    import jax
    import numpy as np
    from cimnas_jax.label import make_genomes
    from cimnas_jax.space import get_space
    sp = get_space("mbv2_rram")
    g = np.asarray(sp.sample(jax.random.key(0), 3))
    (tmp_path / "results.csv").write_text("rank,genome\n" + "".join(f"{i},{' '.join(map(str, r))}\n"
                                                                   for i, r in enumerate(g)))
    assert np.array_equal(make_genomes(sp, "file", 0, 0, str(tmp_path / "results.csv")), g)


# ----------------------------------------------------------------------------- finetune / label-accuracy
FINETUNE_CASES = [
    (dict(space="mbv3"), "--space='mbv3' is not allowed"),
    (dict(subnet="medium"), "--subnet='medium' is not allowed; use one of ('sample', 'largest', 'smallest')"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(seed=10 ** 20), "must be an integer in [0, 2147483647]"),
    (dict(index=-1), "--index=-1 must be an integer >= 0"),
    (dict(steps=-5), "--steps=-5 must be an integer >= 0 (0 = use --epochs)"),
    (dict(epochs=0.0), "--epochs=0.0 must be a number > 0.0"),
    (dict(epochs=float("nan")), "--epochs=nan must be a finite number > 0.0"),
    (dict(batch_size=0), "--batch_size=0 must be an integer >= 1"),
    (dict(batch_size=-8), "--batch_size=-8 must be an integer >= 1"),
    (dict(lr=float("nan")), "--lr=nan must be a finite number > 0.0"),
    (dict(lr=float("inf")), "--lr=inf must be a finite number > 0.0"),
    (dict(lr=0.0), "--lr=0.0 must be a number > 0.0"),
    (dict(lr=-1e-3), "--lr=-0.001 must be a number > 0.0"),
    (dict(n_calib=0), "--n_calib=0 must be an integer >= 1"),
    (dict(n_test=-1), "--n_test=-1 must be an integer >= 0 (0 = all)"),
    (dict(out_dir=""), "--out_dir is required"),
    (dict(out_dir="FILE"), "is a file, not a folder"),
    (dict(dataset="imagenet"), "--dataset='imagenet' is not allowed; use one of ('fashion_mnist', 'npz', 'folder')"),
    (dict(dataset="npz"), "--dataset=npz needs --data_dir"),
    (dict(dataset="npz", data_dir="MISSING"), "no such path"),
    (dict(supernet_dir="MISSING"), "not a supernet folder (lacks params.msgpack, MANIFEST.json"),
    (dict(supernet_dir="DIR"), "not a supernet folder"),
]


def _finetune_base(tmp_path):
    return dict(jax_cache_dir="", supernet_dir="", dataset="fashion_mnist", data_dir=None, space="mbv2_rram",
                subnet="sample", seed=0, index=0, epochs=1.0, steps=0, batch_size=128, lr=5e-4, n_calib=1024,
                n_test=0, out_dir=str(tmp_path / "ft"))


@pytest.mark.parametrize("over, msg", FINETUNE_CASES, ids=[str(o) for o, _ in FINETUNE_CASES])
def test_finetune_flags_rejected(over, msg, tmp_path):
    import cimnas_jax.cli.finetune as cli
    _rejects(cli.check_flags, _special({**_finetune_base(tmp_path), **over}, tmp_path), msg, tmp_path / "ft")


def test_finetune_defaults_pass(tmp_path):
    import cimnas_jax.cli.finetune as cli
    assert (cli.check_flags(_finetune_base(tmp_path)) / "params.msgpack").is_file()
    assert not (tmp_path / "ft").exists()


SUPERNET_DAMAGE = [  # (damage, text) for the supernet folder that finetune / label-accuracy / label-noise load
    ("no_params", "lacks params.msgpack"),
    ("no_manifest", "lacks MANIFEST.json"),
    ("truncated_manifest", "cannot load the supernet (JSONDecodeError"),
    ("corrupt_params", "cannot load the supernet"),
    ("truncated_params", "cannot load the supernet"),
    ("wrong_sizes", "does not match its MANIFEST config"),
    ("unknown_family", "cannot load the supernet"),
]


@pytest.mark.parametrize("damage, msg", SUPERNET_DAMAGE)
def test_damaged_supernet_folder_rejected(damage, msg, tmp_path):
    import json
    import shutil
    import cimnas_jax.cli.finetune as cli
    from cimnas_jax.nets.io import DEFAULT_SUPERNET_DIR
    d = tmp_path / "sn"
    shutil.copytree(DEFAULT_SUPERNET_DIR, d)
    man, par = d / "MANIFEST.json", d / "params.msgpack"
    if damage == "no_params":
        par.unlink()
    elif damage == "no_manifest":
        man.unlink()
    elif damage == "truncated_manifest":
        man.write_text(man.read_text()[:40])
    elif damage == "corrupt_params":
        par.write_bytes(b"\xc1" * 64)
    elif damage == "truncated_params":
        par.write_bytes(par.read_bytes()[:1000])
    elif damage == "wrong_sizes":
        m = json.loads(man.read_text())
        m["config"]["width_mult"] = 2 * m["config"]["width_mult"]
        man.write_text(json.dumps(m))
    elif damage == "unknown_family":
        m = json.loads(man.read_text())
        m["family"] = "vit"
        man.write_text(json.dumps(m))

    def check(v):
        sn = cli.check_flags(v)
        cli.load_checked_supernet(sn, v["space"])
    _rejects(check, {**_finetune_base(tmp_path), "supernet_dir": str(d)}, msg, tmp_path / "ft")


def test_supernet_of_another_space_rejected(tmp_path):
    import cimnas_jax.cli.finetune as cli
    from cimnas_jax.nets.io import DEFAULT_SUPERNET_DIR
    with pytest.raises(ValueError, match="supernet for space mbv2_rram, not for --space=resnet50_sram7nm"):
        cli.load_checked_supernet(DEFAULT_SUPERNET_DIR, "resnet50_sram7nm")


LABEL_ACCURACY_CASES = [
    (dict(n=-1), "--n=-1 must be an integer >= 1"),
    (dict(n=0), "--n=0 must be an integer >= 1"),
    (dict(n_images=-5), "--n_images=-5 must be an integer >= 0 (0 = all)"),
    (dict(n_calib=0), "--n_calib=0 must be an integer >= 1"),
    (dict(chunk=0), "--chunk=0 must be an integer >= 1"),
    (dict(sampler="lhs"), "--sampler='lhs' is not allowed; use one of ('uniform', 'mixed')"),
    (dict(split="holdout"), "--split='holdout' is not allowed; use one of ('val', 'test', 'train')"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(space="mbv3"), "--space='mbv3' is not allowed"),
    (dict(out_dir=""), "--out_dir is required"),
    (dict(out_dir="FILE"), "is a file, not a folder"),
    (dict(supernet_dir="MISSING"), "not a supernet folder"),
    (dict(dataset="cifar"), "--dataset='cifar' is not allowed"),
    (dict(dataset="folder"), "--dataset=folder needs --data_dir"),
]


@pytest.mark.parametrize("over, msg", LABEL_ACCURACY_CASES, ids=[str(o) for o, _ in LABEL_ACCURACY_CASES])
def test_label_accuracy_flags_rejected(over, msg, tmp_path):
    import cimnas_jax.cli.label_accuracy as cli
    base = dict(jax_cache_dir="", space="mbv2_rram", supernet_dir="", dataset="fashion_mnist", data_dir=None,
                out_dir=str(tmp_path / "acc"), n=200, seed=0, sampler="uniform", split="val", n_images=2000,
                n_calib=1024, chunk=10)
    _rejects(cli.check_flags, _special({**base, **over}, tmp_path), msg, tmp_path / "acc")


# ----------------------------------------------------------------------------- train-supernet
TRAIN_SUPERNET_CASES = [
    (dict(family="vit"), "--family='vit' is not allowed; use one of ('mbv2', 'resnet')"),
    (dict(width_mult=0.0), "--width_mult=0.0 must be a number in (0.0, 8.0]"),
    (dict(width_mult=float("nan")), "--width_mult=nan must be a finite number in (0.0, 8.0]"),
    (dict(resolution=2), "--resolution=2 must be an integer in [8, 1024]"),
    (dict(stem_stride=7), "--stem_stride=7 must be an integer in [0, 4] (0 = auto)"),
    (dict(batch_size=0), "--batch_size=0 must be an integer >= 1"),
    (dict(full_epochs=-1.0), "--full_epochs=-1.0 must be a number >= 0.0"),
    (dict(epochs=float("nan")), "--epochs=nan must be a finite number >= 0.0"),
    (dict(full_epochs=0.0, epochs=0.0), "gives no training steps"),
    (dict(n_random=-1), "--n_random=-1 must be an integer >= 0"),
    (dict(lr=0.0), "--lr=0.0 must be a number > 0.0"),
    (dict(lr=float("nan")), "--lr=nan must be a finite number > 0.0"),
    (dict(weight_decay=-1e-4), "--weight_decay=-0.0001 must be a number >= 0.0"),
    (dict(kd_weight=float("inf")), "--kd_weight=inf must be a finite number >= 0.0"),
    (dict(n_train=-1), "--n_train=-1 must be an integer >= 0 (0 = all)"),
    (dict(n_val=0), "--n_val=0 must be an integer >= 1"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(log_every=0), "--log_every=0 must be an integer >= 1"),
    (dict(eval_every=-1), "--eval_every=-1 must be an integer >= 0 (0 = only at the end)"),
    (dict(n_val_eval=0), "--n_val_eval=0 must be an integer >= 1"),
    (dict(ckpt_every=0), "--ckpt_every=0 must be an integer >= 1"),
    (dict(init_from="MISSING"), "--init_from="),
    (dict(n_test_report=-1), "--n_test_report=-1 must be an integer >= 0 (0 = skip)"),
    (dict(n_calib=0), "--n_calib=0 must be an integer >= 1"),
    (dict(max_minutes=-1.0), "--max_minutes=-1.0 must be a number >= 0.0 (0 = no limit)"),
    (dict(time_budget_minutes=-5.0), "--time_budget_minutes=-5.0 must be a number >= 0.0"),
    (dict(full_time_frac=1.5), "--full_time_frac=1.5 must be a number in [0.0, 1.0]"),
    (dict(dataset="folder"), "--dataset=folder needs --data_dir"),
    (dict(out_dir="FILE"), "is a file, not a folder"),
    (dict(out_dir=""), "--out_dir is required"),
    (dict(export_dir="FILE"), "--export_dir="),
]


@pytest.mark.parametrize("over, msg", TRAIN_SUPERNET_CASES, ids=[str(o) for o, _ in TRAIN_SUPERNET_CASES])
def test_train_supernet_flags_rejected(over, msg, tmp_path):
    import cimnas_jax.cli.train_supernet as cli
    base = dict(jax_cache_dir="", dataset="fashion_mnist", data_dir=None, out_dir=str(tmp_path / "sn"),
                export_dir=None, family="mbv2", width_mult=None, resolution=32, stem_stride=2, batch_size=128,
                full_epochs=1.0, epochs=2.0, n_random=2, lr=3e-3, weight_decay=5e-5, kd_weight=0.5, n_train=0,
                n_val=5000, seed=0, log_every=20, eval_every=200, n_val_eval=1000, ckpt_every=100, init_from=None,
                final_val=True, n_test_report=10000, n_calib=1024, max_minutes=0.0, time_budget_minutes=0.0,
                full_time_frac=0.4)
    assert set(base) == set(cli.NAMES)
    cli.check_flags(base)                                          # the defaults pass
    _rejects(cli.check_flags, _special({**base, **over}, tmp_path), msg, tmp_path / "sn")


# ----------------------------------------------------------------------------- train-surrogates
TRAIN_SURROGATES_CASES = [
    (dict(mode="fit"), "--mode='fit' is not allowed; use one of ('train', 'new_node', 'ship')"),
    (dict(space="mbv3"), "--space='mbv3' is not allowed"),
    (dict(technology="gaas_5nm"), "--technology='gaas_5nm' is not allowed; use one of"),
    (dict(n_labels=5), "--n_labels=5 must be an integer >= 30"),
    (dict(label_seed=-1), "--label_seed=-1 must be an integer in [0, 2147483647]"),
    (dict(labels_dir="MISSING"), "--labels_dir="),
    (dict(accuracy_labels=["MISSING"]), "no such file or folder"),
    (dict(variant="gp"), "--variant='gp' is not allowed; use one of ('mlp', 'physics', 'compare')"),
    (dict(members=0), "--members=0 must be an integer >= 1"),
    (dict(hidden="abc"), "--hidden='abc' must be comma-separated positive integers"),
    (dict(hidden="0"), "--hidden='0' must be comma-separated positive integers"),
    (dict(hidden="256,-1"), "--hidden='256,-1' must be comma-separated positive integers"),
    (dict(acc_features="pixels"), "--acc_features='pixels' is not allowed; use one of ('arch', 'arch_onehot', 'full')"),
    (dict(acc_hidden="x"), "--acc_hidden='x' must be comma-separated positive integers"),
    (dict(epochs=0), "--epochs=0 must be an integer >= 1"),
    (dict(acc_epochs=0), "--acc_epochs=0 must be an integer >= 1"),
    (dict(lr=float("nan")), "--lr=nan must be a finite number > 0.0"),
    (dict(batch=0), "--batch=0 must be an integer >= 1"),
    (dict(patience=0), "--patience=0 must be an integer >= 1"),
    (dict(max_minutes=0.0), "--max_minutes=0.0 must be a number > 0.0"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(hw_from="MISSING"), "--hw_from="),
    (dict(hw_from="DIR"), "--hw_from needs --accuracy_labels"),
    (dict(mode="new_node"), "--mode=new_node needs --source"),
    (dict(mode="new_node", source="MISSING"), "--source="),
    (dict(mode="new_node", source="DIR", counts="10,a"), "--counts='10,a' must be comma-separated positive"),
    (dict(n_test=0), "--n_test=0 must be an integer >= 3"),
    (dict(ft_steps=0), "--ft_steps=0 must be an integer >= 1"),
    (dict(ft_lr=0.0), "--ft_lr=0.0 must be a number > 0.0"),
    (dict(tt_steps=0), "--tt_steps=0 must be an integer >= 1"),
    (dict(tt_lbfgs_steps=-1), "--tt_lbfgs_steps=-1 must be an integer >= 0"),
    (dict(out="FILE"), "is a file, not a folder"),
]


@pytest.mark.parametrize("over, msg", TRAIN_SURROGATES_CASES, ids=[str(o) for o, _ in TRAIN_SURROGATES_CASES])
def test_train_surrogates_flags_rejected(over, msg, tmp_path):
    import cimnas_jax.cli.train_surrogates as cli
    base = dict(mode="train", space="mbv2_rram", technology=None, out=str(tmp_path / "set"), n_labels=60000,
                label_seed=0, labels_dir=None, accuracy_labels=[], variant="compare", members=4, hidden="256,256",
                acc_features="arch_onehot", acc_hidden="64", epochs=60, acc_epochs=400, lr=1e-3, batch=256,
                patience=10, max_minutes=25.0, seed=0, hw_from=None, source=None, counts="10,30,100,300",
                n_test=3000, ft_steps=400, ft_lr=3e-4, nn_transfer=True, tech_transfer=True, tt_steps=1000,
                tt_lbfgs_steps=200)
    assert set(base) == set(cli.NAMES)
    cli.check_flags(base)
    _rejects(cli.check_flags, _special({**base, **over}, tmp_path), msg, tmp_path / "set")


@pytest.mark.parametrize("counts, flag, msg", [
    ((100, 0, 12, 256, 60), "--n_labels", "--n_labels: too few labels: 100 training / 0 validation / 12 test"),
    ((300, 30, 2, 256, 60), "--labels_dir", "--labels_dir: too few labels"),
    ((3, 1, 3, 32, 400), "--accuracy_labels", "--accuracy_labels: too few labels: 3 training"),
    ((50, 5, 5, 256, 1), "--n_labels", "--epochs=1 with 50 training designs (one batch) is a single optimisation step"),
])
def test_train_surrogates_too_few_labels_is_one_line(counts, flag, msg, capsys):
    import cimnas_jax.cli.train_surrogates as cli
    n_train, n_val, n_test, batch, epochs = counts
    cli.need_labels(50, 5, 5, flag, batch, 2)                          # enough: passes
    with pytest.raises(SystemExit) as e:
        cli.need_labels(n_train, n_val, n_test, flag, batch, epochs)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------- hw, space, calibrate
HW_CASES = [  # (backend, jobs content (None = absent, 'DIR' = a folder), out ('' = the default path), text)
    ("spice", "REC", "", "--backend must be one of ('analytic', 'calibrated', 'cimloop'), got 'spice'"),
    ("analytic", "REC", "", "--technology must be one of ('rram_32nm', 'sram_7nm'), got 'gaas_5nm'"),
    ("analytic", "NOJOBS", "", "--jobs=IN.jsonl is required"),
    ("analytic", "REC", "NOOUT", "--out=OUT.jsonl is required"),
    ("analytic", None, "", "no such file"),
    ("analytic", "DIR", "", "no such file"),
    ("analytic", "", "", "no records (expected one JSON layer record per line)"),
    ("analytic", "\n\n", "", "no records"),
    ("analytic", '{"layer": {}}\n{not json\n', "", "line 2 is not valid JSON"),
    ("analytic", "[1, 2]\n", "", "line 1 is not a JSON object"),
    ("analytic", "REC", "OUTDIR", "is a folder; give a file path"),
    ("analytic", "REC", "SAME", "is the --jobs file"),
    ("analytic", b"\xff\xfe\x00garbage", "", "not readable as text"),
]


@pytest.mark.parametrize("backend, jobs, out, msg", HW_CASES, ids=[c[3][:40] for c in HW_CASES])
def test_hw_flags_and_jobs_rejected(backend, jobs, out, msg, tmp_path):
    from cimnas_jax.hw.__main__ import check_flags
    jp = tmp_path / "jobs.jsonl"
    if jobs == "REC":
        jp.write_text('{"layer": {"C": 3}}\n')
    elif jobs == "DIR":
        jp.mkdir()
    elif isinstance(jobs, bytes):
        jp.write_bytes(jobs)
    elif jobs not in (None, "NOJOBS"):
        jp.write_text(jobs)
    op = tmp_path / "out" / "res.jsonl"
    if out == "OUTDIR":
        op.mkdir(parents=True)
    tech = "gaas_5nm" if "gaas" in msg else ""
    args = (backend, "" if jobs == "NOJOBS" else str(jp),
            "" if out == "NOOUT" else str(jp) if out == "SAME" else str(op), tech)
    _rejects(lambda v: check_flags(*v), args, msg, *(() if out == "OUTDIR" else (tmp_path / "out",)))


SPACE_CASES = [
    (dict(space="mbv3"), "--space='mbv3' is unknown; allowed: mbv2_rram"),
    (dict(sample=-1), "--sample=-1 must be an integer in [0, 100000]"),
    (dict(sample=10 ** 9), "--sample=1000000000 must be an integer in [0, 100000]"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(describe=False, sample=0), "nothing to do: pass --describe and/or --sample=N"),
]


@pytest.mark.parametrize("over, msg", SPACE_CASES, ids=[str(o) for o, _ in SPACE_CASES])
def test_space_flags_rejected(over, msg):
    from cimnas_jax.space.__main__ import check_flags
    _rejects(check_flags, {**dict(space="mbv2_rram", describe=True, sample=0, seed=0), **over}, msg)


CALIBRATE_CASES = [
    (dict(tech="gaas_5nm"), "--tech='gaas_5nm' is not allowed; use one of ('rram_32nm', 'sram_7nm')"),
    (dict(steps=0), "--steps=0 must be an integer >= 1"),
    (dict(lbfgs_steps=-1), "--lbfgs_steps=-1 must be an integer >= 0"),
    (dict(out="DIR"), "is a folder; give a file path"),
    (dict(tech="NO_REFERENCE"), "needs the CiMLoop reference records"),
]


@pytest.mark.parametrize("over, msg", CALIBRATE_CASES, ids=[str(o) for o, _ in CALIBRATE_CASES])
def test_calibrate_flags_rejected(over, msg, tmp_path, monkeypatch):
    from cimnas_jax.hw import calibrate as cal
    if over.get("tech") == "NO_REFERENCE":      # what a fresh clone without ../shared sees
        monkeypatch.setitem(cal.REFERENCE, "rram_32nm", tmp_path / "no_shared" / "cimloop_reference")
        over = {}
    v = _special({**dict(tech="rram_32nm", steps=1500, lbfgs_steps=400, out=str(tmp_path / "t.json")), **over},
                 tmp_path)
    if "reference" not in msg and not cal.REFERENCE["rram_32nm"].exists() and "tech" not in over:
        pytest.skip("reference data absent: the reference check would answer first")
    _rejects(cal.check_flags, v, msg, tmp_path / "t.json")


# ----------------------------------------------------------------------------- refine, paper
REFINE_CASES = [  # (flag overrides, input JSON (None = a good one), text)
    (dict(seed=-1), None, "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(seed=2 ** 40), None, "must be an integer in [0, 2147483647]"),
    (dict(output="DIR"), None, "--output="),
    (dict(), "[1, 2]", "expected a results.json with a 'designs' list"),
    (dict(), '{"config": {"space": "mbv2_rram"}, "designs": []}', "holds no designs to refine"),
    (dict(), '{"config": {"space": "mbv2_rram"}, "designs": [{"genome": [0, 1]}]}', "must be a list of 141 choice"),
    (dict(), '{"config": {"space": "mbv2_rram"}, "designs": [{"genome": "abc"}]}', "must be a list of 141 choice"),
    (dict(), '{"config": {"space": "mbv2_rram"}, "designs": [{"genome": [' + ",".join(["99"] * 141) + "]}]}",
     "--input:"),
    (dict(objective="priority", coefficients="energy"), None, "--coefficients: expected term=value pairs"),
    (dict(objective="priority", coefficients="energy=1", bounds="energy=5"), None, "--bounds: expected term=lo:hi"),
    (dict(), '{"config": {"space": "mbv9"}, "designs": []}', "--space='mbv9' (from the input) is not allowed"),
]


@pytest.mark.parametrize("over, data, msg", REFINE_CASES, ids=[c[2][:40] for c in REFINE_CASES])
def test_refine_flags_and_inputs_rejected(over, data, msg, tmp_path):
    import json
    from cimnas_jax.relax import cli
    from cimnas_jax.space import get_space
    import jax
    p = tmp_path / "results.json"
    if data is None:
        g = get_space("mbv2_rram").sample(jax.random.key(0), 2)
        data = json.dumps({"config": {"space": "mbv2_rram"}, "designs": [{"genome": [int(x) for x in r]} for r in g]})
    p.write_text(data)
    base = dict(input=str(p), output=str(tmp_path / "out" / "refined.json"), space="", hw_source="",
                accuracy_source="", accuracy_value=-1.0, surrogate_dir="", objective="", coefficients="", bounds="",
                area_limit_mm2=-1.0, accuracy_floor=-1.0, capacity="", top=0, uniform=False, steps=10, candidates=2,
                lr=0.1, tau_start=1.0, tau_end=0.2, tau_schedule="exponential", hard=True, samples=1, init_peak=3.0,
                penalty=10.0, eval_every=5, seed=0)
    v = _special({**base, **over}, tmp_path)
    _rejects(lambda v: cli.resolve(v, cli.read_input(v["input"])), v, msg, tmp_path / "out")


PAPER_CASES = [
    (dict(experiment=None), "--experiment is required: one or more of mbv2_table"),
    (dict(experiment="nope"), "--experiment='nope': unknown ['nope']; allowed: mbv2_table"),
    (dict(experiment="pareto,tables"), "unknown ['tables']"),
    (dict(small=True, tiny=True), "--small and --tiny exclude each other"),
    (dict(seeds=-1), "--seeds=-1 must be an integer >= 0"),
    (dict(verify_hw="spice"), "--verify_hw='spice'; allowed: '' (the experiment's default), analytic, auto, cimloop"),
    (dict(out_dir="FILE"), "is a file, not a folder"),
    (dict(out_dir=""), "--out_dir is required"),
    (dict(collect="docs/results"), "--collect needs finished experiments in --out_dir="),
]


@pytest.mark.parametrize("over, msg", PAPER_CASES, ids=[str(o) for o, _ in PAPER_CASES])
def test_paper_flags_rejected(over, msg, tmp_path):
    from cimnas_jax.cli.paper import check_flags
    base = dict(experiment="pareto", small=False, tiny=True, out_dir=str(tmp_path / "paper"), seeds=0,
                verify_hw="", collect="")
    _rejects(check_flags, _special({**base, **over}, tmp_path), msg, tmp_path / "paper")


# ----------------------------------------------------------------------------- whole path, a few per entry point
# (argv after `python -m`, text of the error). Each runs in a fresh folder holding only `jobs.jsonl`
# (empty) and `bad.json` (a truncated genome file); afterwards that folder holds nothing else.
SUBPROCESS_CASES = [
    (["cimnas_jax", "label", "--sampler=file", "--genomes_file=bad.json", "--out_dir=out"], "--genomes_file=bad.json"),
    (["cimnas_jax", "label", "--n=-1", "--out_dir=out"], "--n=-1 must be > 0"),
    (["cimnas_jax", "label-accuracy", "--n=-1", "--out_dir=out"], "--n=-1 must be an integer >= 1"),
    (["cimnas_jax", "finetune", "--lr=nan", "--out_dir=out"], "--lr=nan must be a finite number > 0.0"),
    (["cimnas_jax", "finetune", "--subnet=medium", "--out_dir=out"], "--subnet='medium' is not allowed"),
    (["cimnas_jax", "train-surrogates", "--members=0", "--out=out"], "--members=0 must be an integer >= 1"),
    (["cimnas_jax", "train-supernet", "--batch_size=0", "--out_dir=out"], "--batch_size=0 must be an integer >= 1"),
    (["cimnas_jax", "label-noise", "--labels=out"], "--labels=out: no such folder"),
    (["cimnas_jax.hw", "--jobs=jobs.jsonl", "--out=out/r.jsonl"], "--jobs=jobs.jsonl: no records"),
    (["cimnas_jax.space", "--sample=-1"], "--sample=-1 must be an integer in [0, 100000]"),
    (["cimnas_jax.hw.calibrate", "--lbfgs_steps=-1", "--out=out/t.json"], "--lbfgs_steps=-1 must be an integer >= 0"),
    (["cimnas_jax.relax", "--input=out/results.json"], "--input='out/results.json': no such file"),
    (["cimnas_jax", "paper", "--experiment=nope", "--out_dir=out"], "--experiment='nope': unknown"),
    (["experiments/finetune.py", "--index=-1", "--out_dir=out"], "--index=-1 must be an integer >= 0"),
]


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    """Run every SUBPROCESS_CASES command, four at a time (each start imports jax: ~3 s of CPU)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        d = tmp_path_factory.mktemp(f"cli{i}")
        (d / "jobs.jsonl").write_text("")
        (d / "bad.json").write_text("[[0, 1")
        argv = SUBPROCESS_CASES[i][0]
        cmd = ([sys.executable, str(ROOT / argv[0])] if argv[0].endswith(".py") else [sys.executable, "-m", argv[0]])
        r = subprocess.run(cmd + argv[1:], capture_output=True, text=True, timeout=300, env=ENV, cwd=d)
        return r, sorted(os.listdir(d))
    with ThreadPoolExecutor(4) as ex:
        return list(ex.map(one, range(len(SUBPROCESS_CASES))))


@pytest.mark.parametrize("i", range(len(SUBPROCESS_CASES)), ids=[" ".join(c[0][:2]) for c in SUBPROCESS_CASES])
def test_entry_point_error_is_short_and_writes_nothing(i, subprocess_results):
    (r, left), msg = subprocess_results[i], SUBPROCESS_CASES[i][1]
    out = r.stdout + r.stderr
    assert r.returncode != 0 and msg in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2, out
    assert left == ["bad.json", "jobs.jsonl"], left                      # no output folder, no tmp files


# ----------------------------------------------------------------------------- the count
CASES_PER_ENTRY_POINT = {
    "run": len(RUN_CASES) + len(RUN_FILE_CASES) + 2,
    "search": len(SEARCH_CASES) + 4 + 1,
    "label": len(LABEL_CASES) + len(GENOME_FILE_CASES) + 2,
    "label-accuracy": len(LABEL_ACCURACY_CASES) + 1,
    "finetune": len(FINETUNE_CASES) + len(SUPERNET_DAMAGE) + 1 + 3,
    "train-surrogates": len(TRAIN_SURROGATES_CASES) + 4 + 1,
    "train-supernet": len(TRAIN_SUPERNET_CASES) + 1,
    "label-noise": 1,
    "hw": len(HW_CASES) + 1,
    "space": len(SPACE_CASES) + 1,
    "calibrate": len(CALIBRATE_CASES) + 1,
    "refine": len(REFINE_CASES) + 1,
    "paper": len(PAPER_CASES) + 1,
    "(unknown command)": 1,
}


def test_the_table_covers_every_entry_point():
    """>= 150 bad inputs over all entry points (the module docstring lists the counts)."""
    print("\n".join(f"{k:>18}: {v}" for k, v in CASES_PER_ENTRY_POINT.items()))
    from cimnas_jax.cli import COMMANDS
    assert set(COMMANDS) - {"label-noise"} <= set(CASES_PER_ENTRY_POINT)
    assert sum(CASES_PER_ENTRY_POINT.values()) >= 150
    assert min(CASES_PER_ENTRY_POINT[k] for k in COMMANDS if k != "label-noise") >= 5
