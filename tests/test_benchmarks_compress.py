"""The compression benchmark runs end to end in its quick mode."""

import re

import pytest
from _scripts import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "compress.py"
CHOICE = ROOT / "benchmarks" / "prune_choice.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)


def test_compress_quick(tmp_path):
    table, rows = tmp_path / "table.md", tmp_path / "rows.csv"
    out = run_script(SCRIPT, "--quick", "--out", table, "--csv", rows).stdout
    assert table.read_text() in out
    for variant in ("greedy, zero-shot", "random, default", "merge, zero-shot"):
        assert re.search(rf"^\| {re.escape(variant)} \| [-+][0-9.]+ ± ", out, re.M), out
    assert re.search(r"^\| 4: greedy, default \| [-+][0-9.]+ ± ", out, re.M), out
    assert re.search(r"^\| distill: dense student \| 1 \|", out, re.M), out
    assert re.search(r"Distilled student: [0-9.]+% of the teacher", out), out
    # The saved rows give the same tables without fitting anything.
    again = tmp_path / "again.md"
    run_script(SCRIPT, "--from-csv", rows, "--out", again)
    summary = table.read_text()
    timing = re.compile(r"^\|.*\| [0-9.]+ \|$", re.M)  # the size table's last column
    assert timing.sub("", again.read_text()) == timing.sub("", summary)


def test_prune_choice_quick(tmp_path):
    rows = tmp_path / "rows.csv"
    out = run_script(CHOICE, "--quick", "--csv", rows).stdout
    for chooser in ("greedy", "greedy, fidelity", "greedy, held-out quarter"):
        cell = r"[-+][0-9.]+ ± [0-9.]+ \(2\)"
        assert re.search(rf"^\| {re.escape(chooser)} \| {cell} \|$", out, re.M), out
    assert "mean of random draws" in out
    # The saved rows give the same tables without fitting anything.
    assert run_script(CHOICE, "--from-csv", rows).stdout in out
