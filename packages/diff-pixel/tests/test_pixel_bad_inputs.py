"""Property-based bad-input suite for diff-pixel's public API (issue 18): each bad input gets a
``ValueError``/``TypeError`` whose message names the argument (the tests match on that name),
or a documented legal result — never a silent answer, an internal error or a compile. Hypothesis
runs derandomized (fixed examples, no deadline). One ``tiny-16`` model is built per module and
nothing is compiled: every check runs on the host before diff-core's jitted loop (a case that
slipped through would compile and take seconds). ``DIFF_PIXEL_COUNT_BAD_INPUTS=1 pytest -s``
prints how many inputs were tried (429)."""

from __future__ import annotations

import functools
import math
import os
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diff_core.schedules import CosineSchedule
from diff_pixel import (
    Cond,
    Loader,
    LossCurveHook,
    SampleGridHook,
    TrainConfig,
    build_model,
    image_folder,
    sample,
    sample_to_npz,
)
from diff_pixel.data.loader import ArraySource
from diff_pixel.images import save_loss_curve

#: Floats without subnormals: another library in the same process (the whole repository's
#: suite runs in one pytest) may set flush-to-zero, and hypothesis then refuses to draw them.
floats = functools.partial(st.floats, allow_subnormal=False)

SETTINGS = dict(derandomize=True, deadline=None, database=None)
TRIED: Counter = Counter()
SCHEDULE = CosineSchedule(-15.0, 15.0)
B = 4


@pytest.fixture(scope="module", autouse=True)
def _count_report():
    yield
    if os.environ.get("DIFF_PIXEL_COUNT_BAD_INPUTS"):
        print(f"\nbad inputs tried: {sum(TRIED.values())} {dict(TRIED)}")


@pytest.fixture(scope="module")
def model():
    return build_model("tiny-16")  # num_classes 10: label 10 is the null label


def _sample_kwargs(**changes):
    kw = dict(
        shape=(B, 16, 16, 1),
        key=jax.random.key(0),
        schedule=SCHEDULE,
        steps=2,
        cond=Cond(label=jnp.arange(B, dtype=jnp.int32)),
    )
    kw.update(changes)
    return kw


junk = st.sampled_from([None, "3", b"x", [1], {}, 1.5, -1, math.nan, math.inf, True, object()])

# (argument, bad values, what the message names)
SAMPLE_ARGS = [
    (
        "steps",
        st.one_of(st.integers(max_value=0), st.sampled_from([1.5, True, "3", None])),
        "steps",
    ),
    (
        "shape",
        st.one_of(
            st.lists(st.integers(1, 4), min_size=2, max_size=4).map(list),
            st.tuples(st.integers(-3, 0), st.just(16), st.just(16), st.just(1)),
            st.tuples(st.just(B)),
            st.sampled_from([(B, 16.0, 16, 1), (B, True, 16, 1), "4x16x16", None]),
        ),
        "shape",
    ),
    ("guidance", st.sampled_from([math.nan, math.inf, -math.inf, "2", None, True]), "guidance"),
    (
        "interval",
        st.one_of(
            st.tuples(floats(-20, 20), floats(-20, 20)).filter(lambda p: not p[0] < p[1]),
            st.sampled_from([(math.nan, 1.0), (1.0,), (1, 2, 3), "ab", None, 3.0]),
        ),
        "interval",
    ),
    (
        "first_index",
        st.one_of(
            st.integers(max_value=-1),
            st.integers(min_value=2**32 - B + 1),
            st.sampled_from([1.5, True, "0", None]),
        ),
        "first_index",
    ),
    ("return_stats", st.sampled_from(["yes", 1, 0, None, [True]]), "return_stats"),
    ("mesh", st.sampled_from(["data", 3, [1], {"data": 1}]), "mesh"),
    ("x_clip", st.sampled_from([math.nan, -1.0, 0.0, "1", -math.inf, [1.0]]), "x_clip"),
    ("gamma", st.sampled_from([math.nan, -0.5, 1.5, math.inf]), "gamma"),
    ("sampler", st.sampled_from(["nope", "", 3, None, ["ddpm"]]), "sampler"),
    (
        "key",
        st.sampled_from([0, None, "0", np.zeros(2, np.float32), np.zeros(3, np.uint32), [0, 0]]),
        "key",
    ),
    ("schedule", st.sampled_from([None, "cosine", 3, lambda t: t]), "schedule"),
]


