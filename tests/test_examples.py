"""The example scripts and the MLP benchmark run end to end and print their results.

Each script runs in a subprocess with the current interpreter, from the repository
root, in its quick mode where it has one. The subprocesses use one CPU thread: under
``pytest -n 2`` two of them share two cores, and torch's spinning OpenMP threads slow
down many times over when the cores are oversubscribed.
"""

import re

import pytest
from _scripts import ROOT, run_script

pytestmark = pytest.mark.skipif(
    not (ROOT / "examples").is_dir(), reason="examples are not part of this install"
)


def test_plot_quickstart(tmp_path):
    path = tmp_path / "loss.png"
    out = run_script("examples/plot_quickstart.py", "--plot", path).stdout
    best = re.search(r"^best params: (.*)$", out, re.MULTILINE)
    assert best is not None, out
    assert "'n_experts'" in best.group(1)
    assert "'top_k'" in best.group(1)
    accuracy = re.search(r"^test accuracy: ([0-9.]+)$", out, re.MULTILINE)
    assert accuracy is not None, out
    # The churn rule holds for 95% of the rows (5% of the labels are flipped) and
    # the classes are 49% and 51%: a model that learned the rule scores over 0.8.
    assert float(accuracy.group(1)) > 0.8, out
    usage = re.search(r"^expert usage: \[([0-9., ]+)\]$", out, re.MULTILINE)
    assert usage is not None, out
    assert sum(map(float, usage.group(1).split(","))) == pytest.approx(1, abs=0.02)
    assert "gate weights of a few test rows:" in out
    assert "expert_0" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed; no plot saved" in out
        assert not path.exists()
    else:
        assert f"loss curve saved to {path}" in out
        assert path.stat().st_size > 0


def test_routing_comparison_quick():
    out = run_script("examples/routing_comparison.py", "--quick").stdout
    assert "load_digits" in out
    for routing in ("dense", "top-2", "noisy top-2", "switch"):
        assert re.search(rf"^{re.escape(routing)} +[0-9.]+ ± [0-9.]+ ", out, re.M), (
            routing,
            out,
        )
    assert "expert_usage_" in out


def test_compare_mlp_quick():
    out = run_script("benchmarks/compare_mlp.py", "--quick").stdout
    # two markdown tables, separated by a blank line: scores, then verdicts
    tables = [
        [line for line in block.splitlines() if line.startswith("|")]
        for block in out.split("\n\n")
    ]
    lines, verdicts = (table for table in tables if table)
    assert lines[0].startswith("| data set | model | test score")
    assert set(lines[1].replace("|", "").split()) == {"---"}
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert all(len(cells) == len(lines[0].strip("|").split("|")) for cells in rows)
    models = {cells[1].strip() for cells in rows}
    assert {
        "MLPClassifier",
        "MoE (defaults)",
        "MultiGate (defaults)",
        "MLPRegressor",
        "MLPRegressor (scaled y)",
    } <= models
    datasets = {cells[0].split("(")[0].strip() for cells in rows}
    assert {"digits", "breast_cancer", "wine", "diabetes"} <= datasets
    for cells in rows:
        assert re.fullmatch(r" -?[0-9.]+ ± [0-9.]+ ", cells[2]), cells

    assert verdicts[0].startswith("| data set | skmoe estimator")
    pairs = [line.strip("|").split("|") for line in verdicts[2:]]
    assert len(pairs) == 2 * len(datasets)
    for cells in pairs:
        assert cells[1].strip() in {"MoE (defaults)", "MultiGate (defaults)"}, cells
        assert re.fullmatch(r" [-+][0-9.]+ ± [0-9.]+ ", cells[3]), cells
        assert cells[4].strip() in {"beats", "matches", "behind"}, cells


def test_speed_benchmark_runs_in_quick_mode():
    out = run_script("benchmarks/speed.py", "--quick", "--skip", "2,6").stdout
    assert "| measurement | unit | figure | ratio |" in out
    assert "1. skmoe fit, defaults (balancing on)" in out
    assert "5. predict 10k rows in one call" in out
    assert "8. MMoE, 4 experts fit" in out
    assert "x single-gate" in out
    assert "| 7. " in out  # the GPU section reports its figures or why it has none


def test_latent_clusters_quick():
    out = run_script("examples/latent_clusters.py", "--quick").stdout
    for name in ("mixture, 4 experts, top-1", "dense, same compute per row"):
        assert re.search(rf"^{re.escape(name)}\s+-?[0-9.]+\s+\d+\s+\d+$", out, re.M), (
            out
        )
    ari = re.search(
        r"^adjusted Rand index of the gate's partition: (-?[0-9.]+)$", out, re.M
    )
    assert ari is not None, out
    # A partition unrelated to the clusters scores about 0; the quick run's gate
    # recovers about half of the structure (0.49; the full run 0.79).
    assert float(ari.group(1)) > 0.25, out


@pytest.mark.slow
def test_adam_variants_benchmark_runs_in_quick_mode():
    out = run_script("benchmarks/adam_variants.py", "--quick").stdout
    assert out.count("| shipped | fused |") == 2, out  # fused Adam on a CPU
    for variant in ("for-loop", "foreach", "fused"):
        assert out.count(f"| {variant} | {variant} |") == 2, out
