"""Plugin registry (diff_protocol.registry): acceptance check 6 of specs/core.md §6.

Every check runs in a fresh subprocess so that ``sys.modules`` and the registry's caches start
empty. Two fake distributions are written to ``tmp_path`` as bare ``*.dist-info`` folders
(METADATA + entry_points.txt) next to their modules and put on the subprocess's ``sys.path``: no
build, no network, and no dependence on diff-core. The checks against diff-core's real entry points
run when diff-core is installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("jax", "torch")


def _write_dist(root: Path, dist: str, module: str, entry_points: str, body: str) -> None:
    info = root / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (root / f"{module}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """Two fake distributions: both provide the sampler ``shared``; A also ``solo`` and a schedule."""
    _write_dist(
        tmp_path,
        "fakeplug-a",
        "fakeplug_a_mod",
        """
        [diff.samplers]
        solo = fakeplug_a_mod:solo
        shared = fakeplug_a_mod:shared

        [diff.schedules]
        fake_linear = fakeplug_a_mod:FakeLinear
        """,
        """
        def solo(scale=1.0):
            return ("solo", scale)

        def shared():
            return "a"

        class FakeLinear:
            name = "fake_linear"

            def __init__(self, lo=-5.0, hi=5.0):
                self.lo, self.hi = lo, hi
        """,
    )
    _write_dist(
        tmp_path,
        "fakeplug-b",
        "fakeplug_b_mod",
        """
        [diff.samplers]
        shared = fakeplug_b_mod:shared
        """,
        """
        def shared():
            return "b"
        """,
    )
    return tmp_path


PRELUDE = """
import json, sys
import diff_protocol as dp
from diff_protocol import RegistryError

def loaded(*names):
    return sorted(n for n in names if n in sys.modules)

