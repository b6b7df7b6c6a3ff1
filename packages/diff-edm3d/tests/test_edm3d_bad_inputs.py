"""Property-based bad-input suite (issue 18, items 10-12): every bad input below gets a
``ValueError``/``TypeError`` (or a `CheckpointError`, a ``ValueError``) whose message names the
argument — the tests match on that name — or a documented legal result, never a silent answer
or an internal error. Hypothesis runs derandomized (fixed examples, no deadline); the number of
examples each test tries is its ``max_examples`` (``N_*`` below; 384 inputs in all, a few of them legal, counted
with ``DIFF_EDM3D_COUNT_BAD_INPUTS=1 pytest -s``). Models are built once per module."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diff_edm3d import (
    EDM,
    AtomCountDistribution,
    CheckpointError,
    E3nnConfig,
    E3nnDynamics,
    EDMConfig,
    EGNNConfig,
    EGNNDynamics,
    MoleculeSet,
    PackedBatch,
    collate,
    graph_from_n_atoms,
    load_checkpoint,
    load_official_checkpoint,
    read_xyz,
    save_checkpoint,
    to_official_state_dict,
)
from diff_edm3d.batch import Graph
from diff_edm3d.checkpoint import _sha256

#: Floats without subnormals: another library in the same process (the whole repository's
#: suite runs in one pytest) may set flush-to-zero, and hypothesis then refuses to draw them.
floats = functools.partial(st.floats, allow_subnormal=False)

pytestmark = pytest.mark.usefixtures("single_thread")

SETTINGS = dict(derandomize=True, deadline=None, database=None)
SETTINGS_FS = dict(SETTINGS, suppress_health_check=[HealthCheck.too_slow])
TRIED: Counter = Counter()

SIZES = [2, 3, 4]  # three molecules, V = 9


@pytest.fixture(scope="module", autouse=True)
def _count_report():
    yield
    if os.environ.get("DIFF_EDM3D_COUNT_BAD_INPUTS"):
        print(f"\nbad inputs tried: {sum(TRIED.values())} {dict(TRIED)}")


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dyn = EGNNDynamics(EGNNConfig(nf=8, n_layers=1))
    ms = MoleculeSet.from_molecules(
        [
            (np.random.default_rng(i).normal(size=(m, 3)), [0] + [1] * (m - 1))
            for i, m in enumerate(SIZES)
        ]
    )
    edm = EDM(dyn, EDMConfig(), AtomCountDistribution.from_molecules(ms)).eval()
    return edm, ms


@pytest.fixture(scope="module")
def e3nn_dynamics():
    pytest.importorskip("e3nn")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return E3nnDynamics(E3nnConfig(mul=4, layers=1, lmax=1, num_basis=4))


def _inputs(dyn):
    g = graph_from_n_atoms(SIZES)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(g.num_atoms, 3, generator=gen)
    h = torch.randn(g.num_atoms, dyn.n_features, generator=gen)
    return x, h, g


bad_times = st.one_of(
    floats(max_value=-1e-6, allow_nan=False),
    floats(min_value=1.000001, allow_nan=False),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
)


# ---------------------------------------------------------------------------------------------
# item 10: the dynamics and the model


@settings(max_examples=40, **SETTINGS)
@given(t=bad_times, as_tensor=st.booleans(), where=st.integers(0, 2))
def test_dynamics_refuses_t_outside_0_1(model, t, as_tensor, where):
    TRIED["dynamics t"] += 1
    dyn = model[0].dynamics
    x, h, g = _inputs(dyn)
    if as_tensor:
        t = torch.full((3,), 0.5, dtype=torch.float64).index_fill(0, torch.tensor([where]), t)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        dyn(x, h, t, g)


@settings(max_examples=10, **SETTINGS)
@given(t=bad_times)
def test_e3nn_dynamics_refuses_t_outside_0_1(e3nn_dynamics, t):
    TRIED["e3nn t"] += 1
    x, h, g = _inputs(e3nn_dynamics)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        e3nn_dynamics(x, h, t, g)


@settings(max_examples=25, **SETTINGS)
@given(rows=st.integers(0, 30).filter(lambda v: v != 9))
def test_dynamics_refuses_x_rows_that_do_not_match_the_graph(model, rows):
    TRIED["x rows"] += 1
    dyn = model[0].dynamics
    _, _, g = _inputs(dyn)
    x = torch.zeros(rows, 3)
    h = torch.zeros(rows, dyn.n_features)
    with pytest.raises(ValueError, match=r"x must have one row per atom of graph \(9 atoms"):
        dyn(x, h, 0.5, g)


@settings(max_examples=30, **SETTINGS)
@given(
    field=st.sampled_from(["batch", "ptr", "n_atoms", "edge_index"]),
    seed=st.integers(0, 10_000),
)
def test_dynamics_refuses_an_inconsistent_graph(model, field, seed):
    """A graph whose batch, ptr, n_atoms or edges do not describe the same molecules."""
    TRIED["graph"] += 1
    dyn = model[0].dynamics
    x, h, g = _inputs(dyn)
    rng = np.random.default_rng(seed)
    value = getattr(g, field).clone()
    flat = value.view(-1)
    i = int(rng.integers(flat.numel()))
    flat[i] = flat[i] + int(rng.choice([-2, -1, 1, 2]))
    bad = g._replace(**{field: value})
    with pytest.raises(ValueError, match=r"graph\.(batch|ptr|n_atoms|edge_index)|one row per atom"):
        dyn(x, h, 0.5, bad)


@settings(max_examples=15, **SETTINGS)
@given(kind=st.sampled_from(["float", "int", "str", "none", "list"]))
def test_dynamics_refuses_graph_fields_of_the_wrong_type(model, kind):
    TRIED["graph type"] += 1
    dyn = model[0].dynamics
    x, h, g = _inputs(dyn)
    junk = {"float": g.batch.double(), "int": 3, "str": "0", "none": None, "list": [0] * 9}[kind]
    with pytest.raises((TypeError, ValueError), match=r"graph"):
        dyn(x, h, 0.5, Graph(junk, g.ptr, g.n_atoms, g.edge_index))


@settings(max_examples=20, **SETTINGS)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=3, max_size=3).filter(lambda s: s != SIZES),
)
def test_loss_refuses_n_atoms_that_disagree_with_the_data(model, sizes):
    TRIED["loss n_atoms"] += 1
    edm, ms = model
    batch = collate(ms)
    bad = batch.with_(n_atoms=torch.tensor(sizes))
    with pytest.raises(ValueError, match=r"EDM\.loss: batch\.n_atoms"):
        edm.loss(bad, torch.Generator().manual_seed(0))


@settings(max_examples=30, **SETTINGS)
@given(
    i=st.integers(0, 2),
    value=st.one_of(
        floats(max_value=0.0, allow_nan=False), st.sampled_from([math.inf, -math.inf, math.nan])
    ),
)
def test_edm_config_refuses_non_finite_or_non_positive_norm_values(i, value):
    TRIED["norm_values"] += 1
    nv = [1.0, 4.0, 10.0]
    nv[i] = value
    with pytest.raises(ValueError, match="norm_values"):
        EDMConfig(norm_values=tuple(nv))


@settings(max_examples=25, **SETTINGS)
@given(
    case=st.sampled_from(
        [
            ("T", 0),
            ("T", -5),
            ("T", 1.5),
            ("T", True),
            ("precision", 0.0),
            ("precision", 1.0),
            ("precision", math.nan),
            ("precision", "1e-5"),
            ("max_atoms", 0),
            ("max_atoms", 2.0),
            ("context_dim", -1),
            ("context_dim", True),
            ("norm_biases", (math.nan, 0, 0)),
            ("norm_biases", (0, 0)),
            ("norm_values", "abc"),
            ("norm_values", (1, 4)),
            ("include_charges", 1),
            ("check_finite", "yes"),
            ("loss_type", "l1"),
            ("l2_denominator", "max"),
        ]
    )
)
def test_edm_config_names_the_bad_field(case):
    TRIED["EDMConfig"] += 1
    key, value = case
    with pytest.raises((TypeError, ValueError), match=key):
        EDMConfig(**{key: value})


# ---------------------------------------------------------------------------------------------
# item 11: checkpoints


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    path = save_checkpoint(
        root / "run" / "ckpt_00000001",
        model[0],
        trainer_state={"step": 1, "clip_queue": [1.0], "loader": {"epoch": 0, "position": 0}},
    )
    return path, root


def _copy(checkpoint, name="ckpt_00000002"):
    path, root = checkpoint
    target = path.parent / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(path, target)
    return target


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([-1, -7.5, 1e300, 10**15, 2.5]),
)

# (path into trainer_state.json, the junk values that are wrong there)
STATE_PATHS = [
    (
        ("step",),
        junk.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and v >= 0)),
    ),
    (
        ("clip_queue",),
        st.one_of(st.none(), st.text(max_size=3), st.just([math.nan]), st.just(["1"])),
    ),
    (("loader",), st.one_of(st.none(), st.text(max_size=3), st.just([0, 0]))),
    (("loader", "position"), st.sampled_from([-1, 0.5, "0", None, [0]])),
    (("files",), st.one_of(st.text(max_size=3), st.just([1]), st.just(3))),
    (("model",), st.one_of(st.none(), st.text(max_size=3), st.just([1]))),
    (("model", "dynamics"), st.one_of(st.none(), st.text(max_size=3), st.just({}))),
    (("model", "dynamics", "name"), st.sampled_from(["gnn", ["egnn"], 3, None])),
    (("model", "dynamics", "config", "nf"), st.sampled_from([0, -1, "8", 8.5, None, [8]])),
    (("model", "edm_config"), st.one_of(st.none(), st.text(max_size=3), st.just([1]))),
    (
        ("model", "edm_config", "norm_values"),
        st.sampled_from(["abc", [1, 2], [1e309, 4, 10], None]),
    ),
    (("model", "edm_config", "elements"), st.sampled_from([5, "x", [1], {"symbols": "C"}])),
    (("model", "atom_counts"), st.sampled_from([[1, 2], "x", 5, {}, {"counts": []}])),
    (
        ("model", "atom_counts", "counts"),
        st.one_of(
            st.just({"10000000000000": 1}),
            st.just({"3": 1.5}),
            st.just({"a": 1}),
            st.just({"3": -1}),
            st.just({"0": 4}),
            st.just([4, 5]),
            st.just({"3": "x"}),
            st.dictionaries(st.sampled_from(["-1", "1e9", "x"]), st.integers(0, 9), min_size=1),
        ),
    ),
    (("model", "property_dist"), st.sampled_from([{"n_bins": 3}, [1], "x", 5])),
    (("model", "property_normaliser"), st.sampled_from([{"mean": 1, "mad": 2}, [1], "x"])),
    (("model", "property_names"), st.sampled_from([3, "alpha", [1, 2]])),
]


@settings(max_examples=45, **SETTINGS_FS)
@given(data=st.data(), which=st.integers(0, len(STATE_PATHS) - 1))
def test_corrupted_trainer_state_is_one_error_naming_the_file(checkpoint, data, which):
    TRIED["trainer_state.json"] += 1
    keys, values = STATE_PATHS[which]
    value = data.draw(values)
    target = _copy(checkpoint)
    f = target / "trainer_state.json"
    state = json.loads(f.read_text())
    node = state
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    f.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="trainer_state.json") as e:
        load_checkpoint(target)
    assert str(target) in str(e.value)


@settings(max_examples=15, **SETTINGS_FS)
@given(payload=st.binary(min_size=1, max_size=64))
def test_garbage_trainer_state_is_one_error_naming_the_file(checkpoint, payload):
    TRIED["trainer_state bytes"] += 1
    target = _copy(checkpoint)
    (target / "trainer_state.json").write_bytes(b"\xff" + payload)
    with pytest.raises(CheckpointError, match="trainer_state.json") as e:
        load_checkpoint(target)
    assert str(target) in str(e.value)


@settings(max_examples=20, **SETTINGS_FS)
@given(
    corruption=st.sampled_from(["nan", "inf", "-inf", "int64", "int32", "bool", "uint8"]),
    which=st.integers(0, 1000),
    weights=st.sampled_from(["ema", "model"]),
)
def test_weights_with_nan_or_integer_tensors_are_refused(checkpoint, corruption, which, weights):
    """Re-written with a matching SHA-256 (the file is well-formed; its values are not)."""
    from safetensors.torch import load_file, save_file

    TRIED["weights"] += 1
    target = _copy(checkpoint)
    name = f"{weights}.safetensors"
    tensors = load_file(str(target / name))
    key = sorted(tensors)[which % len(tensors)]
    t = tensors[key]
    if corruption in ("nan", "inf", "-inf"):
        t = t.clone().view(-1)
        t[which % t.numel()] = float(corruption)
        tensors[key] = t.view(tensors[key].shape)
    else:
        tensors[key] = t.to(getattr(torch, corruption))
    save_file(tensors, str(target / name))
    f = target / "trainer_state.json"
    state = json.loads(f.read_text())
    state["files"][name] = {
        "bytes": (target / name).stat().st_size,
        "sha256": _sha256(target / name),
    }
    f.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=re.escape(name)) as e:
        load_checkpoint(target, weights=weights)
    assert str(target) in str(e.value)


@settings(max_examples=12, **SETTINGS_FS)
@given(edm=st.sampled_from([None, 0, "edm", [], {}, torch.nn.Linear(2, 2)]))
def test_load_official_checkpoint_needs_a_model(model, checkpoint, tmp_path_factory, edm):
    TRIED["official edm"] += 1
    f = checkpoint[1] / "official.npy"
    if not f.is_file():
        torch.save(to_official_state_dict(model[0]), f)
    with pytest.raises(TypeError, match="edm must be an EDM"):
        load_official_checkpoint(f, edm)


@settings(max_examples=10, **SETTINGS_FS)
@given(kind=st.sampled_from(["nan", "int"]), which=st.integers(0, 100))
def test_load_official_checkpoint_refuses_nan_and_integer_weights(model, checkpoint, kind, which):
    TRIED["official tensors"] += 1
    sd = to_official_state_dict(model[0])
    key = sorted(k for k in sd if k.startswith("dynamics."))[which % 10]
    sd[key] = sd[key] * math.nan if kind == "nan" else sd[key].long()
    f = checkpoint[1] / f"official_{kind}.npy"
    torch.save(sd, f)
    with pytest.raises((ValueError, TypeError), match=re.escape(str(f))):
        load_official_checkpoint(f, model[0])


# ---------------------------------------------------------------------------------------------
# item 12: readers and batches


@settings(max_examples=25, **SETTINGS_FS)
@given(payload=st.binary(max_size=200))
def test_read_xyz_on_random_bytes_names_the_file(tmp_path_factory, payload):
    """Either a ValueError naming the file, or (legal) the frames the bytes happen to spell."""
    TRIED["read_xyz"] += 1
    f = tmp_path_factory.getbasetemp() / "random.xyz"
    f.write_bytes(payload)
    try:
        frames = read_xyz(f)
    except ValueError as e:
        assert str(f) in str(e)
    else:
        assert all(m.positions.shape == (len(m.symbols), 3) for m in frames)


@settings(max_examples=25, **SETTINGS)
@given(
    shape=st.tuples(st.integers(0, 5), st.integers(0, 5)).filter(lambda s: s[1] != 3)
    | st.sampled_from([(3,), (9,), (2, 3, 1), ()]),
)
def test_from_molecules_refuses_bad_coordinate_shapes(shape):
    TRIED["from_molecules positions"] += 1
    n = shape[0] if shape else 1
    with pytest.raises(ValueError, match="positions of molecule 0"):
        MoleculeSet.from_molecules([(np.zeros(shape), [0] * n)])


@settings(max_examples=20, **SETTINGS)
@given(
    value=floats(allow_nan=True, allow_infinity=True).filter(
        lambda v: not (math.isfinite(v) and v == round(v))
    ),
    at=st.integers(0, 2),
)
def test_from_molecules_refuses_fractional_atom_types(value, at):
    TRIED["from_molecules types"] += 1
    types = [0.0, 1.0, 1.0]
    types[at] = value
    with pytest.raises(ValueError, match="types of molecule 0 must be integer"):
        MoleculeSet.from_molecules([(np.zeros((3, 3)), np.array(types))])


@settings(max_examples=20, **SETTINGS)
@given(
    dtype=st.one_of(
        st.sampled_from(
            ["float32", "float64", "torch.float64", "int64", "float8", "", "f4", torch.int64, 3]
        ),
        st.sampled_from([np.float32, torch.bool, None, torch.complex64]),
    )
)
def test_collate_dtype_is_a_floating_torch_dtype_or_its_name(model, dtype):
    """Legal: a floating torch dtype or its name ("float32", "torch.float64"); else TypeError."""
    TRIED["collate dtype"] += 1
    ms = model[1]
    legal = {"float32": torch.float32, "float64": torch.float64, "torch.float64": torch.float64}
    if isinstance(dtype, str) and dtype in legal:
        assert collate(ms, dtype=dtype).x.dtype == legal[dtype]
    else:
        with pytest.raises(TypeError, match="dtype must be a floating torch dtype"):
            collate(ms, dtype=dtype)


@settings(max_examples=6, **SETTINGS)
@given(empty=st.sampled_from(["list", "tuple", "subset", "from_molecules"]))
def test_collate_an_empty_batch_says_so(model, empty):
    TRIED["collate empty"] += 1
    ms = model[1]
    value = {
        "list": [],
        "tuple": (),
        "subset": ms.subset(np.arange(0)),
        "from_molecules": MoleculeSet.from_molecules([]),
    }[empty]
    with pytest.raises(ValueError, match="molecules must hold at least one molecule"):
        collate(value)


@settings(max_examples=20, **SETTINGS)
@given(
    n_atoms=st.one_of(
        st.lists(st.integers(-3, 0), min_size=1, max_size=3),
        st.lists(st.integers(30, 10**6), min_size=1, max_size=3),
        st.just([]),
        st.just([1.5]),
        st.just("3"),
    )
)
def test_sample_refuses_bad_atom_counts(model, n_atoms):
    TRIED["sample n_atoms"] += 1
    with pytest.raises((ValueError, TypeError), match="n_atoms"):
        model[0].sample(n_atoms, grid=[1000, 0])


def test_packed_batch_from_a_user_with_edges_of_other_sizes_is_refused(model):
    edm, ms = model
    batch = collate(ms)
    g = graph_from_n_atoms([3, 3, 3])
    bad = PackedBatch(
        batch.x, batch.h_cat, batch.h_int, g.batch, g.ptr, g.n_atoms, g.edge_index, None
    )
    TRIED["loss graph"] += 1
    # consistent with itself but not with the atoms' molecule sizes: still a legal batch of
    # three molecules of 3 atoms, so this is a documented legal result (a loss per molecule)
    loss, _ = edm.loss(bad, torch.Generator().manual_seed(0))
    assert loss.shape == (3,) and bool(torch.isfinite(loss).all())


def test_checkpoint_fixture_loads(checkpoint):
    edm = load_checkpoint(checkpoint[0])
    assert isinstance(edm, EDM)
    assert Path(edm.checkpoint_path) == checkpoint[0]
