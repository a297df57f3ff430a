"""The README's Python snippet runs as written (only the fit's basis is reduced, to keep it fast)
and its comments are true."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_snippet_runs(tmp_path, monkeypatch, capsys):
    code = readme_snippet()
    fit_line = 'dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=4, max_degree=12, experts="auto")'
    assert fit_line in code
    # the same call on a smaller basis (the README's settings take minutes on a shared CI core)
    code = code.replace(fit_line, 'dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=3, max_degree=6, '
                                  'experts="auto", max_experts=2, temperatures=(0.5,), cv_folds=3, progress=False)')
    # "run from the repository root": the data path is relative to it; the files go to tmp_path
    code = code.replace('"examples/data/', f'"{ROOT}/examples/data/')
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    atoms, basis, X, rows, pot = ns["atoms"], ns["basis"], ns["X"], ns["rows"], ns["pot"]
    K = 211
    assert basis.n_features == K and X.shape == (len(atoms), K)              # "K = 211 invariants"
    assert rows.energy.shape == (K,) and rows.forces.shape == (3 * len(atoms), K) and rows.stress.shape == (6, K)
    assert np.allclose(rows.energy, X.sum(axis=0), rtol=1e-12, atol=1e-12)    # energy row = sum of B_i
    assert (tmp_path / "Mo.dcace").exists() and pot.n_experts == len(atoms.calc.results["expert_weights"])
    # physics of the fitted potential on perfect bcc Mo: no forces (symmetry), weights sum to 1,
    # the energy per atom within 50 meV of the lowest DFT energy per atom of the training set
    res = atoms.calc.results
    assert np.abs(res["forces"]).max() < 1e-8
    assert abs(sum(res["expert_weights"]) - 1) < 1e-12
    e_dft = min(a.get_potential_energy() / len(a) for a in ns["frames"])
    assert abs(res["energy"] / len(atoms) - e_dft) < 0.05
    out = capsys.readouterr().out
    assert "| linear | train |" in out
