"""QM9 from the ``qm9pack`` wheel's CSVs, cached, with EDM's official split.

QM9 (Ramakrishnan et al., Sci. Data 1, 140022, 2014) ships offline in the PyPI package ``qm9pack``
1.0.3 as three CSV files holding the 130,831 molecules that remain after QM9's 3,054
"uncharacterized" ones are removed. ``qm9pack`` is never imported (its ``__init__`` needs
``pkg_resources``, which setuptools >= 81 no longer ships): its data folder is found from the
import system's metadata and the CSVs are read with pandas.

Positions are centred on the unweighted centroid in float64, as the official EDM code
(ehoogeboom/e3_diffusion_for_molecules) does. The parsed arrays are cached as
``qm9_{withH|noH}_v1.npz`` in :func:`default_cache_dir`, written atomically and rebuilt whenever
their metadata does not match.

The split (official ``gen_splits_gdb9``): with the legacy numpy seed 0, ``perm =
permutation(130831)``; train = ids[perm[:100000]], valid = ids[perm[100000:117748]], test =
ids[perm[117748:]]. The conditional halves permute the sorted train ids with seed 42.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diff_edm3d.data.atomic import atomic_write
from diff_edm3d.data.molecules import MoleculeSet
from diff_edm3d.data.properties import RAW_COLUMNS, convert_properties
from diff_edm3d.elements import QM9_NO_H, QM9_WITH_H

__all__ = [
    "QM9PACK_FILES",
    "QM9_N_MOLECULES",
    "SPLITS",
    "default_cache_dir",
    "load_qm9",
    "official_halves",
    "official_split",
    "prepare_qm9",
    "qm9_check_numbers",
    "qm9_train_smiles",
    "qm9pack_data_dir",
    "read_qm9pack",
    "read_qm9pack_ids",
    "split_check_numbers",
]

QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
QM9_N_MOLECULES = 130_831
QM9_MAX_INDEX = 133_885
N_TRAIN = 100_000
SPLITS = ("train", "valid", "test", "first_half", "second_half")
CACHE_FORMAT = 1
_BASE_COLUMNS = ("Index", "N_atoms", "Elements", "XYZ_Ang", "SMILES")
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_EXTRA_HINT = 'pip install "diff-edm3d[qm9]"'


# --------------------------------------------------------------------------------------------------
# locating qm9pack


def qm9pack_data_dir() -> Path:
    """The ``data`` folder of the installed ``qm9pack`` distribution, found without importing it.

    Raises:
        ImportError: qm9pack is not installed (names the ``qm9`` extra).
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec("qm9pack")  # locates the package; does not execute it
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "data" for p in spec.submodule_search_locations)
    try:
        dist = importlib.metadata.distribution("qm9pack")
        candidates.append(Path(str(dist.locate_file("qm9pack/data"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if all((c / f).is_file() for f in QM9PACK_FILES):
            return c
    raise ImportError(
        f"qm9pack (QM9 data) must be installed to read QM9, got no qm9pack data folder "
        f"(searched {[str(c) for c in candidates]}): {_EXTRA_HINT}"
    )


def qm9pack_version() -> str:
    """The installed qm9pack version (from its distribution metadata)."""
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - pandas comes with qm9pack
        raise ImportError(f"pandas is required to read qm9pack's CSVs: {_EXTRA_HINT}") from e
    return pandas


def default_cache_dir() -> Path:
    """``$DIFF_EDM3D_CACHE`` if set, else ``~/.cache/diff-edm3d``."""
    env = os.environ.get("DIFF_EDM3D_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "diff-edm3d"


# --------------------------------------------------------------------------------------------------
# parsing


def read_qm9pack_ids(data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """All QM9 ``Index`` values (1-based gdb ids), ascending; reads only that column.

    Raises:
        ValueError: the ids are not strictly ascending within 1..133,885.
    """
    pd = _pandas()
    data_dir = Path(data_dir) if data_dir is not None else qm9pack_data_dir()
    ids = np.concatenate(
        [pd.read_csv(data_dir / f, usecols=["Index"])["Index"].to_numpy() for f in QM9PACK_FILES]
    ).astype(np.int64)
    _check_ids(ids, "read_qm9pack_ids")
    return ids


def _check_ids(ids: np.ndarray, func: str) -> None:
    if ids.size and (ids[0] < 1 or ids[-1] > QM9_MAX_INDEX or np.any(np.diff(ids) <= 0)):
        raise ValueError(
            f"{func}: Index must be strictly ascending within 1..{QM9_MAX_INDEX}, got "
            f"{ids[:3].tolist()}...{ids[-3:].tolist()}"
        )


def _parse_rows(frames: list[tuple[str, Any]], progress: bool) -> dict[str, np.ndarray]:
    """Parse the Elements/XYZ strings of concatenated qm9pack rows into ragged arrays."""
    from tqdm.auto import tqdm

    lookup = {s: i for i, s in enumerate(QM9_WITH_H.symbols)}
    total = sum(len(df) for _, df in frames)
    ids_all, n_all, smiles_all, types_all, pos_all = [], [], [], [], []
    raw: dict[str, list[np.ndarray]] = {c: [] for c in RAW_COLUMNS}
    bar = tqdm(total=total, desc="parsing qm9pack", unit="mol", disable=not progress)
    for fname, df in frames:
        index = df["Index"].to_numpy().astype(np.int64)
        n_atoms = df["N_atoms"].to_numpy().astype(np.int64)
        for k, (idx, m, elements, xyz) in enumerate(
            zip(index, n_atoms, df["Elements"].tolist(), df["XYZ_Ang"].tolist(), strict=True)
        ):
            where = f"file {fname}, Index {int(idx)}"
            if not isinstance(elements, str) or not isinstance(xyz, str):
                raise ValueError(
                    f"read_qm9pack: Elements and XYZ_Ang must be present, got a missing value "
                    f"({where})"
                )
            symbols = [a or b for a, b in _QUOTED.findall(elements)]
            try:
                coords = np.array(
                    xyz.replace("[", " ").replace("]", " ").split(","), dtype=np.float64
                )
            except ValueError:
                raise ValueError(
                    f"read_qm9pack: XYZ_Ang must hold numbers, got {xyz[:60]!r}... ({where})"
                ) from None
            rows = xyz.count("[") - 1
            if not (len(symbols) == m == rows and coords.size == 3 * m):
                raise ValueError(
                    f"read_qm9pack: len(Elements), N_atoms and the XYZ rows must agree, got "
                    f"{len(symbols)}, {int(m)} and {rows} ({where})"
                )
            if not np.isfinite(coords).all():
                raise ValueError(
                    f"read_qm9pack: coordinates must be finite, got {coords.tolist()} ({where})"
                )
            try:
                types = [lookup[s] for s in symbols]
            except KeyError as e:
                raise ValueError(
                    f"read_qm9pack: element symbols must be in {QM9_WITH_H.symbols}, got "
                    f"{e.args[0]!r} ({where})"
                ) from None
            types_all.append(np.asarray(types, dtype=np.int8))
            pos_all.append(coords.reshape(m, 3))
            if k % 2048 == 2047:
                bar.update(2048)
        bar.update(len(df) % 2048)
        ids_all.append(index)
        n_all.append(n_atoms)
        smiles_all.extend(str(s) for s in df["SMILES"].tolist())
        for c in RAW_COLUMNS:
            v = df[c].to_numpy().astype(np.float64)
            if not np.isfinite(v).all():
                bad = int(index[np.flatnonzero(~np.isfinite(v))[0]])
                raise ValueError(
                    f"read_qm9pack: {c} must be finite, got NaN (file {fname}, Index {bad})"
                )
            raw[c].append(v)
    bar.close()
    ids = np.concatenate(ids_all)
    n_atoms = np.concatenate(n_all)
    _check_ids(ids, "read_qm9pack")
    positions = np.concatenate(pos_all) if pos_all else np.zeros((0, 3))
    out = {
        "ids": ids,
        "n_atoms": n_atoms,
        "positions": positions,
        "types": np.concatenate(types_all) if types_all else np.zeros(0, np.int8),
        "smiles": np.asarray(smiles_all, dtype=str),
    }
    out.update({c: np.concatenate(v) for c, v in raw.items()})
    return out


def _centre(positions: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    means = np.add.reduceat(positions, offsets[:-1], axis=0) / n_atoms[:, None]
    return positions - np.repeat(means, n_atoms, axis=0)


def _parse_qm9pack(
    data_dir: str | os.PathLike | None, nrows: int | None, progress: bool
) -> dict[str, np.ndarray]:
    pd = _pandas()
    data_dir = Path(data_dir) if data_dir is not None else qm9pack_data_dir()
    usecols = list(_BASE_COLUMNS) + list(RAW_COLUMNS)
    frames = []
    remaining = nrows
    for f in QM9PACK_FILES:
        if remaining is not None and remaining <= 0:
            break
        df = pd.read_csv(data_dir / f, usecols=usecols, nrows=remaining)
        frames.append((f, df))
        if remaining is not None:
            remaining -= len(df)
    arrays = _parse_rows(frames, progress)
    arrays["positions"] = _centre(arrays["positions"], arrays["n_atoms"])
    return arrays


def _to_molecule_set(arrays: Mapping[str, np.ndarray], with_h: bool, meta: dict) -> MoleculeSet:
    n_all = arrays["n_atoms_all"] if "n_atoms_all" in arrays else arrays["n_atoms"]
    props = convert_properties({c: arrays[c] for c in RAW_COLUMNS}, n_all)
    return MoleculeSet(
        arrays["positions"],
        arrays["types"],
        arrays["n_atoms"].astype(np.int64),
        QM9_WITH_H if with_h else QM9_NO_H,
        ids=arrays["ids"],
        properties=props,
        smiles=arrays["smiles"],
        meta=meta,
        validate=False,
    )


def _drop_hydrogens(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    h = QM9_WITH_H.index("H")
    keep = arrays["types"] != h
    n_all = arrays["n_atoms"].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_all)])
    n_heavy = np.add.reduceat(keep.astype(np.int64), offsets[:-1])
    remap = np.array([-1] + [QM9_NO_H.index(s) for s in QM9_WITH_H.symbols[1:]], dtype=np.int8)
    out = dict(arrays)
    out["positions"] = _centre(arrays["positions"][keep], n_heavy)
    out["types"] = remap[arrays["types"][keep].astype(np.int64)]
    out["n_atoms"] = n_heavy
    out["n_atoms_all"] = n_all
    return out


def read_qm9pack(
    nrows: int | None = None,
    remove_h: bool = False,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> MoleculeSet:
    """Parse qm9pack directly, without the cache (for tests and tools).

    Args:
        nrows: read only the first ``nrows`` rows (in file order: part 1 first); all if ``None``.
        remove_h: drop hydrogens and re-centre on the heavy atoms.
        data_dir: qm9pack's data folder; found automatically by default.
        progress: show a tqdm bar.
    """
    if nrows is not None and (not isinstance(nrows, (int, np.integer)) or nrows < 1):
        raise ValueError(f"read_qm9pack: nrows must be a positive integer or None, got {nrows!r}")
    arrays = _parse_qm9pack(data_dir, nrows, progress)
    if remove_h:
        arrays = _drop_hydrogens(arrays)
    meta = {"source": "qm9pack", "qm9pack_version": qm9pack_version(), "with_h": not remove_h}
    return _to_molecule_set(arrays, not remove_h, meta)


# --------------------------------------------------------------------------------------------------
# cache


def _cache_meta(with_h: bool) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "qm9pack_version": qm9pack_version(),
        "elements": list((QM9_WITH_H if with_h else QM9_NO_H).symbols),
        "with_h": with_h,
    }


def _cache_path(cache_dir: Path, with_h: bool) -> Path:
    return cache_dir / f"qm9_{'withH' if with_h else 'noH'}_v{CACHE_FORMAT}.npz"


def _read_cache(path: Path, expected: dict[str, Any]) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) != expected:
                return None
            return {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # unreadable or truncated: rebuilt by the caller


def _write_cache(path: Path, arrays: Mapping[str, np.ndarray], meta: dict[str, Any]) -> None:
    stored = {
        "ids": arrays["ids"].astype(np.int32),
        "n_atoms": arrays["n_atoms"].astype(np.int16),
        "offsets": np.concatenate([[0], np.cumsum(arrays["n_atoms"])]).astype(np.int64),
        "positions": arrays["positions"].astype(np.float64),
        "types": arrays["types"].astype(np.int8),
        "smiles": arrays["smiles"],
        "meta": np.asarray(json.dumps(meta)),
    }
    if "n_atoms_all" in arrays:
        stored["n_atoms_all"] = arrays["n_atoms_all"].astype(np.int16)
    stored.update({c: arrays[c].astype(np.float64) for c in RAW_COLUMNS})
    atomic_write(path, lambda f: np.savez(f, **stored), overwrite=True, caller="load_qm9")


def _cached_arrays(with_h: bool, cache_dir: Path, progress: bool) -> dict[str, np.ndarray]:
    path = _cache_path(cache_dir, with_h)
    meta = _cache_meta(with_h)
    arrays = _read_cache(path, meta)
    if arrays is not None:
        return arrays
    if with_h:
        arrays = _parse_qm9pack(None, None, progress)
    else:
        arrays = _drop_hydrogens(_cached_arrays(True, cache_dir, progress))
    if len(arrays["ids"]) != QM9_N_MOLECULES:
        raise ValueError(
            f"load_qm9: qm9pack must hold {QM9_N_MOLECULES} molecules, got {len(arrays['ids'])} "
            f"(qm9pack {qm9pack_version()})"
        )
    _write_cache(path, arrays, meta)
    return arrays


def load_qm9(
    remove_h: bool = False,
    split: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> MoleculeSet:
    """All of QM9 (130,831 molecules) or one official split, from the cache (built on first use).

    Args:
        remove_h: drop hydrogens (QM9_NO_H; M from 1 to 9) and centre on the heavy atoms.
        split: ``None`` (all), ``"train"``, ``"valid"``, ``"test"``, ``"first_half"`` (trains the
            property classifier) or ``"second_half"`` (trains the conditional EDM).
        cache_dir: where ``qm9_{withH|noH}_v1.npz`` lives; default :func:`default_cache_dir`.
        progress: show a tqdm bar while parsing (first use only, about 10 s).

    Returns:
        A :class:`MoleculeSet` in ascending id order, with ``properties`` alpha (Bohr^3), gap, homo,
        lumo (eV), mu (D) and Cv (cal/(mol K), thermo term removed) and QM9's stored SMILES.

    Example:
        >>> test = load_qm9(split="test")  # doctest: +SKIP
        >>> len(test), int(test.ids.sum())  # doctest: +SKIP
        (13083, 874554425)
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"load_qm9: split must be None or one of {SPLITS}, got {split!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    arrays = _cached_arrays(not remove_h, cache, progress)
    meta = {
        "source": "qm9pack",
        "qm9pack_version": qm9pack_version(),
        "with_h": not remove_h,
        "split": split,
    }
    ms = _to_molecule_set(arrays, not remove_h, meta)
    if split is None:
        return ms
    ids = _split_ids(ms.ids, split)
    return ms.select_ids(np.sort(ids))


# --------------------------------------------------------------------------------------------------
# split


def official_split(ids: Any) -> dict[str, np.ndarray]:
    """EDM's train/valid/test split of the 130,831 QM9 ids, in permutation order.

    ``perm = RandomState(0).permutation(130831)`` (the stream of ``np.random.seed(0)``; the global
    RNG state is not touched); train = ids[perm[:100000]], valid = ids[perm[100000:117748]],
    test = ids[perm[117748:]].
    """
    ids = np.asarray(ids).reshape(-1).astype(np.int64)
    if len(ids) != QM9_N_MOLECULES:
        raise ValueError(
            f"official_split: ids must hold all {QM9_N_MOLECULES} QM9 ids, got {len(ids)}"
        )
    if np.any(np.diff(ids) <= 0):
        raise ValueError("official_split: ids must be strictly ascending, got an unsorted array")
    perm = np.random.RandomState(0).permutation(QM9_N_MOLECULES)
    n_test = int(0.1 * QM9_N_MOLECULES)
    n_valid = QM9_N_MOLECULES - N_TRAIN - n_test
    return {
        "train": ids[perm[:N_TRAIN]],
        "valid": ids[perm[N_TRAIN : N_TRAIN + n_valid]],
        "test": ids[perm[N_TRAIN + n_valid :]],
    }


def official_halves(train_ids: Any) -> dict[str, np.ndarray]:
    """The conditional halves: ``tr = sort(train_ids)``, ``q = RandomState(42).permutation(len)``.

    second_half = tr[q[len//2:]] trains the conditional EDM; first_half = tr[q[:len//2]] trains
    the property classifier.
    """
    tr = np.sort(np.asarray(train_ids).reshape(-1).astype(np.int64))
    if len(tr) != N_TRAIN:
        raise ValueError(f"official_halves: train_ids must hold {N_TRAIN} ids, got {len(tr)}")
    q = np.random.RandomState(42).permutation(len(tr))
    half = len(tr) // 2
    return {"first_half": tr[q[:half]], "second_half": tr[q[half:]]}


def _split_ids(ids: np.ndarray, split: str) -> np.ndarray:
    splits = official_split(ids)
    if split in ("first_half", "second_half"):
        return official_halves(splits["train"])[split]
    return splits[split]


def split_check_numbers(ids: Any) -> dict[str, dict[str, Any]]:
    """For each set: size, the first five ids in permutation order and the sum of ids."""
    splits = official_split(ids)
    splits.update(official_halves(splits["train"]))
    return {
        name: {
            "n": int(len(v)),
            "first_five": v[:5].tolist(),
            "id_sum": int(v.sum()),
        }
        for name, v in splits.items()
    }


def qm9_check_numbers(molecules: MoleculeSet) -> dict[str, Any]:
    """The data check numbers of spec 4.1/4.3 for a (QM9) set: counts, ranges and sums of |x|^2."""
    pos = molecules.positions.astype(np.float64)
    sq = (pos * pos).sum(axis=1)
    out: dict[str, Any] = {
        "molecules": len(molecules),
        "atoms": molecules.n_total_atoms,
        "atoms_by_element": molecules.element_counts(),
        "min_atoms": int(molecules.n_atoms.min()) if len(molecules) else 0,
        "max_atoms": int(molecules.n_atoms.max()) if len(molecules) else 0,
        "sum_sq_norm": float(sq.sum()),
    }
    if len(molecules):
        far = int(np.argmax(sq))
        b, _ = molecules.locate(far)
        out["max_centroid_distance"] = float(np.sqrt(sq[far]))
        out["max_centroid_distance_id"] = int(molecules.ids[b])
        first = np.flatnonzero(molecules.ids == 1)
        if first.size:
            p, _ = molecules.molecule(int(first[0]))
            out["index1_sum_sq_norm"] = float((p.astype(np.float64) ** 2).sum())
    return out


# --------------------------------------------------------------------------------------------------
# novelty reference


def qm9_train_smiles(
    remove_h: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Distinct SMILES of the valid training molecules through the EDM pipeline (cached).

    This is the novelty reference of :func:`diff_edm3d.metrics.chem_metrics`. Computing it takes
    about a minute; the result is cached as ``qm9_train_smiles_v1.npz`` (``qm9_noH_...`` without
    hydrogens).
    """
    from diff_edm3d.metrics.chem import reference_smiles

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / f"qm9_{'noH_' if remove_h else ''}train_smiles_v{CACHE_FORMAT}.npz"
    meta = _cache_meta(not remove_h)
    meta["content"] = "train_smiles"
    cached = _read_cache(path, meta)
    if cached is not None and "smiles" in cached:
        return cached["smiles"]
    train = load_qm9(remove_h=remove_h, split="train", cache_dir=cache, progress=progress)
    smiles = reference_smiles(train, progress=progress)
    stored = {"smiles": smiles, "meta": np.asarray(json.dumps(meta))}
    atomic_write(path, lambda f: np.savez(f, **stored), overwrite=True, caller="qm9_train_smiles")
    return smiles


def prepare_qm9(
    cache_dir: str | os.PathLike | None = None,
    remove_h: bool = False,
    train_smiles: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the caches and return the check numbers to compare with the spec (CLI ``prepare``).

    Returns:
        A JSON-able dict: the cache directory, the data check numbers of the full set, the split
        check numbers, the training histogram of M and, with ``train_smiles``, the number of
        distinct valid training SMILES (97,625 with hydrogens).
    """
    from diff_edm3d.sizes import AtomCountDistribution

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    full = load_qm9(remove_h=remove_h, cache_dir=cache, progress=progress)
    train = full.select_ids(np.sort(_split_ids(full.ids, "train")))
    sizes = AtomCountDistribution.from_molecules(train)
    report: dict[str, Any] = {
        "cache_dir": str(cache),
        "with_h": not remove_h,
        "data": qm9_check_numbers(full),
        "splits": split_check_numbers(full.ids),
        "train_histogram": {str(m): c for m, c in sizes.histogram().items()},
        "train_size_entropy": sizes.entropy(),
    }
    if train_smiles:
        report["train_smiles"] = int(
            len(qm9_train_smiles(remove_h=remove_h, cache_dir=cache, progress=progress))
        )
    return report
