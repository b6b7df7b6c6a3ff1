"""The SiD2 ablation driver (:mod:`diff_pixel.sid.ablation`, run by ``benchmarks/ablate_sid2.py``)
end to end at toy size.

Its outputs parse; an ablation interrupted in the middle of a training run and again between
evaluations continues where it stopped (the finished evaluation is not redone, the stopped run
resumes from its checkpoint) and ends with the same records and the same table, bit for bit.
No threshold on the outcome: the ablation is a measurement (its figures are in the README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diff_pixel.sid import ablation as ablate
from diff_pixel.train import StopAt


def _metrics(out: Path) -> dict[str, dict]:
    return {
        f"{r['dataset']}/{r['row']}/{r['seed']}": r["metrics"]
        for r in map(json.loads, (out / "results" / "digits.jsonl").read_text().splitlines())
    }


def test_toy_ablation_parses_and_resumes_bitwise(tmp_path, capsys):
    argv = ["--scale", "toy", "--seeds", "1", "--datasets", "digits"]
    argv += ["--rows", "default", "no-guidance"]

    whole = tmp_path / "whole"
    assert ablate.main([*argv, "--out", str(whole)]) == 0
    records = _metrics(whole)
    assert sorted(records) == ["digits/default/0", "digits/no-guidance/0"]
    for m in records.values():
        assert 0.0 <= m["class_accuracy"] <= 1.0 and m["dfd"] > 0.0
    # 4 sampler steps: guided on the λ-interval's steps (2 evaluations each), else 1.
    assert records["digits/no-guidance/0"]["nfe"] == 4
    assert 4 < records["digits/default/0"]["nfe"] <= 8
    summary = json.loads((whole / "summary.json").read_text())
    acc = summary["summary"]["digits"]["default"]["class_accuracy"]
    assert acc["mean"] == records["digits/default/0"]["class_accuracy"] and acc["n"] == 1
    table = (whole / "table.md").read_text()
    assert "| default |" in table and "| no-guidance |" in table and "DFD" in table
    for name in ("digits_class_accuracy.png", "digits_dfd.png"):
        assert (whole / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Interrupted twice: inside the training run (at step 2 of 4), then after one evaluation.
    parts = tmp_path / "parts"
    ablate._HOOKS[:] = [StopAt(2)]
    try:
        assert ablate.main([*argv, "--out", str(parts)]) == 130
    finally:
        ablate._HOOKS.clear()
    assert not (parts / "results").exists()
    assert "stopped at step 2 of 4" in capsys.readouterr().err
    assert ablate.main([*argv, "--out", str(parts), "--max-evaluations", "1"]) == 0
    assert list(_metrics(parts)) == ["digits/default/0"]
    capsys.readouterr()
    assert ablate.main([*argv, "--out", str(parts)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    assert [r["row"] for r in printed] == ["no-guidance"]  # the finished one was skipped
    assert _metrics(parts) == records
    assert (parts / "table.md").read_bytes() == (whole / "table.md").read_bytes()

    # Other settings in the same folder are refused, naming what differs.
    with pytest.raises(SystemExit, match="other settings \\(seeds\\)"):
        ablate.main([*argv[:3], "2", *argv[4:], "--out", str(parts)])
