"""Colour the atoms of a LAMMPS dump by their dominant expert (examples/coexistence).

Reads a `write_dump ... custom id x y z c_g[*]` file of `compute dcace/atom` (column 1 the
extrapolation grade, columns 2..M+1 the atom's gate weights) and draws: a slab of the cell seen along
x, every atom coloured by the expert with the largest weight (paler where that weight is small), and
the mean weight of each expert and the mean grade in slices along z.

    python plot_experts.py coexistence.dump -o coexistence.png [--slab 3.2]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def read_dump(path):
    """(box (3, 2), columns {name: array}) of the last frame of a LAMMPS text dump."""
    with open(path) as fh:
        lines = fh.read().splitlines()
    starts = [k for k, s in enumerate(lines) if s.startswith("ITEM: TIMESTEP")]
    if not starts:
        raise SystemExit(f"{path}: not a LAMMPS text dump (no 'ITEM: TIMESTEP' line)")
    lines = lines[starts[-1]:]
    n = int(lines[3])
    box = np.array([[float(v) for v in lines[5 + a].split()[:2]] for a in range(3)])
    names = lines[8].split()[2:]
    data = np.array([[float(v) for v in s.split()] for s in lines[9:9 + n]])
    if data.shape != (n, len(names)):
        raise SystemExit(f"{path}: expected {n} rows of {len(names)} columns, got {data.shape}")
    return box, {name: data[:, k] for k, name in enumerate(names)}


def expert_columns(cols):
    """(grade (N,), weights (N, M)) from the columns of compute dcace/atom."""
    g = [k for k in cols if k.startswith("c_g[")]
    g.sort(key=lambda k: int(k[4:-1]))
    if len(g) < 2:
        raise SystemExit("the dump has no gate weights: dump c_g[*] of a compute dcace/atom named g")
    return cols[g[0]], np.stack([cols[k] for k in g[1:]], axis=1)


def main(argv=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump")
    ap.add_argument("-o", "--out", default="coexistence.png")
    ap.add_argument("--slab", type=float, default=3.2, help="thickness of the slab drawn, along x (A)")
    args = ap.parse_args(argv)
    box, cols = read_dump(args.dump)
    grade, w = expert_columns(cols)
    x, y, z = cols["x"], cols["y"], cols["z"]
    M = w.shape[1]
    top = np.argmax(w, axis=1)
    palette = [to_rgb(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    colour = np.array([palette[m % len(palette)] for m in top])
    share = w[np.arange(len(top)), top]   # paler where the largest weight is small
    fade = np.clip((share - 1.0 / M) / (1.0 - 1.0 / M), 0.0, 1.0)[:, None]
    colour = fade * colour + (1 - fade) * 0.85

    xmid = 0.5 * (box[0, 0] + box[0, 1])
    slab = np.abs(x - xmid) < 0.5 * args.slab
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 7.5), gridspec_kw=dict(width_ratios=[1.1, 1]))
    ax.scatter(y[slab], z[slab], c=colour[slab], s=14, edgecolors="none")
    ax.set_aspect("equal")
    ax.set_xlabel("y (Å)")
    ax.set_ylabel("z (Å)")
    ax.set_title(f"slab of {args.slab:g} Å along x: dominant expert per atom")
    for m in range(M):
        ax.scatter([], [], color=palette[m % len(palette)], label=f"expert {m + 1}: {np.mean(top == m):.0%} of atoms")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8)

    edges = np.linspace(box[2, 0], box[2, 1], 41)
    mid, which = 0.5 * (edges[1:] + edges[:-1]), np.clip(np.digitize(z, edges) - 1, 0, len(edges) - 2)
    counts = np.maximum(np.bincount(which, minlength=len(mid)), 1)
    for m in range(M):
        axp.plot(np.bincount(which, w[:, m], minlength=len(mid)) / counts, mid, color=palette[m % len(palette)],
                 label=f"expert {m + 1}")
    axp.set_xlabel("mean gate weight in the slice")
    axp.set_ylim(box[2])
    axg = axp.twiny()
    axg.plot(np.bincount(which, grade, minlength=len(mid)) / counts, mid, "k--", lw=1, label="mean grade")
    axg.set_xlabel("mean extrapolation grade (dashed)")
    axp.legend(loc="lower right", fontsize=8)
    axp.set_title(f"{len(x)} atoms, slices along z", pad=28)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}: {len(x)} atoms, {int(slab.sum())} in the slab, M = {M}; "
          + ", ".join(f"expert {m + 1} dominant for {np.mean(top == m):.1%}" for m in range(M)))


if __name__ == "__main__":
    sys.exit(main())
