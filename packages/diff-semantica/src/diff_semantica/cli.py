"""The ``diff-semantica`` console script: pairs, train-encoder, train, sample, evaluate, demo.

Defaults come from :class:`~diff_semantica.pairs.PairConfig`,
:class:`~diff_semantica.filtering.FilterConfig`, :class:`~diff_semantica.model.SemanticaConfig`
and :data:`~diff_semantica.recipes.DIGITS_RUN`. Bad arguments are one line
(``diff-semantica <cmd>: error: argument --x: ...``) with exit code 2; an output that exists is
refused before any work unless ``--overwrite`` (a training folder holding checkpoints is resumed
instead: ``resuming from step N``; a folder of another configuration is refused naming the
differing fields); Ctrl-C during training writes a checkpoint and exits 130 with one line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff_semantica.filtering import FilterConfig
from diff_semantica.pairs import PairConfig
from diff_semantica.recipes import DIGITS_RUN
from diff_semantica.report import GLOSSARY as _GLOSSARY
from diff_semantica.report import metrics_table as _table
from diff_semantica.report import write_metrics as _write_metrics

__all__ = ["build_parser", "main"]

_PC, _FC = PairConfig(), FilterConfig()
RUN_INFO = "run_info.json"


def _tau(text: str) -> float | str | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="diff-semantica",
        description="Image-conditioned diffusion with a frozen encoder, pair data and semantic "
        "filtering (Semantica, arXiv 2405.14857).",
        formatter_class=fmt,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--data",
            default="digits",
            help="'digits', 'photo_crops', 'shapes10' or an image folder (a sub-folder per group)",
        )
        q.add_argument(
            "--encoder",
            default="pca",
            help="'pca' (PCA-24 fitted on --data), 'random', or a folder written by "
            "train-encoder / save_encoder (config.json + params.safetensors)",
        )

    def pair_args(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--corrupt",
            type=float,
            default=_PC.corrupt_fraction,
            help="share of pairs whose target is a random image (unrelated images of a page)",
        )
        q.add_argument(
            "--duplicates",
            type=float,
            default=_PC.duplicate_fraction,
            help="share of near-duplicate pairs",
        )
        q.add_argument(
            "--pairs-per-epoch", type=int, default=_PC.pairs_per_epoch, help="candidate pairs"
        )
        q.add_argument(
            "--tau-lo",
            type=_tau,
            default=_FC.tau_lo,
            help="lower cosine bound: a cosine, 'pNN' (a percentile) or 'none' (no filter)",
        )
        q.add_argument(
            "--tau-hi",
            type=_tau,
            default=_FC.tau_hi,
            help="upper cosine bound (near-duplicates): a number, 'pNN' or 'none'",
        )

    pa = sub.add_parser("pairs", help="build and filter training pairs", formatter_class=fmt)
    data_args(pa)
    pair_args(pa)
    pa.add_argument("--seed", type=int, default=0, help="seed of the pair stream")
    pa.add_argument(
        "--out", required=True, help="output folder (pairs.npz, filter_report.json, pairs.png)"
    )
    pa.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    te = sub.add_parser(
        "train-encoder", help="train a ConvEncoder (SimCLR or classifier)", formatter_class=fmt
    )
    te.add_argument("--data", default="digits", help="as for pairs")
    te.add_argument(
        "--kind", choices=("simclr", "classifier"), default="simclr", help="training objective"
    )
    te.add_argument("--steps", type=int, default=500, help="Adam steps")
    te.add_argument("--dim", type=int, default=64, help="token width D")
    te.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    te.add_argument("--out", required=True, help="output folder (config.json + params.safetensors)")
    te.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    tr = sub.add_parser(
        "train", help="train an image-conditioned model on pairs", formatter_class=fmt
    )
    data_args(tr)
    pair_args(tr)
    tr.add_argument(
        "--pairs", default=None, help="a folder written by 'pairs' (else pairs are built here)"
    )
    tr.add_argument(
        "--self-pairs", action="store_true", help="train on (a, a): the reconstruction baseline"
    )
    tr.add_argument("--steps", type=int, default=DIGITS_RUN.steps, help="training steps")
    tr.add_argument("--batch", type=int, default=DIGITS_RUN.batch_size, help="batch size")
    tr.add_argument(
        "--lr", type=float, default=DIGITS_RUN.lr, help="peak learning rate (cosine decay)"
    )
    tr.add_argument(
        "--p-drop", type=float, default=0.1, help="conditioning dropout (learned null token)"
    )
    tr.add_argument("--seed", type=int, default=0, help="seed of weights, pairs and noise")
    tr.add_argument(
        "--checkpoint-every",
        type=int,
        default=DIGITS_RUN.checkpoint_every,
        help="steps between checkpoints (0: only at the end and on Ctrl-C)",
    )
    tr.add_argument("--out", required=True, help="run folder (resumed when it holds checkpoints)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    sa = sub.add_parser(
        "sample", help="variations of conditioning images as a PNG grid", formatter_class=fmt
    )
    sa.add_argument("--model", required=True, help="run folder of 'train'")
    sa.add_argument(
        "--condition",
        required=True,
        help="an image file, a folder of images, or digits:C (held-out digits of class C)",
    )
    sa.add_argument("--n", type=int, default=8, help="variations per conditioning image")
    sa.add_argument(
        "--guidance",
        type=float,
        default=2.0,
        help="guidance scale (1 = conditional, 0 = unconditional)",
    )
    sa.add_argument("--steps", type=int, default=50, help="DDIM steps")
    sa.add_argument("--seed", type=int, default=0, help="noise seed")
    sa.add_argument(
        "--out",
        default=None,
        help="output PNG (default: <condition>_variations.png next to the conditioning image)",
    )
    sa.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    ev = sub.add_parser(
        "evaluate", help="adaptation metrics of a trained model", formatter_class=fmt
    )
    ev.add_argument("--model", required=True, help="run folder of 'train'")
    ev.add_argument(
        "--protocol",
        default="heldout-images",
        help="'heldout-images' (all held-out digits) or 'subset:0,1,2' (held-out digits of those)",
    )
    ev.add_argument("--n", type=int, default=4, help="variations per conditioning image")
    ev.add_argument(
        "--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="guidance scales"
    )
    ev.add_argument("--steps", type=int, default=25, help="DDIM steps")
    ev.add_argument(
        "--limit", type=int, default=0, help="use only the first N conditioning images (0: all)"
    )
    ev.add_argument("--seed", type=int, default=0, help="noise seed")
    ev.add_argument(
        "--out",
        required=True,
        help="output folder (metrics.json, metrics.md, grid.png, class_histogram.png)",
    )
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    de = sub.add_parser(
        "demo", help="PCA, filtered pairs, a short training and its evaluation", formatter_class=fmt
    )
    de.add_argument(
        "--quick",
        action="store_true",
        help="600 steps and 100 conditioning digits (about 3 minutes on 2 cores)",
    )
    de.add_argument("--out", required=True, help="output folder")
    de.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _fail(parser: argparse.ArgumentParser, arg: str, message: str) -> None:
    parser.error(f"argument {arg}: {message}")


def _out(
    parser: argparse.ArgumentParser, out: str, overwrite: bool, resumable: bool = False
) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        _fail(parser, "--out", f"must be a folder, got the file {out!r}")
    if path.exists() and any(path.iterdir()):
        if overwrite:
            shutil.rmtree(path)
        elif not (resumable and (path / "checkpoints").is_dir()):
            _fail(
                parser, "--out", f"{out!r} exists and is not empty (pass --overwrite to replace it)"
            )
    return path


def _configs(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[PairConfig, FilterConfig | None]:
    try:
        pc = PairConfig(
            pairs_per_epoch=args.pairs_per_epoch,
            corrupt_fraction=args.corrupt,
            duplicate_fraction=args.duplicates,
            self_pairs=bool(getattr(args, "self_pairs", False)),
            seed=args.seed,
        )
    except ValueError as err:
        name = {"corrupt_fraction": "--corrupt", "duplicate_fraction": "--duplicates"}
        arg = next((v for k, v in name.items() if k in str(err)), "--pairs-per-epoch")
        _fail(parser, arg, str(err).split(": ", 1)[-1])
    if args.tau_lo is None and args.tau_hi is None:
        return pc, None
    try:
        fc = FilterConfig(-1.0 if args.tau_lo is None else args.tau_lo, args.tau_hi)
    except ValueError as err:
        msg = str(err).split(": ", 1)[-1]
        _fail(parser, "--tau-hi" if msg.startswith("tau_hi") else "--tau-lo", msg)
    return pc, fc


def _data(parser: argparse.ArgumentParser, spec: str, split: str = "train") -> Any:
    from diff_semantica.data import load_dataset

    try:
        return load_dataset(spec, split)
    except ValueError as err:
        _fail(parser, "--data", str(err).split(": ", 1)[-1])


def _encoder(parser: argparse.ArgumentParser, spec: str, data: Any) -> Any:
    from diff_semantica.encoders import PCAEncoder, RandomProjectionEncoder, load_encoder

    if spec == "pca":
        return PCAEncoder.fit(data.images, 24)
    if spec == "random":
        return RandomProjectionEncoder(data.image_shape, 24, 0)
    path = Path(spec[5:] if spec.startswith("conv:") else spec)
    try:
        enc = load_encoder(path)
    except ValueError as err:
        _fail(parser, "--encoder", str(err).split(": ", 1)[-1])
    if tuple(enc.image_shape) != tuple(data.image_shape):
        _fail(
            parser,
            "--encoder",
            f"encodes images of shape {enc.image_shape}, the data has {data.image_shape}",
        )
    return enc


def _cmd_pairs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_semantica.filtering import filter_pairs, pair_cosines
    from diff_semantica.pairs import KINDS, pair_images, sample_pairs, save_pairs
    from diff_semantica.pictures import save_pairs_figure

    pc, fc = _configs(parser, args)
    out = _out(parser, args.out, args.overwrite)
    data = _data(parser, args.data)
    enc = _encoder(parser, args.encoder, data)
    cand = sample_pairs(data, pc, 0)
    cos = pair_cosines(cand, data, enc)
    if fc is None:
        keep, kept = np.ones(len(cand), bool), cand
        report = None
    else:
        try:
            kept, report = filter_pairs(cand, data, fc, cosines=cos)
        except ValueError as err:
            _fail(parser, "--tau-lo", str(err).split(": ", 1)[-1])
        keep = (cos >= report.tau_lo) & (
            (cos <= report.tau_hi) if report.tau_hi is not None else True
        )
    out.mkdir(parents=True, exist_ok=True)
    save_pairs(kept, out / "pairs.npz")
    if report is not None:
        report.save(out / "filter_report.json")
    x_a, x_b = pair_images(cand, data)
    save_pairs_figure(out / "pairs.png", x_a, x_b, cos, keep, cand.kind, KINDS)
    summary = {"candidates": len(cand), "kept": len(kept)}
    if report is not None:
        summary.update(
            tau_lo=report.tau_lo,
            tau_hi=report.tau_hi,
            same_group_before=report.same_group_before,
            same_group_after=report.same_group_after,
        )
    print(json.dumps(summary))
    return 0


def _cmd_train_encoder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_semantica.encoders import ConvEncoder, save_encoder, train_encoder

    for name in ("steps", "dim"):
        if getattr(args, name) <= 0:
            _fail(parser, f"--{name}", f"must be > 0, got {getattr(args, name)}")
    out = _out(parser, args.out, args.overwrite)
    data = _data(parser, args.data)
    enc = ConvEncoder(data.image_shape, dim=args.dim, seed=args.seed)
    enc = train_encoder(
        enc,
        data.images,
        data.groups,
        kind=args.kind,
        steps=args.steps,
        seed=args.seed,
        progress=True,
    )
    save_encoder(enc, out)
    print(f"encoder: {out} ({args.kind}, {args.steps} steps, {enc.num_tokens} tokens x {enc.dim})")
    return 0


def _cmd_train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_semantica.model import SemanticaConfig
    from diff_semantica.pairs import load_pairs
    from diff_semantica.train import RunConfig, train_semantica

    for name in ("steps", "batch", "lr"):
        if getattr(args, name) <= 0:
            _fail(parser, f"--{name}", f"must be > 0, got {getattr(args, name)}")
    if not 0 <= args.p_drop < 1:
        _fail(parser, "--p-drop", f"must be in [0, 1), got {args.p_drop}")
    if args.checkpoint_every < 0:
        _fail(parser, "--checkpoint-every", f"must be >= 0, got {args.checkpoint_every}")
    pairs: Any = _configs(parser, args)
    if args.pairs is not None:
        try:
            pairs = load_pairs(Path(args.pairs) / "pairs.npz")
        except ValueError as err:
            _fail(parser, "--pairs", str(err).split(": ", 1)[-1])
    out = _out(parser, args.out, args.overwrite, resumable=True)
    data = _data(parser, args.data)
    enc = _encoder(parser, args.encoder, data)
    if data.image_shape == (8, 8, 1):
        cfg = SemanticaConfig.for_digits(enc, p_drop=args.p_drop)
    elif data.image_shape[:2] == (32, 32):
        cfg = SemanticaConfig.for_shapes(enc, p_drop=args.p_drop)
    else:
        _fail(
            parser,
            "--data",
            f"images must be 8x8x1 (digits preset) or 32x32 (shapes), got {data.image_shape}",
        )
    run = RunConfig(
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    out.mkdir(parents=True, exist_ok=True)
    info = {"data": args.data, "encoder": args.encoder}
    if (out / RUN_INFO).exists() and json.loads((out / RUN_INFO).read_text()) != info:
        _fail(
            parser,
            "--out",
            f"holds a run of other data/encoder {json.loads((out / RUN_INFO).read_text())}",
        )
    from diff_protocol.io import atomic_write

    atomic_write(out / RUN_INFO, json.dumps(info))
    try:
        train_semantica(cfg, data, enc, pairs, out, run)
    except ValueError as err:
        if "another configuration" in str(err) or "pair stream" in str(err):
            _fail(parser, "--out", str(err))
        raise
    print(f"model: {out} ({args.steps} steps)")
    return 0


def _load_model(parser: argparse.ArgumentParser, path: str) -> tuple[Any, Any]:
    from diff_semantica.train import load_run

    p = Path(path)
    if not (p / "checkpoints").is_dir():
        _fail(parser, "--model", f"must be a run folder of 'train' with checkpoints/, got {path!r}")
    info = json.loads((p / RUN_INFO).read_text()) if (p / RUN_INFO).exists() else {"data": "digits"}
    try:
        _, ema, _ = load_run(p)
    except ValueError as err:
        _fail(parser, "--model", str(err))
    return ema, info


def _read_images(
    parser: argparse.ArgumentParser, spec: str, shape: tuple[int, int, int]
) -> tuple[np.ndarray, Path | None]:
    from PIL import Image

    from diff_semantica.data import digits_groups

    if spec.startswith("digits:"):
        try:
            c = int(spec[7:])
        except ValueError:
            c = -1
        if not 0 <= c <= 9:
            _fail(parser, "--condition", f"digits:C needs a class C in 0..9, got {spec!r}")
        test = digits_groups("test").of_groups([c])
        return test.images[:8], None
    p = Path(spec)
    files = (
        sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if p.is_dir()
        else [p]
    )
    if not files or not all(f.is_file() for f in files):
        _fail(
            parser,
            "--condition",
            f"must be an image file, a folder of images or digits:C, got {spec!r}",
        )
    h, w, c = shape
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.LANCZOS)
                a = np.asarray(im, np.float32) / 127.5 - 1.0
        except OSError as err:
            _fail(parser, "--condition", f"{f} is not a readable image ({err})")
        out.append(a.reshape(h, w, c))
    return np.stack(out), (p if p.is_file() else None)


def _cmd_sample(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_semantica.data import load_dataset
    from diff_semantica.metrics import nearest_rmse
    from diff_semantica.pictures import save_variation_grid
    from diff_semantica.sampling import sample_variations

    for name in ("n", "steps"):
        if getattr(args, name) <= 0:
            _fail(parser, f"--{name}", f"must be > 0, got {getattr(args, name)}")
    model, info = _load_model(parser, args.model)
    cond, file = _read_images(parser, args.condition, model.image_shape)
    if args.out is None:
        if file is not None:
            out = file.with_name(file.stem + "_variations.png")
        elif Path(args.condition).is_dir():
            out = Path(args.condition) / "variations.png"
        else:
            out = Path(args.condition.replace(":", "_") + "_variations.png")
    else:
        out = Path(args.out)
    if out.exists() and not args.overwrite:
        _fail(parser, "--out", f"{str(out)!r} exists (pass --overwrite to replace it)")
    s = sample_variations(
        model, cond, n_per_image=args.n, guidance=args.guidance, steps=args.steps, seed=args.seed
    )
    train = load_dataset(info["data"], "train")
    _, idx = nearest_rmse(s[:, 0], train.images)
    save_variation_grid(out, cond, s, train.images[idx])
    print(f"grid: {out} ({len(cond)} conditions x {args.n} variations, guidance {args.guidance})")
    return 0


def _cmd_evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_pixel import train_digits_classifier
    from diff_semantica.data import digits_groups
    from diff_semantica.evaluate import evaluate_adaptation
    from diff_semantica.metrics import nearest_rmse
    from diff_semantica.pictures import save_class_histogram, save_variation_grid

    if args.protocol == "heldout-images":
        classes = list(range(10))
    elif args.protocol.startswith("subset:"):
        try:
            classes = sorted({int(c) for c in args.protocol[7:].split(",")})
        except ValueError:
            classes = []
        if not classes or min(classes) < 0 or max(classes) > 9:
            _fail(
                parser,
                "--protocol",
                f"subset:C1,C2,... needs classes in 0..9, got {args.protocol!r}",
            )
    else:
        _fail(
            parser,
            "--protocol",
            f"must be 'heldout-images' or 'subset:0,1,2', got {args.protocol!r}",
        )
    if args.n < 2 or args.steps <= 0 or args.limit < 0:
        _fail(
            parser,
            "--n",
            f"needs --n >= 2, --steps > 0, --limit >= 0, got {args.n}, {args.steps}, {args.limit}",
        )
    out = _out(parser, args.out, args.overwrite)
    model, info = _load_model(parser, args.model)
    if info.get("data", "digits") != "digits":
        _fail(
            parser,
            "--model",
            "evaluate measures digits models (the digits classifier); got a model of "
            + info["data"],
        )
    cond = digits_groups("test").of_groups(classes)
    if args.limit:
        cond = cond.subset(np.arange(min(args.limit, len(cond))))
    clf = train_digits_classifier(8)
    train = digits_groups("train")
    metrics, samples = evaluate_adaptation(
        model,
        cond,
        clf,
        train=train,
        n_per_image=args.n,
        guidance_scales=args.scales,
        steps=args.steps,
        seed=args.seed,
        subset=classes,
        return_samples=True,
    )
    metrics["classifier_test_accuracy"] = clf.test_accuracy
    metrics["protocol"] = args.protocol
    metrics["glossary"] = _GLOSSARY
    _write_metrics(out, metrics)
    g = 2.0 if 2.0 in samples else next(iter(samples))
    show = np.arange(min(10, len(cond)))
    _, idx = nearest_rmse(samples[g][show, 0], train.images)
    save_variation_grid(out / "grid.png", cond.images[show], samples[g][show], train.images[idx])
    preds = {str(k): clf.predict(v.reshape(-1, *v.shape[2:])) for k, v in samples.items()}
    save_class_histogram(out / "class_histogram.png", preds, classes)
    print(_table(metrics))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    from diff_pixel.train import TrainingInterrupted

    try:
        if args.command == "pairs":
            return _cmd_pairs(sub, args)
        if args.command == "train-encoder":
            return _cmd_train_encoder(sub, args)
        if args.command == "train":
            return _cmd_train(sub, args)
        if args.command == "sample":
            return _cmd_sample(sub, args)
        if args.command == "evaluate":
            return _cmd_evaluate(sub, args)
        from diff_semantica.demo import run_demo

        out = _out(sub, args.out, args.overwrite)
        return run_demo(out, quick=args.quick)
    except TrainingInterrupted as err:
        print(
            f"diff-semantica: interrupted at step {err.step}; checkpoint: {err.checkpoint} "
            "(run the same command to resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
