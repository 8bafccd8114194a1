"""Training behaviour: sample weights, partial_fit, warm starts, early stopping,
determinism, progress output and divergence."""

import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoERegressor,
)
from skmoe._engine import (
    Batches,
    DenseRows,
    MeanSquaredError,
    MultiOutputCrossEntropy,
    TrainingConfig,
    TrainingHistory,
    evaluate,
    make_optimizer,
    run_epoch,
    train,
)
from skmoe.nn import Gate, MixtureOfExperts, MultiGateMixtureOfExperts

FAST = dict(random_state=0, device="cpu", learning_rate_init=1e-2)


@pytest.fixture(scope="module")
def regression():
    return make_regression(n_samples=120, n_features=5, noise=5.0, random_state=0)


@pytest.fixture(scope="module")
def classification():
    return make_classification(
        n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0
    )


# -- sample weights -----------------------------------------------------------------
FULL_BATCH = dict(batch_size=10_000, max_iter=40, **FAST)
WEIGHTED_ROUTINGS = [dict(), dict(n_experts=4, top_k=2), dict(n_experts=3, top_k=1)]


@pytest.mark.parametrize("routing", WEIGHTED_ROUTINGS, ids=["dense", "top-2", "top-1"])
def test_integer_weight_equals_repeating_the_row(regression, routing):
    # The balancing losses (on by default) weigh their statistics too, so in one
    # batch the fits differ only by float32 rounding.
    X, y = regression
    weights = np.random.default_rng(0).integers(1, 4, size=len(y))
    weighted = MixtureOfExpertsRegressor(**routing, **FULL_BATCH)
    weighted.fit(X, y, sample_weight=weights)
    repeated = MixtureOfExpertsRegressor(**routing, **FULL_BATCH).fit(
        np.repeat(X, weights, axis=0), np.repeat(y, weights)
    )
    np.testing.assert_allclose(
        weighted.predict(X), repeated.predict(X), rtol=1e-5, atol=1e-6 * np.ptp(y)
    )


