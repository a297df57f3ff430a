"""How the committed old fit states in tests/data were written (provenance; docs/fit-state.md).

Run once, with dcace at commit 6263d1c (fit-state format version 2, before the anchors were kept in
a state), from the repository root:

    OMP_NUM_THREADS=1 python tests/data/make_old_states.py

It writes three small states (Zuo et al. Mo structures 0, 4, ..., 148: 38 structures; body order 3,
degree 6, a joint committee of M = 2 experts at tau = 0.5), which tests/test_refit.py resumes with
structures 150, 154, ..., 190:

* ``v2_state_Mo.npz``: format version 2 as dcace 6263d1c wrote it (no off-data anchors);
* ``v1_state_Mo.npz``: the same state rewritten in format version 1 (full normal matrices and each
  committee's half blocks, the canonical ones of dcace.state_pack, which assemble to the stored
  matrices bit for bit -- what tests/test_refit.py's ``_as_version_1`` does);
* ``v2_state_Mo_weighted_prefix.npz``: version 2 with config_type weights, accumulated as dcace
  did before the committee-weight fix d12ced5 (the accumulator was not given the frame weights, so
  the gate-gradient force and virial rows of a joint committee were weighted omega^3 / omega^4):
  6263d1c with ``Batch`` called without its weight, the only difference of that fix in pass 2.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.io import read

import dcace
import dcace.pipeline as pipeline
from dcace.committee import Batch
from dcace.state_pack import restore_groups, restore_joint

HERE = Path(__file__).resolve().parent
MO_TRAIN = HERE.parents[1] / "examples" / "data" / "zuo2020" / "Mo_train.xyz"
KW = dict(elements=["Mo"], cutoff=5.2, body_order=3, max_degree=6, experts=2, temperatures=(0.5,),
          compare=False, progress=False)
WEIGHTS = {"Vacancy": 2.0, "AIMD-NVT": 1.0, "Surface": 0.5, "Elastic": 1.5}


def as_version_1(state, out):
    z = dict(np.load(state, allow_pickle=False))
    m = json.loads(str(z.pop("__meta__")))
    Dp = z["groups_h"].shape[-1]
    z["groups_H"] = restore_groups(z.pop("groups_Hp"), Dp)
    for j, (M, _) in enumerate(m["joint_keys"]):
        z[f"joint{j}_Sh"] = restore_joint(z.pop(f"joint{j}_Hp"), M, Dp)
    m["version"] = 1
    with open(out, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(m)), **z)


def without_frame_weights(*args, **kw):
    """Batch as pass 2 built it before d12ced5: no per-structure weights for the accumulators."""
    return Batch(*args[:8], **kw)


def main():
    old = read(MO_TRAIN, ":")[0:150:4]
    dcace.fit(old, state=HERE / "v2_state_Mo.npz", **KW)
    as_version_1(HERE / "v2_state_Mo.npz", HERE / "v1_state_Mo.npz")
    pipeline.Batch = without_frame_weights
    try:
        dcace.fit(old, state=HERE / "v2_state_Mo_weighted_prefix.npz", weights=WEIGHTS, **KW)
    finally:
        pipeline.Batch = Batch
    for name in ("v2_state_Mo.npz", "v1_state_Mo.npz", "v2_state_Mo_weighted_prefix.npz"):
        print(name, (HERE / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
