"""ElementSet: QM9 constants, symbol normalisation, encoding errors, serialisation."""

import numpy as np
import pytest

from diff_edm3d.elements import (
    GEOM_WITH_H,
    PERIODIC_TABLE,
    QM9_NO_H,
    QM9_WITH_H,
    ElementSet,
    canonical_symbol,
    element_set,
)


def test_qm9_constants():
    assert QM9_WITH_H.symbols == ("H", "C", "N", "O", "F")
    assert QM9_WITH_H.atomic_numbers == (1, 6, 7, 8, 9)
    assert (len(QM9_WITH_H), QM9_WITH_H.n_types, QM9_WITH_H.max_atoms) == (5, 5, 29)
    assert QM9_NO_H.symbols == ("C", "N", "O", "F")
    assert QM9_NO_H.atomic_numbers == (6, 7, 8, 9)
    assert QM9_NO_H.max_atoms == 9
    assert GEOM_WITH_H.atomic_numbers[-2:] == (80, 83)  # Hg, Bi
    assert len(PERIODIC_TABLE) == 118 and PERIODIC_TABLE[16] == "Cl"


@pytest.mark.parametrize(
    "token, expected",
    [("cl", "Cl"), ("CL", "Cl"), (" c ", "C"), ("6", "C"), (17, "Cl"), (np.int64(9), "F"),
     ("Xx", None), (0, None), (119, None), ("", None), (1.0, None)],
)  # fmt: skip
def test_canonical_symbol(token, expected):
    assert canonical_symbol(token) == expected


def test_index_encode_decode_roundtrip():
    assert QM9_WITH_H.index("n") == 2 and QM9_WITH_H.index(8) == 3
    types = QM9_WITH_H.encode(["C", "h", "8", 9, "N"])
    assert types.dtype == np.int8
    assert types.tolist() == [1, 0, 3, 4, 2]
    assert QM9_WITH_H.decode(types) == ["C", "H", "O", "F", "N"]
    with pytest.raises(ValueError, match="types must lie in"):
        QM9_WITH_H.decode([5])


def test_encode_unknown_symbol_message_names_everything():
    with pytest.raises(ValueError) as e:
        QM9_WITH_H.encode(["C", "H", "Cl"], source="mols.xyz", molecule=3)
    msg = str(e.value)
    for part in (
        "symbols",
        "'Cl'",
        "file mols.xyz",
        "molecule 3",
        "atom 2",
        "('H', 'C', 'N', 'O', 'F')",
    ):
        assert part in msg, msg
    with pytest.raises(ValueError, match="symbol must be one of"):
        QM9_NO_H.index("H")


def test_invalid_element_sets():
    with pytest.raises(ValueError, match="symbols must be canonical"):
        ElementSet(("h", "C"), 5)
    with pytest.raises(ValueError, match="symbols must be distinct"):
        ElementSet(("C", "C"), 5)
    with pytest.raises(ValueError, match="max_atoms must be a positive integer"):
        ElementSet(("C",), 0)
    with pytest.raises(ValueError, match="non-empty"):
        ElementSet((), 3)


def test_dict_roundtrip_and_without():
    for es in (QM9_WITH_H, QM9_NO_H, GEOM_WITH_H):
        assert ElementSet.from_dict(es.to_dict()) == es
    no_h = QM9_WITH_H.without("H", max_atoms=9)
    assert no_h.symbols == QM9_NO_H.symbols and no_h.max_atoms == 9
    assert element_set("qm9_no_h") is QM9_NO_H
    assert element_set(["C", "S"], max_atoms=7).symbols == ("C", "S")
    with pytest.raises(ValueError, match="spec must be one of"):
        element_set("qm10")