def weighted_and_repeated_fits(make_module, x, y, w, objective=None):
    """``make_module()``'s outputs on ``x`` after 20 one-batch epochs on the rows
    ``x`` of weights ``w``, then after the same on each row repeated ``w`` times
    with unit weights; both start from the same weights (float64 modules).
    ``objective`` defaults to one 3-class output."""
    objective = MultiOutputCrossEntropy([3]) if objective is None else objective
    fits = []
    for rows, targets, weights in (
        (x, y, w.double()),
        (x.repeat_interleave(w, 0), y.repeat_interleave(w, 0), None),
    ):
        weights = (
            torch.ones(len(rows), dtype=torch.float64) if weights is None else weights
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            module = make_module()
        optimizer = make_optimizer(module, 1e-2, 1e-3, torch.device("cpu"))
        data = Batches(DenseRows(rows), targets, weights)
        gen = torch.Generator().manual_seed(1)
        for _ in range(20):
            run_epoch(module, objective, optimizer, data, 100, gen)
        with torch.no_grad():
            fits.append(module.eval()(x))
    return fits


@pytest.mark.parametrize("routing", WEIGHTED_ROUTINGS, ids=["dense", "top-2", "top-1"])
def test_weights_equal_repeated_rows_to_float64_rounding_in_one_batch(routing):
    # What keeps scikit-learn's sample-weight equivalence checks (rtol 1e-7) an
    # expected failure is float32 rounding alone: the same training in float64
    # agrees to 1e-10, balancing losses included.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(15, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (15, 1), generator=gen)
    w = torch.randint(0, 5, (15,), generator=gen)
    fits = weighted_and_repeated_fits(
        lambda: MixtureOfExperts(6, 3, **{"n_experts": 4, **routing}).double(), x, y, w
    )
    torch.testing.assert_close(fits[0], fits[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        {"architecture": "mmoe"},
        {"architecture": "cgc", "top_k": 1},
        {"architecture": "ple", "top_k": 2},
        {"architecture": "shared_bottom"},
    ],
    ids=lambda p: "-".join(map(str, p.values())),
)
@pytest.mark.parametrize("fused", [True, False], ids=["written-out step", "autograd"])
def test_multi_gate_weights_equal_repeated_rows_to_float64_rounding(params, fused):
    # The multi-gate estimators' expected failures of the same checks have the same
    # cause: in float64 a row of weight k and k copies of it train the same
    # two-task model, per-gate balancing losses included.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(15, 6, generator=gen, dtype=torch.float64)
    y = torch.stack(
        [torch.randint(0, 3, (15,), generator=gen), torch.randint(0, 2, (15,))], 1
    )
    w = torch.randint(0, 5, (15,), generator=gen)

    def make_module():
        module = MultiGateMixtureOfExperts(
            6,
            [3, 2],
            n_shared_experts=3,
            expert_hidden_layer_sizes=(8,),
            tower_hidden_layer_sizes=(4,),
            load_balancing_coef=0.3,
            router_z_loss_coef=0.05,
            **params,
        ).double()
        module.fused_training = fused
        return module

    objective = MultiOutputCrossEntropy([3, 2])
    weighted, repeated = weighted_and_repeated_fits(make_module, x, y, w, objective)
    torch.testing.assert_close(weighted, repeated, rtol=1e-10, atol=1e-12)
    # ... and the weights matter: unit weights train another model.
    unit = weighted_and_repeated_fits(make_module, x, y, torch.ones_like(w), objective)
    assert (unit[0] - weighted).abs().max() > 1e-3


@pytest.mark.parametrize("gating", ["noisy", "switch"])
def test_noisy_gates_draw_for_each_copy_of_a_row(gating):
    # Why weights and repeated rows differ with noisy or switch gating whatever the
    # batch: each copy of a row gets its own noise, a weighted row one draw.
    gate = Gate(4, 3, top_k=1, gating=gating).train()
    with torch.no_grad():
        if gate.noise is not None:
            gate.noise.bias.fill_(1.0)
        rows = torch.randn(1, 4).expand(2, 4)
        logits, scores = gate.scores(rows)
    chosen_by = logits if scores is None else scores
    assert not torch.equal(chosen_by[0], chosen_by[1])


def test_zero_weight_equals_dropping_the_row(regression):
    X, y = regression
    weights = np.ones(len(y))
    weights[::3] = 0
    weighted = MixtureOfExpertsRegressor(**FULL_BATCH).fit(X, y, sample_weight=weights)
    dropped = MixtureOfExpertsRegressor(**FULL_BATCH).fit(
        X[weights > 0], y[weights > 0]
    )
    np.testing.assert_allclose(
        weighted.predict(X), dropped.predict(X), rtol=1e-5, atol=1e-6 * np.ptp(y)
    )


def test_weights_change_what_is_learned(classification):
    X, y = classification
    plain = MixtureOfExpertsClassifier(max_iter=20, **FAST).fit(X, y)
    heavy = MixtureOfExpertsClassifier(max_iter=20, **FAST).fit(
        X, y, sample_weight=np.where(y == 2, 20.0, 1.0)
    )
    assert (heavy.predict(X) == 2).mean() > (plain.predict(X) == 2).mean()


# -- partial_fit and warm_start -----------------------------------------------------
def test_partial_fit_needs_classes_first_then_learns(classification):
    X, y = classification
    clf = MixtureOfExpertsClassifier(**FAST)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    assert clf.n_iter_ == 1
    first = clf.score(X, y)
    for _ in range(15):
        for start in range(0, 300, 100):
            clf.partial_fit(X[start : start + 100], y[start : start + 100])
    assert clf.n_iter_ == 46
    assert len(clf.loss_curve_) == 46
    assert clf.score(X, y) > max(first, 0.7)
    with pytest.raises(ValueError, match="not seen in classes"):
        clf.partial_fit(X[:5], np.array([0, 1, 2, 3, 0]))


def test_partial_fit_knows_classes_missing_from_the_first_batch(classification):
    X, y = classification
    clf = MixtureOfExpertsClassifier(**FAST)
    clf.partial_fit(X[y != 2], y[y != 2], classes=np.array([0, 1, 2]))
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (len(y), 3)


def test_partial_fit_regressor_improves(regression):
    X, y = regression
    reg = MixtureOfExpertsRegressor(**FAST).partial_fit(X, y)
    first = reg.score(X, y)
    for _ in range(30):
        reg.partial_fit(X, y)
    assert reg.score(X, y) > first


def test_warm_start_continues_instead_of_restarting(regression):
    X, y = regression
    reg = MixtureOfExpertsRegressor(max_iter=10, warm_start=True, **FAST).fit(X, y)
    module, curve = reg.module_, list(reg.loss_curve_)
    reg.fit(X, y)
    assert reg.module_ is module
    assert len(reg.loss_curve_) == 20 and reg.n_iter_ == 20
    assert reg.loss_curve_[10] < curve[0]  # picked up where it stopped

    cold = MixtureOfExpertsRegressor(max_iter=10, **FAST).fit(X, y)
    first = cold.predict(X)
    cold.fit(X, y)
    assert cold.n_iter_ == 10
    np.testing.assert_array_equal(cold.predict(X), first)


# -- stopping rules -----------------------------------------------------------------
def test_early_stopping_stops_and_reports_validation_scores(classification):
    X, y = classification
    clf = MixtureOfExpertsClassifier(
        early_stopping=True, n_iter_no_change=3, max_iter=500, **FAST
    ).fit(X, y)
    assert clf.n_iter_ < 500
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None


def test_engine_restores_the_best_validation_weights():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=gen)
    t = x.sum(1, keepdim=True)
    train_data = Batches(DenseRows(x[:150]), t[:150], torch.ones(150))
    # Validation targets of the opposite sign: training makes them worse, so the best
    # validation score is reached early and must be what the module ends with.
    valid = Batches(DenseRows(x[150:]), -t[150:], torch.ones(50))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = MixtureOfExperts(4, 1, n_experts=2)
    objective = MeanSquaredError(1)
    history = train(
        module,
        objective,
        make_optimizer(module, 1e-2, 0.0, torch.device("cpu")),
        train_data,
        TrainingConfig(
            max_epochs=30, batch_size=50, early_stopping=True, n_iter_no_change=5
        ),
        TrainingHistory(),
        seed=0,
        valid_data=valid,
    )
    best = max(history.validation_scores)
    assert history.validation_scores[-1] < best
    assert evaluate(module, objective, valid, 64) == pytest.approx(best)