def error(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception as e:
        return [type(e).__name__, str(e), isinstance(e, LookupError)]
    return None
"""


def _run(body: str, extra_path: Path | None = None) -> dict:
    """Run PRELUDE + ``body`` in a fresh interpreter; it prints one JSON object on its last line."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.smoke
def test_available_lists_metadata_and_imports_nothing(plugin_path):
    out = _run(
        """
        before = loaded("jax", "torch", "fakeplug_a_mod", "fakeplug_b_mod")
        samplers = dp.available("diff.samplers")
        schedules = dp.available("diff.schedules")
        after = loaded("jax", "torch", "fakeplug_a_mod", "fakeplug_b_mod")
        print(json.dumps(dict(before=before, after=after, samplers=samplers, schedules=schedules)))
        """,
        plugin_path,
    )
    assert out["before"] == [] and out["after"] == []  # listing imported no plugin or framework
    s = out["samplers"]
    assert s["solo"] == "fakeplug_a_mod:solo"
    assert out["schedules"]["fake_linear"] == "fakeplug_a_mod:FakeLinear"
    # a name provided by two distributions is listed once per provider, never bare
    assert "shared" not in s
    assert s["fakeplug-a:shared"] == "fakeplug_a_mod:shared"
    assert s["fakeplug-b:shared"] == "fakeplug_b_mod:shared"


def test_load_is_lazy_cached_and_rejects_ambiguity(plugin_path):
    out = _run(
        """
        solo = dp.load("diff.samplers", "solo")
        out = dict(
            solo_module=solo.__module__,
            cached=dp.load("diff.samplers", "solo") is solo,
            b_loaded=loaded("fakeplug_b_mod"),
            sampler=list(dp.load_sampler("solo", scale=2.5)),
            ambiguous=error(dp.load, "diff.samplers", "shared"),
            pick_a=dp.load("diff.samplers", "fakeplug-a:shared")(),
            pick_b=dp.load("diff.samplers", "fakeplug-b:shared")(),
            unknown=error(dp.load, "diff.samplers", "nope"),
            names=sorted(dp.available("diff.samplers")),
            unknown_dist=error(dp.load, "diff.samplers", "fakeplug-c:shared"),
            empty_group=error(dp.load, "diff.nothing_here", "x"),
            bad_name=error(dp.load, "diff.samplers", ""),
            bad_group=error(dp.available, ""),
        )
        print(json.dumps(out))
        """,
        plugin_path,
    )
    assert out["solo_module"] == "fakeplug_a_mod" and out["cached"]
    assert out["b_loaded"] == []  # loading one plugin imports only its own module
    assert out["sampler"] == ["solo", 2.5]
    kind, msg, is_lookup = out["ambiguous"]
    assert kind == "RegistryError" and is_lookup
    assert "fakeplug-a" in msg and "fakeplug-b" in msg and "'shared'" in msg
    assert out["pick_a"] == "a" and out["pick_b"] == "b"
    kind, msg, is_lookup = out["unknown"]
    assert kind == "RegistryError" and is_lookup and "'nope'" in msg
    # the unknown-name error lists every available name
    assert msg.endswith("available: " + ", ".join(out["names"]))
    assert {"fakeplug-a:shared", "fakeplug-b:shared", "solo"} <= set(out["names"])
    assert out["unknown_dist"][0] == "RegistryError"
    assert out["empty_group"][0] == "RegistryError" and "(none installed)" in out["empty_group"][1]
    assert out["bad_name"][0] == "ValueError" and out["bad_name"][1].startswith("load: name must")
    assert out["bad_group"][0] == "ValueError" and "available: group must" in out["bad_group"][1]


def test_runtime_registration_and_duplicates(plugin_path):
    out = _run(
        """
        def my_solo():
            return "runtime"

        def other():
            return "other"

        out = {}
        out["dup_installed"] = error(dp.register, "diff.samplers", "solo", my_solo)
        dp.register("diff.samplers", "mine", my_solo)
        out["listed"] = dp.available("diff.samplers").get("mine")
        out["loaded"] = dp.load("diff.samplers", "mine")()
        out["dup_runtime"] = error(dp.register, "diff.samplers", "mine", other)
        dp.register("diff.samplers", "mine", other, overwrite=True)
        out["overwritten"] = dp.load("diff.samplers", "mine")()
        dp.register("diff.samplers", "solo", my_solo, overwrite=True)
        out["solo_overridden"] = dp.load("diff.samplers", "solo")()
        out["colon"] = error(dp.register, "diff.samplers", "a:b", other)
        print(json.dumps(out))
        """,
        plugin_path,
    )
    kind, msg, is_lookup = out["dup_installed"]
    assert kind == "RegistryError" and is_lookup
    # both providers are named: the installed distribution and the runtime object
    assert "fakeplug-a" in msg and "<runtime>" in msg and "my_solo" in msg and "'solo'" in msg
    assert out["listed"] == "__main__:my_solo" and out["loaded"] == "runtime"
    kind, msg, _ = out["dup_runtime"]
    assert kind == "RegistryError" and "my_solo" in msg and "other" in msg
    assert out["overwritten"] == "other" and out["solo_overridden"] == "runtime"
    assert out["colon"][0] == "ValueError" and "register: name must" in out["colon"][1]


def test_refresh_rescans_metadata(plugin_path, tmp_path_factory):
    late = tmp_path_factory.mktemp("late")
    out = _run(
        f"""
        from pathlib import Path
        first = sorted(dp.available("diff.samplers"))
        late = Path({str(late)!r})
        info = late / "fakeplug_late-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\\nName: fakeplug-late\\nVersion: 0.0.1\\n")
        (info / "entry_points.txt").write_text("[diff.samplers]\\nlate = json:dumps\\n")
        sys.path.insert(0, str(late))
        cached = sorted(dp.available("diff.samplers"))
        dp.refresh()
        print(json.dumps(dict(first=first, cached=cached, fresh=sorted(dp.available("diff.samplers")),
                              late_is_dumps=dp.load("diff.samplers", "late") is json.dumps)))
        """,
        plugin_path,
    )
    assert "late" not in out["first"] and out["cached"] == out["first"]
    assert out["fresh"] == sorted(out["first"] + ["late"]) and out["late_is_dumps"]


# --- against diff-core's entry points (spec check 6 verbatim) -----------------------------------


def _require_diff_core() -> None:
    try:
        importlib.metadata.distribution("diff-core")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("diff-core is not installed")


FIVE = ["ddim", "ddpm", "dpmpp_2m", "euler", "heun"]


def test_diff_core_listing_and_loading_import_no_framework():
    _require_diff_core()
    out = _run(
        """
        samplers = dp.available("diff.samplers")
        after_list = loaded("jax", "torch", "diff_core.samplers", "diff_core")
        cosine = dp.load("diff.schedules", "cosine")
        after_load = loaded("jax", "torch")
        print(json.dumps(dict(samplers=samplers, after_list=after_list, after_load=after_load,
                              cosine=cosine.__name__,
                              unknown=error(dp.load, "diff.samplers", "euler_ancestral"))))
        """
    )
    assert out["after_list"] == []  # listing: no jax, torch, nor diff_core.samplers
    assert out["after_load"] == []  # loading a schedule: no jax, no torch
    assert out["cosine"] == "CosineSchedule"
    assert sorted(k for k in out["samplers"] if k in FIVE) == FIVE
    kind, msg, _ = out["unknown"]
    assert kind == "RegistryError" and "'euler_ancestral'" in msg
    assert all(name in msg.split("available:")[1] for name in FIVE)


def test_diff_core_runtime_duplicate_names_both_providers():
    _require_diff_core()
    out = _run(
        """
        def my_ddim(eta=0.0):
            return None
        print(json.dumps(dict(dup=error(dp.register, "diff.samplers", "ddim", my_ddim))))
        """
    )
    kind, msg, is_lookup = out["dup"]
    assert kind == "RegistryError" and is_lookup
    assert "diff-core" in msg and "<runtime>" in msg and "my_ddim" in msg and "'ddim'" in msg
