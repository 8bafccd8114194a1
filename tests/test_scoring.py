"""``scoring=``: early stopping on the metric that matters, for every estimator."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import mean_absolute_error, roc_auc_score

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

FAST = dict(
    n_experts=2,
    expert_hidden_layer_sizes=(8,),
    random_state=0,
    n_threads=1,
    early_stopping=True,
    learning_rate_init=1e-2,
)


@pytest.fixture(scope="module")
def imbalanced():
    X, y = make_classification(300, 6, n_informative=4, weights=[0.85], random_state=0)
    return X, np.where(y == 1, "churn", "stay")


def scripted(values):
    """A scorer callable returning ``values`` in turn, recording what it was given."""
    calls = []

    def scorer(estimator, X, y):
        calls.append((estimator, X, y))
        return values[len(calls) - 1]

    scorer.calls = calls
    return scorer


@pytest.mark.parametrize(
    "Estimator", [MixtureOfExpertsClassifier, MultiGateMoEClassifier]
)
def test_best_epoch_of_the_given_score_is_restored(imbalanced, Estimator):
    X, y = imbalanced
    if Estimator is MultiGateMoEClassifier:
        y = np.column_stack([y, np.where(X[:, 0] > 0, "a", "b")])
    scorer = scripted([0.1, 0.9, 0.2, 0.3, 0.25, 0.0])
    # A constant step size: epoch 2 of 6 is then epoch 2 of 2.
    params = dict(FAST, max_iter=6, n_iter_no_change=10, tol=0.0)
    params["learning_rate"] = "constant"
    model = Estimator(scoring=scorer, **params).fit(X, y)
    assert model.validation_scores_ == [0.1, 0.9, 0.2, 0.3, 0.25, 0.0]
    assert model.best_validation_score_ == 0.9
    # The weights kept are those after epoch 2: the same rows and seed stopped there.
    two = Estimator(scoring=scripted([0.1, 0.9]), **dict(params, max_iter=2))
    two.fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X)[0], two.predict_proba(X)[0])
    # The scorer saw the estimator reading the validation rows, in y's own labels.
    estimator, X_val, y_val = scorer.calls[0]
    assert len(X_val) == len(y_val) == 30
    assert set(np.ravel(y_val)) <= set(np.ravel(y))
    assert estimator.predict(X_val).shape == np.shape(y_val)
    assert not hasattr(model, "_raw_output") or "_raw_output" not in vars(model)


def test_roc_auc_scores_the_validation_predictions(imbalanced):
    X, y = imbalanced
    seen = []

    def auc(estimator, X_val, y_val):
        value = roc_auc_score(y_val, estimator.predict_proba(X_val)[:, 1])
        seen.append(value)
        return value

    params = dict(FAST, max_iter=8, n_iter_no_change=10)
    by_name = MixtureOfExpertsClassifier(scoring="roc_auc", **params).fit(X, y)
    by_callable = MixtureOfExpertsClassifier(scoring=auc, **params).fit(X, y)
    np.testing.assert_allclose(by_name.validation_scores_, seen, rtol=1e-12)
    assert by_name.validation_scores_ == by_callable.validation_scores_
    # Not the default (accuracy), which moves in steps of 1/30 on 30 rows.
    accuracy = MixtureOfExpertsClassifier(**params).fit(X, y).validation_scores_
    assert accuracy != by_name.validation_scores_


@pytest.mark.parametrize(
    "Estimator", [MixtureOfExpertsRegressor, MultiGateMoERegressor]
)
def test_regression_scores_are_in_the_targets_units(Estimator):
    X, y = make_regression(200, 5, n_targets=2, noise=1.0, random_state=0)
    y = 1000 + 50 * y  # far from standardised
    seen = []

    def mae(estimator, X_val, y_val):
        seen.append(-mean_absolute_error(y_val, estimator.predict(X_val)))
        return seen[-1]

    params = dict(FAST, max_iter=5, n_iter_no_change=10)
    model = Estimator(scoring="neg_mean_absolute_error", **params).fit(X, y)
    Estimator(scoring=mae, **params).fit(X, y)
    np.testing.assert_allclose(model.validation_scores_, seen, rtol=1e-10)
    spread = y.std()  # in y's units, not standardised ones
    assert all(-3 * spread < s < -0.01 * spread for s in seen)


def test_sample_weight_reaches_the_scorer(imbalanced):
    X, y = imbalanced
    weights = []

    def weighted(estimator, X_val, y_val, sample_weight=None):
        weights.append(sample_weight)
        return 0.0

    params = dict(FAST, max_iter=2)
    MixtureOfExpertsClassifier(scoring=weighted, **params).fit(X, y)
    assert weights == [None, None]  # equal weights: the plain call
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    weights.clear()
    MixtureOfExpertsClassifier(scoring=weighted, **params).fit(X, y, sample_weight)
    assert len(weights) == 2 and weights[0].shape == (30,)
    # The validation rows' own weights, up to the scale the engine keeps them at.
    given = weights[0]
    assert given.min() > 0 and given.max() > 1.5 * given.min()
    assert given.max() / given.min() <= sample_weight.max() / sample_weight.min() + 1e-6


def test_scoring_is_a_parameter_like_any_other(imbalanced):
    X, y = imbalanced
    model = MixtureOfExpertsClassifier(scoring="roc_auc")
    assert clone(model).get_params()["scoring"] == "roc_auc"
    # Without early stopping there is no validation score to replace.
    fitted = model.set_params(max_iter=2, n_threads=1).fit(X, y)
    assert fitted.validation_scores_ is None


@pytest.mark.parametrize(
    "Estimator, scoring, match",
    [
        (MixtureOfExpertsClassifier, "accuracy_of_sorts", "is not a scorer"),
        (MixtureOfExpertsRegressor, "roc_auc", "failed on the validation rows"),
        (MultiGateMoERegressor, "accuracy", "failed on the validation rows"),
    ],
)
def test_unusable_scoring_is_a_value_error_naming_the_estimator(
    Estimator, scoring, match
):
    X, y = make_regression(100, 4, n_targets=2, random_state=0)
    if Estimator is MixtureOfExpertsClassifier:
        y = (y > 0).astype(int)
    with pytest.raises(ValueError, match=f"{Estimator.__name__}: scoring=.*{match}"):
        Estimator(scoring=scoring, **dict(FAST, max_iter=2)).fit(X, y)


def test_save_refuses_a_scorer_function_and_keeps_a_name(imbalanced, tmp_path):
    import skmoe

    X, y = imbalanced
    params = dict(FAST, max_iter=2)
    by_function = MixtureOfExpertsClassifier(scoring=scripted([0.0, 0.0]), **params)
    with pytest.raises(
        TypeError, match=r"cannot store the parameter scoring=.*holds a function"
    ):
        skmoe.save(by_function.fit(X, y), tmp_path / "function.skmoe")
    by_name = MixtureOfExpertsClassifier(scoring="roc_auc", **params).fit(X, y)
    skmoe.save(by_name, tmp_path / "name.skmoe")
    loaded = skmoe.load(tmp_path / "name.skmoe")
    assert loaded.scoring == "roc_auc"
    np.testing.assert_array_equal(loaded.predict_proba(X), by_name.predict_proba(X))
    mixed = skmoe.MultiGateMoE(scoring={0: scripted([0.0, 0.0])}, **params)
    with pytest.raises(TypeError, match="cannot store the parameter scoring="):
        skmoe.save(mixed.fit(X, np.column_stack([y, y])), tmp_path / "mixed.skmoe")