def _two_tasks_for_multi_gate(est, y):
    return np.column_stack([y, y]) if isinstance(est, MultiGateMoERegressor) else y


@pytest.mark.parametrize(
    "Estimator", [MixtureOfExpertsRegressor, MultiGateMoERegressor]
)
def test_convergence_warning_where_early_stopping_runs_out_of_epochs(
    regression, Estimator
):
    X, y = regression
    est = Estimator(
        max_iter=2, early_stopping=True, learning_rate="constant", tol=0.0, **FAST
    )
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        est.fit(X, _two_tasks_for_multi_gate(est, y))
    assert est.n_iter_ == 2


@pytest.mark.parametrize(
    "Estimator, params",
    [
        (MultiGateMoERegressor, {}),  # its defaults: a constant step, no early stop
        (MixtureOfExpertsRegressor, {}),
        (MixtureOfExpertsRegressor, {"learning_rate": "constant"}),
        (MixtureOfExpertsRegressor, {"early_stopping": True, "tol": 0.0}),  # cosine
        (MultiGateMoERegressor, {"learning_rate": "cosine", "early_stopping": True}),
    ],
)
def test_no_convergence_warning_where_a_fit_ran_the_epochs_it_planned(
    regression, Estimator, params
):
    X, y = regression
    est = Estimator(max_iter=2, **{**FAST, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, _two_tasks_for_multi_gate(est, y))
    assert est.n_iter_ == 2  # the fit did reach max_iter


def test_training_loss_plateau_stops_before_max_iter(regression):
    X, y = regression
    reg = MixtureOfExpertsRegressor(max_iter=2000, tol=1e-2, n_iter_no_change=2, **FAST)
    reg.fit(X, y)
    assert reg.n_iter_ < 2000
    assert reg.best_loss_ == min(reg.loss_curve_)


# -- reproducibility ----------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"top_k": 2}, {"top_k": 2, "gating": "noisy"}])
def test_same_seed_gives_bit_identical_results(classification, params):
    X, y = classification
    a = MixtureOfExpertsClassifier(max_iter=5, **params, **FAST).fit(X, y)
    b = MixtureOfExpertsClassifier(max_iter=5, **params, **FAST).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    c = MixtureOfExpertsClassifier(max_iter=5, **params, **{**FAST, "random_state": 1})
    assert not np.array_equal(c.fit(X, y).predict_proba(X), a.predict_proba(X))


def test_global_random_state_is_untouched(classification):
    X, y = classification
    torch_before = torch.get_rng_state()
    np.random.seed(123)  # noqa: NPY002 - the legacy global state is what is checked
    numpy_before = np.random.get_state()[1].copy()  # noqa: NPY002
    MixtureOfExpertsClassifier(max_iter=3, gating="noisy", top_k=1, **FAST).fit(X, y)
    MixtureOfExpertsClassifier(max_iter=3, device="cpu").fit(X, y)  # random_state=None
    assert torch.equal(torch.get_rng_state(), torch_before)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)  # noqa: NPY002


