"""Many fits on existing engines: GridSearchCV under loky, dask and Ray.

Each parallel search must give the sequential search's ``cv_results_`` (same seeds,
same scores), and no worker may run more torch threads than its share of the cores.
"""

import os
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold

from skmoe import MixtureOfExpertsRegressor
from skmoe._engine.workers import capped_threads

N_JOBS = 2


def _torch_threads(estimator, X, y):
    """A 'score' that reports the torch threads of the process that scores (and so
    fitted) the estimator."""
    return torch.get_num_threads()


def _search(n_jobs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = X[:, 0] - 2 * X[:, 1] ** 2 + rng.normal(scale=0.1, size=120)
    search = GridSearchCV(
        MixtureOfExpertsRegressor(
            max_iter=3, expert_hidden_layer_sizes=(8,), random_state=0, device="cpu"
        ),
        {"n_experts": [2, 3], "top_k": [None, 1]},
        cv=KFold(2),
        scoring={"r2": "r2", "threads": _torch_threads},
        refit="r2",
        n_jobs=n_jobs,
    )
    return search.fit(X, y)


def _assert_same_results(parallel, sequential):
    for key in ("params", "split0_test_r2", "split1_test_r2", "rank_test_r2"):
        assert list(parallel.cv_results_[key]) == list(sequential.cv_results_[key])
    np.testing.assert_array_equal(
        parallel.best_estimator_.predict(np.ones((3, 4))),
        sequential.best_estimator_.predict(np.ones((3, 4))),
    )


def _assert_within_cores(search, n_workers):
    threads = search.cv_results_["mean_test_threads"]
    assert (threads * n_workers <= os.cpu_count()).all() or (threads == 1).all()


@pytest.fixture(scope="module")
def sequential():
    with joblib.parallel_backend("sequential"):
        return _search(n_jobs=None)


def test_loky_search_matches_the_sequential_one(sequential):
    with joblib.parallel_backend("loky"):
        search = _search(n_jobs=N_JOBS)
    _assert_same_results(search, sequential)
    _assert_within_cores(search, N_JOBS)


def test_dask_search_matches_the_sequential_one(sequential):
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=N_JOBS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        search = _search(n_jobs=N_JOBS)
    _assert_same_results(search, sequential)
    _assert_within_cores(search, N_JOBS)


def test_ray_search_matches_the_sequential_one(sequential):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
    from ray import cloudpickle
    from ray.util.joblib import register_ray

    # Ray's workers do not see the folder pytest puts on sys.path for this module,
    # so the scorer defined here travels by value rather than by module name.
    this_module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this_module)
    register_ray()
    ray.init(num_cpus=N_JOBS, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        with joblib.parallel_backend("ray"):
            search = _search(n_jobs=N_JOBS)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(this_module)
    _assert_same_results(search, sequential)
    _assert_within_cores(search, N_JOBS)


def test_a_fit_keeps_within_its_worker_thread_budget(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert capped_threads(None) == 1
        assert capped_threads(2) == 2  # a user's explicit choice stands
        monkeypatch.setenv("OMP_NUM_THREADS", "4")
        assert capped_threads(None) is None
        monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
        assert capped_threads(None) is None
    finally:
        torch.set_num_threads(before)
