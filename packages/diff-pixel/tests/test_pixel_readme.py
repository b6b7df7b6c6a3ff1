"""The README's platform examples (teacher/student, frozen encoder) run as written."""

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


@pytest.mark.parametrize("tag", ["teacher-student", "frozen-encoder"])
def test_readme_example_runs(tag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(example(tag), f"README[{tag}]", "exec"), namespace)  # noqa: S102
    trainer = namespace["trainer"]
    assert trainer.step_count == trainer.config.steps
    assert (tmp_path / trainer.config.out_dir / "checkpoints").is_dir()
