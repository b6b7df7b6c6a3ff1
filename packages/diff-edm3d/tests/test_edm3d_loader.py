"""MoleculeLoader (spec 4.6): epoch permutations, W-independent global batches, exact resume."""

import numpy as np
import pytest

from diff_edm3d.data.loader import MoleculeLoader
from diff_edm3d.data.molecules import MoleculeSet


def _set(n):
    # molecule i has i % 7 + 1 atoms whose x coordinate encodes i, so batches can be decoded
    n_atoms = np.arange(n) % 7 + 1
    pos = np.zeros((int(n_atoms.sum()), 3))
    pos[:, 0] = np.repeat(np.arange(n), n_atoms)
    return MoleculeSet(pos, np.zeros(len(pos), np.int64), n_atoms, ids=np.arange(n) + 1)


def test_steps_per_epoch():
    one_atom = MoleculeSet(
        np.zeros((100_000, 3)), np.zeros(100_000, np.int64), np.ones(100_000, np.int64)
    )
    assert len(MoleculeLoader(one_atom, 64)) == 1563
    assert len(MoleculeLoader(one_atom, 64, drop_last=True)) == 1562
    # 100 molecules, batch 32, W = 4: the final 4 molecules still give each rank one
    assert len(MoleculeLoader(_set(100), 32, world_size=4)) == 4
    # 98 molecules, batch 32, W = 4: the final 2 molecules cannot feed 4 ranks and are dropped
    assert len(MoleculeLoader(_set(98), 32, world_size=4)) == 3


def test_epoch_permutation_is_pcg64_seed_epoch():
    ms = _set(50)
    loader = MoleculeLoader(ms, 16, seed=7)
    seen = []
    for epoch in range(2):
        ids = np.concatenate([b.ids for b in loader])
        expected = np.random.Generator(np.random.PCG64([7, epoch])).permutation(50) + 1
        np.testing.assert_array_equal(ids, expected)
        seen.append(ids)
        assert loader.state_dict()["epoch"] == epoch + 1 and loader.position == 0
    assert not np.array_equal(seen[0], seen[1])
    batch = MoleculeLoader(ms, 16, seed=7).next_batch()
    for i, mid in enumerate(batch.ids):  # molecules arrive intact
        assert (
            np.all(batch[i].positions[:, 0] == mid - 1) and len(batch[i].types) == (mid - 1) % 7 + 1
        )
    fixed = MoleculeLoader(ms, 16, shuffle=False)
    assert np.concatenate([b.ids for b in fixed]).tolist() == list(range(1, 51))


@pytest.mark.parametrize("world_size", [2, 4])
def test_global_batch_independent_of_world_size(world_size):
    ms = _set(70)
    single = MoleculeLoader(ms, 16, seed=3)
    ranks = [
        MoleculeLoader(ms, 16, seed=3, rank=r, world_size=world_size) for r in range(world_size)
    ]
    for _ in range(len(single) * 2 + 1):  # crosses two epoch boundaries
        whole = single.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        assert [len(p) for p in parts] == [
            len(x) for x in np.array_split(np.arange(len(whole)), world_size)
        ]
        np.testing.assert_array_equal(np.concatenate([p.ids for p in parts]), whole.ids)
        np.testing.assert_array_equal(MoleculeSet.concatenate(parts).positions, whole.positions)


def test_resume_is_exact():
    ms = _set(45)
    a = MoleculeLoader(ms, 8, seed=11)
    uninterrupted = [a.next_batch().ids.tolist() for _ in range(15)]
    b = MoleculeLoader(ms, 8, seed=11)
    first = [b.next_batch().ids.tolist() for _ in range(4)]
    state = b.state_dict()
    assert state == {
        "epoch": 0,
        "position": 4,
        "seed": 11,
        "batch_size": 8,
        "n_molecules": 45,
        "shuffle": True,
    }
    c = MoleculeLoader(ms, 8, seed=11, collate_fn=lambda s: s.ids.tolist())
    c.load_state_dict(state)
    rest = [c.next_batch() for _ in range(11)]
    assert first + rest == uninterrupted
    with pytest.raises(ValueError, match=r"state\['seed'\] must equal"):
        MoleculeLoader(ms, 8, seed=12).load_state_dict(state)
    with pytest.raises(ValueError, match="position in"):
        c.load_state_dict({"epoch": 0, "position": 99})


def test_bad_arguments():
    ms = _set(10)
    with pytest.raises(ValueError, match="batch_size must be divisible by world_size=3"):
        MoleculeLoader(ms, 8, world_size=3)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 2\)"):
        MoleculeLoader(ms, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        MoleculeLoader(ms, 0)
    with pytest.raises(TypeError, match="molecules must be a MoleculeSet"):
        MoleculeLoader([1, 2], 2)
