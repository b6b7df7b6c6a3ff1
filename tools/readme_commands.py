"""Run the shell commands of every README verbatim, in order, from a fresh temporary folder.

Usage (from the repository root, inside the default hatch environment)::

    python tools/readme_commands.py --list            # every ```bash block and how it runs
    python tools/readme_commands.py                   # run the fast blocks of every README
    python tools/readme_commands.py --slow README.md  # the fast and slow blocks of one README

READMEs: ``README.md``, ``shared-core/README.md`` and ``packages/*/README.md``. Every fenced
block whose info string is ``bash`` is a list of commands a reader types; the comment line right
before its fence says how the harness treats it (the convention every package follows)::

    <!-- readme-commands: skip REASON -->   not run; REASON is required (e.g. an install line
                                            for a package index, hatch at the repository root)
    <!-- readme-commands: slow -->          run in the slow suite (trainings, demos, installs)
    <!-- readme-commands: repo -->          run from a fresh copy of the repository (the tracked
                                            files) instead of an empty folder: install commands
                                            that name ./shared-core, ./packages/...
    <!-- readme-commands: slow repo -->     both

A block without a comment runs in the fast suite, where each command should take seconds. Blocks
in another language (```python, ```text, plain ```) are not commands.

How a README runs: its runnable blocks (fast only, or fast and slow) are joined, in document
order, into one bash script (``set -eo pipefail``) run in one shell from a fresh temporary folder
(or repository copy), so ``cd``, ``. .venv/bin/activate`` and files written by one command carry
to the next, as in a reader's terminal. PATH starts with the folder of the running Python's
console scripts (the installed diff-* commands); ``PYTHONPATH`` is removed. The first command that
fails stops the script; the error names the README, the command, its exit status and the output's
tail. integration-tests/test_readme_commands.py runs every README this way.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^<!--\s*readme-commands:\s*(?P<spec>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<info>[^`]*)$")
MODES = ("skip", "slow", "repo")


class ReadmeError(Exception):
    """A README's block or marker is malformed, or one of its commands failed."""


@dataclass(frozen=True)
class Block:
    """One ```bash block of a README."""

    readme: Path
    line: int  # 1-based line of the opening fence
    commands: tuple[str, ...]
    skip: str | None = None  # the reason, when not run
    slow: bool = False
    repo: bool = False

    @property
    def where(self) -> str:
        return f"{self.readme}:{self.line}"


def readmes(root: Path) -> list[Path]:
    """The READMEs the harness runs: the root's, shared-core's and every package's."""
    found = [root / "README.md", root / "shared-core" / "README.md"]
    found += sorted(root.glob("packages/*/README.md"))
    return [p for p in found if p.is_file()]


def _commands(lines: list[str]) -> tuple[str, ...]:
    """Logical command lines: continuation lines (trailing backslash) joined, blank lines and
    comment lines dropped (inline comments stay: bash ignores them)."""
    out: list[str] = []
    pending = ""
    for raw in lines:
        line = raw.rstrip()
        if pending:
            line = pending + "\n" + line
            pending = ""
        if line.endswith("\\"):
            pending = line
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line)
    if pending:
        out.append(pending)
    return tuple(out)


def _parse_marker(spec: str, where: str) -> dict[str, object]:
    words = spec.split()
    if not words or words[0] not in MODES:
        raise ReadmeError(
            f"{where}: readme-commands marker must start with one of {', '.join(MODES)}, "
            f"got {spec!r}"
        )
    if words[0] == "skip":
        reason = spec[len("skip") :].strip(" :-—")
        if not reason:
            raise ReadmeError(f"{where}: readme-commands: skip needs a reason, got none")
        return {"skip": reason}
    unknown = [w for w in words if w not in ("slow", "repo")]
    if unknown:
        raise ReadmeError(
            f"{where}: readme-commands marker words must be slow and/or repo, got {unknown}"
        )
    return {"slow": "slow" in words, "repo": "repo" in words}


