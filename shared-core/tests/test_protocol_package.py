"""Package surface, errors and the testing helpers of diff-protocol."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import numpy as np
import pytest

import diff_protocol as dp
from diff_protocol import errors, testing

# the public names of specs/core.md §2 and the module each lives in
SPEC_NAMES = {
    "vp": [
        "sigmoid",
        "softplus",
        "expand_like",
        "alpha_sigma",
        "sigma_edm",
        "logsnr_from_sigma_edm",
        "diffuse",
        "to_x_eps",
        "from_x_eps",
        "convert",
        "v_target",
        "posterior",
        "check_prediction",
        "PREDICTIONS",
    ],
    "denoiser": ["Prediction", "Denoiser", "as_denoiser", "denoise", "check_denoiser"],
    "schedule": ["Schedule", "schedule_to_json", "schedule_from_json", "schedule_from_dict"],
    "noise": [
        "NoiseSource",
        "derive_seed",
        "numpy_noise",
        "torch_noise",
        "jax_noise",
        "jax_normal",
        "jax_truncated_normal",
        "jax_uniform",
        "table_noise",
        "register_jax_pytrees",
    ],
    "sampler": ["SamplerStep", "State", "TimeGrid", "check_grid"],
    "registry": ["available", "load", "load_sampler", "register", "refresh"],
    "errors": ["NonFiniteError", "RegistryError", "arg_error"],
}


def test_init_reexports_every_spec_name():
    for module, names in SPEC_NAMES.items():
        mod = importlib.import_module(f"diff_protocol.{module}")
        for name in names:
            assert getattr(dp, name) is getattr(mod, name), (module, name)
            assert name in dp.__all__, name
    assert sorted(dp.__all__) == sorted(
        {n for names in SPEC_NAMES.values() for n in names} | {"__version__"}
    )
    for name in dp.__all__:
        assert hasattr(dp, name), name


@pytest.mark.smoke
def test_version_matches_metadata():
    assert dp.__version__ == importlib.metadata.version("diff-protocol") == "0.1.2"


def test_import_pulls_in_no_framework():
    code = (
        "import sys, json, diff_protocol\n"
        "print(json.dumps(sorted(m for m in ('jax', 'torch', 'numpy') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_arg_error_message_form():
    e = dp.arg_error("ddim", "eta", "in [0, 1]", 1.5)
    assert type(e) is ValueError and str(e) == "ddim: eta must be in [0, 1], got 1.5"
    e = dp.arg_error("f", "x", "a str", "'q'", TypeError)
    assert type(e) is TypeError and str(e) == "f: x must be a str, got 'q'"
    e = dp.arg_error("f", "z", "finite", np.zeros((2, 3), np.float32))
    assert str(e) == "f: z must be finite, got numpy.ndarray of shape (2, 3) and dtype float32"
    assert errors.describe("x" * 200).endswith("...") and len(errors.describe("x" * 200)) == 80


def test_error_classes():
    assert issubclass(dp.NonFiniteError, ValueError)
    assert issubclass(dp.RegistryError, LookupError)
    with pytest.raises(ValueError):
        raise dp.NonFiniteError("sample: denoiser output is not finite at step 7")


def test_testing_helpers():
    assert testing.BACKENDS == ("numpy", "array_api_strict", "jax", "torch")
    xp, asarray = testing.backend("numpy")
    a = asarray([1.0, 2.0], "float32")
    assert a.dtype == np.float32 and xp.__name__ == "array_api_compat.numpy"
    host = np.arange(3.0)
    assert testing.to_backend(host, "numpy") is not host  # a copy, never a view
    testing.assert_close(np.array([1.0, 2.0]), [1.0, 2.0 + 1e-9], rtol=1e-8)
    with pytest.raises(AssertionError):
        testing.assert_close(np.array([1.0]), np.array([1.1]), rtol=1e-3)
    with pytest.raises(ValueError, match="backend: name must be one of"):
        testing.backend("cupy")


@pytest.mark.parametrize("name", testing.BACKENDS)
def test_to_backend_round_trips_through_the_host(name):
    xp, asarray = testing.backend(name)
    host = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    arr = asarray(host, "float32")
    assert testing.to_numpy(arr).tobytes() == host.tobytes()
    testing.assert_close(arr, host, rtol=0.0)
    assert testing.to_numpy(xp.sum(arr)).dtype == np.float32
