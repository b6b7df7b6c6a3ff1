"""Pictures a person would rather look at than read (needs the ``viz`` extra, matplotlib):

* `render_grid`: up to 25 molecules as 5 x 5 tiles of 200 x 200 px, tiled with gaps by the
  monorepo's one grid helper (`diff_core.images.make_grid`), each drawn with matplotlib 3D in CPK
  colours, radii scaled by covalent radius, bonds from the bond-order
  lookup (section 9.1 of the spec), the tile title green for a stable molecule and red otherwise;
* `render_chain`: the denoising chain of one molecule as a strip;
* `plot_training_curves`: loss and gradient norm per step (+ evaluations, when there are any).

All files are written atomically and never replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_training_curves", "render_chain", "render_grid"]

#: CPK-like colours: H white, C grey, N blue, O red, F green, others from a small table.
CPK = {
    "H": "#FFFFFF", "C": "#909090", "N": "#3050F8", "O": "#FF0D0D", "F": "#1FF01F",
    "Cl": "#1FF01F", "Br": "#A62929", "I": "#940094", "S": "#FFFF30", "P": "#FF8000",
    "B": "#FFB5B5", "Si": "#F0C8A0", "As": "#BD80E3", "Al": "#BFA6A6", "Hg": "#B8B8D0",
    "Bi": "#9E4FB5",
}  # fmt: skip
#: Covalent radii in Å (Cordero et al., Dalton Trans. 2008).
COVALENT_RADIUS = {
    "H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57, "Cl": 1.02, "Br": 1.20, "I": 1.39,
    "S": 1.05, "P": 1.07, "B": 0.84, "Si": 1.11, "As": 1.19, "Al": 1.21, "Hg": 1.32, "Bi": 1.48,
}  # fmt: skip


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('rendering needs matplotlib: pip install "diff-edm3d[viz]"') from exc
    return plt


def _write_png(data: bytes, path: str | os.PathLike, overwrite: bool, caller: str) -> Path:
    from .data.io import atomic_write

    return atomic_write(path, lambda f: f.write(data), overwrite=overwrite, caller=caller)


def _save(fig: Any, path: str | os.PathLike, overwrite: bool, caller: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return _write_png(buf.getvalue(), path, overwrite, caller)


def _tile(
    plt: Any,
    molecules: Any,
    index: int,
    tile_px: int,
    title: str,
    colour: str = "black",
) -> np.ndarray:
    """One molecule drawn in 3D as a ``tile_px`` x ``tile_px`` RGB uint8 image, titled."""
    dpi = 100
    fig = plt.figure(figsize=(tile_px / dpi, tile_px / dpi), dpi=dpi)
    try:
        ax = fig.add_subplot(1, 1, 1, projection="3d")
        pos, types = molecules.molecule(index)[:2]
        _draw_molecule(ax, np.asarray(pos, dtype=np.float64), np.asarray(types), molecules.elements)
        ax.set_title(title, color=colour, fontsize=7, pad=0)
        fig.subplots_adjust(left=0, right=1, bottom=0, top=0.92)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def _draw_molecule(ax: Any, pos: np.ndarray, types: np.ndarray, elements: Any) -> None:
    from .metrics.bonds import bond_orders

    symbols = [elements.symbols[int(t)] for t in types]
    if len(pos) > 1:
        orders = bond_orders(pos, types, elements)
        for i, j in zip(*np.nonzero(np.triu(orders))):
            ax.plot(*zip(pos[i], pos[j]), color="#404040", lw=0.8 + 0.7 * (orders[i, j] - 1))
    sizes = np.array([(COVALENT_RADIUS.get(s, 0.8) * 60.0) ** 2 / 6 for s in symbols])
    colours = [CPK.get(s, "#FF1493") for s in symbols]
    ax.scatter(*pos.T, s=sizes, c=colours, edgecolors="black", linewidths=0.4, depthshade=True)
    span = float(np.abs(pos).max()) if pos.size else 1.0
    span = max(span, 1.0)
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-span, span)
    ax.set_axis_off()


def render_grid(
    molecules: Any,
    path: str | os.PathLike,
    n: int = 25,
    tile_px: int = 200,
    stable: Sequence[bool] | None = None,
    overwrite: bool = False,
) -> Path:
    """Render up to `n` (<= 25) molecules as a square grid of tiles of `tile_px` pixels.

    Args:
        molecules: a `MoleculeSet`.
        path: the PNG to write.
        stable: per-molecule stability flags (computed with `stability` when None).
        overwrite: allow replacing an existing file.

    Returns:
        The written path (1012 x 1012 px for 25 molecules at 200 px: 5 tiles and 6 gaps of 2 px
        per side).
    """
    plt = _pyplot()
    from .metrics import stability as stability_fn

    count = min(int(n), len(molecules), 25)
    if count < 1:
        raise ValueError(f"render_grid: molecules must be non-empty, got {len(molecules)}")
    side = 5 if count > 16 else int(np.ceil(np.sqrt(count)))
    if stable is None:
        stable = stability_fn(molecules.subset(np.arange(count))).molecule_stable
    from diff_core.images import make_grid, png_bytes

    tiles = []
    for i in range(count):
        ok = bool(stable[i])
        title = f"#{i} M={molecules.molecule(i)[1].shape[0]} {'stable' if ok else 'unstable'}"
        tiles.append(_tile(plt, molecules, i, tile_px, title, "green" if ok else "red"))
    grid = make_grid(np.stack(tiles), nrow=side)
    return _write_png(png_bytes(grid), path, overwrite, "render_grid")


def render_chain(
    chain: Sequence[tuple[int, Any]],
    path: str | os.PathLike,
    index: int = 0,
    tile_px: int = 200,
    overwrite: bool = False,
) -> Path:
    """A strip of the (unnormalised) noisy states of molecule `index` along the denoising chain
    (`EDM.sample(..., return_chain=True)`), from noise (left) to data (right)."""
    plt = _pyplot()
    if not chain:
        raise ValueError("render_chain: chain must be non-empty, got 0 snapshots")
    from diff_core.images import make_grid, png_bytes

    tiles = [_tile(plt, ms, index, tile_px, f"k={k}") for k, ms in chain]
    grid = make_grid(np.stack(tiles), nrow=len(tiles))
    return _write_png(png_bytes(grid), path, overwrite, "render_chain")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_training_curves(
    metrics_jsonl: str | os.PathLike,
    path: str | os.PathLike,
    eval_jsonl: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Loss and gradient norm per step from ``metrics.jsonl`` (with a moving average over 25
    steps), plus a third panel with validation NLL and stability from ``eval.jsonl`` when it
    holds evaluations (a run without evaluations gets two panels, 900 x 360 px; with them
    1300 x 360 px)."""
    plt = _pyplot()
    rows = _read_jsonl(Path(metrics_jsonl))
    evals = _read_jsonl(Path(eval_jsonl)) if eval_jsonl is not None else []
    evals = [e for e in evals if "step" in e]
    panels = 3 if evals else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels - 0.5 * (panels == 3), 3.6), dpi=100)
    for ax, key, title in zip(
        axes[:2], ("loss", "grad_norm"), ("l2 training loss", "gradient norm")
    ):
        ax.set_title(title)
        ax.set_xlabel("step")
        v = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        if not len(v):
            ax.text(0.5, 0.5, "no steps logged yet", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
            continue
        steps = np.array([r["step"] for r in rows if key in r])
        ax.plot(steps, v, color="#bbbbbb", lw=0.6, label=key)
        w = min(25, len(v))
        if w > 1:
            ma = np.convolve(v, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1 :], ma, color="C0", lw=1.4, label=f"{key} ({w}-step mean)")
        if np.all(v > 0):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    if evals:
        ax = axes[2]
        es = [e["step"] for e in evals]
        handles = []
        if any("molecule_stability" in e for e in evals):
            handles += ax.plot(
                es, [e.get("molecule_stability", np.nan) for e in evals], "o-", label="mol. stable"
            )
            handles += ax.plot(
                es, [e.get("atom_stability", np.nan) for e in evals], "s-", label="atom stable"
            )
            ax.set_ylim(0, 1)
            ax.set_ylabel("stable fraction")
        if any("val_nll" in e for e in evals):
            ax2 = ax.twinx()
            handles += ax2.plot(
                es, [e.get("val_nll", np.nan) for e in evals], "^-", color="C3", label="val NLL"
            )
            ax2.set_ylabel("validation NLL (nats)")
        if handles:
            ax.legend(handles=handles, fontsize=7, loc="upper left")
        ax.set_title("evaluation (EMA)")
        ax.set_xlabel("step")
    fig.tight_layout()
    try:
        return _save(fig, path, overwrite, "plot_training_curves")
    finally:
        plt.close(fig)