def extract(readme: Path) -> list[Block]:
    """Every ```bash block of ``readme`` with its marker."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ReadmeError(f"{readme}:{start + 1}: code block is never closed")
        info = match.group("info").strip().split()
        i = end + 1
        if not info or info[0] != "bash":
            continue
        where = f"{readme}:{start + 1}"
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous.strip())
        options = _parse_marker(marker.group("spec"), where) if marker else {}
        commands = _commands(lines[start + 1 : end])
        if not commands and "skip" not in options:
            raise ReadmeError(f"{where}: bash block has no command")
        blocks.append(Block(readme, start + 1, commands, **options))  # type: ignore[arg-type]
    return blocks


def runnable(blocks: list[Block], *, slow: bool) -> list[Block]:
    """The blocks a run executes: unmarked ones, plus the slow ones when ``slow``."""
    return [b for b in blocks if b.skip is None and (slow or not b.slow)]


def script(blocks: list[Block], step_log: Path) -> str:
    """One bash script running every command of ``blocks`` in order; before each command it
    appends ``<start time> <block> <command>`` to ``step_log`` (to name a failing command)."""
    parts = ["set -eo pipefail"]
    for block in blocks:
        for command in block.commands:
            one_line = " ".join(command.replace("\\\n", " ").split())
            note = shlex.quote(f"{block.where}\t{one_line}")
            parts.append(
                f'printf "%s\\t%s\\n" "$(date +%s.%N)" {note} >> {shlex.quote(str(step_log))}'
            )
            parts.append(command)
    return "\n".join(parts) + "\n"


def environment() -> dict[str, str]:
    """The environment of a run: the running Python's console scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def copy_repository(root: Path, dest: Path) -> Path:
    """A fresh copy of the repository's tracked (and untracked, not ignored) files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        rel = Path(os.fsdecode(name))
        src = root / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


@dataclass(frozen=True)
class Result:
    """What one README run did: (command, seconds) per command run, and the output."""

    readme: Path
    steps: tuple[tuple[str, float], ...]
    output: str


def run(
    readme: Path,
    *,
    slow: bool,
    root: Path,
    timeout: float,
    workdir: Path | None = None,
) -> Result:
    """Run the blocks of ``readme`` (fast ones, and slow ones when ``slow``) in one shell.

    The folder is ``workdir`` (default: a new temporary folder, removed afterwards), filled with
    a copy of the repository when any block is marked ``repo``. Raises :class:`ReadmeError`
    naming the failing command.
    """
    blocks = runnable(extract(readme), slow=slow)
    if not blocks:
        return Result(readme, (), "")
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        base = Path(tmp)
        cwd = workdir if workdir is not None else base / "work"
        cwd.mkdir(parents=True, exist_ok=True)
        if any(b.repo for b in blocks):
            copy_repository(root, cwd)
        step_log = base / "steps.tsv"
        step_log.touch()
        started = time.time()
        try:
            proc = subprocess.run(
                ["bash", "-c", script(blocks, step_log)],
                cwd=cwd,
                env=environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
            code, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            code = None
            output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        ended = time.time()
        steps = []
        for line in step_log.read_text(encoding="utf-8").splitlines():
            stamp, where, command = line.split("\t", 2)
            steps.append((float(stamp), where, command))
    timed = tuple(
        (command, (steps[k + 1][0] if k + 1 < len(steps) else ended) - stamp)
        for k, (stamp, _, command) in enumerate(steps)
    )
    if code != 0:
        last = steps[-1] if steps else (started, str(readme), "(before the first command)")
        what = f"timed out after {timeout:.0f} s" if code is None else f"exited {code}"
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise ReadmeError(f"{last[1]}: `{last[2]}` {what}; output's tail:\n{tail}")
    return Result(readme, timed, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "readme", nargs="*", type=Path, help="READMEs to run (default: every README)"
    )
    parser.add_argument(
        "--slow", action="store_true", help="also run the slow blocks (default: fast only)"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the blocks and how they run (default: run)"
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="repository root (default: the current one)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds per README (default 3600)"
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    files = [p.resolve() for p in args.readme] or readmes(root)
    failed = 0
    for readme in files:
        try:
            blocks = extract(readme)
            if args.list:
                for b in blocks:
                    how = f"skip ({b.skip})" if b.skip else ("slow" if b.slow else "fast")
                    how += ", repository copy" if b.repo else ""
                    print(f"{b.where}: {how}: {len(b.commands)} command(s)")
                continue
            result = run(readme, slow=args.slow, root=root, timeout=args.timeout)
        except ReadmeError as err:
            failed += 1
            print(f"FAILED {err}")
            continue
        for command, seconds in result.steps:
            print(f"ok {seconds:7.1f} s  {readme.relative_to(root)}: {command}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
