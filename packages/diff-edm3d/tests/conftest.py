"""Fixtures shared by the diff-edm3d test modules."""

from __future__ import annotations

import pytest
import torch

from diff_edm3d.data.qm9 import read_qm9pack


@pytest.fixture(scope="module")
def single_thread():
    """Small tensors: one intra-op thread is faster and deterministic on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def qm9_head():
    """The first 1,000 QM9 molecules, parsed once per session."""
    return read_qm9pack(nrows=1000)
