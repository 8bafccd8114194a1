"""Data-parallel fits: two gloo ranks on the CPU under ``torchrun``, on loopback."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _ddp_worker import (
    BATCH,
    BLOCK,
    ENGINE_SPLITS,
    WORLD,
    cases,
    engine_fit,
    engine_modules,
    id_frame,
    make_data,
    optimizer_steps,
    sample_weights,
    tabular_frame,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = ("top1_classifier", "multi_top2_regressor")


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


@pytest.mark.parametrize(
    "name",
    [
        *cases(),
        *(f"tiny_{name}" for name in TINY),
        "sparse",
        "tabular",
        "uneven_weighted",
        "partial",
        *(f"{name}_{n}" for name in engine_modules() for n in ENGINE_SPLITS),
    ],
)
def test_every_rank_ends_with_the_same_weights(ranks, name):
    reports, out = ranks
    first, second = (_params(out, name, r) for r in range(WORLD))
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert reports[0][name] == reports[1][name]  # same epochs, curves and usage


def _assert_params_close(parallel, reference, atol):
    assert reference.keys() == parallel.keys()
    for key, value in reference.items():
        np.testing.assert_allclose(parallel[key], value, rtol=0, atol=atol, err_msg=key)


def _state(estimator):
    return {k: v.numpy() for k, v in estimator.module_.state_dict().items()}


@pytest.mark.parametrize("name", list(cases()))
def test_matches_the_same_estimator_fitted_in_one_process(ranks, name):
    """Dense and top-k routing with balancing losses, no noise, no dropout, no
    shuffling: the same estimator, same parameters, fitted by two ranks on their
    shards is the single-process fit on the whole data. ``batch_size`` is the
    global batch: the ranks take a single process's number of optimiser steps."""
    reports, out = ranks
    factory, target = cases()[name]
    X, *targets = make_data()
    single = factory().fit(X, targets[target - 1])
    report = reports[0][name]
    assert report["batch_size"] == single.batch_size_ == BATCH
    assert report["steps"] == optimizer_steps(single) == 4 * X.shape[0] // BATCH
    _assert_params_close(_params(out, name, 0), _state(single), atol=1e-5)
    np.testing.assert_allclose(report["loss"], single.loss_curve_, atol=1e-5)


def test_uneven_shards_of_weighted_rows_match_one_process(ranks):
    """Rank 0 holds three times rank 1's rows, and the rows are weighted: each step
    takes from each rank its share of the global batch, and the ranks' gradients
    are those of the global batch's weighted mean loss."""
    reports, out = ranks
    factory, _ = cases()["top2_regressor"]
    X, _, y, _ = make_data()
    single = factory().set_params(alpha=1e-3)
    single.fit(X, y, sample_weight=sample_weights(X.shape[0]))
    _assert_params_close(_params(out, "uneven_weighted", 0), _state(single), 1e-5)
    np.testing.assert_allclose(
        reports[0]["uneven_weighted"]["loss"], single.loss_curve_, atol=1e-5
    )


def test_partial_fit_matches_one_process(ranks):
    reports, out = ranks
    X, _, y, _ = make_data()
    single = cases()["single_regressor"][0]()
    for _ in range(2):
        single.partial_fit(X, y)
    _assert_params_close(_params(out, "partial", 0), _state(single), atol=1e-5)
    # float32 losses summed in another order: a few 1e-7 apart at most.
    np.testing.assert_allclose(
        reports[0]["partial"]["loss"], single.loss_curve_, rtol=1e-6
    )


@pytest.mark.parametrize("name", TINY)
def test_a_rank_with_an_empty_batch_takes_part(ranks, name):
    """Rank 1 holds 3 of the 128 rows, none of the second step's: it still takes
    that step, and the fit is the single-process one."""
    reports, out = ranks
    factory, target = cases()[name]
    X, *targets = make_data()
    single = factory().fit(X, targets[target - 1])
    _assert_params_close(_params(out, f"tiny_{name}", 0), _state(single), 1e-5)
    np.testing.assert_allclose(
        reports[0][f"tiny_{name}"]["loss"], single.loss_curve_, atol=1e-5
    )


@pytest.mark.parametrize("n_first", ENGINE_SPLITS)
@pytest.mark.parametrize("name", list(engine_modules()))
def test_float64_training_on_uneven_weighted_shards_is_one_process_s(
    ranks, name, n_first
):
    """In float64, the engine's fit on two ranks, rank 0 holding 90 (or 117) of
    the 120 weighted rows, a share of every step's, is the single-process fit to
    rounding, balancing losses included, through the written-out step and through
    autograd; with 117, rank 1 has no row in the third step."""
    reports, out = ranks
    reference, curve = engine_fit(name)
    key = f"{name}_{n_first}"
    _assert_params_close(_params(out, key, 0), reference, atol=1e-10)
    np.testing.assert_allclose(reports[0][key]["loss"], curve, rtol=1e-10)


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


def test_vocabularies_are_counted_over_every_rank_s_rows(ranks):
    """min_frequency counts an id over all the shards: ids seen once on each of two
    ranks are kept, as a single process fitting every row keeps them."""
    from skmoe import MixtureOfExpertsRegressor

    reports, _ = ranks
    frame, y = id_frame(), make_data()[2]
    single = MixtureOfExpertsRegressor(
        min_frequency=2, max_iter=1, random_state=0, device="cpu"
    ).fit(frame, y)
    expected = json.loads(json.dumps(single._input_encoder.to_json()))
    kept, infrequent = expected["categories"][0], expected["infrequent"][0]
    assert len(kept) == BLOCK and all(i.startswith("once") for i in infrequent)
    assert expected["list_lengths"] == [None, 2]
    for report in reports:
        assert report["vocabulary_encoder"] == expected


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
        ("batch_smaller_than_ranks", "(batch_size >= 2)"),
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
