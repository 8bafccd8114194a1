"""Multi-gate estimators: architectures, tasks, missing labels and task weights."""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import r2_score

from skmoe import MultiGateMoEClassifier, MultiGateMoERegressor
from skmoe._engine import MeanSquaredError, MultiOutputCrossEntropy
from skmoe.datasets import make_mmoe_synthetic
from skmoe.nn import MultiGateMixtureOfExperts

FAST = dict(max_iter=30, random_state=0, device="cpu", learning_rate_init=1e-2)
ARCHITECTURES = ["mmoe", "omoe", "cgc", "ple", "shared_bottom"]


@pytest.fixture(scope="module")
def two_tasks():
    X, Y = make_mmoe_synthetic(
        n_samples=1200, n_features=20, correlation=0.8, random_state=0
    )
    return X[:1000], Y[:1000], X[1000:], Y[1000:]


def _classification_tasks(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    binary = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    three = np.digitize(X[:, 2], [-0.5, 0.5])  # 0, 1, 2
    four = np.array(["n", "e", "s", "w"])[(X[:, 3] > 0).astype(int) * 2 + (X[:, 4] > 0)]
    return X, np.column_stack([binary, three.astype(str), four]).astype(object)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_learns_both_tasks(two_tasks, architecture):
    X, Y, X_test, Y_test = two_tasks
    reg = MultiGateMoERegressor(architecture=architecture, **FAST).fit(X, Y)
    pred = reg.predict(X_test)
    assert pred.shape == (200, 2)
    for t in range(2):
        assert r2_score(Y_test[:, t], pred[:, t]) > 0.5
    n_experts = {"mmoe": 4, "omoe": 4, "cgc": 6, "ple": 6, "shared_bottom": 1}
    n_experts = n_experts[architecture]
    weights = reg.gate_weights(X_test)
    assert weights.shape == (200, 2, n_experts)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-12)
    assert reg.expert_usage_.shape == (2, n_experts)
    np.testing.assert_allclose(reg.expert_usage_.sum(1), 1.0, rtol=1e-5)
    if architecture == "omoe":  # one gate, shared by the tasks
        np.testing.assert_array_equal(weights[:, 0], weights[:, 1])
    if architecture in ("cgc", "ple"):
        # Experts: 4 shared, then task 0's, then task 1's; no task sees the other's.
        assert (weights[:, 0, 5] == 0).all() and (weights[:, 1, 4] == 0).all()


@pytest.mark.parametrize("architecture", ["mmoe", "omoe", "cgc", "ple"])
def test_top_k_gates_keep_k_experts_per_task(two_tasks, architecture):
    X, Y, X_test, _ = two_tasks
    reg = MultiGateMoERegressor(architecture=architecture, top_k=2, **FAST).fit(X, Y)
    weights = reg.gate_weights(X_test)
    np.testing.assert_array_equal((weights > 0).sum(-1), 2)


def test_ple_shared_experts_read_the_shared_gate():
    # With two levels, the second level's shared expert reads the first level's
    # shared-gate mixture; zeroing that gate's input weights must change the output
    # of a model whose tasks rely on the shared experts.
    torch.manual_seed(0)
    model = MultiGateMixtureOfExperts(5, [1, 1], architecture="ple", n_levels=2).eval()
    x = torch.randn(8, 5)
    before = model(x)
    with torch.no_grad():
        model.levels[0].shared_gate.router.weight.mul_(10)
    assert not torch.allclose(model(x), before)
    assert model.levels[1].shared_gate is None  # the last level has no shared gate


def test_tasks_with_their_own_classes_and_string_labels():
    X, Y = _classification_tasks()
    clf = MultiGateMoEClassifier(architecture="cgc", **{**FAST, "max_iter": 60})
    clf.fit(X, Y)
    assert [list(c) for c in clf.classes_] == [
        ["no", "yes"],
        ["0", "1", "2"],
        ["e", "n", "s", "w"],
    ]
    pred = clf.predict(X)
    assert pred.shape == (400, 3)
    proba = clf.predict_proba(X)
    assert [p.shape for p in proba] == [(400, 2), (400, 3), (400, 4)]
    for t in range(3):
        assert (pred[:, t] == Y[:, t]).mean() > 0.8
    assert clf.score(X, Y) == pytest.approx(np.mean(np.all(pred == Y, axis=1)))


