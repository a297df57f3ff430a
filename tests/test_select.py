"""``dcace select`` on a real LAMMPS dump (issue 14; dcace.active).

A Mo potential fitted on the Zuo *Elastic* frames only (strained perfect crystals) drives the real
``lmp`` with ``pair_style dcace`` and ``compute dcace/atom``: 100 steps of a 300 K crystal, then a
restart at 7000 K (a ~4600 K liquid after equipartition: the issue's 4,500 K run), dumped every 10
steps.  ``dump_modify skip`` on the maximum grade keeps only the extrapolating frames in a second
dump (the loop of examples/active_learning.md).  Checks:

* the grade flags the liquid: every liquid frame's maximum grade is above every crystal frame's;
* the picks are diverse: with every frame present twice in the pool, ranking by grade alone picks
  duplicates, the greedy MaxVol selection never does (a pick's atoms enter the active set, so its
  twin drops to grade <= 1); the picks' pairwise descriptor distances are reported and > 0;
* ``--cut-radius`` writes non-periodic clusters around the most extrapolative atom (said in the output);
* errors: K larger than the pool, a type the map does not cover, a multi-element potential with a
  dump without element column and no --type-map, a state of another potential.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

import dcace
from dcace.active import grade_pool, read_pool
from dcace.cli import main

from test_lammps import run_lmp

ROOT = Path(__file__).resolve().parents[1]
MO_TRAIN = ROOT / "examples" / "data" / "zuo2020" / "Mo_train.xyz"

DECK = """
units metal
atom_style atomic
boundary p p p
lattice bcc 3.16
region b block 0 4 0 4 0 4
create_box 1 b
create_atoms 1 box
mass 1 95.95
pair_style dcace
pair_coeff * * {pot} Mo
compute g all dcace/atom
compute gmax all reduce max c_g[1]
variable gmax equal c_gmax
variable below equal "c_gmax <= {thresh}"
timestep 0.001
fix nve all nve
dump all all custom 10 all.lammpstrj id type x y z c_g[1]
dump_modify all format float %.15g
dump ext all custom 10 ext.lammpstrj id type x y z c_g[1]
dump_modify ext skip v_below
thermo_style custom step temp pe c_gmax
thermo 10
velocity all create 300 4928 mom yes rot yes
run 100
velocity all create 7000 4928 mom yes rot yes
run 300
"""


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    work = tmp_path_factory.mktemp("select")
    frames = [a for a in read(MO_TRAIN, ":") if a.info.get("config_type") == "Elastic"]
    pot = dcace.fit(frames, elements=["Mo"], cutoff=5.2, body_order=3, max_degree=8, experts=1, progress=False,
                    compare=False, state=work / "el.npz")
    pot.save(work / "el.dcace")
    proc = run_lmp(DECK.format(pot=work / "el.dcace", thresh=20.0), work)
    thermo = re.findall(r"^\s+(\d+)\s+([-\d.e+]+)\s+[-\d.e+]+\s+([-\d.e+]+)\s*$", proc.stdout, flags=re.M)
    return work, dcace.load(work / "el.dcace"), {int(s): (float(t), float(g)) for s, t, g in thermo}   # step: (T, max grade)


def test_grade_flags_the_liquid(md):
    work, pot, thermo = md
    frames = read_pool([work / "all.lammpstrj"], pot.elements)
    assert len(frames) == 41        # steps 0, 10, ..., 400 (the second run does not repeat step 100)
    grade_pool(pot, frames, 1.0)
    gmax = np.array([f.max_grade for f in frames])
    # the dump's c_g[1] column is the grade this Python side computes (same core)
    np.testing.assert_allclose(gmax, [thermo[s][1] for s in range(0, 401, 10)], rtol=1e-6)
    crystal, liquid = gmax[:11], gmax[13:]          # liquid: from step 130 (30 fs after the restart)
    T_liquid = np.mean([thermo[s][0] for s in range(130, 401, 10)])
    print(f"\nmax grade: crystal {crystal.min():.3g}-{crystal.max():.3g}, liquid {liquid.min():.3g}-{liquid.max():.3g} "
          f"(liquid at {T_liquid:.0f} K on average)")
    assert 4000 < T_liquid < 5200   # the 4,500 K Mo run
    assert liquid.min() > crystal.max()
    # dump_modify skip kept exactly the frames above the threshold
    ext = read(work / "ext.lammpstrj", ":", format="lammps-dump-text")
    assert len(ext) == int((gmax > 20.0).sum()) > 0


def test_select_picks_no_duplicates(md, capsys):
    work, pot, _ = md
    twin = work / "twin.lammpstrj"
    shutil.copy(work / "all.lammpstrj", twin)
    pool = [str(work / "all.lammpstrj"), str(twin)]
    out = work / "picked.xyz"
    assert main(["select", *pool, "--potential", str(work / "el.dcace"), "--state", str(work / "el.npz"),
                 "-n", "6", "-o", str(out), "--json"]) == 0
    text = capsys.readouterr().out
    res = json.loads(text.strip().splitlines()[-1])
    picked = [(Path(p["source"]).name, p["frame"]) for p in res["picks"]]
    print("\n" + "\n".join(text.splitlines()[:9]))
    frames_picked = [f for _, f in picked]
    assert len(set(frames_picked)) == 6, picked          # never a frame and its twin
    d = np.array(res["pairwise_distance"])
    assert d[np.triu_indices(6, 1)].min() > 0
    # ranking by the grade alone would pick twins: the top 6 grades are 3 frames, twice each
    gmax = sorted(((p["max_grade"], p["frame"]) for p in res["picks"]), reverse=True)
    assert gmax[0][0] == max(p["max_grade"] for p in res["picks"])
    frames = read_pool(pool, pot.elements)
    grade_pool(pot, frames, 1.0)
    top = sorted(range(len(frames)), key=lambda i: -frames[i].max_grade)[:6]
    assert len({frames[i].index for i in top}) == 3
    # every pick is a liquid frame or at least extrapolative; the file holds them with provenance
    atoms = read(out, ":")
    assert len(atoms) == 6 and all(a.info["select_max_grade"] > 1 for a in atoms)
    assert all(len(a) == 128 and a.pbc.all() for a in atoms)


def test_select_cut_radius(md, capsys):
    work, pot, _ = md
    out = work / "clusters.xyz"
    assert main(["select", str(work / "ext.lammpstrj"), "--potential", str(work / "el.dcace"), "-n", "2",
                 "--cut-radius", "3.5", "-o", str(out)]) == 0
    assert "clusters of radius 3.5" in capsys.readouterr().out
    cl = read(out, ":")
    assert len(cl) == 2
    for a in cl:
        assert not a.pbc.any() and 9 <= len(a) < 128     # bcc: 8 + 6 neighbours within 3.5 Å (+ thermal)
        r = np.linalg.norm(a.positions - a.positions[0], axis=1)
        assert r.max() <= 3.5 + 1e-9 and np.sort(r)[1] > 1.5


def test_select_errors(md, capsys):
    work, pot, _ = md
    base = ["select", "--potential", str(work / "el.dcace"), "-o", str(work / "e.xyz")]
    assert main(base[:1] + [str(work / "ext.lammpstrj")] + base[1:] + ["-n", "999"]) == 2
    assert re.search(r"-n 999 is larger than the pool: \d+ structures in .*ext.lammpstrj", capsys.readouterr().err)
    # a dump with atom type 2 for a one-element potential
    text = (work / "ext.lammpstrj").read_text().splitlines()
    i = next(k for k, line in enumerate(text) if line.startswith("ITEM: ATOMS")) + 1
    f = text[i].split()
    f[1] = "2"
    text[i] = " ".join(f)
    bad = work / "bad.lammpstrj"
    bad.write_text("\n".join(text) + "\n")
    assert main(base[:1] + [str(bad)] + base[1:] + ["-n", "1"]) == 2
    assert "bad.lammpstrj frame 0: atom type(s) [2] but the type map has 1 element(s)" in capsys.readouterr().err
    # a two-element potential: the dump has no element column, so the map must be given
    from dcace import ACEBasis, Potential

    tial = Potential.from_parts(ACEBasis(["Ti", "Al"], 5.0, 2, 3), np.zeros((1, 2, 6)), np.zeros((1, 2)))
    tial.save(work / "tial.dcace")
    assert main(["select", str(work / "ext.lammpstrj"), "--potential", str(work / "tial.dcace"), "-n", "1",
                 "-o", str(work / "e.xyz")]) == 2
    assert "without an element column and no --type-map" in capsys.readouterr().err
    # a state from another potential
    assert main(["select", str(work / "ext.lammpstrj"), "--potential", str(work / "tial.dcace"), "--state",
                 str(work / "el.npz"), "-n", "1", "-o", str(work / "e.xyz")]) == 2
    assert "was not written with the potential" in capsys.readouterr().err
    assert not (work / "e.xyz").exists()
