"""The unlearning loop's logging and failure modes: a non-finite loss stops the run naming the
step and the method (spec §5), ``on_nonfinite="skip"`` finishes with the steps skipped, and the
forget efficacy logged every k steps is that of the checkpointed model at that step (spec §4)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diff_protocol import NonFiniteError
from diff_unlearn import UnlearnConfig, UnlearnData, load_run, make_method, unlearn
from diff_unlearn.unlearn import ForgetEfficacyHook

# the configuration of test_unlearn_resume.py (one compiled step for both files)
CONFIG = UnlearnConfig(
    steps=40, forget_batch=8, retain_batch=8, checkpoint_every=10, log_every=10, efficacy_every=10
)
BAD_STEP = 12  # the poisoned forget image is first drawn at this step (1-based)


def _poisoned(task):
    """``task`` whose forget subset has one image scaled to 1e30: the loss of the batch holding
    it overflows to inf (float32). The image is scaled after the subset's ``ArraySource`` is
    built (the source itself refuses images outside [-1, 1], as it should)."""
    loader = UnlearnData(task, CONFIG.forget_batch, CONFIG.retain_batch, seed=CONFIG.seed).forget
    b = CONFIG.forget_batch
    seen = set(loader.records(np.arange((BAD_STEP - 1) * b)).tolist())
    fresh = [
        r for r in loader.records(np.arange((BAD_STEP - 1) * b, BAD_STEP * b)) if r not in seen
    ]

    @dataclasses.dataclass(frozen=True)
    class PoisonedTask(type(task)):
        def subset(self, which, split="train"):
            source = super().subset(which, split)  # a fresh copy of the images
            if which == "forget" and split == "train":
                source.images[fresh[0]] *= 1e30
            return source

    return PoisonedTask(**{f.name: getattr(task, f.name) for f in dataclasses.fields(task)})


@pytest.fixture(scope="module")
def poisoned(task):
    return _poisoned(task)


@pytest.mark.slow
def test_nonfinite_loss_stops_naming_step_and_method(tmp_path, theta0, poisoned, recipe, setup):
    with pytest.raises(NonFiniteError) as err:
        unlearn(
            theta0,
            make_method("distill", setup),
            poisoned,
            recipe,
            tmp_path,
            CONFIG,
            progress=False,
        )
    msg = str(err.value)
    assert msg.startswith(f"unlearn: loss is not finite at step {BAD_STEP} (method distill)")
    assert "checkpoints/10" in msg or "step_10" in msg or "10" in msg.split("last checkpoint")[1]
    model, _, _ = load_run(tmp_path)  # the last finite checkpoint (step 10) loads
    assert all(np.all(np.isfinite(np.asarray(v))) for v in _leaves(model))


def _leaves(model):
    import jax
    from flax import nnx

    return jax.tree.leaves(nnx.state(model))


@pytest.mark.slow
def test_skip_finishes_and_efficacy_is_logged(
    tmp_path, theta0, poisoned, recipe, setup, random_cnn
):
    out = tmp_path / "run"
    model = unlearn(
        theta0,
        make_method("distill", setup),
        poisoned,
        recipe,
        out,
        CONFIG,
        progress=False,
        on_nonfinite="skip",
        classifier=random_cnn,
    )
    assert all(np.all(np.isfinite(np.asarray(v))) for v in _leaves(model))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [10, 20, 30, 40]
    assert sum(r["skipped"] for r in losses) >= 1 and losses[1]["skipped"] >= 1
    assert {"forget_loss", "retain_loss"} <= set(losses[0])
    eff = [r for r in records if "forget_acc" in r]
    assert [r["step"] for r in eff] == [10, 20, 30, 40]
    # each logged value is the efficacy of the model checkpointed at that step
    hook = ForgetEfficacyHook((3,), random_cnn, recipe.schedule(), n=CONFIG.efficacy_samples)
    for r in (eff[1], eff[-1]):  # the run keeps the last 3 checkpoints
        at_step, _, _ = load_run(out, step=r["step"])
        assert hook.measure(at_step) == {k: r[k] for k in ("forget_acc", "forget_prob")}
