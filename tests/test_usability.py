"""What a first day with skmoe runs into: grids over n_experts x top_k, error
messages, devices, threads, the progress bar and warnings."""

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import skmoe._engine.threads as threads
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe._engine import resolve_device, torch_threads

ALL = [
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
]
FAST = dict(max_iter=3, random_state=0, device="cpu")
rng = np.random.default_rng(0)
X = rng.normal(size=(90, 4))
Y_CLS = np.where(X[:, 0] + X[:, 1] > 0, "a", "b")


def test_grid_over_n_experts_and_top_k_just_works():
    search = GridSearchCV(
        MixtureOfExpertsClassifier(**FAST),
        {"n_experts": [1, 2, 4], "top_k": [None, 1, 2, 4, 8]},
        cv=2,
        error_score="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, Y_CLS)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize(
    "n_experts, top_k, expected", [(4, None, None), (4, 2, 2), (4, 4, 4), (2, 8, 2)]
)
def test_top_k_at_least_n_experts_uses_every_expert(n_experts, top_k, expected):
    est = MixtureOfExpertsClassifier(n_experts=n_experts, top_k=top_k, **FAST)
    est.fit(X, Y_CLS)
    assert est.top_k_ == expected
    nonzero = (est.gate_weights(X) > 0).sum(axis=1)
    assert (nonzero == (n_experts if expected is None else expected)).all()


def test_multigate_top_k_is_capped_at_what_each_task_gate_sees():
    y = np.column_stack([Y_CLS, Y_CLS[::-1]])
    est = MultiGateMoEClassifier(architecture="cgc", n_experts=2, top_k=9, **FAST)
    est.fit(X, y)
    assert est.top_k_ == 3  # 2 shared experts + 1 of the task's own
    assert (
        MultiGateMoEClassifier(architecture="shared_bottom", top_k=2, **FAST)
        .fit(X, y)
        .top_k_
        is None
    )


def test_switch_gating_stays_top_1():
    est = MixtureOfExpertsClassifier(gating="switch", n_experts=1, top_k=2, **FAST)
    assert est.fit(X, Y_CLS).top_k_ == 1  # one expert: top-2 of one is top-1
    with pytest.raises(ValueError, match="MixtureOfExpertsClassifier: gating='sw"):
        MixtureOfExpertsClassifier(gating="switch", top_k=2, **FAST).fit(X, Y_CLS)


@pytest.mark.parametrize("Estimator", ALL)
def test_errors_name_the_public_estimator(Estimator):
    with pytest.raises(TypeError) as info:
        Estimator(n_expert=3)
    message = str(info.value)
    assert message.startswith(f"{Estimator.__name__}.__init__()")
    assert "Mixin" not in message
    # the copied __init__ keeps the signature scikit-learn reads
    assert "n_experts" in Estimator().get_params()


def test_mps_is_accepted_where_torch_has_it_and_auto_picks_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device(torch.device("mps")) == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="cannot use MPS"):
        MixtureOfExpertsClassifier(**{**FAST, "device": "mps"}).fit(X, Y_CLS)


def test_progress_bar_ends_full_where_early_stopping_ended(capsys):
    est = MixtureOfExpertsClassifier(
        max_iter=200, n_iter_no_change=2, tol=10.0, verbose=1, random_state=0
    )
    est.fit(X, Y_CLS)
    assert est.n_iter_ < 200
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(rf"100%.*\b{est.n_iter_}/{est.n_iter_}\b", last), last


def test_one_convergence_warning_per_fit_that_stopped_short():
    stopping = dict(FAST, early_stopping=True, tol=0.0, learning_rate="constant")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MultiGateMoEClassifier(**stopping).fit(X, np.column_stack([Y_CLS, Y_CLS]))
        MixtureOfExpertsClassifier(**stopping).fit(X, Y_CLS)
        MultiGateMoEClassifier(**FAST).fit(X, np.column_stack([Y_CLS, Y_CLS]))
    kinds = [w.category for w in caught]
    assert kinds.count(ConvergenceWarning) == 2


def test_a_default_multi_gate_grid_search_raises_no_convergence_warning():
    search = GridSearchCV(
        MultiGateMoEClassifier(**FAST), {"n_experts": [2, 4]}, cv=2, error_score="raise"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        search.fit(X, np.column_stack([Y_CLS, Y_CLS]))


# -- threads --------------------------------------------------------------------------
def test_default_is_auto_threads():
    for Estimator in ALL:
        assert Estimator().n_threads == "auto"


@pytest.mark.parametrize(
    "cores, others, torch_setting, expected",
    [(4, 0, 4, 4), (4, 1, 4, 3), (4, 9, 4, 1), (8, 0, 2, 2), (2, 1, 2, 1)],
)
def test_auto_prediction_workers_leave_busy_cores_alone_but_fit_threads_do_not_move(
    monkeypatch, cores, others, torch_setting, expected
):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "other_runnable", lambda: others)
    before = torch.get_num_threads()
    torch.set_num_threads(torch_setting)
    try:
        assert threads.prediction_workers("auto") == expected
        with torch_threads("auto"):  # a fit's count: never read from the load
            assert torch.get_num_threads() == threads.AUTO_FIT_THREADS
        assert torch.get_num_threads() == torch_setting
    finally:
        torch.set_num_threads(before)


def test_busy_machine_fits_with_one_thread(monkeypatch):
    import skmoe._engine.trainer as trainer

    seen = []
    original = trainer.run_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_epoch", spy)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable", lambda: 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        MixtureOfExpertsClassifier(**FAST).fit(X, Y_CLS)
    finally:
        torch.set_num_threads(before)
    assert seen == [1] * FAST["max_iter"]


def test_other_runnable_reads_a_count():
    assert isinstance(threads.other_runnable(), int)
    assert threads.other_runnable() >= 0
    assert threads.usable_cores() >= 1


def test_thread_benchmark_runs_quick():
    from _scripts import run_script

    out = run_script("benchmarks/threads.py", "--quick").stdout
    assert "| one busy process | auto (chose" in out