def test_prediction_of_a_row_does_not_depend_on_its_batch(classification):
    X, y = classification
    clf = MixtureOfExpertsClassifier(max_iter=5, top_k=2, **FAST).fit(X, y)
    whole = clf.predict_proba(X)
    one_by_one = np.vstack([clf.predict_proba(X[i : i + 1]) for i in range(0, 300, 7)])
    np.testing.assert_allclose(one_by_one, whole[::7], rtol=1e-12, atol=1e-14)


def test_pickle_round_trip_keeps_predictions(classification):
    X, y = classification
    clf = MixtureOfExpertsClassifier(max_iter=5, top_k=2, **FAST).fit(X, y)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(clone.gate_weights(X), clf.gate_weights(X))
    clone.partial_fit(X, y)  # still trainable
    assert clone.n_iter_ == clf.n_iter_ + 1


# -- progress and divergence --------------------------------------------------------
def test_verbose_shows_a_progress_bar_with_the_loss(regression, capsys):
    X, y = regression
    MixtureOfExpertsRegressor(max_iter=3, verbose=1, **FAST).fit(X, y)
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err
    MixtureOfExpertsRegressor(max_iter=3, verbose=0, **FAST).fit(X, y)
    assert capsys.readouterr().err == ""


def test_divergence_is_an_error_never_nan_weights(regression):
    X, y = regression
    reg = MixtureOfExpertsRegressor(max_iter=20, learning_rate_init=1e12, device="cpu")
    with pytest.raises(ValueError, match=r"diverged at epoch \d+.*learning_rate_init"):
        reg.fit(X * 1e6, y)
    assert not hasattr(reg, "module_")  # a failed fresh fit leaves nothing half-fitted


def test_divergence_keeps_the_weights_from_before_the_bad_epoch(
    regression, monkeypatch
):
    import skmoe._engine.trainer as trainer

    X, y = regression
    good = MixtureOfExpertsRegressor(max_iter=5, **FAST).fit(X, y)
    starts = []  # the module's state as each epoch begins
    original = trainer.run_epoch

    def spy(module, *args, **kwargs):
        starts.append({k: v.detach().clone() for k, v in module.state_dict().items()})
        return original(module, *args, **kwargs)

    monkeypatch.setattr(trainer, "run_epoch", spy)
    good.set_params(warm_start=True, learning_rate_init=1e12)
    with pytest.raises(ValueError, match=r"diverged at epoch (\d+)") as info:
        good.fit(X * 1e6, y)
    bad_epoch = int(re.search(r"epoch (\d+)", str(info.value))[1])
    assert len(starts) == bad_epoch - 5  # it was the last epoch run
    assert len(starts) >= 2  # so that "before the bad epoch" is not the first state
    kept = good.module_.state_dict()
    assert kept.keys() == starts[-1].keys()
    for key, value in starts[-1].items():
        torch.testing.assert_close(kept[key], value, rtol=0, atol=0)
    assert any(not torch.equal(starts[0][k], v) for k, v in kept.items())
    assert np.isfinite(good.predict(X)).all()


