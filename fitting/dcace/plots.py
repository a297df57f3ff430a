"""Figures of a fit (matplotlib, Agg backend; files only, no display).

- ``parity.png``: predicted vs reference energies (per atom, relative to the per-species reference
  energies, meV/atom, so that errors of a few meV/atom are visible) and force components, train and
  test, linear (filled) vs DC (open markers) (the paper's Fig. 3 style, with MAEs in the legends);
- ``errors.png``: distributions of the energy and force errors (log-scale histograms);
- ``clusters.png``: the training structures' standardised mean descriptors projected on their two
  leading principal axes, coloured by cluster with one discrete colour per class and the cluster
  centres marked (the paper's Fig. 4 style), with the distance to the nearest centroid beside it;
- ``path.png`` (``plot_path``): energy, max |F|, gate-gradient force and gate weights along a path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_fit_plots", "plot_path", "plot_eval"]


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ImportError('plots need matplotlib, which is not installed: pip install "dcace[plots]"') from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


_COLOURS = {"linear": "tab:blue", "dc": "tab:red", "dc-independent": "tab:orange", "dc-joint": "tab:orange",
            "paper-eq8": "tab:gray"}


def _save(fig, path, **kw):
    """fig.savefig(path) through a temporary file renamed at the end (no half-written figure)."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kw)


def _mae(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).mean()) if len(a) else float("nan")


def write_fit_plots(report, directory) -> list[str]:
    """Write parity, error-distribution and cluster figures of a fit; returns the file names."""
    plt = _plt()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = report.arrays
    files = []
    models = [m for m in ("linear", "dc") if m in arrays.get("train", {})]
    sets = [s for s in ("train", "test") if s in arrays]

    # parity
    fig, axes = plt.subplots(len(sets), 2, figsize=(10, 4.6 * len(sets)), squeeze=False)
    for r, which in enumerate(sets):
        for name in models:
            if name not in arrays[which]:
                continue
            e_ref, e_pred, f_ref, f_pred = arrays[which][name]
            c = _COLOURS.get(name, None)
            style = dict(color=c, alpha=0.6) if name == "linear" else dict(facecolors="none", edgecolors=c)
            axes[r, 0].scatter(1000 * np.asarray(e_ref), 1000 * np.asarray(e_pred), s=14, lw=0.8, **style,
                               label=f"{name}: MAE {1000 * _mae(e_ref, e_pred):.2f} meV/atom")
            axes[r, 1].scatter(f_ref, f_pred, s=6, lw=0.5, **(style if name == "linear" else dict(style, alpha=0.5)),
                               label=f"{name}: MAE {_mae(f_ref, f_pred):.3f} eV/Å")
        for c, (lab, unit) in enumerate((("energy − Σ n_s e_s (per atom)", "meV/atom"),
                                         ("force component", "eV/Å"))):
            ax = axes[r, c]
            lim = ax.get_xlim()
            ax.plot(lim, lim, "k--", lw=0.8)
            ax.set_xlabel(f"reference {lab} ({unit})")
            ax.set_ylabel(f"predicted {lab} ({unit})")
            ax.set_title(f"{which}: {lab.split(' ')[0]}")
            ax.tick_params(labelsize=9)
            ax.ticklabel_format(useOffset=False, style="plain", axis="both")
            ax.legend(fontsize=9)
    fig.tight_layout()
    _save(fig, out / "parity.png", dpi=120)
    plt.close(fig)
    files.append(str(out / "parity.png"))

    # error distributions
    fig, axes = plt.subplots(len(sets), 2, figsize=(10, 4 * len(sets)), squeeze=False)
    for r, which in enumerate(sets):
        for name in models:
            if name not in arrays[which]:
                continue
            e_ref, e_pred, f_ref, f_pred = arrays[which][name]
            de = 1000 * np.abs(e_pred - e_ref)
            df = np.abs(f_pred - f_ref)
            for c, (err, unit) in enumerate(((de, "meV/atom"), (df, "eV/Å"))):
                err = err[err > 0]
                if err.size == 0:
                    continue
                bins = np.logspace(np.log10(err.min()), np.log10(err.max()) + 1e-9, 40)
                axes[r, c].hist(err, bins=bins, histtype="step", lw=1.5, color=_COLOURS.get(name),
                                label=f"{name} (median {np.median(err):.3g} {unit})")
                axes[r, c].set_xscale("log")
                axes[r, c].set_xlabel(f"|error| ({unit})")
        axes[r, 0].set_title(f"{which}: energy errors")
        axes[r, 1].set_title(f"{which}: force-component errors")
        for ax in axes[r]:
            ax.set_ylabel("count")
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "errors.png", dpi=120)
    plt.close(fig)
    files.append(str(out / "errors.png"))

    # cluster map
    cl = arrays.get("clusters")
    if cl is not None:
        Z = np.asarray(cl["Z"])
        Zc = Z - Z.mean(axis=0)
        _, _, vt = np.linalg.svd(Zc, full_matrices=False)
        Y = Zc @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([Zc @ vt[0], np.zeros(len(Z))])
        labels = np.asarray(cl["labels"])
        M = int(labels.max()) + 1
        from matplotlib.colors import BoundaryNorm, ListedColormap

        cmap = ListedColormap([plt.get_cmap("tab10")(k % 10) for k in range(M)])
        norm = BoundaryNorm(np.arange(M + 1) - 0.5, M)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
        sc = axes[0].scatter(Y[:, 0], Y[:, 1], c=labels, cmap=cmap, norm=norm, s=14)
        for m in range(M):   # the cluster centres, in the same projection
            cy = Y[labels == m].mean(axis=0)
            axes[0].scatter(*cy, marker="X", s=160, color=cmap(m), edgecolors="k", linewidths=1.2, zorder=3)
        axes[0].set_xlabel("PC 1 of standardised mean descriptor")
        axes[0].set_ylabel("PC 2")
        axes[0].set_title(f"training structures by cluster (M = {M}; X: cluster centres)")
        cb = fig.colorbar(sc, ax=axes[0], label="cluster", ticks=np.arange(M))
        cb.ax.tick_params(labelsize=9)
        w = np.asarray(cl["weights"])
        axes[1].scatter(np.asarray(cl["nearest"]), w.max(axis=1), c=labels, cmap=cmap, norm=norm, s=14)
        axes[1].set_xlabel("distance to nearest centroid (units of its spread)")
        axes[1].set_ylabel("largest gate weight")
        axes[1].set_title("gate on the training set")
        fig.tight_layout()
        _save(fig, out / "clusters.png", dpi=120)
        plt.close(fig)
        files.append(str(out / "clusters.png"))
    return files


