"""Every README's shell commands run verbatim (tools/readme_commands.py; issue 8, item 1).

The fast suite runs each README's unmarked ```bash blocks from a fresh temporary folder (a
command there takes seconds); the slow suite runs them together with the blocks marked
``<!-- readme-commands: slow -->`` (demos, trainings, installs into fresh venvs). Blocks marked
``skip`` need a reason; the convention is in the root README ("Adding a package").
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tools") not in sys.path:  # tools/ scripts import each other as top-level modules
    sys.path.insert(0, str(REPO / "tools"))

import readme_commands as rc  # noqa: E402

READMES = [p.relative_to(REPO).as_posix() for p in rc.readmes(REPO)]


def _has(readme: str, *, slow: bool) -> bool:
    blocks = rc.extract(REPO / readme)
    return any(b.skip is None and b.slow == slow for b in blocks)


def test_every_readme_block_is_runnable_or_skipped_with_a_reason() -> None:
    assert {"README.md", "shared-core/README.md", "packages/diff-core/README.md"} <= set(READMES)
    counts = {"fast": 0, "slow": 0, "skip": 0}
    for readme in READMES:
        for block in rc.extract(REPO / readme):  # raises on a malformed marker or block
            counts["skip" if block.skip else "slow" if block.slow else "fast"] += 1
            if block.skip:
                assert len(block.skip) > 10, f"{block.where}: say why it is not run"
    assert counts["fast"] >= 2 and counts["slow"] >= 2, counts


def test_markers_and_commands_are_parsed(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        textwrap.dedent(
            """\
            # x

            <!-- readme-commands: skip not on a package index yet -->
            ```bash
            pip install diff-x
            ```

            ```bash
            # a comment line
            echo one > a.txt   # inline comment
            cat a.txt \\
              b.txt
            ```

            <!-- readme-commands: slow repo -->

            ```bash
            echo slow
            ```

            ```python
            print("not a command")
            ```
            """
        )
    )
    skip, fast, slow = rc.extract(readme)
    assert skip.skip == "not on a package index yet" and skip.line == 4
    assert fast.commands == ("echo one > a.txt   # inline comment", "cat a.txt \\\n  b.txt")
    assert (fast.slow, fast.repo, slow.slow, slow.repo) == (False, False, True, True)
    bad = tmp_path / "BAD.md"
    bad.write_text("<!-- readme-commands: skip -->\n```bash\nls\n```\n")
    with pytest.raises(rc.ReadmeError, match="skip needs a reason"):
        rc.extract(bad)
    bad.write_text("<!-- readme-commands: later -->\n```bash\nls\n```\n")
    with pytest.raises(rc.ReadmeError, match="must start with one of skip, slow, repo"):
        rc.extract(bad)


def test_a_failing_command_is_named_and_state_carries_between_commands(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "```bash\nmkdir sub && cd sub\necho hi > f.txt\ntest -f f.txt\n```\n\n"
        "```bash\nls missing-file\necho never\n```\n"
    )
    with pytest.raises(rc.ReadmeError) as exc:
        rc.run(readme, slow=False, root=REPO, timeout=60)
    message = str(exc.value)
    assert f"{readme}:7: `ls missing-file` exited 2" in message and "never" not in message
    readme.write_text("```bash\necho $PWD\nwhich diff-core\necho a \\\n    b\n```\n")
    result = rc.run(readme, slow=False, root=REPO, timeout=60, workdir=tmp_path / "w")
    assert [c for c, _ in result.steps] == ["echo $PWD", "which diff-core", "echo a b"]
    assert str(tmp_path / "w") in result.output  # a fresh folder, the installed scripts on PATH


@pytest.mark.parametrize("readme", [r for r in READMES if _has(r, slow=False)])
def test_readme_fast_commands_run_verbatim(readme: str) -> None:
    result = rc.run(REPO / readme, slow=False, root=REPO, timeout=600)
    assert result.steps, readme


@pytest.mark.slow
@pytest.mark.parametrize("readme", [r for r in READMES if _has(r, slow=True)])
def test_readme_all_commands_run_verbatim(readme: str) -> None:
    result = rc.run(REPO / readme, slow=True, root=REPO, timeout=5400)
    print("\n".join(f"{s:7.1f} s  {c}" for c, s in result.steps))
