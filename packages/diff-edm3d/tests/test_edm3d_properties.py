"""Property table, unit conversion and the mean/MAD normaliser (spec 4.4)."""

import numpy as np
import pytest

from diff_edm3d.data.properties import (
    PROPERTIES,
    PROPERTY_NAMES,
    PropertyNormaliser,
    check_property,
    convert_properties,
)


def test_table():
    assert PROPERTY_NAMES == ("alpha", "gap", "homo", "lumo", "mu", "Cv")
    assert PROPERTIES["gap"].factor == 27.2114 and PROPERTIES["gap"].report_scale == 1000.0
    assert PROPERTIES["Cv"].thermo_per_atom == 2.981
    with pytest.raises(ValueError, match=r"property must be one of \('alpha'"):
        check_property("U0")


def test_convert_properties():
    raw = {spec.column: np.array([1.0, 2.0]) for spec in PROPERTIES.values()}
    out = convert_properties(raw, n_atoms_all=np.array([5, 29]))
    np.testing.assert_array_equal(out["alpha"], [1.0, 2.0])
    np.testing.assert_array_equal(out["homo"], [27.2114, 2 * 27.2114])
    np.testing.assert_allclose(out["Cv"], [1.0 - 5 * 2.981, 2.0 - 29 * 2.981], rtol=1e-15)
    del raw["HOMO_au"]
    with pytest.raises(ValueError, match="raw must contain the column 'HOMO_au'"):
        convert_properties(raw, np.array([5, 29]))


def test_normaliser_mean_mad():
    values = {"alpha": np.array([1.0, 2.0, 6.0]), "mu": np.array([0.0, 4.0, 4.0, 4.0])}
    n = PropertyNormaliser.fit(values)
    assert n.mean == {"alpha": 3.0, "mu": 3.0}
    assert n.mad == {"alpha": (2 + 1 + 3) / 3, "mu": (3 + 1 + 1 + 1) / 4}
    np.testing.assert_allclose(n.normalise(values["alpha"], "alpha"), [-1.0, -0.5, 1.5])
    both = np.array([[3.0, 3.0], [5.0, 4.5]])
    np.testing.assert_allclose(n.normalise(both, ["alpha", "mu"]), [[0, 0], [1, 1]])
    np.testing.assert_allclose(
        n.denormalise(n.normalise(both, ["alpha", "mu"]), ["alpha", "mu"]), both
    )
    assert PropertyNormaliser.from_dict(n.to_dict()) == n


def test_normaliser_errors():
    with pytest.raises(ValueError, match=r"mad\['a'\] must be finite and > 0"):
        PropertyNormaliser({"a": 0.0}, {"a": 0.0})
    n = PropertyNormaliser({"a": 0.0}, {"a": 1.0})
    with pytest.raises(ValueError, match="names must be fitted properties"):
        n.normalise(np.zeros(3), "b")
    with pytest.raises(ValueError, match="values must have shape"):
        n.normalise(np.zeros((3, 2)), ["a"])
    with pytest.raises(ValueError, match="names must be available properties"):
        PropertyNormaliser.fit({"a": np.ones(2)}, ["gap"])
