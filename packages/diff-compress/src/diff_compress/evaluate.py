"""Rate-distortion evaluation: file bpp, PSNR, SSIM, MS-SSIM, the spectral realism proxy and
PFD-rand for the MSE decoder, the diffusion decoder at several step counts, and Pillow's JPEG (a
reference curve and the quality whose bpp is closest); Pillow's lossy WebP is a second reference
curve; pictures ``rd_curve.png`` and ``comparison.png``.

Per reconstruction, ``ms_ssim`` is the value of :func:`~diff_compress.metrics.ms_ssim` and
``ms_ssim_scales`` the number of scales it used (fewer than 5 below 176 px); ``pfd_rand`` is
:func:`~diff_compress.metrics.feature_distance` (PFD-rand, patches 64, stride 32, seed 0) between
the reconstruction's and the original's patches. An image that gives fewer than 2 such patches
(a side under 64 px, or both sides under 96 px) has no covariance to fit: its ``pfd_rand`` is
``None`` (``null`` in metrics.json, "—" in metrics.md) and ``evaluate`` prints so."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff_compress import metrics
from diff_compress.files import save_json, write_atomic
from diff_compress.metrics import bits_per_pixel, psnr
from diff_compress.pipeline import Compressor

__all__ = ["evaluate", "jpeg_curve", "jpeg_matched", "webp_curve"]

JPEG_QUALITIES = (1, 3, 5, 8, 12, 20, 30, 45, 60, 75, 90)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 45, 60, 75, 90)
PFD_PATCH, PFD_STRIDE = 64, 32


def _pillow(img: np.ndarray, quality: int, fmt: str = "JPEG") -> tuple[bytes, np.ndarray]:
    """``img`` coded by Pillow in ``fmt`` (JPEG or lossy WEBP) at ``quality``: (file, decoded)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, quality=int(quality))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB" if img.ndim == 3 else "L"))
    return data, dec


def _reference_curve(img: np.ndarray, qualities: Sequence[int], fmt: str) -> list[dict[str, float]]:
    h, w = img.shape[:2]
    out = []
    for q in qualities:
        data, dec = _pillow(img, q, fmt)
        out.append({"quality": q, "bpp": bits_per_pixel(data, h, w), "psnr": psnr(img, dec)})
    return out


def jpeg_curve(
    img: np.ndarray, qualities: Sequence[int] = JPEG_QUALITIES
) -> list[dict[str, float]]:
    """``[{quality, bpp, psnr}]`` of Pillow JPEG on ``img`` (file bpp, header included)."""
    return _reference_curve(img, qualities, "JPEG")


def webp_curve(
    img: np.ndarray, qualities: Sequence[int] = WEBP_QUALITIES
) -> list[dict[str, float]]:
    """``[{quality, bpp, psnr}]`` of Pillow's lossy WebP (libwebp) on ``img`` (file bpp, RIFF
    container included): the second reference curve of ``rd_curve.png``."""
    return _reference_curve(img, qualities, "WEBP")


def jpeg_matched(img: np.ndarray, bpp: float) -> dict[str, Any]:
    """Pillow JPEG at the quality (1..95) whose file bpp is closest to ``bpp``."""
    h, w = img.shape[:2]
    best = None
    for q in range(1, 96):
        data, dec = _pillow(img, q)
        r = bits_per_pixel(data, h, w)
        if best is None or abs(r - bpp) < abs(best["bpp"] - bpp):
            best = {"quality": q, "bpp": r, "psnr": psnr(img, dec), "image": dec}
    assert best is not None
    return best


