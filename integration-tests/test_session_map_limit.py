"""The root conftest.py keeps the whole-repository pytest process under ``vm.max_map_count``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]


def _session_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clearing_at_a_file_boundary_frees_the_executables_mappings(monkeypatch):
    import jax

    jnp = jax.numpy
    conftest = _session_conftest()
    if not Path("/proc/self/maps").exists():  # not Linux: no limit to read, the hook does nothing
        assert conftest.THRESHOLD is None and conftest._mappings() is None
        return
    assert conftest.THRESHOLD == conftest._read_int(conftest._LIMIT) // 3

    def compile_many(offset):
        for i in range(20):  # 20 distinct executables (shapes differ), none referenced after
            jax.jit(lambda x: x + 1.0)(jnp.ones(offset + i + 1)).block_until_ready()

    same_file = SimpleNamespace(path=Path("a.py"))
    other_file = SimpleNamespace(path=Path("b.py"))
    compile_many(10_000)
    before = conftest._mappings()
    monkeypatch.setattr(conftest, "THRESHOLD", 0)
    conftest.pytest_runtest_teardown(same_file, same_file)  # inside a file: never cleared
    assert conftest._mappings() >= before - 10
    conftest.pytest_runtest_teardown(same_file, other_file)  # file boundary, over the threshold
    after = conftest._mappings()
    assert before - after >= 40, (before, after)  # about 3 mappings per executable freed
    compile_many(20_000)
    grown = conftest._mappings()
    monkeypatch.setattr(conftest, "THRESHOLD", grown + 1000)
    conftest.pytest_runtest_teardown(same_file, None)  # last test, under the threshold: kept
    assert conftest._mappings() >= grown - 10
