"""The inspection Displays follow scikit-learn's Display API and draw what the
estimators recorded; bad input gets a TypeError naming what is accepted."""

import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe.inspection import (
    ExpertImportanceDisplay,
    ExpertUsageDisplay,
    GateWeightsDisplay,
    TrainingCurveDisplay,
)
from skmoe.inspection._plot.training_curve import usage_entropy

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 4))
Y_CLASS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
FAST = dict(max_iter=4, random_state=0, expert_hidden_layer_sizes=(8,))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def classifier():
    return MixtureOfExpertsClassifier(n_experts=3, top_k=1, **FAST).fit(X, Y_CLASS)


@pytest.fixture(scope="module")
def multigate():
    y = np.column_stack([X[:, 0], X[:, 1] + X[:, 2]])
    return MultiGateMoERegressor(n_experts=3, **FAST).fit(X, y)


def test_expert_usage_from_training_and_from_rows(classifier):
    display = ExpertUsageDisplay.from_estimator(classifier)
    np.testing.assert_allclose(display.usage, classifier.expert_usage_)
    assert len(display.ax_.patches) == 3
    assert display.figure_ is display.ax_.figure

    display = ExpertUsageDisplay.from_estimator(classifier, X)
    # top-1: the usage on rows is the share of rows each expert receives
    shares = np.bincount(classifier.gate_weights(X).argmax(1), minlength=3) / len(X)
    np.testing.assert_allclose(display.usage, shares)
    heights = [patch.get_height() for patch in display.ax_.patches]
    np.testing.assert_allclose(heights, shares)


def test_expert_usage_per_task_on_given_axes(multigate):
    _, ax = plt.subplots()
    display = ExpertUsageDisplay.from_estimator(
        multigate, X, task_names=["click", "buy"], ax=ax
    )
    assert display.ax_ is ax
    assert display.usage.shape == (2, 3)
    assert len(ax.patches) == 6
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["click", "buy"]


def test_gate_weights_grouped_by_class_in_a_pipeline():
    pipe = make_pipeline(
        StandardScaler(), MixtureOfExpertsClassifier(n_experts=3, **FAST)
    ).fit(X * 10, Y_CLASS)
    display = GateWeightsDisplay.from_estimator(pipe, X * 10, Y_CLASS)
    expected = pipe[-1].gate_weights(pipe[0].transform(X * 10))
    order = np.argsort(Y_CLASS, kind="stable")
    np.testing.assert_allclose(display.weights, expected[order])
    assert display.image_.get_array().shape == (200, 3)
    assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["0", "1", "2"]
    assert display.ax_.get_ylabel() == "class"


def test_gate_weights_of_a_regression_task_grouped_by_quantile(multigate):
    y = np.column_stack([X[:, 0], X[:, 1] + X[:, 2]])
    display = GateWeightsDisplay.from_estimator(
        multigate, X, y, task=1, n_quantiles=4, max_rows=100
    )
    assert display.weights.shape == (100, 3)
    assert set(display.groups) == {0, 1, 2, 3}
    assert "quantile" in display.ax_.get_ylabel()


def test_training_curve_has_loss_validation_and_entropy():
    clf = MixtureOfExpertsClassifier(
        n_experts=3, early_stopping=True, validation_fraction=0.2, **FAST
    ).fit(X, Y_CLASS)
    display = TrainingCurveDisplay.from_estimator(clf)
    assert len(display.axes_) == 3
    np.testing.assert_allclose(display.loss_curve, clf.loss_curve_)
    np.testing.assert_allclose(display.validation_scores, clf.validation_scores_)
    assert len(clf.expert_usage_curve_) == clf.n_iter_
    np.testing.assert_allclose(clf.expert_usage_curve_[-1], clf.expert_usage_)
    np.testing.assert_allclose(
        display.usage_entropy, usage_entropy(np.array(clf.expert_usage_curve_))
    )
    line = display.axes_[2].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), display.usage_entropy)


def test_usage_curve_continues_over_warm_starts_and_multigate_has_one_per_task():
    reg = MixtureOfExpertsRegressor(warm_start=True, **FAST).fit(X, X[:, 0])
    reg.fit(X, X[:, 0])
    assert len(reg.expert_usage_curve_) == len(reg.loss_curve_) == 8
    mg = MultiGateMoEClassifier(n_experts=3, **FAST).fit(X, np.c_[Y_CLASS, Y_CLASS])
    display = TrainingCurveDisplay.from_estimator(mg)
    assert display.usage_entropy.shape == (4, 2)
    assert len(display.axes_) == 2  # no validation score without early stopping