@pytest.mark.parametrize("Estimator", [MultiGateMoERegressor, MultiGateMoEClassifier])
def test_batch_size_one_at_predict_and_fit(two_tasks, Estimator):
    X, Y, X_test, _ = two_tasks
    if Estimator is MultiGateMoEClassifier:
        Y = (np.median(Y, axis=0) < Y).astype(int)
    est = Estimator(**{**FAST, "max_iter": 2, "batch_size": 1}).fit(X[:50], Y[:50])
    whole = est.predict(X_test)
    single = np.vstack([est.predict(X_test[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(single, whole[:5], rtol=1e-12, atol=1e-14)
    assert est.gate_weights(X_test[:1]).shape == (1, 2, 4)


def test_missing_labels_are_an_error_unless_allowed(two_tasks):
    X, Y, X_test, Y_test = two_tasks
    Y = Y.copy()
    missing = np.random.default_rng(0).random(len(Y)) < 0.5
    Y[missing, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MultiGateMoERegressor(**FAST).fit(X, Y)
    reg = MultiGateMoERegressor(allow_missing_labels=True, **FAST).fit(X, Y)
    pred = reg.predict(X_test)
    assert np.isfinite(pred).all()
    # score skips the missing targets: R² of each task over its present labels
    Y_scored = Y_test.copy()
    Y_scored[::2, 0] = np.nan
    expected = np.mean(
        [r2_score(Y_test[1::2, 0], pred[1::2, 0]), r2_score(Y_test[:, 1], pred[:, 1])]
    )
    assert reg.score(X_test, Y_scored) == pytest.approx(expected)
    # Task 0 learned from the half of the rows that have its label.
    assert r2_score(Y_test[:, 0], pred[:, 0]) > 0.5
    assert r2_score(Y_test[:, 1], pred[:, 1]) > 0.5


def test_missing_class_labels():
    X, Y = _classification_tasks()
    Y[::3, 1] = None
    Y[1::5, 0] = np.nan
    with pytest.raises(
        ValueError,
        match=r"MultiGateMoEClassifier: y contains missing.*allow_missing_labels=True",
    ):
        MultiGateMoEClassifier(**FAST).fit(X, Y)
    with pytest.raises(ValueError, match="MultiGateMoERegressor: y contains missing"):
        MultiGateMoERegressor(**FAST).fit(X, np.where(Y[:, 1] == None, np.nan, 1.0))  # noqa: E711
    clf = MultiGateMoEClassifier(allow_missing_labels=True, **{**FAST, "max_iter": 60})
    clf.fit(X, Y)
    assert [list(c) for c in clf.classes_][:2] == [["no", "yes"], ["0", "1", "2"]]
    full_X, full_Y = _classification_tasks()
    assert (clf.predict(full_X)[:, 1] == full_Y[:, 1]).mean() > 0.8
    # score counts a missing label as right and skips rows with no label at all
    pred = clf.predict(X)
    present = ~np.vectorize(lambda v: v is None or v != v)(Y)
    expected = np.mean(np.all((pred == Y) | ~present, axis=1))
    assert clf.score(X, Y) == pytest.approx(expected)


def test_rows_without_any_label_are_left_out(two_tasks):
    X, Y, X_test, _ = two_tasks
    padded_X = np.vstack([X, X[:500]])
    padded_Y = np.vstack([Y, np.full((500, 2), np.nan)])
    params = dict(allow_missing_labels=True, **FAST)
    plain = MultiGateMoERegressor(**params).fit(X, Y)
    padded = MultiGateMoERegressor(**params).fit(padded_X, padded_Y)
    np.testing.assert_allclose(padded.predict(X_test), plain.predict(X_test))
    with pytest.raises(
        ValueError, match=r"Every target of output\(s\) \[0, 1\] is missing"
    ):
        MultiGateMoERegressor(**params).fit(X, np.full_like(Y, np.nan))


def test_masked_entries_add_nothing_to_the_loss_or_its_gradient():
    outputs = torch.randn(4, 2, requires_grad=True)
    targets = torch.tensor([[1.0, np.nan], [0.0, 2.0], [np.nan, np.nan], [3.0, 1.0]])
    loss = MeanSquaredError(2).row_loss(outputs, targets)
    loss_values = loss.detach()
    assert float(loss_values[2]) == 0.0
    expected = 0.25 * (float(outputs.detach()[0, 0]) - 1.0) ** 2
    assert float(loss_values[0]) == pytest.approx(expected)
    loss.sum().backward()
    assert torch.isfinite(outputs.grad).all()
    assert (outputs.grad[2] == 0).all() and outputs.grad[0, 1] == 0

    logits = torch.randn(3, 5, requires_grad=True)
    codes = torch.tensor([[1, -1], [-1, 2], [0, 0]])
    ce = MultiOutputCrossEntropy([2, 3]).row_loss(logits, codes)
    ce.sum().backward()
    assert (logits.grad[0, 2:] == 0).all() and (logits.grad[1, :2] == 0).all()


def test_task_weights_change_what_is_learned(two_tasks):
    X, Y, X_test, Y_test = two_tasks
    both = MultiGateMoERegressor(**FAST).fit(X, Y)
    first_only = MultiGateMoERegressor(task_weights=[1.0, 0.0], **FAST).fit(X, Y)
    r2_both = r2_score(Y_test[:, 1], both.predict(X_test)[:, 1])
    r2_ignored = r2_score(Y_test[:, 1], first_only.predict(X_test)[:, 1])
    assert r2_both > 0.5
    assert r2_ignored < r2_both - 0.3
    with pytest.raises(ValueError, match="one weight per task"):
        MultiGateMoERegressor(task_weights=[1.0, 1.0, 1.0], **FAST).fit(X, Y)
    with pytest.raises(ValueError, match="non-negative"):
        MultiGateMoERegressor(task_weights=[1.0, -1.0], **FAST).fit(X, Y)


def test_one_column_is_a_single_task(two_tasks):
    X, Y, X_test, _ = two_tasks
    reg = MultiGateMoERegressor(**FAST).fit(X, Y[:, :1])
    assert reg.predict(X_test).shape == (200, 1)
    assert reg.gate_weights(X_test).shape == (200, 1, 4)
    flat = MultiGateMoERegressor(**FAST).fit(X, Y[:, 0])
    assert flat.predict(X_test).shape == (200,)


def test_partial_fit_sample_weight_early_stopping_pickle_sparse_and_frames():
    X, Y = _classification_tasks()
    classes = [["no", "yes"], ["0", "1", "2"], ["e", "n", "s", "w"]]
    clf = MultiGateMoEClassifier(architecture="ple", **FAST)
    for start in range(0, 400, 100):
        clf.partial_fit(X[start : start + 100], Y[start : start + 100], classes=classes)
    assert clf.n_iter_ == 4
    with pytest.raises(ValueError, match="outputs"):
        clf.partial_fit(X[:10], Y[:10, :2])

    weighted = MultiGateMoEClassifier(**FAST).fit(X, Y, sample_weight=np.arange(400))
    assert weighted.score(X, Y) > 0.3  # sample weights: see the tests below

    stopped = MultiGateMoEClassifier(
        early_stopping=True, n_iter_no_change=3, **{**FAST, "max_iter": 300}
    ).fit(X, Y)
    assert stopped.n_iter_ < 300
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)

    restored = pickle.loads(pickle.dumps(stopped))
    np.testing.assert_array_equal(restored.predict(X), stopped.predict(X))

    X_sparse = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
    assert MultiGateMoEClassifier(**FAST).fit(X_sparse, Y).predict(X_sparse).shape == (
        400,
        3,
    )
    frame = pd.DataFrame(X, columns=list("abcdef"))
    fitted = MultiGateMoEClassifier(**FAST).fit(frame, Y)
    assert list(fitted.feature_names_in_) == list("abcdef")


def test_mmoe_synthetic_data():
    corr = []
    for p in (0.0, 0.5, 0.9, 1.0):
        _, Y = make_mmoe_synthetic(n_samples=4000, correlation=p, random_state=0)
        corr.append(np.corrcoef(Y.T)[0, 1])
    assert corr == sorted(corr)  # label correlation grows with the weight correlation
    assert corr[-1] > 0.95  # identical tasks but for the noise
    a = make_mmoe_synthetic(n_samples=10, random_state=3)
    b = make_mmoe_synthetic(n_samples=10, random_state=3)
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="correlation"):
        make_mmoe_synthetic(correlation=1.5)


# -- sample weights ---------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["mmoe", "ple", "shared_bottom"])
def test_integer_weight_equals_repeating_the_row(architecture):
    # As for single-gate estimators (tests/test_training.py): in one batch the fits
    # differ by float32 rounding alone; the module-level float64 test shows why.
    X, Y, *_ = make_mmoe_synthetic(n_samples=150, n_features=5, random_state=0)
    weights = np.random.default_rng(0).integers(1, 4, size=len(X))
    params = dict(FAST, architecture=architecture, batch_size=10_000, max_iter=40)
    weighted = MultiGateMoERegressor(**params).fit(X, Y, sample_weight=weights)
    repeated = MultiGateMoERegressor(**params).fit(
        np.repeat(X, weights, axis=0), np.repeat(Y, weights, axis=0)
    )
    np.testing.assert_allclose(
        weighted.predict(X), repeated.predict(X), rtol=1e-5, atol=1e-6 * np.ptp(Y)
    )


def test_sample_weight_changes_what_each_task_learns():
    X, Y = _classification_tasks()
    plain = MultiGateMoEClassifier(**FAST).fit(X, Y)
    # Rows labelled "yes" on the first task weigh 20 times more: the first task
    # predicts "yes" more often, and the other tasks' predictions move as well.
    heavy = np.where(Y[:, 0] == "yes", 20.0, 1.0)
    weighted = MultiGateMoEClassifier(**FAST).fit(X, Y, sample_weight=heavy)
    assert (weighted.predict(X)[:, 0] == "yes").mean() > (
        plain.predict(X)[:, 0] == "yes"
    ).mean()
    moved = [
        np.abs(a - b).max()
        for a, b in zip(plain.predict_proba(X), weighted.predict_proba(X), strict=True)
    ]
    assert min(moved) > 1e-3
    # Zero weights drop rows: the same fit as without them.
    keep = np.arange(len(X)) % 3 > 0
    zeroed = MultiGateMoEClassifier(**FAST, batch_size=10_000).fit(
        X, Y, sample_weight=keep.astype(float)
    )
    dropped = MultiGateMoEClassifier(**FAST, batch_size=10_000).fit(X[keep], Y[keep])
    for a, b in zip(zeroed.predict_proba(X), dropped.predict_proba(X), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
