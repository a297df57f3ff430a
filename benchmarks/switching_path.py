"""MD-safe switching: energy, forces, stress and gate weights along a continuous path that carries a
structure across the gate's switching layer; writes docs/switching.png and docs/switching.md.

Path 1: bulk bcc Mo (3x3x3 cubic cells, 54 atoms, rattled by 0.05 Å) strained from -8 % to +8 % in
volume.  Path 2 (also when path 1 stays with one expert): linear interpolation (cell and
minimum-image positions) between two training structures with the same atoms that the gate gives
to different experts.  At every point: forces and pressure against fourth-order central finite
differences of the energy, and the gate-gradient part of the forces, Phi (c_eff - sum_m w_m c_m),
compared with the model's cross-validated force RMSE.

    PYTHONPATH=fitting python benchmarks/switching_path.py [--potential Mo.dcace]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "zuo2020"
STENCIL = ((1, 8.0), (-1, -8.0), (2, -1.0), (-2, 1.0))


def gate_force_part(pot, atoms):
    r = pot.basis.fitting_rows(atoms)
    comb = pot.core.combine(r.energy.reshape(pot.core.n_species, -1), r.counts)
    return (r.forces @ (comb["c_eff"] - comb["c_energy"]).ravel()).reshape(-1, 3)


def fd_force(pot, atoms, comps, h=1e-4):
    out = []
    for c in comps:
        k, a = divmod(int(c), 3)
        d = 0.0
        for step, w in STENCIL:
            at = atoms.copy()
            at.positions[k, a] += step * h
            d += w * pot.compute(at)["energy"]
        out.append(-d / (12 * h))
    return np.array(out)


def fd_pressure(pot, atoms, h=1e-5):
    d = 0.0
    for step, w in STENCIL:
        at = atoms.copy()
        at.set_cell(atoms.cell.array * (1 + step * h) ** (1 / 3), scale_atoms=True)
        d += w * pot.compute(at)["energy"]
    return -d / (12 * h * atoms.get_volume())


def scan(pot, structures, xs, rng):
    rows = []
    for x, at in zip(xs, structures):
        out = pot.compute(at)
        F = out["forces"]
        Fg = gate_force_part(pot, at)
        comps = rng.choice(3 * len(at), 6, replace=False)
        ef = np.abs(fd_force(pot, at, comps) - F.ravel()[comps]).max()      # eV/Å
        ep = None
        if out["stress"] is not None:
            p = -out["stress"][:3].mean()
            ep = abs(fd_pressure(pot, at) - p) * 160.21766   # GPa
        rows.append({"x": float(x), "e": out["energy"] / len(at), "fmax": float(np.linalg.norm(F, axis=1).max()),
                     "fg_max": float(np.linalg.norm(Fg, axis=1).max()), "fg_rms": float(np.sqrt((Fg ** 2).mean())),
                     "w": out["weights"].tolist(), "err_f": float(ef), "err_p": None if ep is None else float(ep)})
    return rows


def test_force_errors(pot):
    """Per-atom force error |F_model - F_DFT| (eV/Å) on the Zuo Mo test set: RMS, 99th percentile,
    max -- the statistics to hold the gate-gradient force (a per-atom vector) against."""
    from ase.io import read

    err = []
    for at in read(DATA / "Mo_test.xyz", ":"):
        err.append(pot.compute(at)["forces"] - at.get_forces())
    err = np.concatenate(err)
    norm = np.linalg.norm(err, axis=1)
    return {"rmse": float(np.sqrt((err ** 2).mean())), "p99": float(np.percentile(norm, 99)),
            "max": float(norm.max()), "n_atoms": int(norm.size)}


def volume_path(n=41):
    from ase.build import bulk

    base = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((3, 3, 3))
    base.positions += 0.05 * np.random.default_rng(0).normal(size=base.positions.shape)
    xs = np.linspace(-8, 8, n)
    out = []
    for dv in xs:
        at = base.copy()
        at.set_cell(base.cell.array * (1 + dv / 100) ** (1 / 3), scale_atoms=True)
        out.append(at)
    return xs, out


def interpolation_path(pot, n=41):
    """From the perfect bcc lattice to a hot training structure that the gate gives to another expert:
    r_k(t) = site_k + t d_k, with atoms matched to lattice sites (linear assignment on minimum-image
    distances) and the cell of the training structure; t = 0 .. 1."""
    from ase.build import bulk
    from ase.io import read
    from scipy.optimize import linear_sum_assignment

    allf = read(DATA / "Mo_train.xyz", ":")
    best = None
    for k, b in enumerate(allf):
        cell = b.cell.array
        if len(b) != 54 or np.abs(cell - np.diag(np.diag(cell))).max() > 1e-6 or np.ptp(np.diag(cell)) > 1e-6:
            continue
        lat = bulk("Mo", "bcc", a=cell[0, 0] / 3, cubic=True).repeat((3, 3, 3))
        if np.argmax(pot.compute(lat)["weights"]) == np.argmax(pot.compute(b)["weights"]):
            continue
        ds = b.get_scaled_positions()[None, :, :] - lat.get_scaled_positions()[:, None, :]
        ds -= np.round(ds)
        cost = np.linalg.norm(ds @ cell, axis=2)
        rows, cols = linear_sum_assignment(cost)
        disp = ds[rows, cols] @ cell
        path = []
        ok = True
        xs = np.linspace(0, 1, n)
        for t in xs:
            at = lat.copy()
            at.positions = lat.positions + t * disp
            if np.min(at.get_all_distances(mic=True) + 10 * np.eye(54)) < 1.7:
                ok = False
                break
            path.append(at)
        if ok and (best is None or cost[rows, cols].max() < best[0]):
            best = (cost[rows, cols].max(), xs, path, k)
    if best is None:
        return None
    return best[1], best[2], best[3]


def allf_desc(k):
    from ase.io import read

    return read(DATA / "Mo_train.xyz", k).info.get("description", "")[:50]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--potential", default=None, help="a fitted .dcace (default: fit Mo bo4 deg12 auto)")
    ap.add_argument("--out-dir", default=str(ROOT / "docs"))
    args = ap.parse_args()
    import dcace
    from dcace.plots import _plt

    if args.potential:
        pot = dcace.load(args.potential)
        f_err = pot.metadata["errors"]["dc"]["cv"]["force_rmse_ev_per_a"]
    else:
        pot = dcace.fit(str(DATA / "Mo_train.xyz"), elements=["Mo"], cutoff=5.2, body_order=4, max_degree=12,
                        progress=False)
        f_err = pot.report.errors["dc"]["cv"]["force_rmse_ev_per_a"]
    test_err = test_force_errors(pot)
    rng = np.random.default_rng(1)
    paths = []
    xs, st = volume_path()
    paths.append(("bulk bcc Mo, volume strain (%)", scan(pot, st, xs, rng)))
    ip = interpolation_path(pot)
    if ip is not None:
        xs, st, k = ip
        paths.append((f"bcc lattice -> Mo_train frame {k} ({allf_desc(k)})", scan(pot, st, xs, rng)))
    plt = _plt()
    fig, axes = plt.subplots(3, len(paths), figsize=(6.5 * len(paths), 9), sharex="col", squeeze=False)
    for c, (name, rows) in enumerate(paths):
        x = [r["x"] for r in rows]
        axes[0, c].plot(x, [r["e"] for r in rows], "o-", ms=3)
        axes[0, c].set_ylabel("E (eV/atom)")
        axes[0, c].set_title(name if len(name) < 60 else name[:57] + "...", fontsize=9)
        axes[1, c].plot(x, [r["fmax"] for r in rows], "o-", ms=3, label="max |F|")
        axes[1, c].plot(x, [r["fg_max"] for r in rows], "s-", ms=3, label="max |gate-gradient part|")
        axes[1, c].plot(x, [r["fg_rms"] for r in rows], "^-", ms=3, label="RMS gate-gradient part")
        axes[1, c].axhline(f_err, color="k", ls="--", lw=0.8, label=f"model CV force RMSE {f_err:.3f}")
        axes[1, c].set_ylabel("eV/Å")
        axes[1, c].set_yscale("symlog", linthresh=1e-3)
        axes[1, c].set_ylim(bottom=0)
        axes[1, c].legend(fontsize=7)
        W = np.array([r["w"] for r in rows])
        for m in range(W.shape[1]):
            axes[2, c].plot(x, W[:, m], label=f"expert {m}")
        axes[2, c].set_ylabel("gate weight")
        axes[2, c].legend(fontsize=7)
        axes[2, c].set_xlabel(name.split(",")[-1] if "strain" in name else "interpolation parameter t")
    fig.suptitle(f"dcace {pot.n_experts}-expert Mo potential along switching paths")
    fig.tight_layout()
    out = Path(args.out_dir)
    fig.savefig(out / "switching.png", dpi=120)
    L = ["# MD-safe switching of the gate", "",
         "Generated by `PYTHONPATH=fitting python benchmarks/switching_path.py` (figure: `switching.png`).", "",
         f"Potential: Zuo Mo, body order 4, degree 12, defaults (`--experts auto`): M = {pot.n_experts}, "
         f"gate temperature {pot.gate.get('temperature', '—')}; cross-validated force RMSE {f_err:.4f} eV/Å "
         "(per component).", "",
         f"The model's own force error on the {test_err['n_atoms']} atoms of the Zuo Mo test set: RMSE "
         f"{test_err['rmse']:.3f} eV/Å per component; per-atom |F - F_DFT|: 99th percentile {test_err['p99']:.3f}, "
         f"max {test_err['max']:.3f} eV/Å.  The gate-gradient force is held against it statistic by statistic: "
         "its RMS per component along a path against the RMSE, its largest single-atom |F| against the largest "
         "single-atom errors.", "",
         "| path | points | expert at start → end | max FD error forces (eV/Å) | max FD error pressure (GPa) | "
         "max |gate-gradient force| on one atom eV/Å | max RMS gate-gradient force per component eV/Å | max |F| eV/Å |",
         "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, rows in paths:
        W = np.array([r["w"] for r in rows])
        ep = [r["err_p"] for r in rows if r["err_p"] is not None]
        L.append(f"| {name} | {len(rows)} | {int(np.argmax(W[0]))} → {int(np.argmax(W[-1]))} | "
                 f"{max(r['err_f'] for r in rows):.1e} | {max(ep) if ep else float('nan'):.1e} | "
                 f"{max(r['fg_max'] for r in rows):.4f} | {max(r['fg_rms'] for r in rows):.4f} | "
                 f"{max(r['fmax'] for r in rows):.3f} |")
    fg_rms = max(r["fg_rms"] for _, rows in paths for r in rows)
    fg_max = max(r["fg_max"] for _, rows in paths for r in rows)
    L += ["", f"Largest RMS gate-gradient force per component along the paths {fg_rms:.3f} eV/Å vs the "
          f"model's CV RMSE {f_err:.3f} and test RMSE {test_err['rmse']:.3f}: "
          f"{'below' if fg_rms < min(f_err, test_err['rmse']) else 'NOT below'}.  Largest single-atom "
          f"gate-gradient force {fg_max:.3f} eV/Å vs the model's 99th-percentile per-atom test error "
          f"{test_err['p99']:.3f}: {'below' if fg_max < test_err['p99'] else 'NOT below'}.", ""]
    (out / "switching.md").write_text("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
