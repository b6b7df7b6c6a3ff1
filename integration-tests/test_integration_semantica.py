"""diff-semantica mixed with diff-consistency and diff-core, as a user would: the exact pair
oracle of the digits pairs (diff-semantica) sampled through diff-pixel's adapter with the
``addim`` sampler that diff-consistency registers under ``diff.samplers``, found by name; every
variation must be a training digit of the conditioning image's group, measured with
diff-pixel's digits classifier; and a Semantica model trained a few steps with diff-pixel's
trainer is sampled with diff-core's DPM-Solver++(2M) through the same registry."""

from __future__ import annotations

import numpy as np

from diff_protocol import load_sampler
from diff_semantica import (
    PairConfig,
    RunConfig,
    digits_groups,
    oracle_extra,
    pair_oracle_denoiser,
    sample_variations,
    train_semantica,
)
from diff_semantica.metrics import nearest_rmse
from diff_semantica.model import SemanticaConfig
from diff_semantica.recipes import digits_encoder
from diff_semantica.testing import micro_config


def test_pair_oracle_with_the_consistency_addim_plugin():
    load_sampler("addim")  # registered by diff-consistency
    train, test = digits_groups("train"), digits_groups("test")
    enc = digits_encoder(train)
    cond = test.subset(np.arange(30))
    s = sample_variations(
        pair_oracle_denoiser(train),
        cond.images,
        encoder=enc,
        n_per_image=2,
        guidance=2.0,
        steps=128,
        sampler="addim",
        schedule=SemanticaConfig.for_digits(enc).schedule_obj(),
        image_shape=(8, 8, 1),
        extra=oracle_extra(cond.images, cond.groups),
    )
    d, idx = nearest_rmse(s.reshape(-1, 8, 8, 1), train.images)
    assert np.all(train.groups[idx] == np.repeat(cond.groups, 2))
    assert np.median(d) < 0.05


def test_trained_model_samples_with_a_registered_core_sampler(tmp_path):
    train, test = digits_groups("train"), digits_groups("test")
    enc = digits_encoder(train)
    run = RunConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=0)
    trainer = train_semantica(
        micro_config(enc),
        train,
        enc,
        (PairConfig(pairs_per_epoch=500), None),
        tmp_path / "run",
        run,
        progress=False,
    )
    s = sample_variations(
        trainer.ema_model(), test.images[:4], n_per_image=2, steps=6, sampler="dpmpp_2m"
    )
    assert s.shape == (4, 2, 8, 8, 1) and np.isfinite(s).all() and np.abs(s).max() <= 1.0
