"""Resume (check 13, on the micro backbone): a run stopped by the trainer's interruption hook and
restarted ends bitwise equal to an uninterrupted run under its real cosine schedule; a run
folder of another configuration is refused naming the differing fields."""

from __future__ import annotations

import pytest

from diff_pixel.train import StopAt
from diff_semantica import FilterConfig, PairConfig, RunConfig, load_run, train_semantica
from diff_semantica.encoders import _flat_arrays
from diff_semantica.testing import micro_config

RUN = RunConfig(steps=12, batch_size=16, lr=2e-3, warmup_steps=3, checkpoint_every=0, log_every=4)
PAIRS = (PairConfig(pairs_per_epoch=3000, corrupt_fraction=0.5), FilterConfig("p50", 0.98))


@pytest.mark.slow
def test_interrupted_run_resumes_bitwise(train, pca, tmp_path, capsys):
    cfg = micro_config(pca)
    full = train_semantica(cfg, train, pca, PAIRS, tmp_path / "full", RUN, progress=False)
    part = train_semantica(
        cfg, train, pca, PAIRS, tmp_path / "part", RUN, progress=False, hooks=[StopAt(5)]
    )
    assert part.stopped_at == 5
    resumed = train_semantica(cfg, train, pca, PAIRS, tmp_path / "part", RUN, progress=True)
    assert resumed.restored_step == 5
    assert "resuming from step 5" in capsys.readouterr().err
    a, b = _flat_arrays(full.model()), _flat_arrays(resumed.model())
    assert set(a) == set(b)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    ea, eb = _flat_arrays(full.ema_model()), _flat_arrays(resumed.ema_model())
    assert all(ea[k].tobytes() == eb[k].tobytes() for k in ea)
    model, ema, saved = load_run(tmp_path / "full")
    assert saved["model"]["config"]["p_drop"] == 0.1
    assert all(_flat_arrays(ema)[k].tobytes() == ea[k].tobytes() for k in ea)
    assert (tmp_path / "full" / "pairs.npz").exists()
    assert (tmp_path / "full" / "filter_report.json").exists()


def test_foreign_checkpoint_is_refused(train, pca, tmp_path):
    cfg = micro_config(pca)
    train_semantica(cfg, train, pca, PAIRS, tmp_path / "run", RUN, progress=False)
    with pytest.raises(ValueError, match=r"differing fields: .*p_drop"):
        train_semantica(
            cfg.replace(p_drop=0.2), train, pca, PAIRS, tmp_path / "run", RUN, progress=False
        )