@settings(max_examples=90, **SETTINGS)
@given(data=st.data(), which=st.integers(0, len(SAMPLE_ARGS) - 1))
def test_sample_names_the_bad_argument(model, data, which):
    TRIED["sample args"] += 1
    name, values, named = SAMPLE_ARGS[which]
    value = data.draw(values)
    kw = _sample_kwargs(**{name: value})
    if name == "guidance":
        kw.update(interval=(-3.0, 5.0))
    with pytest.raises((ValueError, TypeError), match=rf"\b{named}\b"):
        sample(model, **kw)


@settings(max_examples=40, **SETTINGS)
@given(
    label=st.lists(
        st.one_of(
            st.integers(min_value=-(2**31), max_value=-1),
            st.integers(min_value=11, max_value=2**31 - 1),
        ),
        min_size=1,
        max_size=B,
    ),
)
def test_sample_refuses_labels_outside_the_classes(model, label):
    """Labels must lie in [0, num_classes] (10 is the null label): 99 gave NaN, -1 garbage."""
    TRIED["sample labels"] += 1
    labels = np.arange(B, dtype=np.int32)
    labels[: len(label)] = label
    with pytest.raises(ValueError, match=r"cond\.label must lie in \[0, 10\]"):
        sample(model, **_sample_kwargs(cond=Cond(label=jnp.asarray(labels))))


COND_CASES = [
    (lambda: Cond(label=jnp.full((B,), 1.5)), r"cond\.label must be integers"),
    (lambda: Cond(label=jnp.arange(B), drop=jnp.arange(B)), r"cond\.drop must be booleans"),
    (lambda: Cond(label=jnp.arange(B - 1)), r"cond must have one entry per example"),
    (lambda: Cond(label=jnp.arange(B + 3)), r"cond must have one entry per example"),
    (
        lambda: Cond(label=jnp.arange(B), vector=jnp.full((B, 3), jnp.nan)),
        r"cond\.vector must be finite",
    ),
    (
        lambda: Cond(label=jnp.arange(B), spatial=jnp.full((B, 16, 16, 1), jnp.inf)),
        r"cond\.spatial must be finite",
    ),
    (
        lambda: Cond(label=jnp.arange(B), extra={"rays": jnp.full((B, 2), jnp.nan)}),
        r"cond\.extra\[rays\] must be finite",
    ),
    (
        lambda: Cond(label=jnp.arange(B), vector=jnp.zeros((B - 1, 3))),
        r"cond entries must share the batch size",
    ),
    (lambda: Cond(label=[0, 1, 2, 3]), r"cond\.label must be a batch-first array"),
    (lambda: Cond(label=jnp.asarray(3)), r"cond\.label must be a batch-first array"),
    (
        lambda: Cond(tokens=jnp.zeros((B, 5, 2)), token_lengths=jnp.full((B,), 9)),
        r"cond\.token_lengths must be integers in \[0, K = 5\]",
    ),
    (
        lambda: Cond(tokens=jnp.zeros((B, 5, 2)), token_lengths=jnp.full((B,), -1)),
        r"cond\.token_lengths",
    ),
]


@settings(max_examples=24, **SETTINGS)
@given(which=st.integers(0, len(COND_CASES) - 1), first_index=st.integers(0, 100))
def test_sample_checks_cond_values_before_compiling(model, which, first_index):
    TRIED["sample cond"] += 1
    make, message = COND_CASES[which]
    with pytest.raises((ValueError, TypeError), match=message):
        sample(model, **_sample_kwargs(cond=make(), first_index=first_index))


@settings(max_examples=25, **SETTINGS)
@given(
    field=st.sampled_from(["label", "vector", "tokens", "token_lengths", "spatial", "drop"]),
    value=st.one_of(st.text(max_size=4), st.binary(max_size=4)),
)
def test_cond_refuses_string_entries(field, value):
    TRIED["Cond str"] += 1
    with pytest.raises(TypeError, match=rf"Cond: {field} must be an array or None"):
        Cond(**{field: value})


@settings(max_examples=15, **SETTINGS)
@given(
    case=st.sampled_from(
        [
            (lambda: Cond(extra=[1]), TypeError, "extra must be None or a dict"),
            (lambda: Cond(extra={1: jnp.zeros(2)}), TypeError, "extra keys must be str"),
            (lambda: Cond(label=jnp.zeros(2)).replace(foo=1), ValueError, "fields must be among"),
            (lambda: Cond().null(), ValueError, "cond must have at least one field"),
            (lambda: Cond(label=jnp.zeros(2)).concat(3), TypeError, "other must be a Cond"),
            (
                lambda: Cond(label=jnp.zeros(2)).concat(Cond(vector=jnp.zeros((2, 3)))),
                ValueError,
                "other must be a Cond with the same entries",
            ),
            (
                lambda: Cond(vector=jnp.zeros((2, 3))).concat(Cond(vector=jnp.zeros((2, 4)))),
                ValueError,
                r"other\.vector must be of shape",
            ),
        ]
    )
)
def test_cond_methods_name_the_argument(case):
    TRIED["Cond methods"] += 1
    make, error, message = case
    with pytest.raises(error, match=message):
        make()


