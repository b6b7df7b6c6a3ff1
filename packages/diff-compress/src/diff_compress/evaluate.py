"""Rate-distortion evaluation: file bpp, PSNR, SSIM and the spectral realism proxy for the MSE
decoder, the diffusion decoder at several step counts, and Pillow's JPEG (a reference curve and
the quality whose bpp is closest); pictures ``rd_curve.png`` and ``comparison.png``."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff_compress.files import save_json, write_atomic
from diff_compress.metrics import bits_per_pixel, hf_energy_ratio, psnr, ssim
from diff_compress.pipeline import Compressor

__all__ = ["evaluate", "jpeg_curve", "jpeg_matched"]

JPEG_QUALITIES = (1, 3, 5, 8, 12, 20, 30, 45, 60, 75, 90)


def _jpeg(img: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB" if img.ndim == 3 else "L"))
    return data, dec


def jpeg_curve(
    img: np.ndarray, qualities: Sequence[int] = JPEG_QUALITIES
) -> list[dict[str, float]]:
    """``[{quality, bpp, psnr}]`` of Pillow JPEG on ``img``."""
    h, w = img.shape[:2]
    out = []
    for q in qualities:
        data, dec = _jpeg(img, q)
        out.append({"quality": q, "bpp": bits_per_pixel(data, h, w), "psnr": psnr(img, dec)})
    return out


def jpeg_matched(img: np.ndarray, bpp: float) -> dict[str, Any]:
    """Pillow JPEG at the quality (1..95) whose file bpp is closest to ``bpp``."""
    h, w = img.shape[:2]
    best = None
    for q in range(1, 96):
        data, dec = _jpeg(img, q)
        r = bits_per_pixel(data, h, w)
        if best is None or abs(r - bpp) < abs(best["bpp"] - bpp):
            best = {"quality": q, "bpp": r, "psnr": psnr(img, dec), "image": dec}
    assert best is not None
    return best


def _row(img: np.ndarray, rec: np.ndarray) -> dict[str, float]:
    return {
        "psnr": psnr(img, rec),
        "ssim": ssim(img, rec),
        "hf_ratio": hf_energy_ratio(rec, img),
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
    results: dict[str, Any] = {"models": {}, "jpeg": {}, "steps": list(steps)}
    recon: dict[str, dict[str, np.ndarray]] = {}
    for name, img in images.items():
        results["jpeg"][name] = jpeg_curve(img)
    for md in model_dirs:
        comp = Compressor.load(md)
        key = Path(md).name
        rows = {}
        for name, img in tqdm(images.items(), desc=f"evaluate {key}", disable=not progress):
            data = comp.compress(img, seed=seed)
            h, w = img.shape[:2]
            enc = comp.encode_stats(img)
            mse = comp.decompress(data)
            row: dict[str, Any] = {
                "bpp": bits_per_pixel(data, h, w),
                "bpp_estimate": enc.bits_estimate / (h * w),
                "mse": _row(img, mse),
            }
            rec = {"original": img, "MSE": mse}
            if comp.decoder is not None:
                for s in steps:
                    dif = comp.decompress(data, decoder="diffusion", steps=int(s))
                    row[f"diffusion_{s}"] = _row(img, dif)
                    rec[f"diffusion {s}"] = dif
            jm = jpeg_matched(img, row["bpp"])
            rec["JPEG"] = jm.pop("image")
            jm.update(_row(img, rec["JPEG"]))
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
        "| model | image | decoder | bpp (file) | bpp (est.) | PSNR | SSIM | hf ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in results["models"].items():
        for name, row in rows.items():
            for dec in [k for k in row if k == "mse" or k.startswith("diffusion_")] + [
                "jpeg_matched"
            ]:
                r = row[dec]
                bpp = r["bpp"] if dec == "jpeg_matched" else row["bpp"]
                est = "" if dec == "jpeg_matched" else f"{row['bpp_estimate']:.4f}"
                lines.append(
                    f"| {key} | {name} | {dec} | {bpp:.4f} | {est} | {r['psnr']:.2f} | "
                    f"{r['ssim']:.4f} | {r['hf_ratio']:.3f} |"
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
