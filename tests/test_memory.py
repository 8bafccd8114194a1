"""Prediction on millions of rows runs in bounded memory (chunk by chunk)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from skmoe import MixtureOfExpertsRegressor, MultiGateMoEClassifier

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000_000, 8))
    reg = MixtureOfExpertsRegressor(
        n_experts=4, top_k=2, expert_hidden_layer_sizes=(16,), max_iter=1,
        random_state=0, device="cpu",
    ).fit(X[:2000], X[:2000, 0])
    clf = MultiGateMoEClassifier(max_iter=1, random_state=0, device="cpu").fit(
        X[:2000], np.column_stack([X[:2000, 0] > 0, X[:2000, 1] > 0])
    )
    before = peak_mb()
    prediction = reg.predict(X)
    proba = clf.predict_proba(X)
    weights = reg.gate_weights(X)
    grown = peak_mb() - before
    assert prediction.shape == (2_000_000,) and len(proba) == 2
    assert weights.shape == (2_000_000, 4)
    print(f"input {X.nbytes / 2**20:.0f} MB, peak grew {grown:.0f} MB")
    # The results alone take 2M x (1 + 2 + 2 + 4) float64 = 137 MB.
    sys.exit(0 if grown < X.nbytes / 2**20 + 256 else 1)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_predict_on_two_million_rows_stays_within_input_plus_256_mb():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
