"""Figures explained for a person: what each metric means, which direction is better, and (for
the demo) the range expected at the budget and the paper's value, as one plain-text table."""

from __future__ import annotations

from typing import Any

__all__ = ["GLOSSARY", "PAPER", "summary_table"]

#: The paper's figures (arXiv:2203.17003, Table 1, EDM on QM9 after ~1.7 M steps, 10,000 samples)
#: and those of the QM9 data itself, for the same rows.
PAPER = {
    "atom_stability": "0.987 (data 0.990)",
    "molecule_stability": "0.820 (data 0.952)",
    "validity": "0.919 (data 0.977)",
    "uniqueness": "0.987 (V*U 0.907)",
    "plausible": "n/a (data 0.999)",
    "n_exploded": "0",
}

#: One line per figure: its meaning and which direction is better.
GLOSSARY: dict[str, tuple[str, str]] = {
    "n_molecules": ("", "molecules scored"),
    "atom_stability": (
        "higher",
        "share of atoms whose bond-order sum is an allowed valence (H 1, C 4, N 3, O 2, F 1)",
    ),
    "molecule_stability": ("higher", "share of molecules whose atoms are all stable"),
    "plausible": (
        "higher",
        "share that are ONE connected, fully bonded molecule with no atoms closer than 0.7 Å "
        "and none beyond 30 Å (ours)",
    ),
    "n_exploded": (
        "lower",
        "molecules with an atom > 30 Å from the centroid: sampling or the network diverged",
    ),
    "validity": (
        "higher",
        "share RDKit can sanitise (official metric; scattered atoms count as valid, compare "
        "'plausible')",
    ),
    "uniqueness": ("higher", "distinct SMILES among the valid molecules"),
    "novelty": ("higher", "share of the unique SMILES absent from QM9's training split"),
    "drift_events": ("lower", "molecules whose centre of mass drifted > 0.05 Å while sampling"),
    "inconsistent_atoms": (
        "lower",
        "atoms whose decoded atomic number disagrees with their decoded type",
    ),
}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _figures(metrics: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(key, label, value) of the figures worth printing, in reading order."""
    st = metrics.get("stability") or {}
    pl = metrics.get("plausibility") or {}
    rd = metrics.get("rdkit")
    sampling = metrics.get("sampling") or {}
    rows: list[tuple[str, str, Any]] = [
        ("n_molecules", "molecules", st.get("n_molecules")),
        ("atom_stability", "atom stability", st.get("atom_stability")),
        ("molecule_stability", "molecule stability", st.get("molecule_stability")),
    ]
    if pl:
        rows += [
            ("plausible", "plausible", pl.get("plausible")),
            ("n_exploded", "exploded", pl.get("n_exploded")),
        ]
    if rd:
        rows += [
            ("validity", "RDKit validity", rd.get("validity")),
            ("uniqueness", "uniqueness", rd.get("uniqueness")),
        ]
        if rd.get("novelty") is None:
            rows.append(("novelty", "novelty", "not computed"))
        else:
            rows.append(("novelty", "novelty", rd.get("novelty")))
    elif "rdkit" in metrics:
        rows.append(("validity", "RDKit validity", 'needs pip install "diff-edm3d[chem]"'))
    for key in ("drift_events", "inconsistent_atoms"):
        if key in sampling:
            rows.append((key, key.replace("_", " "), sampling[key]))
    return rows


def summary_table(metrics: dict[str, Any], expected: dict[str, tuple[float, float]] | None = None,
                  budget: str = "") -> str:  # fmt: skip
    """The figures of a metrics dict, each with which direction is better, the range expected at
    this budget (``expected``, when given) and what it means."""
    rows = _figures(metrics)
    show_expected = expected is not None
    head = f"{'figure':<20s} {'value':>12s}  {'better':<6s}"
    if show_expected:
        head += f"  {'expected ' + budget:<22s}  {'paper (full training)':<22s}"
    lines = [head + "  meaning"]
    for key, label, value in rows:
        better, meaning = GLOSSARY.get(key, ("", ""))
        line = f"{label:<20s} {_fmt(value):>12s}  {better:<6s}"
        if show_expected:
            lo_hi = (expected or {}).get(key)
            if lo_hi is None:
                exp = "-"
            elif isinstance(lo_hi[0], int) and isinstance(lo_hi[1], int):
                exp = f"{lo_hi[0]}" if lo_hi[0] == lo_hi[1] else f"{lo_hi[0]}-{lo_hi[1]}"
            else:
                exp = (
                    f"{lo_hi[0]:.2f}" if lo_hi[0] == lo_hi[1] else f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"
                )
            line += f"  {exp:<22s}  {PAPER.get(key, '-'):<22s}"
        lines.append(f"{line}  {meaning}".rstrip())
    notes = []
    rd = metrics.get("rdkit") or {}
    if rd and rd.get("novelty") is None:
        notes.append(
            "novelty needs the QM9 training reference: run `diff-edm3d prepare --train-smiles` "
            "once (about a minute)"
        )
    pl = metrics.get("plausibility") or {}
    if pl.get("n_exploded"):
        notes.append(
            f"WARNING: {pl['n_exploded']} of {pl['n_molecules']} molecules exploded (an atom "
            f"{pl.get('max_radius_angstrom', float('nan')):.0f} Å from its centroid): sampling or "
            "the network diverged; RDKit validity says nothing about them"
        )
    return "\n".join(lines + notes)
