"""Batch CLI: evaluate reference-format layer records.

    python -m cimnas_jax.hw --backend=analytic|calibrated|cimloop --jobs=IN.jsonl --out=OUT.jsonl [--technology=NAME]

Each input line is a record with layer, input_bits, weight_bits and hw; hw.technology_nm and hw.cell
name the technology (neither: rram_32nm; a pair no technology file has fails that record with an
error naming both fields) and hw.adc_bits the ADC resolution. Any result fields are ignored and
replaced. Output is written atomically (tmp file + os.replace).
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

from cimnas_jax.cli.common import FlagError, fail
from cimnas_jax.fileio import atomic_write

FLAGS = flags.FLAGS


def define_flags():
    """Define this command's flags (before parsing; see cimnas_jax.cli.run_command)."""
    flags.DEFINE_string("backend", "analytic", "evaluator backend: analytic, calibrated (analytic x the CiMLoop-trained "
                        "correction, assets/hw_correction/<technology>) or cimloop")
    flags.DEFINE_string("jobs", None, "input JSONL of reference-format layer records")
    flags.DEFINE_string("out", None, "output JSONL (written atomically)")
    flags.DEFINE_string("technology", "", "analytic: force a technology file (e.g. rram_32nm) whatever the records "
                        "say; default: the one each record's hw.technology_nm / hw.cell name")


RESULT_FIELDS = ("status", "error", "result", "ert_art_reused_from")


def check_flags(backend_name: str, jobs: str, out: str, technology: str = "") -> list:
    """Validate the flags and read the jobs file before any evaluation; returns the records (result
    fields dropped). Raises FlagError naming the flag and what is allowed."""
    from cimnas_jax.cli import common as C
    from cimnas_jax.hw import BACKENDS, technology_names
    if backend_name not in BACKENDS:
        raise FlagError(f"--backend must be one of {tuple(BACKENDS)}, got {backend_name!r}")
    if technology and backend_name in ("analytic", "calibrated") and technology not in technology_names():
        raise FlagError(f"--technology must be one of {tuple(technology_names())}, got {technology!r}")
    if not jobs:
        raise FlagError("--jobs=IN.jsonl is required (reference-format layer records, one per line)")
    if not out:
        raise FlagError("--out=OUT.jsonl is required (the evaluated records)")
    src = Path(jobs)
    if not src.is_file():
        raise FlagError(f"--jobs={jobs}: no such file")
    C.out_file({"out": out}, "out")
    if Path(out).resolve() == src.resolve():
        raise FlagError(f"--out={out} is the --jobs file; give another path")
    recs = []
    try:
        text = src.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise FlagError(f"--jobs={jobs}: not readable as text ({type(e).__name__})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:  # NaN / Infinity literals stay strings: the record is then rejected naming the field
            r = json.loads(line, parse_constant=str)
        except json.JSONDecodeError as e:
            raise FlagError(f"--jobs={jobs}: line {n} is not valid JSON ({e})") from None
        if not isinstance(r, dict):
            raise FlagError(f"--jobs={jobs}: line {n} is not a JSON object (a layer record)")
        recs.append({k: v for k, v in r.items() if k not in RESULT_FIELDS})
    if not recs:
        raise FlagError(f"--jobs={jobs}: no records (expected one JSON layer record per line)")
    return recs


def run(backend_name: str, jobs: str, out: str, technology: str = "") -> int:
    from cimnas_jax.hw import get_backend
    recs = check_flags(backend_name, jobs, out, technology)
    kw = {"technology": technology or None} if backend_name in ("analytic", "calibrated") else {}
    backend = get_backend(backend_name, **kw)
    res = backend.evaluate_records(recs)
    dst = Path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dst, "".join(json.dumps(r, allow_nan=False) + "\n" for r in res))  # never bare NaN/Infinity
    n_ok = sum(r.get("status") == "ok" for r in res)
    print(f"{backend_name}: {len(res)} records -> {dst} ({n_ok} ok, {len(res) - n_ok} error)")
    _report_rejected(res)
    return 0


def _report_rejected(res) -> None:
    """Name, on stderr, the records that failed because their input is bad (a field out of range, a
    technology_nm/cell pair no technology has), as opposed to a layer that has no valid mapping."""
    import sys
    bad = [r for r in res if r.get("status") == "error" and str(r.get("error", "")).startswith("record ")]
    if bad:
        print(f"warning: {len(bad)} record(s) rejected for bad input, e.g. {bad[0]['error']}", file=sys.stderr)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    from cimnas_jax.hw.records import RecordError
    try:
        return run(FLAGS.backend, FLAGS.jobs, FLAGS.out, FLAGS.technology)
    except (FlagError, RecordError) as e:
        fail(str(e))


if __name__ == "__main__":
    define_flags()
    app.run(main)
