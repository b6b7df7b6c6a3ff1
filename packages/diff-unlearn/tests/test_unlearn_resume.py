"""Resume (spec check 17): an unlearning run stopped at step 20 of 40 and restarted with the same
configuration ends bitwise equal to an uninterrupted run, and a restart with other
hyperparameters is refused naming them."""

from __future__ import annotations

import pytest

from diff_pixel.testing import assert_resume_bitwise
from diff_unlearn import UnlearnConfig, make_method, unlearn_trainer


def test_distill_resumes_bitwise(theta0, task, recipe, setup):
    method = make_method("distill", setup)
    config = UnlearnConfig(
        steps=40, forget_batch=8, retain_batch=8, checkpoint_every=10, log_every=10
    )

    def make(out_dir, hooks):
        return unlearn_trainer(
            theta0, method, task, recipe, out_dir, config, progress=False, hooks=tuple(hooks)
        )

    info = assert_resume_bitwise(make, 20)
    assert info["steps"] == 40 and info["leaves"] > 10


def test_other_hyperparameters_are_refused(tmp_path, theta0, task, recipe, setup):
    config = UnlearnConfig(steps=1, forget_batch=4, retain_batch=4)
    unlearn_trainer(
        theta0, make_method("distill", setup), task, recipe, tmp_path, config, progress=False
    ).save_checkpoint()
    with pytest.raises(ValueError, match="beta=2.0"):
        unlearn_trainer(
            theta0,
            make_method("distill", setup, beta=2.0),
            task,
            recipe,
            tmp_path,
            config,
            progress=False,
        )
