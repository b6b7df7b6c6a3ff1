"""Bad input to the library: a ValueError/TypeError naming the argument, what was expected and
what came (design "quality bar"; the cases a new user hit in issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diff_edm3d import (
    EDM,
    AtomCountDistribution,
    EDMConfig,
    EGNNConfig,
    EGNNDynamics,
    collate,
    load_checkpoint,
    plausibility,
    stability,
)
from diff_edm3d.devices import resolve_device


@pytest.fixture(scope="module")
def edm_and_batch(qm9_head):
    ms = qm9_head.subset(np.arange(50))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        edm = EDM(
            EGNNDynamics(EGNNConfig(nf=16, n_layers=1)),
            EDMConfig(),
            AtomCountDistribution.from_molecules(ms),
        )
    return edm, ms.subset(np.arange(4))


def test_loss_with_a_seed_instead_of_a_generator(edm_and_batch):
    edm, four = edm_and_batch
    batch = collate(four)
    for method in (edm.loss, edm.nll):
        with pytest.raises(
            TypeError, match=r"generator must be a torch.Generator or None, got int 0"
        ):
            method(batch, 0)
    loss, _ = edm.loss(batch, torch.Generator().manual_seed(0))  # what the message suggests
    assert loss.shape == (4,) and bool(torch.isfinite(loss).all())


def test_model_and_batch_dtypes_must_match(edm_and_batch):
    import copy

    edm, four = edm_and_batch
    batch = collate(four)
    double = copy.deepcopy(edm).double()
    with pytest.raises(TypeError, match=r"batch dtype must match the model's torch.float64, got "
                       r"batch.x torch.float32 \(collate\(\.\.\., dtype=torch.float64\)"):  # fmt: skip
        double.loss(batch)
    with pytest.raises(TypeError, match="batch dtype must match"):
        double.nll(batch)
    b64 = collate(four, dtype=torch.float64)  # what the message suggests
    gen = torch.Generator().manual_seed(0)
    assert bool(torch.isfinite(double.loss(b64, gen)[0]).all())


def test_metrics_reject_a_list_of_numbers():
    for fn in (stability, plausibility):
        with pytest.raises(TypeError, match=rf"{fn.__name__}: molecules must be a MoleculeSet, "
                           r"a packed/padded batch or a sequence of \(positions \[M, 3\], types "
                           r"\[M\]\) pairs, got a list whose item 0 is int 1"):  # fmt: skip
            fn([1, 2])
    with pytest.raises(TypeError, match="got str"):
        stability("molecules.xyz")


def test_collating_an_empty_subset(qm9_head):
    empty = qm9_head.subset(np.arange(0))
    assert len(empty) == 0
    with pytest.raises(ValueError, match=r"collate: molecules must hold at least one molecule, "
                       r"got an empty MoleculeSet \(0 molecules"):  # fmt: skip
        collate(empty)
    with pytest.raises(ValueError, match="at least one molecule"):
        collate(qm9_head.subset(np.zeros(len(qm9_head), dtype=bool)), layout="padded")


def test_devices_are_checked_before_use(tmp_path):
    assert resolve_device("cpu", "f") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"f: device must be a torch device such as cpu or cuda:0 "
                       r"\(available here: cpu.*\), got 'gpu'"):  # fmt: skip
        resolve_device("gpu", "f")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"--device must be available on this machine \(cpu\)"
                           r", got 'cuda': this torch .* is a CPU-only build; use --device cpu"):  # fmt: skip
            resolve_device("cuda", None, "--device")
        with pytest.raises(ValueError, match="load_checkpoint: device must be available"):
            load_checkpoint(tmp_path, device="cuda")