def test_usage_entropy_bounds():
    np.testing.assert_allclose(usage_entropy([[0.5, 0.5], [1.0, 0.0]]), [1.0, 0.0])


def test_expert_importance_from_result_single_and_per_task():
    result = Bunch(
        importances_mean=np.array([0.3, 0.1, -0.02]),
        importances_std=np.array([0.01, 0.02, 0.0]),
        importances=np.array([[0.3], [0.1], [-0.02]]),
    )
    display = ExpertImportanceDisplay.from_result(result, expert_names=["a", "b", "c"])
    widths = [patch.get_width() for patch in display.ax_.patches]
    np.testing.assert_allclose(widths, result.importances_mean)
    assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["a", "b", "c"]

    per_task = Bunch(
        importances_mean=np.arange(6.0).reshape(3, 2),
        importances_std=np.zeros((3, 2)),
    )
    display = ExpertImportanceDisplay.from_result(per_task)
    assert len(display.ax_.patches) == 6
    assert display.ax_.get_legend() is not None


def test_expert_importance_from_result_refuses_other_objects():
    with pytest.raises(TypeError, match="permutation_importance"):
        ExpertImportanceDisplay.from_result({"importances": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="same shape"):
        ExpertImportanceDisplay.from_result(
            {"importances_mean": np.zeros(3), "importances_std": np.zeros(2)}
        )


@pytest.mark.parametrize(
    "display, args",
    [
        (ExpertUsageDisplay, ()),
        (GateWeightsDisplay, (X,)),
        (TrainingCurveDisplay, ()),
        (ExpertImportanceDisplay, (X, Y_CLASS)),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_other_estimators_are_refused_with_what_is_accepted(display, args):
    model = LogisticRegression().fit(X, Y_CLASS)
    with pytest.raises(TypeError, match="accepts a fitted skmoe estimator"):
        display.from_estimator(model, *args)


def test_unfitted_and_gateless_estimators():
    with pytest.raises(NotFittedError):
        ExpertUsageDisplay.from_estimator(MixtureOfExpertsClassifier())
    gateless = MultiGateMoERegressor(architecture="shared_bottom", **FAST)
    gateless.fit(X, np.c_[X[:, 0], X[:, 1]])
    with pytest.raises(TypeError, match="needs a model with gates"):
        GateWeightsDisplay.from_estimator(gateless, X)


def test_missing_matplotlib_names_the_extra(classifier, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skmoe\[plot\]"):
        ExpertUsageDisplay.from_estimator(classifier)


def test_expert_importance_from_estimator_calls_expert_importance(monkeypatch):
    """from_estimator hands the pipeline's transformed rows to
    skmoe.inspection.expert_importance (stood in for here) and plots its Bunch."""
    import types

    calls = {}

    def expert_importance(estimator, X, y, *, method="shapley", **kwargs):
        calls.update(estimator=estimator, X=X, y=y, method=method, kwargs=kwargs)
        n = estimator.n_experts
        return Bunch(
            importances_mean=np.linspace(0.1, 0.3, n),
            importances_std=np.zeros(n),
            importances=np.zeros((n, 1)),
        )

    module = types.ModuleType("skmoe.inspection._importance")
    module.expert_importance = expert_importance
    monkeypatch.setitem(sys.modules, "skmoe.inspection._importance", module)
    pipe = make_pipeline(
        StandardScaler(), MixtureOfExpertsClassifier(n_experts=3, **FAST)
    ).fit(X * 10, Y_CLASS)
    display = ExpertImportanceDisplay.from_estimator(
        pipe, X * 10, Y_CLASS, method="ablation", random_state=0
    )
    assert calls["estimator"] is pipe[-1]
    np.testing.assert_allclose(calls["X"], pipe[0].transform(X * 10))
    assert calls["method"] == "ablation" and calls["kwargs"] == {"random_state": 0}
    widths = [patch.get_width() for patch in display.ax_.patches]
    np.testing.assert_allclose(widths, [0.1, 0.2, 0.3])
