"""The whole-repository test session (`hatch run test`): one process within the kernel's map limit.

XLA's CPU backend keeps each compiled executable's code in its own memory mappings (about three per
executable, measured on jax 0.10.2), and JAX keeps every executable its jit caches have seen,
including those loaded from the persistent compilation cache. Linux caps the mappings of one
process at ``vm.max_map_count`` (65,530 by default); past it ``mmap`` fails inside XLA and the
process dies without a Python error. The fast suites of ten distributions in one pytest process
reached it: a SIGSEGV while writing the compilation cache and, in another run, a SIGABRT in
``backend_compile_and_load``, each after about 1,350-1,550 tests (diff-unlearn's 44 fast tests
alone leave 7,800 mappings).

So after each test file, when the process holds more than a third of the limit, JAX's in-memory
caches are cleared (``jax.clear_caches()``): the executables no live object refers to are freed,
and a later call compiles again or loads from the persistent cache. Nothing a test asserts
depends on it. Linux only (``/proc/self/maps``); elsewhere nothing is done. The tests of an
installed wheel (tools/isolation.py) do not load this file; one distribution's suite stays far
below the limit. integration-tests/test_session_map_limit.py checks that a clear frees the
mappings.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

_MAPS = Path("/proc/self/maps")
_LIMIT = Path("/proc/sys/vm/max_map_count")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _mappings() -> int | None:
    try:
        return _MAPS.read_bytes().count(b"\n")
    except OSError:
        return None


def _threshold() -> int | None:
    limit = _read_int(_LIMIT)
    return None if limit is None else limit // 3


THRESHOLD = _threshold()


def pytest_runtest_teardown(item, nextitem) -> None:
    """At the end of each test file: free JAX's cached executables if the mappings pile up."""
    if THRESHOLD is None or "jax" not in sys.modules:
        return
    if nextitem is not None and nextitem.path == item.path:
        return
    count = _mappings()
    if count is not None and count > THRESHOLD:
        sys.modules["jax"].clear_caches()
        gc.collect()
