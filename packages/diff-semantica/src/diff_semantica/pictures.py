"""Pictures: pairs with their cosines, variation grids, class histograms (PNG, atomic)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from diff_core.images import save_grid
from diff_protocol.io import atomic_write

__all__ = ["save_class_histogram", "save_pairs_figure", "save_variation_grid"]


def _fig_png(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write(path, buf.getvalue())


def save_variation_grid(
    path: str | Path, cond: np.ndarray, samples: np.ndarray, nearest: np.ndarray | None = None
) -> Path:
    """One row per conditioning image: the condition, its variations, then (if given) the
    nearest training image of each row's first variation (copying shows at a glance)."""
    n, k = samples.shape[:2]
    cols = [cond[:, None]] + [samples]
    labels = ["condition"] + [f"sample {j + 1}" for j in range(k)]
    if nearest is not None:
        cols.append(nearest[:, None])
        labels.append("nearest train")
    tiles = np.concatenate(cols, axis=1)
    save_grid(
        Path(path),
        tiles.reshape(-1, *tiles.shape[2:]),
        tiles.shape[1],
        scale=max(1, 64 // tiles.shape[2]),
        col_labels=labels,
    )
    return Path(path)


def save_pairs_figure(
    path: str | Path,
    x_a: np.ndarray,
    x_b: np.ndarray,
    cosines: np.ndarray,
    keep: np.ndarray,
    kinds: np.ndarray,
    kind_names: tuple[str, ...],
    n_show: int = 12,
) -> Path:
    """Kept and dropped pairs (a above b) with their cosines, and the cosine histogram by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 7))
    gs = fig.add_gridspec(3, n_show)
    for row, (sel, title) in enumerate(((keep, "kept"), (~keep, "dropped"))):
        idx = np.flatnonzero(sel)[:n_show]
        for j, i in enumerate(idx):
            ax = fig.add_subplot(gs[row, j])
            pair = np.concatenate([x_a[i], x_b[i]], axis=0)
            img = (pair + 1) / 2
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{cosines[i]:.2f}", fontsize=8)
            ax.axis("off")
            if j == 0:
                ax.text(-0.6, 0.5, title, transform=ax.transAxes, rotation=90, va="center")
    ax = fig.add_subplot(gs[2, :])
    bins = np.linspace(-1, 1, 41)
    for k, name in enumerate(kind_names):
        c = cosines[kinds == k]
        if c.size:
            ax.hist(c, bins=bins, alpha=0.6, label=f"{name} ({c.size})")
    ax.set_xlabel("cosine of pooled embeddings (a, b)")
    ax.set_ylabel("pairs")
    ax.legend()
    out = _fig_png(fig, Path(path))
    plt.close(fig)
    return out


def save_class_histogram(path: str | Path, predicted: dict[str, np.ndarray], subset: Any) -> Path:
    """Predicted-class histograms per guidance scale, with the conditioning subset marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(predicted))
    for i, (label, pred) in enumerate(predicted.items()):
        h = np.bincount(np.asarray(pred).ravel(), minlength=10) / max(1, np.asarray(pred).size)
        ax.bar(np.arange(10) + i * width, h, width, label=f"scale {label}")
    for c in subset:
        ax.axvspan(c - 0.1, c + 0.9, color="grey", alpha=0.12)
    ax.set_xticks(np.arange(10) + 0.4, [str(c) for c in range(10)])
    ax.set_xlabel("predicted class of generated digits (grey: conditioning classes)")
    ax.set_ylabel("share")
    ax.legend()
    out = _fig_png(fig, Path(path))
    plt.close(fig)
    return out