BUILD_CASES = st.one_of(
    st.builds(lambda n: ((n,), {}, "preset"), st.sampled_from(["nope", "tiny", "", 3, None])),
    st.builds(
        lambda s: (("tiny-16",), {"seed": s}, "seed"), st.sampled_from(["0", 1.5, None, True])
    ),
    st.builds(
        lambda v: (("tiny-16",), {"image_size": v}, "image_size"),
        st.sampled_from([0, -16, "16", 16.5, None, (16,)]),
    ),
    st.builds(
        lambda v: (("tiny-16",), {"num_classes": v}, "num_classes"),
        st.sampled_from([-1, 2.5, "10"]),
    ),
    st.builds(
        lambda v: (("tiny-16",), {"dropout": v}, "dropout"),
        st.sampled_from(["x", (0.5,), 0.1, (2.0, 0.0, 0.0, 0.0)]),
    ),
    st.builds(
        lambda v: (("tiny-16",), {"embedders": v}, "embedders"), st.sampled_from(["x", 3, [1]])
    ),
    st.builds(lambda v: (("tiny-16",), {"rngs": v}, "rngs"), st.sampled_from([0, "0", [0]])),
    st.builds(lambda k: (("tiny-16",), {k: 1}, k), st.sampled_from(["foo", "channel", "Depth"])),
)


@settings(max_examples=40, **SETTINGS)
@given(case=BUILD_CASES)
def test_build_model_names_the_bad_argument(case):
    TRIED["build_model"] += 1
    args, kwargs, named = case
    with pytest.raises((ValueError, TypeError), match=named):
        build_model(*args, **kwargs)


TRAIN_FIELDS = {
    "steps": st.one_of(st.integers(max_value=-1), st.sampled_from([1.5, "3", None, True])),
    "batch_size": st.one_of(st.integers(max_value=0), st.sampled_from([2.0, "8", None])),
    "lr": st.one_of(floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf, "1e-3"])),
    "b1": st.one_of(floats(min_value=1.0), floats(max_value=-1e-9), st.just(math.nan)),
    "b2": st.sampled_from([1.0, -0.1, math.nan, "0.99"]),
    "eps": st.sampled_from([0.0, -1e-8, math.inf, None]),
    "weight_decay": st.sampled_from([-0.1, math.nan, "0"]),
    "grad_clip": st.sampled_from([-1.0, math.inf, None]),
    "ema_decay": st.sampled_from([1.0, 1.5, -0.1, math.nan]),
    "warmup_steps": st.sampled_from([-1, 1.5, None]),
    "seed": st.sampled_from([-1, 0.5, "0", None]),
    "log_every": st.sampled_from([0, -1, 1.5]),
    "checkpoint_every": st.sampled_from([-1, 2.5]),
    "keep_checkpoints": st.sampled_from([0, -2, "3"]),
    "lr_decay": st.sampled_from(["cos", "", None, ["cosine"]]),
    "on_nonfinite": st.sampled_from(["ignore", None, {}]),
    "out_dir": st.sampled_from(["", None, 3]),
    "ema_warmup": st.sampled_from([1, "yes", None]),
    "progress": st.sampled_from([0, "no"]),
}


@settings(max_examples=45, **SETTINGS)
@given(data=st.data(), name=st.sampled_from(sorted(TRAIN_FIELDS)))
def test_train_config_names_the_bad_field(data, name):
    TRIED["TrainConfig"] += 1
    value = data.draw(TRAIN_FIELDS[name])
    kw = {"steps": 10, "batch_size": 4, name: value}
    with pytest.raises((ValueError, TypeError), match=rf"TrainConfig: {name}\b"):
        TrainConfig(**kw)


@settings(max_examples=10, **SETTINGS)
@given(
    case=st.sampled_from(
        [
            (lambda c: c.replace(foo=1), "changes must name TrainConfig fields"),
            (lambda c: c.replace(lr=-1.0), "lr"),
            (lambda c: TrainConfig.from_dict([1]), "d must be a mapping"),
            (lambda c: TrainConfig.from_dict({"steps": 1, "batch_size": 2, "x": 1}), "'x'"),
            (lambda c: TrainConfig.from_recipe(object(), steps=3), "batch_size"),
        ]
    )
)
def test_train_config_methods_name_the_argument(case):
    TRIED["TrainConfig methods"] += 1
    make, message = case
    with pytest.raises((ValueError, TypeError), match=message):
        make(TrainConfig(steps=10, batch_size=4))


