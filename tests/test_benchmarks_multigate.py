"""The MMoE synthetic benchmark runs end to end in its quick mode.

The script runs in a subprocess with the current interpreter, from the repository
root, with one CPU thread: under ``pytest -n 2`` two such subprocesses share two cores,
and torch's spinning OpenMP threads slow down many times over when the cores are
oversubscribed.
"""

import csv
import importlib.util
import re

import pytest
from _scripts import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "mmoe_synthetic.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)

MODELS = {"MMoE", "OMoE", "Shared-Bottom"}
CORRELATIONS = {"0.5", "0.9", "1.0"}


def test_mmoe_synthetic_quick(tmp_path):
    out = run_script(SCRIPT, "--quick", "--out", tmp_path).stdout

    lines = out.splitlines()
    header = lines.index(
        "| model | correlation | params | test MSE (mean ± std) "
        "| fit time, s (mean ± std) | epochs |"
    )
    assert set(lines[header + 1].replace("|", "").split()) == {"---"}
    rows = [line.strip("|").split("|") for line in lines[header + 2 : header + 11]]
    assert all(len(cells) == 6 for cells in rows), rows
    assert {(c[0].strip(), c[1].strip()) for c in rows} == {
        (m, c) for m in MODELS for c in CORRELATIONS
    }
    for cells in rows:
        assert re.fullmatch(r" [0-9.]+ ± [0-9.]+ ", cells[3]), cells
    params = {c[0].strip(): int(c[2]) for c in rows}
    assert params["MMoE"] > params["OMoE"]
    assert abs(params["Shared-Bottom"] - params["MMoE"]) < 0.02 * params["MMoE"]

    assert "| correlation | usage distance |" in out
    assert "| correlation | model | MSE / MMoE MSE" in out

    with open(tmp_path / "mmoe_synthetic_runs.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 2 * len(MODELS) * len(CORRELATIONS)
    assert {r["model"] for r in runs} == MODELS
    assert all(float(r["test_mse"]) > 0 for r in runs)
    assert all(r["usage_tv"] for r in runs if r["model"] == "MMoE")
    with open(tmp_path / "mmoe_synthetic_summary.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(MODELS) * len(CORRELATIONS)

    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed; no plot written" in out
    else:
        assert (tmp_path / "mmoe_synthetic.png").stat().st_size > 0
