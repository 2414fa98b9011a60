"""Corrupt label files: a bad line in the middle of a part file is skipped (counted, warned about, its
design labelled again), never the good lines after it; a truncated last line is cut off. Long jobs leave
no ``*.tmp.<pid>`` files behind, after a normal run or a handled error. And no script under experiments/
or benchmarks/ edits sys.path (they import the installed package)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}


def _line(i):
    return json.dumps({"index": i, "hash": f"h{i}", "valid": True, "layers": []}, sort_keys=True) + "\n"


def test_label_store_skips_a_corrupt_middle_line_and_cuts_a_torn_last_line(tmp_path):
    from cimnas_jax.label import LabelStore
    warnings = []
    store = LabelStore(str(tmp_path), warn=warnings.append)
    text = _line(0) + _line(1) + '{"index": 2, "hash": "h2", "val\n' + _line(3) + "not json at all\n" + _line(5)
    text += _line(6)[:25]                                       # killed mid-write: no newline
    Path(store.designs_path).write_text(text)
    done = store.load_done()
    assert done == {0: "h0", 1: "h1", 3: "h3", 5: "h5"}         # every good line, also after the bad ones
    assert store.skipped == {"corrupt_lines": [3, 5], "truncated_last_lines_cut": 1} and store.n_skipped == 3
    assert len(warnings) == 1 and "skipped 2 corrupt line(s) (line 3, 5)" in warnings[0], warnings
    assert "truncated last line" in warnings[0] and len(warnings[0].splitlines()) == 1
    assert Path(store.designs_path).read_text().endswith(_line(5))  # the torn tail is gone, nothing else
    store.append([json.loads(_line(2)), json.loads(_line(6))])      # the skipped designs, labelled again
    assert [d["index"] for d in store.read_designs()] == [0, 1, 2, 3, 5, 6]
    assert store.skipped["corrupt_lines"] == [3, 5] and len(warnings) == 1   # same skips: warned once
    store.export_csv()
    assert len((tmp_path / "designs.csv").read_text().splitlines()) == 1 + 6


@pytest.mark.parametrize("bad", ['{"index": "x", "hash": "h9"}', '{"hash": "h9"}', "[1, 2]", '{"index": 9}', "\x00\x01"])
def test_label_store_counts_each_kind_of_bad_record(bad, tmp_path):
    from cimnas_jax.label import LabelStore
    store = LabelStore(str(tmp_path), warn=lambda line: None)
    Path(store.designs_path).write_text(_line(0) + bad + "\n" + _line(1))
    assert store.load_done() == {0: "h0", 1: "h1"} and store.skipped["corrupt_lines"] == [2]


def test_label_accuracy_reader_skips_corrupt_lines(tmp_path):
    from cimnas_jax.cli.label_accuracy import read_labels
    rec = lambda h: json.dumps({"hash": h, "accuracy": 0.8, "genome": [0]}) + "\n"   # noqa: E731
    (tmp_path / "part-001.jsonl").write_text(rec("a") + "{garbage\n" + rec("b") + '{"hash": "c"}\n' + rec("d"))
    (tmp_path / "part-002.jsonl").write_text(rec("e") + rec("f")[:-1])              # no final newline: kept
    (tmp_path / "part-003.jsonl").write_text(rec("g") + rec("h")[:20])             # truncated last line
    warnings = []
    recs = read_labels(tmp_path, warn=warnings.append)
    assert [r["hash"] for r in recs] == ["a", "b", "d", "e", "f", "g"]
    assert recs.n_skipped == 3 and sorted(recs.skipped) == ["part-001.jsonl", "part-003.jsonl"]
    assert len(warnings) == 2 and "2 corrupt line(s) (line 2, 4)" in warnings[0], warnings
    # label-noise reads label folders through the same reader
    from cimnas_jax.cli.label_noise import read_labels as noise_read
    assert len(noise_read(tmp_path)) == 6


def test_atomic_write_leaves_no_tmp_file_when_the_write_fails(tmp_path):
    from cimnas_jax.fileio import atomic_write
    (tmp_path / "target").mkdir()                     # os.replace onto a folder fails after the tmp is written
    with pytest.raises(OSError):
        atomic_write(tmp_path / "target", "data")
    assert sorted(os.listdir(tmp_path)) == ["target"]


def _label(out, *extra):
    return subprocess.run([sys.executable, "-m", "cimnas_jax", "label", "--n=6", "--chunk_size=3",
                           f"--out_dir={out}", *extra], capture_output=True, text=True, timeout=600, env=ENV)


def test_label_resume_over_a_corrupt_line_and_no_tmp_files(tmp_path):
    out = tmp_path / "labels"
    tmp_files = lambda: sorted(str(p) for p in tmp_path.rglob("*.tmp.*"))   # noqa: E731
    r = _label(out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert tmp_files() == []                                                   # a normal run
    path = out / "designs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 6
    # damage line 2 (of 6) and cut the last line short, as a disk error and a kill would
    path.write_text("".join(lines[:1]) + '{"index": 1, "broken\n' + "".join(lines[2:5]) + lines[5][:30])
    r = _label(out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 corrupt line(s) (line 2)" in r.stderr and "truncated last line" in r.stderr, r.stderr
    good = [json.loads(x) for x in path.read_text().splitlines() if x.startswith('{"') and "broken" not in x]
    assert sorted(d["index"] for d in good) == list(range(6))                  # nothing lost, all six again
    assert [d["index"] for d in good[1:4]] == [2, 3, 4]                        # the lines after it were kept
    stats = json.loads((out / "stats.json").read_text())
    assert stats["skipped_lines"]["corrupt_lines"] == [2] and stats["run"]["n_written"] == 2
    assert "skipped on reading designs.jsonl" in (out / "summary.md").read_text()
    assert len((out / "designs.csv").read_text().splitlines()) == 1 + 6
    assert tmp_files() == []
    # a handled error (the folder holds another run): refused in one line, folder and files untouched
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"}
    r = _label(out, "--seed=5")
    assert r.returncode == 2 and "holds another run" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"} == before
    assert tmp_files() == []
    # a handled error into a fresh folder leaves no folder behind
    r = _label(tmp_path / "fresh", "--backend=cimloop", "--cimloop_models_dir=/nonexistent")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "fresh").exists() and tmp_files() == []


def test_no_sys_path_edits_in_experiments_or_benchmarks():
    """Scripts import the installed package (pip install .) instead of editing sys.path."""
    bad = [str(p.relative_to(ROOT)) for d in ("experiments", "benchmarks") for p in (ROOT / d).rglob("*.py")
           if "sys.path" in p.read_text()]
    assert bad == []
    assert len(list((ROOT / "experiments").glob("*.py"))) >= 10      # the check looked at the scripts