IMAGES = np.zeros((3, 4, 4, 1), np.float32)
LABELS = np.array([0, 1, 1])
SOURCE_CASES = st.one_of(
    st.builds(
        lambda d: ((IMAGES.astype(d), LABELS), {}, "images must be floats"),
        st.sampled_from([np.uint8, np.int64, np.int32, np.bool_, np.complex64]),
    ),
    st.builds(
        lambda v: (
            (np.full((3, 4, 4, 1), v, np.float32), LABELS),
            {},
            r"images must (lie|be finite)",
        ),
        st.one_of(floats(min_value=1.01, max_value=1e30), floats(max_value=-1.01, min_value=-1e30))
        | st.sampled_from([math.nan, math.inf]),
    ),
    st.builds(
        lambda s: ((np.zeros(s, np.float32), LABELS[: s[0]] if s else LABELS), {}, "images must"),
        st.sampled_from([(3, 4, 4), (3,), (3, 4, 4, 1, 1), (0, 4, 4, 1)]),
    ),
    st.builds(
        lambda lab: ((IMAGES, lab), {}, "labels must"),
        st.sampled_from(
            [
                np.array([0.0, 1.0, 1.0]),
                np.array([True, False, True]),
                np.array([0, 1]),
                np.array([[0, 1, 1]]),
                np.array([-1, 0, 1]),
            ]
        ),
    ),
    st.builds(
        lambda n: ((IMAGES, LABELS), {"num_classes": n}, "num_classes|labels must lie"),
        st.sampled_from([0, -2, 1.5, True, "2", 1]),
    ),
    st.builds(lambda n: ((IMAGES, LABELS), {"name": n}, "name"), st.sampled_from([3, None, b"x"])),
)


@settings(max_examples=35, **SETTINGS)
@given(case=SOURCE_CASES)
def test_array_source_refuses_bad_arrays(case):
    TRIED["ArraySource"] += 1
    args, kwargs, message = case
    with pytest.raises((ValueError, TypeError), match=f"ArraySource: ({message})"):
        ArraySource(*args, **kwargs)


LOADER_ARGS = {
    "batch_size": st.sampled_from([0, -1, 2.0, "4", None, True]),
    "seed": st.sampled_from([-1, 0.5, "0", None]),
    "shuffle": st.sampled_from(["no", 0, None, [True]]),
    "augment": st.sampled_from([3, "flip"]),
    "process_index": st.sampled_from([-1, 2, 1.5]),
    "process_count": st.sampled_from([0, 3, "2"]),
}


@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), name=st.sampled_from(sorted(LOADER_ARGS)))
def test_loader_names_the_bad_argument(data, name):
    TRIED["Loader"] += 1
    kw = {"batch_size": 2, "seed": 0, name: data.draw(LOADER_ARGS[name])}
    batch_size = kw.pop("batch_size")
    with pytest.raises((ValueError, TypeError), match=rf"Loader: .*\b{name}\b"):
        Loader(ArraySource(IMAGES, LABELS), batch_size, **kw)


