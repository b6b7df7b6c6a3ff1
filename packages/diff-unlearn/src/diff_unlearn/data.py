"""The unlearning task: which classes to forget, which to keep, and the two data streams.

:func:`digits_task` splits diff-pixel's digits (scikit-learn ``load_digits``, 8×8, the fixed
1437 train / 360 test split of :func:`diff_pixel.digits`) into a *forget* set ``D_f`` (the
forgotten classes) and a *retain* set ``D_r`` (every other class). :func:`folder_task` does the
same for a user's image folder (one sub-folder per class). :class:`UnlearnData` draws one forget
batch and one retain batch per step, each a pure function of ``(seed, step)``, so unlearning runs
resume exactly.

The text path (:func:`prompt_task`): condition ids are rows of a prompt bank
(:func:`diff_unlearn.text.save_prompt_bank`); each training image is paired with every training
template of its class, and the model sees the prompt's embedding (:class:`PromptTable`) through
diff-pixel's ``vector`` condition instead of a class label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diff_pixel import Cond, Loader, digits, image_folder
from diff_pixel.data.loader import ArraySource

__all__ = [
    "PromptTable",
    "UnlearnData",
    "UnlearnTask",
    "digits_task",
    "folder_task",
    "prompt_task",
    "read_prompt_file",
]


class PromptTable:
    """The prompt bank as conditions: condition id i is prompt ``prompts[i]``, fed to the model as
    ``Cond(vector=embeddings[i])`` (diff-pixel's vector embedder; its learned null vector is the
    classifier-free-guidance slot).

    Hashable by content (prompts, embeddings, classes), so losses and sampling settings holding
    one stay hashable and equal tables share compiled steps.

    Attributes:
      prompts: the prompt strings, one per condition id.
      embeddings: (P, D) float32, read-only.
      classes: the digit class of each prompt (what a classifier should see in its samples).
      trained: whether each prompt is a training template (False: evaluation only, such as a
        held-out paraphrase).
    """

    def __init__(
        self,
        prompts: Sequence[str],
        embeddings: Any,
        classes: Sequence[int],
        trained: Sequence[bool] | None = None,
    ) -> None:
        emb = np.array(embeddings, np.float32)
        prompts = tuple(str(p) for p in prompts)
        if emb.ndim != 2 or emb.shape[0] != len(prompts) or not prompts:
            raise ValueError(
                f"PromptTable: embeddings must be ({len(prompts)}, D) for {len(prompts)} prompts, "
                f"got {emb.shape}"
            )
        if not np.all(np.isfinite(emb)):
            raise ValueError("PromptTable: embeddings must be finite, got NaN or inf values")
        if len(classes) != len(prompts):
            raise ValueError(
                f"PromptTable: classes must hold one class per prompt ({len(prompts)}), got "
                f"{len(classes)}"
            )
        emb.setflags(write=False)
        self.prompts, self.embeddings = prompts, emb
        self.classes = tuple(int(c) for c in classes)
        self.trained = tuple(bool(t) for t in (trained or [True] * len(prompts)))
        h = hashlib.sha256(emb.tobytes())
        h.update(repr((emb.shape, prompts, self.classes, self.trained)).encode())
        self.digest = h.hexdigest()

    @property
    def width(self) -> int:
        """The embedding width D (384 for all-MiniLM-L6-v2)."""
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.prompts)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptTable) and other.digest == self.digest

    def cond(self, ids: Any) -> Cond:
        """``Cond(vector=embeddings[ids])`` for condition ids (B,) (traceable)."""
        import jax.numpy as jnp

        return Cond(vector=jnp.asarray(self.embeddings)[jnp.asarray(ids, jnp.int32)])

    def ids(self, prompts: Sequence[str]) -> tuple[int, ...]:
        """The condition ids of ``prompts`` (each must be in the bank)."""
        index = {p: i for i, p in enumerate(self.prompts)}
        missing = [p for p in prompts if p not in index]
        if missing:
            raise ValueError(
                f"PromptTable: prompts must be in the prompt bank, got {missing[0]!r} which is not "
                f"among its {len(self.prompts)} prompts"
            )
        return tuple(index[p] for p in prompts)

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": len(self.prompts), "width": self.width, "sha256": self.digest}

    def __repr__(self) -> str:
        return f"PromptTable({len(self.prompts)} prompts, width {self.width})"


@dataclass(frozen=True)
class UnlearnTask:
    """Forget and retain splits of a class-conditional image data set.

    Attributes:
      name: a short description (stored in run configurations).
      train: every training image (:class:`~diff_pixel.data.loader.ArraySource`, labels in
        ``[0, num_classes)``); the original model is trained on it.
      heldout: held-out images of every class (the reference of FD-digits).
      forget_classes, retain_classes: disjoint, sorted condition ids; for class tasks together
        ``0 .. num_classes − 1``; for prompt tasks the forgotten and the retained training
        prompts (other prompts, such as held-out paraphrases, are neither).
      num_classes: number of condition ids; the null label of classifier-free guidance is
        ``num_classes`` (diff-pixel's ``Cond(label, drop)``); for prompt tasks the bank size.
      prompts: the :class:`PromptTable` of a prompt task (condition id = bank row), else None.
    """

    name: str
    train: ArraySource
    heldout: ArraySource
    forget_classes: tuple[int, ...]
    retain_classes: tuple[int, ...]
    num_classes: int
    prompts: PromptTable | None = None

    def class_of(self, conds: Sequence[int]) -> tuple[int, ...]:
        """The image class of each condition id (the id itself for class tasks)."""
        if self.prompts is None:
            return tuple(int(c) for c in conds)
        return tuple(self.prompts.classes[int(c)] for c in conds)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.image_shape)  # type: ignore[return-value]

    def subset(self, which: str, split: str = "train") -> ArraySource:
        """The forget (``which="forget"``) or retain images of ``split`` (``train``/``heldout``)."""
        if which not in ("forget", "retain"):
            raise ValueError(
                f"UnlearnTask.subset: which must be 'forget' or 'retain', got {which!r}"
            )
        if split not in ("train", "heldout"):
            raise ValueError(
                f"UnlearnTask.subset: split must be 'train' or 'heldout', got {split!r}"
            )
        src = self.train if split == "train" else self.heldout
        classes = self.forget_classes if which == "forget" else self.retain_classes
        keep = np.isin(src.labels, classes)
        return ArraySource(
            src.images[keep],
            src.labels[keep],
            num_classes=self.num_classes,
            name=f"{self.name}-{which}-{split}",
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "forget_classes": list(self.forget_classes),
            "retain_classes": list(self.retain_classes),
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
        }
        if self.prompts is not None:
            out["prompts"] = self.prompts.to_dict()
        return out


def _classes(func: str, forget: Any, num_classes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(forget, (int, np.integer)) and not isinstance(forget, bool):
        forget = (int(forget),)
    if not isinstance(forget, Iterable) or isinstance(forget, (str, bytes)):
        raise TypeError(f"{func}: forget must be an int or a tuple of ints, got {forget!r}")
    forget = tuple(forget)
    if not forget or not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in forget
    ):
        raise ValueError(f"{func}: forget must hold at least one int class, got {forget!r}")
    if any(c < 0 or c >= num_classes for c in forget):
        raise ValueError(
            f"{func}: forget classes must be in [0, {num_classes - 1}], got "
            f"{tuple(int(c) for c in forget)}"
        )
    f = tuple(sorted({int(c) for c in forget}))
    r = tuple(c for c in range(num_classes) if c not in f)
    if not r:
        raise ValueError(f"{func}: at least one retain class is needed, got forget={f}")
    return f, r


def digits_task(forget: Any = (3,), image_size: int = 8) -> UnlearnTask:
    """Class-conditional digits with the classes ``forget`` to be forgotten.

    Args:
      forget: a class or a tuple of classes in [0, 9] (default digit 3, our default).
      image_size: 8 (native) or a multiple of 8 (diff-pixel's bilinear upsampling).

    Returns:
      An :class:`UnlearnTask` over diff-pixel's 1437 training and 360 test digits, values
      ``x/8 − 1`` in [−1, 1].

    Example:
      >>> task = digits_task(forget=(3,))
      >>> task.retain_classes
      (0, 1, 2, 4, 5, 6, 7, 8, 9)
    """
    f, r = _classes("digits_task", forget, 10)
    return UnlearnTask(
        name=f"digits{image_size}",
        train=digits(image_size, "train"),
        heldout=digits(image_size, "test"),
        forget_classes=f,
        retain_classes=r,
        num_classes=10,
    )


def folder_task(
    root: str, image_size: int, forget: Any, heldout_fraction: float = 0.2
) -> UnlearnTask:
    """A user's image folder (one sub-folder per class, :func:`diff_pixel.image_folder`) as a task.

    The held-out split is every image whose position in ``default_rng(0).permutation(N)`` is
    below ``heldout_fraction · N`` (our default).
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(
            f"folder_task: heldout_fraction must be in (0, 1), got {heldout_fraction!r}"
        )
    src = image_folder(root, image_size)
    images, labels = src.take(np.arange(src.num_examples), None)
    n = images.shape[0]
    perm = np.random.default_rng(0).permutation(n)
    k = max(1, int(heldout_fraction * n))
    f, r = _classes("folder_task", forget, src.num_classes)
    make = lambda sel, split: ArraySource(  # noqa: E731
        images[sel], labels[sel], num_classes=src.num_classes, name=f"folder-{split}"
    )
    return UnlearnTask(
        name=f"folder:{root}",
        train=make(np.sort(perm[k:]), "train"),
        heldout=make(np.sort(perm[:k]), "heldout"),
        forget_classes=f,
        retain_classes=r,
        num_classes=src.num_classes,
    )


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts of a text file, one per line (blank lines and lines starting with ``#`` skipped,
    surrounding whitespace stripped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _bank(bank: Any) -> tuple[list[str], np.ndarray]:
    if isinstance(bank, (str, Path)):
        from diff_unlearn.text import load_prompt_bank

        prompts, emb, _ = load_prompt_bank(bank)
        return prompts, emb
    if isinstance(bank, PromptTable):
        return list(bank.prompts), bank.embeddings
    try:
        prompts, emb = bank[0], bank[1]
    except (TypeError, IndexError, KeyError):
        raise TypeError(
            "prompt_task: bank must be a .npz path, a PromptTable or (prompts, embeddings), got "
            f"{type(bank).__name__}"
        ) from None
    return [str(p) for p in prompts], np.asarray(emb, np.float32)


def prompt_task(
    bank: Any,
    forget_prompts: Sequence[str] | None,
    image_size: int = 8,
    *,
    templates: Mapping[int, Sequence[str]] | None = None,
    heldout_prompts: Mapping[int, str] | None = None,
) -> UnlearnTask:
    """The text-conditional digits task: condition ids are the rows of a prompt bank.

    Every bank prompt must be a training template (``templates``, default
    :func:`~diff_unlearn.text.digit_prompts`'s) or a held-out paraphrase (``heldout_prompts``,
    evaluation only) of a digit class. Each training image of class y appears once per training
    template of y in the bank (so 1437 images × 4 templates), labelled with the template's id.

    Args:
      bank: a ``.npz`` prompt bank path (:func:`~diff_unlearn.text.save_prompt_bank`), a
        :class:`PromptTable`, or ``(prompts, embeddings)``.
      forget_prompts: the training prompts to forget (e.g. every template of "three"); retained
        are the training templates of every class none of them belongs to. ``None`` (or empty):
        nothing is forgotten, for pretraining (every training prompt is "retained").
      image_size: 8 (native) or a multiple of 8.

    Returns:
      An :class:`UnlearnTask` with ``prompts`` set and ``num_classes`` = the bank size.

    Example:
      >>> train, _ = digit_prompts()  # doctest: +SKIP
      >>> task = prompt_task("bank.npz", train[3])  # doctest: +SKIP
    """
    from diff_unlearn.text import digit_prompts

    prompts, emb = _bank(bank)
    dt, dh = digit_prompts()
    templates = dt if templates is None else templates
    heldout_prompts = dh if heldout_prompts is None else heldout_prompts
    train_of = {str(p): int(c) for c, ps in templates.items() for p in ps}
    held_of = {str(p): int(c) for c, p in heldout_prompts.items()}
    classes, trained = [], []
    for p in prompts:
        if p in train_of:
            classes.append(train_of[p])
            trained.append(True)
        elif p in held_of:
            classes.append(held_of[p])
            trained.append(False)
        else:
            raise ValueError(
                f"prompt_task: bank prompts must be digit training templates or held-out "
                f"paraphrases (digit_prompts()), got {p!r}"
            )
    table = PromptTable(prompts, emb, classes, trained)
    forget = table.ids(list(forget_prompts or ()))
    bad = [table.prompts[i] for i in forget if not table.trained[i]]
    if bad:
        raise ValueError(
            f"prompt_task: forget prompts must be training templates, got the held-out {bad[0]!r}"
        )
    f_classes = {table.classes[i] for i in forget}
    retain = tuple(
        i for i in range(len(table)) if table.trained[i] and table.classes[i] not in f_classes
    )
    if not retain:
        raise ValueError(
            "prompt_task: at least one retain prompt is needed, got forget prompts covering every "
            "class"
        )
    if image_size % 8 or image_size < 8:
        raise ValueError(f"prompt_task: image_size must be a multiple of 8, got {image_size!r}")

    def expand(src: ArraySource, split: str) -> ArraySource:
        xs, ys = [], []
        for i in range(len(table)):
            if table.trained[i]:
                keep = src.labels == table.classes[i]
                xs.append(src.images[keep])
                ys.append(np.full(int(keep.sum()), i, np.int32))
        return ArraySource(
            np.concatenate(xs),
            np.concatenate(ys),
            num_classes=len(table),
            name=f"digits{image_size}-prompts-{split}",
        )

    return UnlearnTask(
        name=f"digits{image_size}-prompts",
        train=expand(digits(image_size, "train"), "train"),
        heldout=expand(digits(image_size, "test"), "heldout"),
        forget_classes=tuple(sorted(forget)),
        retain_classes=retain,
        num_classes=len(table),
        prompts=table,
    )


class UnlearnData:
    """One forget batch and one retain batch per step, flattened for the trainer.

    Yields ``{"forget_x", "forget_label", "forget_index", "retain_x", "retain_label",
    "retain_index"}``; each half comes from its own :class:`diff_pixel.Loader` (seeds ``seed``
    and ``seed + 1``), so batch s is a pure function of ``(seed, s)`` and ``state()`` /
    ``restore()`` resume it exactly.
    """

    def __init__(self, task: UnlearnTask, forget_batch: int, retain_batch: int, *, seed: int = 0):
        if not isinstance(task, UnlearnTask):
            raise TypeError(f"UnlearnData: task must be an UnlearnTask, got {type(task).__name__}")
        for name, v in (("forget_batch", forget_batch), ("retain_batch", retain_batch)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"UnlearnData: {name} must be a positive int, got {v!r}")
        self.task = task
        self.forget = Loader(task.subset("forget"), forget_batch, seed=seed)
        self.retain = Loader(task.subset("retain"), retain_batch, seed=seed + 1)
        self.batch_size = forget_batch + retain_batch
        self.seed = seed

    def __iter__(self) -> UnlearnData:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = {}
        for name, loader in (("forget", self.forget), ("retain", self.retain)):
            b = next(loader)
            out[f"{name}_x"] = b["x"]
            out[f"{name}_label"] = b["label"]
            out[f"{name}_index"] = b["index"]
        return out

    def state(self) -> dict[str, Any]:
        return {"forget": self.forget.state(), "retain": self.retain.state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or set(state) != {"forget", "retain"}:
            raise ValueError(
                f"UnlearnData.restore: state must have keys 'forget' and 'retain', got {state!r}"
            )
        self.forget.restore(state["forget"])
        self.retain.restore(state["retain"])

    def __repr__(self) -> str:
        return (
            f"UnlearnData({self.task.name}, forget={self.task.forget_classes}, "
            f"batch={self.forget.batch_size}+{self.retain.batch_size}, seed={self.seed})"
        )
