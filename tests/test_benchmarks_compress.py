"""The compression benchmark runs end to end in its quick mode."""

import re

import pytest
from _scripts import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "compress.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)


def test_compress_quick(tmp_path):
    table = tmp_path / "table.md"
    out = run_script(SCRIPT, "--quick", "--out", table).stdout
    assert table.read_text() in out
    for variant in ("greedy, zero-shot", "random, gate 10", "merge, zero-shot"):
        assert re.search(rf"^\| {re.escape(variant)} \| [-+][0-9.]+ \|", out, re.M), out
    assert re.search(r"^\| distill: dense student \| 1 \|", out, re.M), out
    assert re.search(r"Distilled student: [0-9.]+% of the teacher", out), out