@settings(max_examples=25, **SETTINGS)
@given(
    case=st.one_of(
        st.builds(lambda p: ("restore", {"position": p}), st.sampled_from([-1, 1.5, "3", None])),
        st.builds(
            lambda s: ("restore", {"position": 0, "seed": s}), st.sampled_from([1, "x", 0.5])
        ),
        st.builds(lambda s: ("restore", s), st.sampled_from([None, [0], {"seed": 0}, "0"])),
        st.builds(lambda p: ("batch_at", p), st.sampled_from([-5, 1.5, "0", None])),
        st.builds(lambda p: ("seek", p), st.sampled_from([-1, 2.5, "1"])),
    )
)
def test_loader_methods_name_the_argument(case):
    TRIED["Loader methods"] += 1
    method, value = case
    loader = Loader(ArraySource(IMAGES, LABELS), 2, seed=0)
    named = {"restore": r"state", "batch_at": "position", "seek": "step"}[method]
    with pytest.raises((ValueError, TypeError), match=rf"Loader\.{method}: .*{named}"):
        getattr(loader, method)(value)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "a").mkdir()
    from PIL import Image

    Image.new("L", (8, 8), 128).save(root / "a" / "x.png")
    (root / "b").mkdir()
    (root / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    return root


@settings(max_examples=25, **SETTINGS)
@given(
    case=st.one_of(
        st.builds(
            lambda v: ({"image_size": v}, "image_size"),
            st.sampled_from([0, -4, "8", 8.0, (8,), None]),
        ),
        st.builds(lambda v: ({"channels": v}, "channels"), st.sampled_from([0, 2, 4, "3"])),
        st.builds(lambda v: ({"labels": v}, "labels"), st.sampled_from(["folders", None, 1])),
        st.builds(lambda v: ({"mode": v}, "mode"), st.sampled_from(["crop", None, "RESIZE"])),
        st.builds(
            lambda v: ({"extensions": v}, "extensions"), st.sampled_from([[3], ".png", [], [""]])
        ),
        st.just(({"root_suffix": "missing"}, "root")),
        st.just(({}, r"broken\.png")),
    )
)
def test_image_folder_names_the_argument_or_the_file(folder, case):
    TRIED["image_folder"] += 1
    kwargs, named = case
    kwargs = dict(kwargs)
    root = folder / kwargs.pop("root_suffix") if "root_suffix" in kwargs else folder
    kwargs.setdefault("image_size", 8)
    with pytest.raises((ValueError, TypeError), match=named):
        image_folder(root, **kwargs)


@settings(max_examples=35, **SETTINGS)
@given(
    case=st.one_of(
        st.builds(
            lambda r: ("records", r, {}), st.sampled_from([3, "loss", {"step": 1}, [1, 2], None])
        ),
        st.builds(
            lambda r: ("records", r, {}),
            st.lists(
                st.fixed_dictionaries(
                    {"step": st.integers(0, 9), "loss": st.sampled_from([math.nan, math.inf, "x"])}
                ),
                max_size=3,
            ),
        ),
        st.builds(
            lambda s: ("size", [{"step": 1, "loss": 1.0}], {"size": s}),
            st.sampled_from([(0, -1), (10, 10), (720,), "big", (720.0, 440)]),
        ),
        st.builds(
            lambda k: ("key", [{"step": 1, "loss": 1.0}], {"key": k}), st.sampled_from([3, None])
        ),
    )
)
def test_save_loss_curve_names_the_argument(tmp_path_factory, case):
    TRIED["save_loss_curve"] += 1
    named, records, kwargs = case
    path = tmp_path_factory.getbasetemp() / "loss.png"
    with pytest.raises((ValueError, TypeError), match=rf"save_loss_curve: .*\b{named}\b"):
        save_loss_curve(path, records, **kwargs)


@settings(max_examples=15, **SETTINGS)
@given(
    case=st.one_of(
        st.builds(
            lambda v: (lambda: SampleGridHook(v), "sample_fn"), st.sampled_from([3, None, "f"])
        ),
        st.builds(
            lambda v: (lambda: SampleGridHook(print, every=v), "every"),
            st.sampled_from([-1, 1.5, True, "9"]),
        ),
        st.builds(
            lambda v: (lambda: SampleGridHook(print, scale=v), "scale"),
            st.sampled_from([0, -2, 1.5, "4"]),
        ),
        st.builds(lambda v: (lambda: LossCurveHook(v), "key"), st.sampled_from([3, "", None])),
    )
)
def test_image_hooks_name_the_argument(case):
    TRIED["hooks"] += 1
    make, named = case
    with pytest.raises((ValueError, TypeError), match=named):
        make()


@settings(max_examples=20, **SETTINGS)
@given(
    case=st.one_of(
        st.builds(
            lambda x: ({"samples": x}, "samples"),
            st.sampled_from(
                [
                    3.0,
                    np.zeros((0, 2)),
                    np.full((2, 2), np.nan),
                    np.array(["a"]),
                    np.full((1, 2), np.inf),
                ]
            ),
        ),
        st.builds(lambda n: ({"labels": np.zeros(n)}, "labels"), st.sampled_from([1, 3, 5])),
        st.builds(lambda v: ({"first_index": v}, "first_index"), st.sampled_from([1.5, "0", None])),
        st.builds(lambda v: ({"seed": v}, "seed"), st.sampled_from([1.5, "0", True])),
    )
)
def test_sample_to_npz_names_the_argument(tmp_path_factory, case):
    TRIED["sample_to_npz"] += 1
    kwargs, named = case
    kw = {"samples": np.zeros((2, 4)), **kwargs}
    path = str(tmp_path_factory.getbasetemp() / "never.npz")
    with pytest.raises((ValueError, TypeError), match=rf"sample_to_npz: {named}\b"):
        sample_to_npz(path, kw.pop("samples"), **kw)
    assert not os.path.exists(path)
