"""The task and its data streams."""

from __future__ import annotations

import numpy as np
import pytest

from diff_unlearn import UnlearnData, digits_task


@pytest.mark.smoke
def test_digits_task_splits(task):
    assert task.forget_classes == (3,) and task.retain_classes == (0, 1, 2, 4, 5, 6, 7, 8, 9)
    assert len(task.train) == 1437 and len(task.heldout) == 360  # diff-pixel's split
    forget, retain = task.subset("forget"), task.subset("retain")
    assert np.all(forget.labels == 3) and not np.any(retain.labels == 3)
    assert len(forget) + len(retain) == 1437
    assert task.image_shape == (8, 8, 1)


def test_bad_tasks_are_named():
    with pytest.raises(
        ValueError, match=r"digits_task: forget classes must be in \[0, 9\], got \(12,\)"
    ):
        digits_task((12,))
    with pytest.raises(ValueError, match="digits_task: at least one retain class is needed"):
        digits_task(tuple(range(10)))


def test_batches_are_a_pure_function_of_seed_and_step(task):
    a = UnlearnData(task, 5, 7, seed=3)
    first = [next(a) for _ in range(4)]
    b = UnlearnData(task, 5, 7, seed=3)
    next(b)
    state = b.state()
    c = UnlearnData(task, 5, 7, seed=3)
    c.restore(state)
    for want, got in zip(first[1:], [next(c) for _ in range(3)]):
        assert all(np.array_equal(want[k], got[k]) for k in want)
    assert np.all(first[0]["forget_label"] == 3)
    assert not np.any(first[0]["retain_label"] == 3)
    assert first[0]["forget_x"].shape == (5, 8, 8, 1) and first[0]["retain_x"].shape == (7, 8, 8, 1)
