"""The package installs non-editable and works from anywhere: the wheel carries the code (nets
included) and the shipped data, and the main job runs from a folder outside the checkout."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _have_wheel() -> bool:
    try:
        import wheel  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _have_wheel(), reason="the 'wheel' package (requirements.txt) is needed to build offline")
def test_wheel_has_code_and_data_and_main_job_runs_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        str(ROOT), "-w", str(wheels)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,) = wheels.glob("cimnas_jax-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for must in ("cimnas_jax/nets/__init__.py", "cimnas_jax/nets/supernet.py", "cimnas_jax/hw/tech/rram_32nm.json",
                 "cimnas_jax/assets/supernet_fmnist/params.msgpack", "cimnas_jax/assets/supernet_fmnist/MANIFEST.json",
                 "cimnas_jax/assets/mbv2_rram/rram_32nm/manifest.json", "cimnas_jax/pipeline/__init__.py",
                 "cimnas_jax/cli/run.py"):
        assert must in names, must
    assert any(n.startswith("cimnas_jax/assets/mbv2_rram/rram_32nm/checkpoint/") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)

    # a fresh virtualenv (the numerical stack from this interpreter), the wheel installed into it
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py, exe = venv / "bin" / "python", venv / "bin" / "cimnas-jax"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CIMNAS_ASSETS_DIR")}
    where = subprocess.run([str(py), "-c", "import cimnas_jax; print(cimnas_jax.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=60).stdout
    assert str(venv) in where and str(ROOT) not in where        # the installed copy, not the checkout
    r = subprocess.run([str(exe), "run", "--population=8", "--generations=2", "--chunk=1", "--finalists=1",
                        "--measure_accuracy=false", "--out_dir=run"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = (work / "run" / "report.md").read_text()
    assert "| baseline |" in report and "| found_1 |" in report
