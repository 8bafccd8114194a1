"""Data-parallel fits: two gloo ranks on the CPU under ``torchrun``, on loopback."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _ddp_worker import BLOCK, cases, make_data, tabular_frame

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run the worker on two ranks once; return each rank's report and out dir."""
    out = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={WORLD}",
            "--nnodes=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
            str(ROOT / "tests" / "_ddp_worker.py"),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    reports = [
        json.loads((out / f"report_rank{r}.json").read_text()) for r in range(WORLD)
    ]
    return reports, out


def _params(out, name, rank):
    with np.load(out / f"{name}_rank{rank}.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", [*cases(), "sparse", "tabular"])
def test_every_rank_ends_with_the_same_weights(ranks, name):
    reports, out = ranks
    first, second = (_params(out, name, r) for r in range(WORLD))
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert reports[0][name] == reports[1][name]  # same epochs, curves and usage


@pytest.mark.parametrize("name", list(cases()))
def test_matches_one_process_on_the_whole_data_with_the_global_batch(ranks, name):
    """Dense and top-k routing with balancing losses, no noise, no dropout, no
    shuffling: the two ranks' fit is the single-process fit with a batch of both
    ranks' batches."""
    reports, out = ranks
    factory, target = cases()[name]
    X, *targets = make_data()
    single = factory().set_params(batch_size=WORLD * BLOCK)
    single.fit(X, targets[target - 1])
    reference = {k: v.numpy() for k, v in single.module_.state_dict().items()}
    parallel = _params(out, name, 0)
    assert reference.keys() == parallel.keys()
    for key, value in reference.items():
        np.testing.assert_allclose(parallel[key], value, rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(reports[0][name]["loss"], single.loss_curve_, atol=1e-5)


def test_the_input_encoder_is_fitted_on_every_rank_s_rows(ranks):
    """Robust scaling, bins, categories and missing-value columns come from all the
    shards: the encoder a single process fits on the whole data."""
    from skmoe import MixtureOfExpertsRegressor

    reports, _ = ranks
    frame, y = tabular_frame(), make_data()[2]
    single = MixtureOfExpertsRegressor(
        num_embedding="piecewise_linear", max_iter=1, random_state=0, device="cpu"
    ).fit(frame, y)
    expected = json.loads(json.dumps(single._input_encoder.to_json()))
    assert expected["categories"] == [["blue", "green", "red"]]
    for report in reports:
        assert report["tabular_encoder"] == expected


def test_early_stopping_stops_every_rank_at_the_same_epoch(ranks):
    reports, _ = ranks
    sparse = [r["sparse"] for r in reports]
    assert sparse[0]["n_iter"] == sparse[1]["n_iter"] < 30
    assert sparse[0]["scores"] == sparse[1]["scores"]
    np.testing.assert_allclose(np.sum(sparse[0]["usage"]), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("n_features", "disagree on n_features"),
        (
            "params",
            "disagree on n_experts (rank 0: {'n_experts': 2}, "
            "rank 1: {'n_experts': 3})",
        ),
        ("empty_rank", "rank 1 passed no rows"),
        ("new_label_on_rank", "rank 1"),
        ("shard_too_small_to_split", "rank 1: ValueError: early_stopping could not"),
    ],
)
def test_bad_input_raises_on_every_rank(ranks, case, says):
    reports, _ = ranks
    messages = [r["errors"].get(case) for r in reports]
    assert all(m is not None and not m.startswith("NOT A") for m in messages), messages
    assert messages[0] == messages[1]
    assert says in messages[0]


def test_afterwards_an_ordinary_estimator(ranks):
    reports, _ = ranks
    for report in reports:
        assert report["reloaded_equal"]
        assert set(report["predict"]) <= {"yes", "no"}
