"""The ``diff-compress`` command line.

Conventions: every option's help shows its default; a bad argument is one line
(``diff-compress <cmd>: error: <argument>: <message>``) and exit code 2; a malformed stream exits 3
printing its ``BitstreamError`` reason and message; an output that exists is refused before any
work unless ``--overwrite`` (a training folder holding this run's unfinished checkpoints is resumed
instead: ``resuming from step N``); files are written atomically (a failed decode writes nothing);
Ctrl-C during training writes a checkpoint and exits 130 with one line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main"]


@dataclass(frozen=True)
class Defaults:
    """Every default of the command line, defined once."""

    preset: str = "q3"
    size: str = "cpu"
    data: str = "offline"
    codec_steps: int = 1500
    crop: int = 64
    batch: int = 8
    seed: int = 0
    checkpoint_every: int = 500
    decoder_steps: int = 4000
    decoder_batch: int = 16
    decoder_crop: int = 64
    target: str = "image"
    schedule_resolution: int = 8
    process: str = "vp"
    coder: str = "range"
    decoder: str = "mse"
    steps: int = 16
    sampler: str = "ddpm"
    eval_steps: str = "4,16"


D = Defaults()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(parser: argparse.ArgumentParser, arg: str, msg: str) -> None:
    parser.error(f"{arg}: {msg}")


def _positive(name: str):
    def conv(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {v!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {n}")
        return n

    return conv


def _nonneg(name: str):
    def conv(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {v!r}") from None
        if n < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {n}")
        return n

    return conv


def build_parser() -> argparse.ArgumentParser:
    from diff_compress.codec import PRESETS, SIZES

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(
        prog="diff-compress",
        description="Learned image compression with a real bitstream and a diffusion decoder "
        "(HFD, arXiv 2305.18231).",
        formatter_class=fmt,
    )
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    tr = sub.add_parser(
        "train", help="train the codec or the diffusion decoder", formatter_class=fmt
    )
    trs = tr.add_subparsers(dest="what", required=True, parser_class=_Parser)
    tc = trs.add_parser("codec", help="train the stage-1 MSE codec", formatter_class=fmt)
    tc.add_argument("--out", required=True, help="model folder (resumed if it holds this run)")
    tc.add_argument("--preset", default=D.preset, choices=sorted(PRESETS), help="rate point (λ)")
    tc.add_argument("--lmbda", type=float, default=None, help="custom λ instead of --preset")
    tc.add_argument("--size", default=D.size, choices=sorted(SIZES), help="codec size")
    tc.add_argument(
        "--data",
        default=D.data,
        help="'offline' (scikit-image photos), 'digits' or an image folder",
    )
    tc.add_argument(
        "--steps", type=_positive("--steps"), default=D.codec_steps, help="optimiser steps"
    )
    tc.add_argument("--crop", type=_positive("--crop"), default=D.crop, help="training crop side")
    tc.add_argument("--batch", type=_positive("--batch"), default=D.batch, help="batch size")
    tc.add_argument("--seed", type=_nonneg("--seed"), default=D.seed, help="run seed")
    tc.add_argument(
        "--checkpoint-every",
        type=_nonneg("--checkpoint-every"),
        default=D.checkpoint_every,
        help="steps per checkpoint (0: end only)",
    )
    tc.add_argument("--overwrite", action="store_true", help="delete an existing --out first")

    td = trs.add_parser("decoder", help="train the stage-2 diffusion decoder", formatter_class=fmt)
    td.add_argument(
        "--codec",
        required=True,
        help="model folder with a trained codec; the decoder goes to CODEC/decoder",
    )
    td.add_argument("--data", default=D.data, help="'offline', 'digits' or an image folder")
    td.add_argument(
        "--steps", type=_positive("--steps"), default=D.decoder_steps, help="optimiser steps"
    )
    td.add_argument(
        "--crop", type=_positive("--crop"), default=D.decoder_crop, help="training crop (tile) side"
    )
    td.add_argument(
        "--batch", type=_positive("--batch"), default=D.decoder_batch, help="batch size"
    )
    td.add_argument(
        "--target",
        default=D.target,
        choices=("image", "residual"),
        help="what the decoder denoises",
    )
    td.add_argument(
        "--schedule-resolution",
        type=_positive("--schedule-resolution"),
        default=D.schedule_resolution,
        help="shifted cosine resolution (reference 64)",
    )
    td.add_argument(
        "--process", default=D.process, choices=("vp", "rectified_flow"), help="diffusion process"
    )
    td.add_argument("--seed", type=_nonneg("--seed"), default=D.seed, help="run seed")
    td.add_argument(
        "--checkpoint-every",
        type=_nonneg("--checkpoint-every"),
        default=D.checkpoint_every,
        help="steps per checkpoint (0: end only)",
    )
    td.add_argument(
        "--overwrite", action="store_true", help="delete an existing CODEC/decoder first"
    )

    en = sub.add_parser("encode", help="compress an image file", formatter_class=fmt)
    en.add_argument("image", help="PNG/JPEG file")
    en.add_argument("-o", "--out", default=None, help="output stream (default IMAGE with .dcmp)")
    en.add_argument("--model", required=True, help="model folder")
    en.add_argument("--coder", default=D.coder, choices=("range", "ans"), help="entropy coder")
    en.add_argument(
        "--seed",
        type=_nonneg("--seed"),
        default=D.seed,
        help="diffusion decoder seed stored in the header",
    )
    en.add_argument("--drop-alpha", action="store_true", help="accept RGBA by dropping alpha")
    en.add_argument("--overwrite", action="store_true", help="replace an existing output")

    de = sub.add_parser("decode", help="decompress a stream to PNG", formatter_class=fmt)
    de.add_argument("file", help=".dcmp stream")
    de.add_argument("-o", "--out", default=None, help="output PNG (default FILE with .png)")
    de.add_argument("--model", required=True, help="model folder")
    de.add_argument(
        "--decoder", default=D.decoder, choices=("mse", "diffusion"), help="which decoder"
    )
    de.add_argument("--steps", type=_positive("--steps"), default=D.steps, help="diffusion steps")
    de.add_argument(
        "--sampler", default=D.sampler, choices=("ddpm", "ddim"), help="diffusion sampler"
    )
    de.add_argument(
        "--seed",
        type=_nonneg("--seed"),
        default=None,
        help="diffusion seed (default: the header's)",
    )
    de.add_argument(
        "--tile",
        type=_positive("--tile"),
        default=None,
        help="tile side (default: the decoder's crop when larger)",
    )
    de.add_argument("--overwrite", action="store_true", help="replace an existing output")

    inf = sub.add_parser(
        "info", help="print a stream's header, size, bpp and CRC status", formatter_class=fmt
    )
    inf.add_argument("file", help=".dcmp stream")

    ev = sub.add_parser("evaluate", help="rate-distortion table and plots", formatter_class=fmt)
    ev.add_argument("--model", required=True, nargs="+", help="model folder(s)")
    ev.add_argument("--images", default="offline-test", help="'offline-test' or an image folder")
    ev.add_argument(
        "--center-crop",
        type=_positive("--center-crop"),
        default=None,
        help="evaluate on centre crops of this side",
    )
    ev.add_argument("--out", required=True, help="output folder")
    ev.add_argument("--steps", default=D.eval_steps, help="comma-separated diffusion step counts")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    dm = sub.add_parser("demo", help="train both stages and evaluate", formatter_class=fmt)
    dm.add_argument(
        "--quick",
        action="store_true",
        help="300 codec + 300 decoder steps (batch 4), evaluated on 128×128 centre crops",
    )
    dm.add_argument("--out", required=True, help="output folder")
    dm.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _out_dir(
    parser: argparse.ArgumentParser, arg: str, out: str, overwrite: bool, resumable: bool
) -> Path:
    path = Path(out)
    if path.exists() and any(path.iterdir()) if path.is_dir() else path.exists():
        if overwrite:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        elif not resumable:
            _fail(parser, arg, f"{out!r} exists (pass --overwrite to replace it)")
    return path


def _out_file(parser: argparse.ArgumentParser, out: Path, overwrite: bool) -> Path:
    if out.exists() and not overwrite:
        _fail(parser, "--out", f"{str(out)!r} exists (pass --overwrite to replace it)")
    if not out.parent.is_dir():
        _fail(parser, "--out", f"folder {str(out.parent)!r} does not exist")
    return out


def _load(parser: argparse.ArgumentParser, model: str) -> Any:
    from diff_compress.pipeline import Compressor

    if not (Path(model) / "codec" / "config.json").is_file():
        _fail(parser, "--model", f"{model!r} holds no trained codec (codec/config.json)")
    return Compressor.load(model)


def _images(parser: argparse.ArgumentParser, spec: str, crop: int | None) -> dict[str, Any]:
    import numpy as np

    from diff_compress.data import offline_photos
    from diff_compress.pipeline import read_image

    if spec == "offline-test":
        imgs = offline_photos("test")
    else:
        folder = Path(spec)
        if not folder.is_dir():
            _fail(parser, "--images", f"must be 'offline-test' or a folder, got {spec!r}")
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")
        )
        if not files:
            _fail(parser, "--images", f"{spec!r} holds no PNG/JPEG files")
        imgs = {p.stem: read_image(p, drop_alpha=True) for p in files}
    if crop:
        out = {}
        for k, im in imgs.items():
            h, w = im.shape[:2]
            c = min(crop, h, w)
            top, left = (h - c) // 2, (w - c) // 2
            out[k] = np.ascontiguousarray(im[top : top + c, left : left + c])
        imgs = out
    return imgs


def _train_codec(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.codec import CodecConfig
    from diff_compress.train import train_codec

    out = Path(a.out)
    if (out / "codec" / "config.json").is_file() and not a.overwrite:
        _fail(parser, "--out", f"{a.out!r} holds a finished codec (pass --overwrite to replace it)")
    if out.exists() and a.overwrite:
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()) and not (out / "codec" / "checkpoints").is_dir():
        _fail(
            parser,
            "--out",
            f"{a.out!r} exists and is not a codec run (pass --overwrite to replace it)",
        )
    if a.data not in ("offline", "digits") and not Path(a.data).is_dir():
        _fail(parser, "--data", f"must be 'offline', 'digits' or a folder, got {a.data!r}")
    try:
        cfg = CodecConfig.named(a.size, a.preset, a.lmbda)
    except ValueError as e:
        _fail(parser, "--size", str(e))
    crop = 8 if a.data == "digits" else a.crop
    if a.data == "digits" and cfg.in_channels != 1:
        _fail(parser, "--size", "digits are greyscale 8×8: use --size digits")
    if crop % cfg.pad_multiple:
        _fail(
            parser,
            "--crop",
            f"must be a multiple of {cfg.pad_multiple} for --size {a.size}, got {crop}",
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tr = train_codec(
        cfg,
        a.data,
        out,
        a.steps,
        crop=crop,
        batch=a.batch,
        seed=a.seed,
        checkpoint_every=a.checkpoint_every,
    )
    print(
        f"codec trained to step {tr.step_count} in {time.perf_counter() - t0:.1f} s: "
        f"{out / 'codec'}"
    )
    return 0


def _train_decoder(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.decoder import DiffusionDecoderConfig
    from diff_compress.train import load_codec, train_decoder

    model = Path(a.codec)
    if not (model / "codec" / "config.json").is_file():
        _fail(parser, "--codec", f"{a.codec!r} holds no trained codec (codec/config.json)")
    dec = model / "decoder"
    if (dec / "config.json").is_file() and not a.overwrite:
        _fail(
            parser,
            "--codec",
            f"{a.codec!r} already holds a finished decoder (pass --overwrite to replace it)",
        )
    if dec.exists() and a.overwrite:
        shutil.rmtree(dec)
    codec, _ = load_codec(model)
    crop = 8 if a.data == "digits" else a.crop
    if crop % codec.config.pad_multiple:
        _fail(
            parser,
            "--crop",
            f"must be a multiple of the codec's {codec.config.pad_multiple}, got {crop}",
        )
    cfg = DiffusionDecoderConfig.for_crop(
        crop,
        channels=codec.config.in_channels,
        target=a.target,
        schedule={
            "name": "shifted_cosine",
            "resolution": a.schedule_resolution,
            "reference_resolution": 64,
        },
        process=a.process,
        sampler="ddim" if a.process == "rectified_flow" else "ddpm",
    )
    t0 = time.perf_counter()
    tr = train_decoder(
        cfg, model, a.data, a.steps, batch=a.batch, seed=a.seed, checkpoint_every=a.checkpoint_every
    )
    print(f"decoder trained to step {tr.step_count} in {time.perf_counter() - t0:.1f} s: {dec}")
    return 0


def _encode(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.metrics import bits_per_pixel
    from diff_compress.pipeline import read_image, write_atomic

    src = Path(a.image)
    if not src.is_file():
        _fail(parser, "image", f"{a.image!r} is not a file")
    out = _out_file(parser, Path(a.out) if a.out else src.with_suffix(".dcmp"), a.overwrite)
    comp = _load(parser, a.model)
    t0 = time.perf_counter()
    img = read_image(src, drop_alpha=a.drop_alpha)
    enc = comp._encode(img, a.coder, a.seed, "diffusion", a.drop_alpha)
    write_atomic(out, enc.data)
    h, w = img.shape[:2]
    print(
        f"{src.name} → {out.name}: {len(enc.data):,} bytes, "
        f"{bits_per_pixel(enc.data, h, w):.3f} bpp "
        f"(estimate {enc.bits_estimate / (h * w):.3f}), {time.perf_counter() - t0:.2f} s"
    )
    return 0


def _decode(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.pipeline import decompress_file

    src = Path(a.file)
    if not src.is_file():
        _fail(parser, "file", f"{a.file!r} is not a file")
    out = _out_file(parser, Path(a.out) if a.out else src.with_suffix(".png"), a.overwrite)
    comp = _load(parser, a.model)
    if a.decoder == "diffusion" and comp.decoder is None:
        _fail(parser, "--decoder", f"diffusion needs a trained decoder in {a.model}/decoder")
    t0 = time.perf_counter()
    img = decompress_file(
        comp,
        src,
        out,
        decoder=a.decoder,
        steps=a.steps,
        sampler=a.sampler,
        seed=a.seed,
        tile=a.tile,
    )
    print(
        f"{src.name} → {out.name}: {img.shape[1]}×{img.shape[0]} ({a.decoder}), "
        f"{time.perf_counter() - t0:.2f} s"
    )
    return 0


def _info(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.bitstream import unpack
    from diff_compress.codec import PRESETS
    from diff_compress.metrics import bits_per_pixel

    src = Path(a.file)
    if not src.is_file():
        _fail(parser, "file", f"{a.file!r} is not a file")
    data = src.read_bytes()
    h, _, _ = unpack(data)
    preset = list(PRESETS)[h.preset_id] if h.preset_id < len(PRESETS) else "custom"
    print(
        f"{src.name}: {h.height}×{h.width} (H×W), {len(data):,} bytes, "
        f"{bits_per_pixel(data, h.height, h.width):.4f} bpp; format v{h.version}, coder {h.coder}, "
        f"preset {preset}, model {h.fingerprint.hex()}, seed {h.seed}, grayscale {h.grayscale}, "
        f"diffusion recommended {h.diffusion}; words z {h.n_z_words} y {h.n_y_words}; CRC ok"
    )
    return 0


def _evaluate(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.evaluate import evaluate

    try:
        steps = [int(s) for s in a.steps.split(",") if s.strip()]
    except ValueError:
        _fail(parser, "--steps", f"must be comma-separated integers, got {a.steps!r}")
    if not steps or min(steps) < 1:
        _fail(parser, "--steps", f"must be integers >= 1, got {a.steps!r}")
    for m in a.model:
        if not (Path(m) / "codec" / "config.json").is_file():
            _fail(parser, "--model", f"{m!r} holds no trained codec (codec/config.json)")
    out = _out_dir(parser, "--out", a.out, a.overwrite, resumable=False)
    imgs = _images(parser, a.images, a.center_crop)
    res = evaluate(a.model, imgs, out, steps=steps)
    for key, rows in res["models"].items():
        import numpy as np

        bpp = np.mean([r["bpp"] for r in rows.values()])
        ps = np.mean([r["mse"]["psnr"] for r in rows.values()])
        jp = np.mean([r["jpeg_matched"]["psnr"] for r in rows.values()])
        print(f"{key}: {bpp:.3f} bpp, MSE decoder {ps:.2f} dB, JPEG at matched bpp {jp:.2f} dB")
    print(f"wrote {out}/metrics.json, metrics.md, rd_curve.png, comparison.png")
    return 0


def _demo(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from diff_compress.codec import CodecConfig
    from diff_compress.decoder import DiffusionDecoderConfig
    from diff_compress.evaluate import evaluate
    from diff_compress.train import train_codec, train_decoder

    out = _out_dir(parser, "--out", a.out, a.overwrite, resumable=True)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    cs, ds, crop = (300, 300, 128) if a.quick else (1500, 4000, None)
    if not (model / "codec" / "config.json").is_file():
        train_codec(CodecConfig.named("cpu", "q3"), "offline", model, cs, checkpoint_every=100)
    if not (model / "decoder" / "config.json").is_file():
        train_decoder(
            DiffusionDecoderConfig.for_crop(64),
            model,
            "offline",
            ds,
            batch=4 if a.quick else 16,
            checkpoint_every=100,
        )
    imgs = _images(parser, "offline-test", crop)
    res = evaluate([model], imgs, out / "eval", steps=(4, 16))
    rows = res["models"]["model"]
    import numpy as np

    print(
        f"demo: {np.mean([r['bpp'] for r in rows.values()]):.3f} bpp, MSE "
        f"{np.mean([r['mse']['psnr'] for r in rows.values()]):.2f} dB, diffusion-16 "
        f"{np.mean([r['diffusion_16']['psnr'] for r in rows.values()]):.2f} dB; "
        f"pictures in {out / 'eval'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from diff_compress.errors import BitstreamError

    parser = build_parser()
    a = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[a.cmd]  # type: ignore[union-attr]
    if a.cmd == "train":
        sub = sub._subparsers._group_actions[0].choices[a.what]  # type: ignore[union-attr]
    handlers = {
        "encode": _encode,
        "decode": _decode,
        "info": _info,
        "evaluate": _evaluate,
        "demo": _demo,
    }
    from diff_pixel.train import TrainingInterrupted

    try:
        if a.cmd == "train":
            return (_train_codec if a.what == "codec" else _train_decoder)(sub, a)
        return handlers[a.cmd](sub, a)
    except BitstreamError as e:
        print(f"{sub.prog}: {e}", file=sys.stderr)
        return 3
    except TrainingInterrupted as e:
        print(
            f"{sub.prog}: interrupted at step {e.step}; checkpoint {e.checkpoint} "
            "(run the same command to resume)",
            file=sys.stderr,
        )
        return 130
    except (ValueError, TypeError) as e:
        print(f"{sub.prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
