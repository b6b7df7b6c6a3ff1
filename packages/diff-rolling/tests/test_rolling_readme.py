"""The README's Python example runs as written and reports the exact network-call counts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def example(tag: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(f"# README example: {tag}\n")]
    assert len(found) == 1, f"README must hold one block tagged {tag!r}, found {len(found)}"
    return found[0]


@pytest.mark.slow
def test_rolling_readme_oracle_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme_example"}
    exec(compile(example("oracle"), "README[oracle]", "exec"), ns)  # noqa: S102
    assert ns["rolled"].nfe == 4 * 4 + 4 * 7 and ns["blocks"].nfe == 16 * 2
    assert ns["rolled"].frames.shape == (4, 8, 16, 16, 1)
    assert capsys.readouterr().out.strip() == "44 32"
