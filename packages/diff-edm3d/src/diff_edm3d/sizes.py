"""The size distribution p(M) and the property distribution p(c | M) of EDM.

EDM (Hoogeboom et al., arXiv:2203.17003, section 3.4) factorises p(x, h, M) = p(M) p(x, h | M),
with p(M) the categorical histogram of training atom counts; the NLL includes -log p(M). For
conditional generation (section 5.3; official ``DistributionProperty``) c is drawn given M from a
1,000-bin histogram per M: bin ``i = floor((c - min)/(max - min + 1e-12) · n_bins)`` (clamped to
``n_bins - 1``), then uniformly inside the chosen bin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AtomCountDistribution", "PropertyGivenSize"]


#: The largest atom count a size table may hold (tables are dense arrays indexed by M).
MAX_ATOM_COUNT = 100_000


def _count(value: Any, what: str, func: str) -> int:
    """An integer from an int or an integral float (converted explicitly, never truncated)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: {what} must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{func}: {what} must be an integer, got {value!r:.40}") from None
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == round(value):
        return int(value)
    raise ValueError(f"{func}: {what} must be an integer, got {value!r:.40}")


def _int_array(values: Any, name: str, func: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{func}: {name} must be integer atom counts, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class AtomCountDistribution:
    """p(M): the categorical distribution of atom counts in a training set.

    Args:
        counts: a 1-D array indexed by M (``counts[M]``), or a mapping ``{M: count}``.

    Example:
        >>> p = AtomCountDistribution({3: 1, 5: 3})
        >>> float(-p.log_prob(np.array([5]))[0]) == float(np.log(4 / 3))
        True
    """

    def __init__(self, counts: Sequence[int] | np.ndarray | Mapping[int, int]) -> None:
        if isinstance(counts, Mapping):
            if not counts:
                raise ValueError("AtomCountDistribution: counts must be non-empty, got {}")
            func = "AtomCountDistribution"
            table = {
                _count(k, "sizes M", func): _count(v, f"count[{k!r}]", func)
                for k, v in counts.items()
            }
            bad = [m for m in table if not 0 <= m <= MAX_ATOM_COUNT]
            if bad:
                raise ValueError(f"{func}: sizes M must be in [0, {MAX_ATOM_COUNT}], got {bad[0]}")
            arr = np.zeros(max(table) + 1, dtype=np.int64)
            for k, v in table.items():
                arr[k] = v
        else:
            arr = _int_array(counts, "counts", "AtomCountDistribution").reshape(-1)
            if arr.size > MAX_ATOM_COUNT + 1:
                raise ValueError(
                    f"AtomCountDistribution: counts must cover sizes up to {MAX_ATOM_COUNT}, got "
                    f"{arr.size} entries"
                )
        if arr.size == 0 or np.any(arr < 0) or arr.sum() == 0:
            raise ValueError(
                f"AtomCountDistribution: counts must be non-negative with a positive total, got "
                f"{arr.tolist()}"
            )
        if arr[0] != 0:
            raise ValueError(
                f"AtomCountDistribution: molecules must have M >= 1, got {arr[0]} with M = 0"
            )
        last = int(np.flatnonzero(arr)[-1])
        self.counts = arr[: last + 1].copy()
        self.counts.setflags(write=False)
        total = self.counts.sum()
        self.probs = self.counts / total
        with np.errstate(divide="ignore"):
            self._log_probs = np.where(
                self.counts > 0, np.log(self.counts) - np.log(total), -np.inf
            )

    @classmethod
    def from_n_atoms(cls, n_atoms: Any) -> AtomCountDistribution:
        """The histogram of the given atom counts."""
        n = _int_array(n_atoms, "n_atoms", "AtomCountDistribution.from_n_atoms").reshape(-1)
        if n.size == 0 or n.min() < 1:
            raise ValueError(
                "AtomCountDistribution.from_n_atoms: n_atoms must be a non-empty array of counts "
                f">= 1, got {n[:5].tolist()}"
            )
        return cls(np.bincount(n))

    @classmethod
    def from_molecules(cls, molecules: Any) -> AtomCountDistribution:
        """The histogram of a :class:`MoleculeSet`'s atom counts."""
        return cls.from_n_atoms(molecules.n_atoms)

    @property
    def max_atoms(self) -> int:
        """The largest M with non-zero probability."""
        return len(self.counts) - 1

    @property
    def support(self) -> np.ndarray:
        """The sizes with non-zero count, ascending."""
        return np.flatnonzero(self.counts)

    def histogram(self) -> dict[int, int]:
        """``{M: count}`` for the sizes in the support."""
        return {int(m): int(self.counts[m]) for m in self.support}

    def entropy(self) -> float:
        """H[p(M)] in nats (2.475701 for the QM9 training split)."""
        p = self.probs[self.counts > 0]
        return float(-(p * np.log(p)).sum())

    def log_prob(self, n_atoms: Any, allow_unseen_sizes: bool = False) -> Any:
        """log p(M), elementwise. numpy in -> float64 numpy out; torch in -> float64 torch out.

        Raises:
            ValueError: an M with zero count (naming it), unless ``allow_unseen_sizes`` is set, in
                which case its log-probability is -inf (an NLL of +inf).
        """
        is_torch = hasattr(n_atoms, "detach")
        n = _int_array(n_atoms, "n_atoms", "AtomCountDistribution.log_prob")
        inside = (n >= 0) & (n < len(self.counts))
        lp = np.full(n.shape, -np.inf)
        lp[inside] = self._log_probs[n[inside]]
        unseen = ~np.isfinite(lp)
        if unseen.any() and not allow_unseen_sizes:
            bad = sorted(set(n[unseen].tolist()))
            raise ValueError(
                f"AtomCountDistribution.log_prob: M must be in the support of p(M) "
                f"{self.support.tolist()}, got M={bad[:10]}"
            )
        if is_torch:
            import torch

            return torch.as_tensor(lp, dtype=torch.float64, device=n_atoms.device)
        return lp

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Draw ``n`` sizes; ``rng`` is a Generator or a seed (``PCG64([seed, 0])``)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(
                f"AtomCountDistribution.sample: n must be a non-negative integer, got {n!r}"
            )
        if not isinstance(rng, np.random.Generator):
            rng = np.random.Generator(np.random.PCG64([0 if rng is None else int(rng), 0]))
        support = self.support
        return support[rng.choice(len(support), size=int(n), p=self.probs[support])].astype(
            np.int64
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"counts": {"M": count}}``."""
        return {"counts": {str(k): v for k, v in self.histogram().items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AtomCountDistribution:
        if not isinstance(d, Mapping) or "counts" not in d:
            raise ValueError(
                f"AtomCountDistribution.from_dict: d must have key 'counts', got {d!r:.80}"
            )
        counts = d["counts"]
        if not isinstance(counts, Mapping) or not counts:
            raise ValueError(
                f"AtomCountDistribution.from_dict: d['counts'] must be a non-empty mapping "
                f"{{M: count}}, got {counts!r:.80}"
            )
        return cls(counts)

    def __repr__(self) -> str:
        return f"AtomCountDistribution({self.histogram()})"


class PropertyGivenSize:
    """p(c | M): one histogram of ``n_bins`` bins per atom count, per property.

    Args:
        n_atoms: [S] atom counts of the conditional training set.
        values: [S] for one property or [S, P] for several (raw units).
        n_bins: bins per histogram (official: 1,000).
        names: property names (for messages and serialisation).
    """

    def __init__(
        self,
        n_atoms: Any,
        values: Any,
        n_bins: int = 1000,
        names: Sequence[str] | None = None,
    ) -> None:
        n = _int_array(n_atoms, "n_atoms", "PropertyGivenSize").reshape(-1)
        v = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
        v = v.astype(np.float64)
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2 or len(v) != len(n) or len(n) == 0:
            raise ValueError(
                f"PropertyGivenSize: values must have shape [S] or [S, P] with S = len(n_atoms) = "
                f"{len(n)} > 0, got {v.shape}"
            )
        if not np.isfinite(v).all():
            raise ValueError("PropertyGivenSize: values must be finite, got NaN or inf")
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(
                f"PropertyGivenSize: n_bins must be a positive integer, got {n_bins!r}"
            )
        self.n_bins = int(n_bins)
        self.names = (
            tuple(names) if names is not None else tuple(f"c{i}" for i in range(v.shape[1]))
        )
        if len(self.names) != v.shape[1]:
            raise ValueError(
                f"PropertyGivenSize: names must have {v.shape[1]} entries, got {len(self.names)}"
            )
        # per M: (min [P], max [P], probs [P, n_bins])
        self.tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for m in np.unique(n):
            vm = v[n == m]
            lo, hi = vm.min(axis=0), vm.max(axis=0)
            idx = np.floor((vm - lo) / (hi - lo + 1e-12) * self.n_bins).astype(np.int64)
            idx = np.clip(idx, 0, self.n_bins - 1)
            hist = np.stack(
                [np.bincount(idx[:, p], minlength=self.n_bins) for p in range(v.shape[1])]
            )
            self.tables[int(m)] = (lo, hi, hist / hist.sum(axis=1, keepdims=True))

    @property
    def n_properties(self) -> int:
        return len(self.names)

    def sample(
        self,
        n_atoms: Any,
        rng: np.random.Generator | int | None = None,
        normaliser: Any = None,
    ) -> np.ndarray:
        """Draw c ~ p(c | M) for each requested M: a bin by frequency, then uniform inside it.

        Args:
            n_atoms: [n] sizes (each must occur in the training set).
            rng: a Generator or a seed.
            normaliser: a :class:`~diff_edm3d.data.properties.PropertyNormaliser`; when given the
                values are returned normalised, c' = (c - mean)/MAD.

        Returns:
            float64 [n, P].
        """
        n = _int_array(n_atoms, "n_atoms", "PropertyGivenSize.sample").reshape(-1)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.Generator(np.random.PCG64([0 if rng is None else int(rng), 1]))
        missing = sorted(set(n.tolist()) - set(self.tables))
        if missing:
            raise ValueError(
                f"PropertyGivenSize.sample: M must occur in the conditional training set "
                f"{sorted(self.tables)}, got M={missing[:10]}"
            )
        out = np.zeros((len(n), self.n_properties))
        for m in sorted(set(n.tolist())):
            rows = np.flatnonzero(n == m)
            lo, hi, probs = self.tables[m]
            for p in range(self.n_properties):
                bins = rng.choice(self.n_bins, size=len(rows), p=probs[p])
                width = (hi[p] - lo[p]) / self.n_bins
                left = lo[p] + bins * width
                out[rows, p] = left + rng.random(len(rows)) * width
        if normaliser is not None:
            out = normaliser.normalise(out, list(self.names))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (bin counts as probabilities, min and max per M)."""
        return {
            "n_bins": self.n_bins,
            "names": list(self.names),
            "tables": {
                str(m): {"min": lo.tolist(), "max": hi.tolist(), "probs": probs.tolist()}
                for m, (lo, hi, probs) in self.tables.items()
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PropertyGivenSize:
        """Inverse of `to_dict`; the schema (n_bins, names, per-M min/max/probs with matching
        shapes, finite values, probabilities summing to 1) is checked."""
        func = "PropertyGivenSize.from_dict"
        if not isinstance(d, Mapping) or not {"n_bins", "names", "tables"} <= set(d):
            raise ValueError(
                f"{func}: d must have keys 'n_bins', 'names' and 'tables', got {d!r:.80}"
            )
        n_bins = _count(d["n_bins"], "d['n_bins']", func)
        names = d["names"]
        if n_bins < 1 or n_bins > 10**7:
            raise ValueError(f"{func}: d['n_bins'] must be in [1, 1e7], got {n_bins}")
        if (
            not isinstance(names, (list, tuple))
            or not names
            or not all(isinstance(n, str) for n in names)
        ):
            raise ValueError(f"{func}: d['names'] must be a list of str, got {names!r:.80}")
        tables = d["tables"]
        if not isinstance(tables, Mapping) or not tables:
            raise ValueError(f"{func}: d['tables'] must be a non-empty mapping, got {tables!r:.80}")
        p = len(names)
        out = {}
        for m, t in tables.items():
            size = _count(m, "the sizes M of d['tables']", func)
            where = f"d['tables'][{m!r}]"
            if not isinstance(t, Mapping) or not {"min", "max", "probs"} <= set(t):
                raise ValueError(f"{func}: {where} must have keys 'min', 'max', 'probs'")
            try:
                lo = np.asarray(t["min"], dtype=np.float64)
                hi = np.asarray(t["max"], dtype=np.float64)
                probs = np.asarray(t["probs"], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{func}: {where} must hold numbers, got {exc}") from None
            if lo.shape != (p,) or hi.shape != (p,) or probs.shape != (p, n_bins):
                raise ValueError(
                    f"{func}: {where} must have min/max [{p}] and probs [{p}, {n_bins}], got "
                    f"{lo.shape}, {hi.shape}, {probs.shape}"
                )
            finite = np.isfinite(lo).all() and np.isfinite(hi).all() and np.isfinite(probs).all()
            if not finite or (hi < lo).any() or (probs < 0).any():
                raise ValueError(f"{func}: {where} must hold finite values, min <= max, probs >= 0")
            if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
                raise ValueError(f"{func}: {where} probs must sum to 1 per property")
            out[size] = (lo, hi, probs)
        obj = cls.__new__(cls)
        obj.n_bins = n_bins
        obj.names = tuple(names)
        obj.tables = out
        return obj
