"""The C++ core without Python: cpp/tests/test_core.cpp, configured and built with cmake in a
temporary directory (-DDCACE_BUILD_TESTS=ON, no Python module, no LAMMPS plugin) and run by ctest.

It reads a potential file, evaluates one structure and checks the forces against central finite
differences of the energy, the per-atom sums (energies, virials) and the reader's refusal of an
impossible count -- on its built-in potential and on a DC potential written here by dcace."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import dcace

ROOT = Path(__file__).resolve().parents[1]


def cmake_exe():
    exe = Path(sys.executable).parent / "cmake"
    found = str(exe) if exe.exists() else shutil.which("cmake")
    if not found:
        pytest.fail("cmake not found: pip install 'dcace[test]' brings it")
    return found


def dc_potential(path):
    """A 2-expert Mo-Nb potential (random experts and gate: exercises the gate-gradient term)."""
    basis = dcace.ACEBasis(["Mo", "Nb"], cutoff=4.8, body_order=4, max_degree=7)
    rng = np.random.default_rng(0)
    S, K = basis.n_species, basis.n_features
    at = bulk("Mo", "bcc", a=3.2, cubic=True).repeat(2)
    at.numbers[::2] = 41
    p = basis.descriptor_sums(at)[0].ravel() / len(at)
    gate = dict(temperature=1.0, mean=p, scale=np.abs(p) + 1.0, projection=rng.normal(size=(2, S * K)),
                centroids=np.array([[0.0, 0.0], [1.0, 0.5]]), spread=np.array([5.0, 5.0]), bias=np.zeros(2))
    pot = dcace.Potential.from_parts(basis, 0.05 * rng.normal(size=(2, S, K)), -3.0 + rng.normal(size=(2, S)),
                                     gate, {"test": "cpp"})
    pot.save(path)
    return path


@pytest.mark.slow   # a C++ build and ctest, no Python
def test_cpp_core_with_ctest(tmp_path):
    cmake = cmake_exe()
    pot = dc_potential(tmp_path / "monb_dc.dcace")
    build = tmp_path / "build"
    steps = [
        [cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DDCACE_BUILD_PYTHON=OFF",
         "-DDCACE_BUILD_LAMMPS_PLUGIN=OFF", "-DDCACE_BUILD_TESTS=ON", f"-DDCACE_TEST_POTENTIAL={pot}"],
        [cmake, "--build", str(build), "--target", "test_core", "-j", "2"],
        [str(Path(cmake).with_name("ctest")) if Path(cmake).with_name("ctest").exists() else "ctest",
         "--test-dir", str(build), "--output-on-failure", "-V"],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    out = proc.stdout
    print(out[-3000:])
    assert re.search(r"100% tests passed(, 0 tests failed)? out of 2", out)
    assert "FAIL" not in out
    assert "forces = -dE/dx by central differences" in out and "2 species" in out and "2 expert(s)" in out
    assert "monomials 268435456 is refused with file, line and count" in out
    w = [float(x) for x in re.search(r"2:\s+E = \S+ eV, gate weights (.*)", out).group(1).split()]
    assert len(w) == 2 and min(w) > 0.05, w  # the gate really mixes: its gradient is in the forces