def _pfd_patches(img: np.ndarray) -> int:
    """How many PFD-rand patches (64 px, stride 32) ``img`` gives."""
    h, w = img.shape[:2]
    if min(h, w) < PFD_PATCH:
        return 0
    return ((h - PFD_PATCH) // PFD_STRIDE + 1) * ((w - PFD_PATCH) // PFD_STRIDE + 1)


def _pfd_features(img: np.ndarray) -> np.ndarray:
    return metrics.patch_features(img, patch=PFD_PATCH, stride=PFD_STRIDE, seed=0)


def _row(
    img: np.ndarray, rec: np.ndarray, pfd: bool = True, reference: np.ndarray | None = None
) -> dict[str, Any]:
    """The metrics of reconstruction ``rec`` of ``img``; ``reference`` = ``_pfd_features(img)``
    when the caller scores several reconstructions of one image (computed once)."""
    from diff_core.metrics import frechet_distance

    ms = metrics.ms_ssim(img, rec)
    pfd_rand = None
    if pfd:
        ref = _pfd_features(img) if reference is None else reference
        pfd_rand = float(frechet_distance(_pfd_features(rec), ref))
    return {
        "psnr": psnr(img, rec),
        "ssim": metrics.ssim(img, rec),
        "ms_ssim": ms.value,
        "ms_ssim_scales": ms.scales,
        "hf_ratio": metrics.hf_energy_ratio(rec, img),
        "pfd_rand": pfd_rand,
    }


def evaluate(
    model_dirs: Sequence[str | Path],
    images: dict[str, np.ndarray],
    out_dir: str | Path,
    *,
    steps: Sequence[int] = (4, 16),
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each model on each image; write metrics.json, metrics.md, rd_curve.png and
    comparison.png into ``out_dir``; return the metrics."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"models": {}, "jpeg": {}, "webp": {}, "steps": list(steps)}
    recon: dict[str, dict[str, np.ndarray]] = {}
    refs: dict[str, np.ndarray | None] = {}  # PFD-rand features of each original, once
    for name, img in images.items():
        results["jpeg"][name] = jpeg_curve(img)
        results["webp"][name] = webp_curve(img)
        refs[name] = _pfd_features(img) if _pfd_patches(img) >= 2 else None
        if refs[name] is None:
            print(
                f"evaluate: {name} ({img.shape[0]}×{img.shape[1]}) gives fewer than 2 PFD-rand "
                f"patches of {PFD_PATCH} px (stride {PFD_STRIDE}): pfd_rand = None"
            )
    for md in model_dirs:
        comp = Compressor.load(md)
        key = Path(md).name
        rows = {}
        for name, img in tqdm(images.items(), desc=f"evaluate {key}", disable=not progress):
            data = comp.compress(img, seed=seed)
            h, w = img.shape[:2]
            ref = refs[name]
            enc = comp.encode_stats(img)
            mse = comp.decompress(data)
            row: dict[str, Any] = {
                "bpp": bits_per_pixel(data, h, w),
                "bpp_estimate": enc.bits_estimate / (h * w),
                "mse": _row(img, mse, ref is not None, ref),
            }
            rec = {"original": img, "MSE": mse}
            if comp.decoder is not None:
                for s in steps:
                    dif = comp.decompress(data, decoder="diffusion", steps=int(s))
                    row[f"diffusion_{s}"] = _row(img, dif, ref is not None, ref)
                    rec[f"diffusion {s}"] = dif
            jm = jpeg_matched(img, row["bpp"])
            rec["JPEG"] = jm.pop("image")
            jm.update(_row(img, rec["JPEG"], ref is not None, ref))
            row["jpeg_matched"] = jm
            rows[name] = row
            recon.setdefault(key, {})[name] = rec  # type: ignore[assignment]
        results["models"][key] = rows
    save_json(out / "metrics.json", results)
    _markdown(results, out / "metrics.md")
    _rd_plot(results, out / "rd_curve.png")
    _comparison(recon, out / "comparison.png")
    return results


def _markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "| model | image | decoder | bpp (file) | bpp (est.) | PSNR | SSIM | MS-SSIM (scales) "
        "| hf ratio | PFD-rand |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in results["models"].items():
        for name, row in rows.items():
            for dec in [k for k in row if k == "mse" or k.startswith("diffusion_")] + [
                "jpeg_matched"
            ]:
                r = row[dec]
                bpp = r["bpp"] if dec == "jpeg_matched" else row["bpp"]
                est = "" if dec == "jpeg_matched" else f"{row['bpp_estimate']:.4f}"
                pfd = "—" if r.get("pfd_rand") is None else f"{r['pfd_rand']:.4g}"
                lines.append(
                    f"| {key} | {name} | {dec} | {bpp:.4f} | {est} | {r['psnr']:.2f} | "
                    f"{r['ssim']:.4f} | {r['ms_ssim']:.4f} ({r['ms_ssim_scales']}) | "
                    f"{r['hf_ratio']:.3f} | {pfd} |"
                )
    lines.append("")
    lines.append(
        "MS-SSIM: Wang, Simoncelli & Bovik 2003, 5 scales from 176 px (fewer on smaller images, "
        "weights renormalised). PFD-rand: Fréchet distance of a fixed random conv net's features "
        f"of {PFD_PATCH}-px patches (stride {PFD_STRIDE}, seed 0), reconstruction vs original; "
        "not FID; comparable only within one run; — = fewer than 2 patches."
    )
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def _rd_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(results["jpeg"])
    jb = np.mean([[p["bpp"] for p in results["jpeg"][n]] for n in names], axis=0)
    jp = np.mean([[p["psnr"] for p in results["jpeg"][n]] for n in names], axis=0)
    axes[0].plot(jb, jp, "k--o", ms=3, label="JPEG (Pillow)")
    if results.get("webp"):
        wb = np.mean([[p["bpp"] for p in results["webp"][n]] for n in names], axis=0)
        wp = np.mean([[p["psnr"] for p in results["webp"][n]] for n in names], axis=0)
        axes[0].plot(wb, wp, ":", color="gray", marker="s", ms=3, label="WebP (Pillow)")
    for key, rows in results["models"].items():
        bpp = np.mean([r["bpp"] for r in rows.values()])
        axes[0].plot(
            [bpp], [np.mean([r["mse"]["psnr"] for r in rows.values()])], "o", label=f"{key} MSE"
        )
        axes[1].plot(
            [bpp], [np.mean([r["mse"]["hf_ratio"] for r in rows.values()])], "o", label=f"{key} MSE"
        )
        for s in results["steps"]:
            k = f"diffusion_{s}"
            if all(k in r for r in rows.values()):
                axes[0].plot(
                    [bpp],
                    [np.mean([r[k]["psnr"] for r in rows.values()])],
                    "^",
                    label=f"{key} diffusion-{s}",
                )
                axes[1].plot(
                    [bpp],
                    [np.mean([r[k]["hf_ratio"] for r in rows.values()])],
                    "^",
                    label=f"{key} diffusion-{s}",
                )
        jm = [r["jpeg_matched"] for r in rows.values()]
        axes[1].plot(
            [np.mean([j["bpp"] for j in jm])],
            [np.mean([j["hf_ratio"] for j in jm])],
            "ks",
            label="JPEG matched",
        )
    axes[0].set(
        xlabel="bits per pixel (file)",
        ylabel="PSNR (dB)",
        title="rate-distortion (mean over images)",
    )
    axes[1].axhline(1.0, color="gray", lw=0.8)
    axes[1].set(
        xlabel="bits per pixel (file)",
        ylabel="high-frequency energy ratio (1 = original)",
        title="realism proxy",
    )
    for a in axes:
        a.ticklabel_format(useOffset=False)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _comparison(
    recon: dict[str, dict[str, dict[str, np.ndarray]]], path: Path, size: int = 256
) -> None:
    from PIL import Image, ImageDraw

    rows = []
    for key, per in recon.items():
        for name, rec in per.items():
            tiles = []
            for label, im in rec.items():
                a = im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=2)
                h, w = a.shape[:2]
                top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
                crop = np.zeros((size, size, 3), np.uint8)
                part = a[top : top + size, left : left + size]
                crop[: part.shape[0], : part.shape[1]] = part
                pil = Image.fromarray(crop)
                ImageDraw.Draw(pil).text((4, 4), f"{key}/{name}: {label}", fill=(255, 255, 0))
                tiles.append(np.asarray(pil))
            rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).save(buf, format="PNG")
    write_atomic(path, buf.getvalue())


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
