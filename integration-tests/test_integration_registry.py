"""(a) Registry discovery across installed distributions: the entry points that every workspace
distribution declares are visible through diff_protocol, listing imports no framework, and
every registered plugin loads to the object its entry point names."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from diff_protocol import SamplerStep, available, load, load_sampler

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("diff.schedules", "diff.samplers", "diff.models", "diff.embedders")
PYPROJECTS = sorted(
    [REPO / "shared-core" / "pyproject.toml", *REPO.glob("packages/*/pyproject.toml")]
)

# core.md §3: the plugins diff-core ships.
CORE_SCHEDULES = {
    "cosine": "CosineSchedule",
    "shifted_cosine": "ShiftedCosineSchedule",
    "interpolated_cosine": "InterpolatedCosineSchedule",
    "linear_beta": "LinearBetaSchedule",
    "polynomial": "PolynomialSchedule",
    "karras": "KarrasSchedule",
    "table": "TableSchedule",
}
CORE_SAMPLERS = ("ddpm", "ddim", "euler", "heun", "dpmpp_2m")
CORE_MODELS = {
    "gaussian_mixture": "GaussianMixture",
    "empirical": "EmpiricalDistribution",
    "conditional_mixture": "ConditionalMixture",
}


def declared_entry_points(pyproject: Path) -> tuple[str, dict[str, dict[str, str]]]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    groups = project.get("entry-points", {})
    return project["name"], {g: dict(groups.get(g, {})) for g in GROUPS}


def lookup(listing: dict[str, str], dist: str, name: str) -> str | None:
    """The target listed for ``name``: bare when unique, ``<dist>:<name>`` when shared."""
    return listing.get(name, listing.get(f"{dist}:{name}"))


def test_listing_imports_no_framework_and_loading_imports_only_the_plugin() -> None:
    script = """
import json, sys
from diff_protocol import available, load
listing = {g: available(g) for g in sys.argv[1:]}
heavy = ("jax", "torch", "flax", "diff_core", "diff_pixel", "diff_edm3d")
after_listing = sorted(m for m in heavy if m in sys.modules)
cls = load("diff.schedules", "cosine")
after_loading = sorted(m for m in ("jax", "torch", "flax") if m in sys.modules)
print(json.dumps({"listing": listing, "after_listing": after_listing,
                  "after_loading": after_loading, "cls": cls.__module__ + ":" + cls.__qualname__}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, *GROUPS], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["after_listing"] == []
    assert result["after_loading"] == []
    assert result["cls"] == "diff_core.schedules:CosineSchedule"
    listing = result["listing"]
    for name, cls in CORE_SCHEDULES.items():
        assert lookup(listing["diff.schedules"], "diff-core", name) == f"diff_core.schedules:{cls}"
    for name in CORE_SAMPLERS:
        target = f"diff_core.samplers.{name}:{name}"
        assert lookup(listing["diff.samplers"], "diff-core", name) == target
    for name, cls in CORE_MODELS.items():
        assert lookup(listing["diff.models"], "diff-core", name) == f"diff_core.analytic:{cls}"


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda p: p.parent.name)
def test_declared_entry_points_are_installed(pyproject: Path) -> None:
    """Every entry point in a workspace pyproject is in the environment's metadata (a stale
    editable install or a member missing from the environment fails here)."""
    dist, declared = declared_entry_points(pyproject)
    for group, entries in declared.items():
        listing = available(group)
        for name, target in entries.items():
            assert lookup(listing, dist, name) == target, (dist, group, name)


def _target_object(target: str) -> object:
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("group", GROUPS)
def test_every_registered_plugin_loads_to_its_target(group: str) -> None:
    listing = available(group)
    assert listing, f"nothing registered under {group}"
    for name, target in listing.items():
        assert load(group, name) is _target_object(target), (group, name)


def test_core_samplers_load_by_name_as_sampler_steps() -> None:
    import diff_core.samplers as samplers

    for name in CORE_SAMPLERS:
        step = load_sampler(name)
        assert isinstance(step, SamplerStep)
        # Factories are lru_cached: loading by name gives the very object a direct call gives.
        assert step is getattr(samplers, name)()
    assert load_sampler("ddim", eta=1.0).stochastic is True
    assert load_sampler("ddim").stochastic is False
    assert load_sampler("heun").corrector is not None
