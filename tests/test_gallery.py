"""The gallery's examples run in their quick mode and print what they show."""

import re

import pytest
from _scripts import ROOT, run_script

pytestmark = pytest.mark.skipif(
    not (ROOT / "examples").is_dir(), reason="examples are not part of this install"
)
pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True)
def _agg_backend(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_onnx_export_example():
    pytest.importorskip("onnxruntime")
    out = run_script("examples/plot_onnx_export.py", "--quick").stdout
    assert "outputs: ['label', 'probabilities']" in out
    assert "labels equal: True" in out
    for line in ("largest |ONNX - predict_proba|", "pipeline, largest difference"):
        value = re.search(rf"{re.escape(line)}: ([0-9.e+-]+)", out)
        assert value is not None and float(value.group(1)) < 1e-5, out
    assert "'TopK'" in out and "'If'" not in out
    for name in ("MLPClassifier.predict", "skmoe predict", "onnxruntime"):
        assert re.search(rf"^{re.escape(name)} +[0-9]+ µs$", out, re.M), out


def test_expert_collapse_example():
    out = run_script("examples/plot_expert_collapse.py", "--quick").stdout
    shares = dict(
        re.findall(
            r"^(.+?) +test accuracy [0-9.]+, largest expert share ([0-9.]+)$", out, re.M
        )
    )
    assert set(shares) == {"no balancing", "balancing (default)", "strong balancing"}
    assert float(shares["strong balancing"]) < float(shares["no balancing"])


def test_mmoe_synthetic_example():
    out = run_script("examples/plot_mmoe_synthetic.py", "--quick").stdout
    rows = re.findall(
        r"^correlation ([0-9.]+): MMoE ([0-9.]+), Shared-Bottom ([0-9.]+)$", out, re.M
    )
    assert [r[0] for r in rows] == ["0.0", "0.9"], out
    # What the example shows: at about the same size, MMoE's test loss is below the
    # shared bottom's (by a fifth or more in the quick run), and both learned (the
    # targets' variance is about 6).
    for _, mmoe, shared_bottom in rows:
        assert float(mmoe) < 0.9 * float(shared_bottom) < 0.9 * 3.0, out


def test_explain_pipeline_example():
    out = run_script("examples/plot_explain_pipeline.py", "--quick").stdout
    assert "columns seen by the pipeline: ['age', 'income', 'tenure_months'" in out
    assert re.search(r"^tenure_months +-?[0-9.]+$", out, re.M), out
    assert "encoded features: ['num__age'" in out


def test_gpu_example_is_shown_not_run():
    source = (ROOT / "examples" / "gpu_training.py").read_text()
    assert "device=device" in source
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert "(?!gpu_)" in conf  # the gallery's filename_pattern skips it


def test_expert_importance_example():
    out = run_script("examples/plot_expert_importance.py", "--quick").stdout
    total, full, baseline = map(
        float,
        re.search(
            r"^Shapley values add up to ([0-9.-]+) = ([0-9.-]+) - ([0-9.-]+)$",
            out,
            re.M,
        ).groups(),
    )
    assert abs(total - (full - baseline)) < 2e-3, out  # printed to 3 decimals
    sizes = dict(
        re.findall(r"^(.+?) +accuracy [0-9.]+, expert weights ([0-9.]+) KiB", out, re.M)
    )
    assert set(sizes) == {
        "8 experts",
        "4 experts, default pruning",
        "4 experts, random, no retraining",
    }, out
    assert float(sizes["4 experts, default pruning"]) == float(sizes["8 experts"]) / 2
    assert (
        len(re.search(r"kept experts' Shapley values: \[(.*)\]", out).group(1).split())
        == 4
    )
