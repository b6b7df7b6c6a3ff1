"""(b) A third-party plugin distribution, written as a bare ``*.dist-info`` folder next to its
module (no build, no network) and put on ``sys.path`` of a subprocess: its new sampler is listed,
loads and samples through diff_core.sample; its duplicate ``ddim`` makes the bare name ambiguous
and the error names both distributions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN_MODULE = '''
"""DDIM (eta = 0) written independently of diff-core, in the v-free form
z_s = alpha_s x_hat + sigma_s eps_hat (Song et al., arXiv 2010.02502, eq. 12)."""
import math
from functools import lru_cache

from diff_protocol import SamplerStep, alpha_sigma


def _step(z_t, x_hat, logsnr_t, logsnr_s, noise, state):
    alpha_t, sigma_t = alpha_sigma(logsnr_t)
    alpha_s, sigma_s = alpha_sigma(logsnr_s)
    eps_hat = (z_t - alpha_t * x_hat) / sigma_t
    return alpha_s * x_hat + sigma_s * eps_hat, state


@lru_cache
def plain_ddim():
    return SamplerStep(name="plain_ddim", init=lambda z: (), step=_step)


def ddim():
    raise AssertionError("the ambiguous bare name must never load a provider")
'''


def write_fake_distribution(site: Path) -> None:
    (site / "fake_plugin_mod.py").write_text(textwrap.dedent(PLUGIN_MODULE), encoding="utf-8")
    info = site / "fake_plugin-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[diff.samplers]\nplain_ddim = fake_plugin_mod:plain_ddim\nddim = fake_plugin_mod:ddim\n",
        encoding="utf-8",
    )


SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from diff_protocol import RegistryError, SamplerStep, available, load, load_sampler, table_noise
listing = available("diff.samplers")
listed_without_import = "fake_plugin_mod" not in sys.modules
try:
    load("diff.samplers", "ddim")
    ambiguous = None
except RegistryError as exc:
    ambiguous = str(exc)

from diff_core import sample
from diff_core.grids import uniform_t
from diff_core.schedules import CosineSchedule
from diff_core.testing import problem

mixture = problem("ring6").mixture
grid = uniform_t(CosineSchedule(-15.0, 15.0), 16)
noise = table_noise(np.random.default_rng(7).standard_normal((17, 256, 2)))
ours = load_sampler("plain_ddim")
theirs = load_sampler("diff-core:ddim")
x_plugin = sample(mixture.denoiser(), ours, grid, noise)
x_core = sample(mixture.denoiser(), theirs, grid, noise)
print(json.dumps({
    "listing": listing,
    "listed_without_import": listed_without_import,
    "ambiguous": ambiguous,
    "is_step": isinstance(ours, SamplerStep),
    "fake_ddim_module": load("diff.samplers", "fake-plugin:ddim").__module__,
    "max_diff": float(np.max(np.abs(x_plugin - x_core))),
    "spread": float(np.std(x_core)),
}))
"""


def test_fake_plugin_distribution_is_discovered_and_ambiguity_is_reported(tmp_path: Path) -> None:
    write_fake_distribution(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    listing = result["listing"]
    assert listing["plain_ddim"] == "fake_plugin_mod:plain_ddim"
    assert listing["fake-plugin:ddim"] == "fake_plugin_mod:ddim"
    assert listing["diff-core:ddim"] == "diff_core.samplers.ddim:ddim"
    assert "ddim" not in listing  # the bare name is ambiguous now
    assert listing["ddpm"] == "diff_core.samplers.ddpm:ddpm"  # others untouched
    assert result["listed_without_import"] is True
    assert "diff-core" in result["ambiguous"] and "fake-plugin" in result["ambiguous"]
    assert result["is_step"] is True
    assert result["fake_ddim_module"] == "fake_plugin_mod"
    # The plugin's DDIM, driven by diff_core.sample, equals diff-core's DDIM on ring6 data.
    assert result["max_diff"] < 1e-12
    assert result["spread"] > 0.5  # ring6 samples lie on the unit circle, not collapsed