def plot_eval(e_ref, e_pred, f_ref, f_pred, path, title=""):
    """Parity plot of an evaluation (``dcace eval --plots``)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    axes[0].scatter(e_ref, e_pred, s=8, alpha=0.6, label=f"MAE {1000 * _mae(e_ref, e_pred):.2f} meV/atom")
    axes[1].scatter(f_ref, f_pred, s=2, alpha=0.3, label=f"MAE {_mae(f_ref, f_pred):.3f} eV/Å")
    for ax, lab in zip(axes, ("energy (eV/atom)", "force component (eV/Å)")):
        lim = ax.get_xlim()
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"reference {lab}")
        ax.set_ylabel(f"predicted {lab}")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, dpi=120)
    plt.close(fig)


def plot_path(x, energy, fmax, fgate, weights, path, xlabel="path coordinate", title=""):
    """E, max |F| (with the gate-gradient part) and the gate weights along a path."""
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
    axes[0].plot(x, energy, "o-", ms=3)
    axes[0].set_ylabel("energy (eV/atom)")
    axes[1].plot(x, fmax, "o-", ms=3, label="max |F|")
    axes[1].plot(x, fgate, "s-", ms=3, label="max |gate-gradient part|")
    axes[1].set_ylabel("force (eV/Å)")
    axes[1].legend(fontsize=8)
    w = np.asarray(weights)
    for m in range(w.shape[1]):
        axes[2].plot(x, w[:, m], "-", label=f"expert {m}")
    axes[2].set_ylabel("gate weight")
    axes[2].set_xlabel(xlabel)
    axes[2].legend(fontsize=8, ncol=min(4, w.shape[1]))
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, dpi=120)
    plt.close(fig)
