"""Checks 12-13 of rolling.md §10: bitwise resume on diff-pixel's trainer, refusal of a foreign
checkpoint, and (slow) learning on the ``cpu`` Kolmogorov preset against calibrated gates."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from diff_pixel.train import Hook
from diff_rolling import GaussianVideo
from diff_rolling.train import RollingTrainConfig, load_run, make_trainer, train

THRESHOLDS = {
    c["check"]: c
    for c in json.loads((Path(__file__).parent / "thresholds.json").read_text())["checks"]
}


class _Kill(Hook):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step(self, trainer, step, metrics):
        if step == self.at:
            raise RuntimeError(f"killed at step {step}")
        return False


def _frames():
    return np.asarray(GaussianVideo(resolution=16, phi=0.9).sample(jax.random.key(0), 8, 10))


def _leaves(trainer):
    return [
        np.asarray(x)
        for x in jax.tree_util.tree_leaves(
            (trainer.state.variables, trainer.state.ema, trainer.state.opt)
        )
    ]


@pytest.mark.slow
def test_rolling_resume_is_bitwise(tmp_path):
    frames = _frames()
    cfg = RollingTrainConfig(
        preset="micro", steps=6, batch=4, warmup=2, log_every=1, checkpoint_every=3
    )
    full = train(cfg, frames, tmp_path / "full", progress=False)
    with pytest.raises(RuntimeError, match="killed at step 4"):
        train(cfg, frames, tmp_path / "cut", hooks=[_Kill(4)], progress=False)
    resumed = make_trainer(cfg, frames, tmp_path / "cut", progress=False)
    assert resumed.restored_step == 3 and resumed.data.state()["count"] == 3
    resumed.run()
    a, b = _leaves(full), _leaves(resumed)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert resumed.data.state() == full.data.state() == {"count": 6, "seed": 0}
    # a run with other settings refuses the checkpoint and names the differing fields
    with pytest.raises(ValueError, match=r"differing fields: .*beta"):
        make_trainer(cfg.replace(beta=0.3), frames, tmp_path / "full", progress=False)
    net, loaded, saved = load_run(tmp_path / "full")
    assert loaded == cfg and saved["recipe"]["objective"]["regime"] == "mixed"


@pytest.mark.slow
def test_rolling_learns_kolmogorov_cpu_preset(tmp_path_factory):
    """Check 12: 1000 steps of ``tiny`` on the ``cpu`` preset (batch 16), then a DDIM rollout
    (S = 4) of 8 frames for 32 test trajectories; the same after 30 steps must be bad. Gates from
    tests/thresholds.json, calibrated over seeds 0-2 (distill.md §11); about 12 minutes of a quiet
    2-core machine."""
    pytest.importorskip("jax_cfd")
    from diff_rolling.data.kolmogorov import kolmogorov_dataset, preset
    from diff_rolling.evaluate import forecast, forecast_metrics

    cache = tmp_path_factory.getbasetemp() / "kolmogorov-cache"
    data = kolmogorov_dataset(preset("cpu"), cache, progress=False)
    gates = THRESHOLDS["12"]["threshold"]
    for steps in (30, 1000):
        cfg = RollingTrainConfig(
            steps=steps, batch=16, lr=1e-3, warmup=min(200, steps // 5), checkpoint_every=0
        )
        trainer = train(cfg, data.train, tmp_path_factory.mktemp(f"run{steps}"), progress=False)
        fc = forecast(trainer.ema_model(), cfg, data.test[:32], n_frames=8, steps_per_shift=4)
        m = forecast_metrics(fc["frames"], fc["truth"], fc["context"])
        if steps == 30:
            assert m["model"]["nmse"][0] >= gates["untrained_lead1_nmse_min"]
            continue
        rec = [json.loads(line) for line in open(Path(trainer.config.out_dir) / "metrics.jsonl")]
        late = np.mean([r["loss"] for r in rec if r["step"] > steps - 100])
        assert late <= gates["final_loss_max"]
        assert m["model"]["nmse"][0] <= gates["lead1_nmse_max"]
        assert m["model"]["correlation"][0] >= gates["lead1_corr_min"]
        assert m["finite"]
        lo, hi = gates["sample_std_range"]
        std = np.asarray(m["model"]["sample_std"])
        assert np.all((std >= lo) & (std <= hi))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rolling", "standard"])
def test_rolling_headline_budget_learns(tmp_path_factory, mode):
    """Seed 0 of the headline configuration (``tiny``, 300 steps, batch 8; DDIM, 4 calls per
    frame, 32 test trajectories): lead-1 nMSE against the threshold calibrated over seeds 0-2
    (tests/thresholds.json, distill.md §11: the worst seed × 1.25 or the predicted bar)."""
    pytest.importorskip("jax_cfd")
    from diff_rolling.data.kolmogorov import kolmogorov_dataset, preset
    from diff_rolling.evaluate import forecast, forecast_metrics

    cache = tmp_path_factory.getbasetemp() / "kolmogorov-cache"
    data = kolmogorov_dataset(preset("cpu"), cache, progress=False)
    cfg = RollingTrainConfig(
        mode=mode, steps=300, batch=8, lr=1e-3, seed=0, warmup=60, checkpoint_every=100
    )
    trainer = train(cfg, data.train, tmp_path_factory.mktemp(f"headline_{mode}"), progress=False)
    fc = forecast(trainer.ema_model(), cfg, data.test[:32], n_frames=2, steps_per_shift=4, seed=0)
    m = forecast_metrics(fc["frames"], fc["truth"], fc["context"])
    gate = THRESHOLDS[f"headline_{mode}"]["threshold"]
    assert m["model"]["nmse"][0] <= gate["lead1_nmse_max"]
    assert m["finite"]
