"""Every example runs as written (reduced size: QUICK=1 / --quick), with the real `lmp` of this
environment, and prints physically sensible numbers."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(cmd, cwd, **env):
    e = dict(os.environ, PYTHON=sys.executable, QUICK="1", **env)
    e.pop("LAMMPS_PLUGIN_PATH", None)
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"{cmd} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_quickstart(tmp_path):
    out = run(["bash", str(EXAMPLES / "quickstart.sh")], tmp_path, OUT="qs")
    assert (tmp_path / "qs" / "Mo_linear.dcace").exists() and (tmp_path / "qs" / "Mo_dc.dcace").exists()
    assert "| dc | test |" in out and "| linear | test |" in out
    speed = float(re.search(r"speed: ([0-9.]+) us/atom/step", out).group(1))
    assert 0 < speed < 1000
    assert (tmp_path / "qs" / "plots" / "parity.png").exists()


def test_mo_example(tmp_path):
    out = run(["bash", str(EXAMPLES / "Mo" / "run.sh"), "out"], tmp_path)
    a_npt = float(re.search(r"lattice constant \(last 500 steps average\): ([0-9.]+) A", out).group(1))
    a_eos = float(re.search(r"a0 = ([0-9.]+) A", out).group(1))
    a_dft, a_mod = map(float, re.search(r"DFT a = ([0-9.]+) A, model a = ([0-9.]+) A", out).groups())
    assert 3.05 < a_eos < 3.30 and 3.05 < a_npt < 3.30
    assert abs(a_mod - a_dft) < 0.03
    assert (tmp_path / "out" / "eos.png").exists()


def test_tial_example(tmp_path):
    out = run(["bash", str(EXAMPLES / "TiAl" / "run.sh"), "out"], tmp_path)
    assert (tmp_path / "out" / "TiAl.dcace").exists()
    assert re.search(r"Loop time of [0-9.]+ on 1 procs for 200 steps with 108 atoms", out)


def test_python_example(tmp_path):
    out = run([sys.executable, str(EXAMPLES / "python" / "fit_and_relax.py"), "--quick", "-o", "Mo.dcace"], tmp_path)
    e_vac = float(re.search(r"vacancy formation energy .*: ([0-9.-]+) eV", out).group(1))
    assert 1.0 < e_vac < 5.0