def test_n_threads_applies_during_fit_and_predict_then_is_restored(
    classification, monkeypatch
):
    import skmoe._engine.trainer as trainer

    X, y = classification
    seen = []
    original_epoch = trainer.run_epoch

    def epoch_spy(*args, **kwargs):
        seen.append(("fit", torch.get_num_threads()))
        return original_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_epoch", epoch_spy)
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    clf = MixtureOfExpertsClassifier(max_iter=2, n_threads=wanted, **FAST).fit(X, y)
    assert seen == [("fit", wanted)] * 2
    assert torch.get_num_threads() == before

    def gate_weights_spy(module, x):
        seen.append(("predict", torch.get_num_threads()))
        return module.gate_weights(x)

    # A prediction runs each block of rows on one torch thread, whatever n_threads
    # (which only sets how many blocks run at once), and restores the setting.
    clf._infer(clf._validate_X(X), fn=gate_weights_spy)
    assert seen[-1] == ("predict", 1)
    assert torch.get_num_threads() == before


HOST_READS = (
    "item",
    "tolist",
    "numpy",
    "__float__",
    "__int__",
    "__bool__",
    "__index__",
)


@pytest.mark.parametrize("uniform_weights", [True, False])
def test_dense_training_reads_nothing_back_from_the_device_per_batch(
    monkeypatch, uniform_weights
):
    """On a GPU each read of a tensor's value would stall the host until the device
    catches up. Count such reads in an epoch of 4 and of 16 batches: the count must
    not grow with the number of batches."""
    reads = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def reads_in_one_epoch(n_batches):
        torch.manual_seed(0)
        module = MixtureOfExperts(6, 3, n_experts=4, expert_hidden_layer_sizes=(8,))
        optimizer = make_optimizer(module, 1e-3, 1e-4, torch.device("cpu"))
        rows = torch.randn(32 * n_batches, 6)
        weights = torch.ones(len(rows)) if uniform_weights else torch.rand(len(rows))
        data = Batches(
            DenseRows(rows),
            torch.randint(0, 3, (len(rows), 1)),
            weights,
            uniform_weights=uniform_weights,
        )
        objective = MultiOutputCrossEntropy([3])
        reads.clear()
        run_epoch(module, objective, optimizer, data, 32, torch.Generator())
        return len(reads)

    assert reads_in_one_epoch(4) == reads_in_one_epoch(16)


def test_cosine_schedule_decays_the_step_size_and_partial_fit_restores_it(regression):
    """Each epoch of a cosine fit steps with learning_rate_init times half a cosine;
    a later partial_fit steps with learning_rate_init again."""
    X, y = regression
    seen = []

    class Spy:
        def on_epoch_begin(self, epoch):
            seen.append(est._optimizer.param_groups[0]["lr"])

        def on_epoch_end(self, epoch, history):
            pass

    est = MixtureOfExpertsRegressor(learning_rate="cosine", max_iter=4, tol=0.0, **FAST)
    est._epoch_callbacks = lambda: (Spy(),)
    est.fit(X, y)
    lr = FAST["learning_rate_init"]
    expected = [lr * 0.5 * (1 + np.cos(np.pi * i / 4)) for i in range(4)]
    np.testing.assert_allclose(seen, expected)
    est.partial_fit(X, y)
    assert seen[-1] == lr


def test_cosine_schedule_changes_training_and_is_checked(regression):
    X, y = regression
    constant = MixtureOfExpertsRegressor(max_iter=5, learning_rate="constant", **FAST)
    constant.fit(X, y)
    cosine = MixtureOfExpertsRegressor(max_iter=5, learning_rate="cosine", **FAST)
    assert cosine.fit(X, y).loss_curve_ != constant.loss_curve_
    with pytest.raises(ValueError, match="learning_rate"):
        MixtureOfExpertsRegressor(learning_rate="linear").fit(X, y)


def test_label_smoothing_softens_the_probabilities(classification):
    """Smoothed targets keep the predicted probabilities away from 0 and 1."""
    X, y = classification
    sharp = MixtureOfExpertsClassifier(max_iter=60, **FAST).fit(X, y)
    smooth = MixtureOfExpertsClassifier(max_iter=60, label_smoothing=0.3, **FAST)
    smooth.fit(X, y)
    confidence = [est.predict_proba(X).max(axis=1) for est in (sharp, smooth)]
    assert confidence[1].max() < confidence[0].max()
    # Smoothed targets put 0.8 on the labelled class of these three.
    assert np.median(confidence[1]) < 0.85 < np.median(confidence[0])
    assert smooth.score(X, y) > 0.8
    with pytest.raises(ValueError, match="label_smoothing"):
        MixtureOfExpertsClassifier(label_smoothing=1.0).fit(X, y)


# -- batch_size="auto" ----------------------------------------------------------------
@pytest.mark.parametrize("n_rows", [20, 150, 800])
def test_batch_size_used_is_reported(n_rows):
    """batch_size="auto" is min(200, n_samples), reported as batch_size_; an
    explicit size is kept, capped at n_samples."""
    X = np.random.default_rng(0).normal(size=(n_rows, 3))
    y = X[:, 0]
    est = MixtureOfExpertsRegressor(max_iter=1, **FAST).fit(X, y)
    assert est.batch_size_ == min(200, n_rows)
    fixed = MixtureOfExpertsRegressor(batch_size=64, max_iter=1, **FAST).fit(X, y)
    assert fixed.batch_size_ == min(64, n_rows)


def test_auto_batch_size_counts_the_rows_left_for_training():
    """With early stopping "auto" sees the rows left after the validation split, in
    single-gate and multi-gate estimators alike."""
    from skmoe import MultiGateMoERegressor

    X, y = make_classification(n_samples=240, n_features=4, random_state=0)
    est = MixtureOfExpertsClassifier(max_iter=1, **FAST).fit(X, y)
    assert est.batch_size_ == 200
    stopped = MixtureOfExpertsClassifier(
        max_iter=1, early_stopping=True, validation_fraction=0.25, **FAST
    ).fit(X, y)
    assert stopped.batch_size_ == 180
    multi = MultiGateMoERegressor(
        max_iter=1, early_stopping=True, validation_fraction=0.25, **FAST
    ).fit(X, X[:, :2])
    assert multi.batch_size_ == 180


def test_batch_size_sets_the_number_of_adam_steps(regression):
    """On 120 rows "auto" is one full batch, one Adam step an epoch; batches of 32
    take four, and train differently. A refit with the same seed is identical."""
    X, y = regression

    def adam_steps(est):
        return int(next(iter(est._optimizer.state.values()))["step"])

    auto = MixtureOfExpertsRegressor(max_iter=3, **FAST).fit(X, y)
    assert (auto.batch_size_, adam_steps(auto)) == (120, 3)
    small = MixtureOfExpertsRegressor(max_iter=3, batch_size=32, **FAST).fit(X, y)
    assert (small.batch_size_, adam_steps(small)) == (32, 3 * 4)
    assert small.loss_curve_ != auto.loss_curve_
    again = MixtureOfExpertsRegressor(max_iter=3, batch_size=32, **FAST).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), small.predict(X))


def test_batch_size_survives_clone_and_grid_search(regression):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    X, y = regression
    est = MixtureOfExpertsRegressor(max_iter=2, **FAST)
    assert clone(est).get_params()["batch_size"] == "auto"
    search = GridSearchCV(est, {"batch_size": ["auto", 16]}, cv=2).fit(X, y)
    best = search.best_estimator_
    assert best.batch_size_ == (120 if best.batch_size == "auto" else 16)
    assert not hasattr(clone(best), "batch_size_")
