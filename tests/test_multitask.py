"""MultiGateMoE: mixed task types, learned task weights, task chains, class weights."""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.metrics import r2_score, roc_auc_score

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MultiGateMoE,
    MultiGateMoEClassifier,
)
from skmoe._engine import MultiOutputCrossEntropy
from skmoe._engine.multitask import MixedTaskObjective
from skmoe.datasets import make_click_conversion

FAST = dict(
    max_iter=25,
    random_state=0,
    device="cpu",
    learning_rate_init=1e-2,
    expert_hidden_layer_sizes=(16,),
)


def _mixed(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = pd.DataFrame(
        {
            "click": (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int),
            "colour": np.where(
                X[:, 1] > 0.5, "red", np.where(X[:, 1] < -0.5, "blue", "green")
            ),
            "dwell": 2 * X[:, 2] + X[:, 0] + rng.normal(scale=0.1, size=n),
        }
    )
    return X, y


@pytest.fixture(scope="module")
def mixed():
    return _mixed()


@pytest.fixture(scope="module")
def fitted(mixed):
    X, y = mixed
    return MultiGateMoE(**FAST).fit(X, y)


def test_dataframe_tasks_types_predictions_and_scores(mixed, fitted):
    X, y = mixed
    assert fitted.task_types_ == {
        "click": "binary",
        "colour": "multiclass",
        "dwell": "regression",
    }
    assert fitted.task_names_ == ["click", "colour", "dwell"]
    np.testing.assert_array_equal(fitted.classes_["colour"], ["blue", "green", "red"])
    pred = fitted.predict(X)
    assert isinstance(pred, pd.DataFrame)
    assert pred.columns.tolist() == ["click", "colour", "dwell"]
    assert set(pred["colour"]) <= {"blue", "green", "red"}
    proba = fitted.predict_proba(X)
    assert sorted(proba) == ["click", "colour"]
    assert proba["colour"].shape == (300, 3)
    np.testing.assert_allclose(proba["click"].sum(1), 1.0)
    # predict is the most probable class of predict_proba
    np.testing.assert_array_equal(
        fitted.classes_["colour"][proba["colour"].argmax(1)], pred["colour"]
    )
    scores = fitted.score_tasks(X, y)
    assert scores["click"] == pytest.approx((pred["click"] == y["click"]).mean())
    assert scores["dwell"] == pytest.approx(r2_score(y["dwell"], pred["dwell"]))
    assert fitted.score(X, y) == pytest.approx(np.mean(list(scores.values())))
    assert scores["click"] > 0.9 and scores["colour"] > 0.85 and scores["dwell"] > 0.9


def test_ndarray_y_needs_types_or_infers_them(mixed):
    X, y = mixed
    Y = y.to_numpy()  # object array: ints, strings and floats
    model = MultiGateMoE(**FAST).fit(X, Y)
    assert model.task_types_ == {0: "binary", 1: "multiclass", 2: "regression"}
    pred = model.predict(X[:4])
    assert pred.dtype == object and pred.shape == (4, 3)
    # A numeric array: "auto" would call 0/1/2 codes multiclass; task_types says.
    numeric = np.column_stack([y["click"], y["dwell"]])
    model = MultiGateMoE(task_types=["binary", "regression"], **FAST).fit(X, numeric)
    assert model.predict(X[:4]).dtype == np.float64
    one = MultiGateMoE(**FAST).fit(X, y["dwell"].to_numpy())
    assert one.predict(X[:4]).shape == (4,)


@pytest.mark.parametrize(
    "params",
    [
        dict(architecture="mmoe", top_k=2),
        dict(architecture="cgc", gating="noisy", top_k=1),
        dict(architecture="ple", gating="switch"),
        dict(architecture="shared_bottom"),
        dict(architecture="omoe"),
    ],
    ids=["mmoe-top2", "cgc-noisy", "ple-switch", "shared_bottom", "omoe"],
)
def test_every_architecture_and_routing_learns_mixed_tasks(mixed, params):
    X, y = mixed
    model = MultiGateMoE(**{**FAST, **params}).fit(X, y)
    scores = model.score_tasks(X, y)
    assert scores["click"] > 0.85 and scores["dwell"] > 0.8, scores
    assert model.gate_weights(X[:3]).shape[:2] == (3, 3)


def test_missing_labels_are_masked(mixed):
    X, y = mixed
    y = y.astype({"colour": object})
    y.loc[::3, "dwell"] = np.nan
    y.loc[1::4, "colour"] = None
    with pytest.raises(ValueError, match="missing label in task 'colour'"):
        MultiGateMoE(**FAST).fit(X, y)
    model = MultiGateMoE(allow_missing_labels=True, **FAST).fit(X, y)
    # What stands in a masked cell does not matter.
    other = y.copy()
    other.loc[::3, "dwell"] = np.nan
    other.loc[1::4, "colour"] = pd.NA
    again = MultiGateMoE(allow_missing_labels=True, **FAST).fit(X, other)
    pd.testing.assert_frame_equal(model.predict(X), again.predict(X))
    scores = model.score_tasks(X, y)  # the missing labels are left out
    assert np.isfinite(list(scores.values())).all()


@pytest.mark.parametrize(
    "change, params, match",
    [
        (lambda y: y.assign(click=1), {}, "Task 'click' has one value only"),
        (
            lambda y: y,
            {"task_types": {"colour": "regression"}},
            "task 'colour' is 'regression' but its labels are not numbers",
        ),
        (
            lambda y: y,
            {"task_types": {"colour": "binary"}},
            "task 'colour' is 'binary' but it has 3",
        ),
        (
            lambda y: y,
            {"task_types": {"dwell": "multiclass"}},
            "task 'dwell' is 'multiclass' but its labels are continuous",
        ),
        (lambda y: y, {"task_chain": {"buy": "click"}}, "task 'buy', which is not"),
        (
            lambda y: y.assign(other=y["click"]),
            {"task_chain": {"click": "other", "other": "click"}},
            "cycle: 'click' -> 'other' -> 'click'",
        ),
        (
            lambda y: y,
            {"task_chain": {"colour": "click"}},
            "task 'colour' of type 'multiclass'",
        ),
        (
            lambda y: y.assign(dwell=np.nan),
            {"allow_missing_labels": True},
            "Every label of task 'dwell' is missing",
        ),
        (
            lambda y: y,
            {"class_weight": {"dwell": "balanced"}},
            "class_weight names task 'dwell'",
        ),
    ],
    ids=[
        "one-value",
        "regression-strings",
        "binary-three",
        "multiclass-floats",
        "unknown-chain-task",
        "chain-cycle",
        "chain-not-binary",
        "all-missing",
        "class-weight-regression",
    ],
)
def test_bad_tasks_are_value_errors_naming_the_task(mixed, change, params, match):
    X, y = mixed
    with pytest.raises(ValueError, match=match):
        MultiGateMoE(**{**FAST, **params}).fit(X, change(y))


def test_sample_weight_partial_fit_and_early_stopping(mixed):
    X, y = mixed
    w = np.random.default_rng(1).uniform(0.5, 2, len(X))
    model = MultiGateMoE(**FAST).fit(X, y, sample_weight=w)
    assert not model.predict(X).equals(MultiGateMoE(**FAST).fit(X, y).predict(X))
    stream = MultiGateMoE(**FAST)
    stream.partial_fit(X[:100], y[:100], classes={"colour": ["blue", "green", "red"]})
    first = stream.score(X, y)
    for _ in range(5):
        stream.partial_fit(X[100:], y[100:])
    assert stream.n_iter_ == 6 and stream.score(X, y) > first + 0.1
    early = MultiGateMoE(early_stopping=True, **{**FAST, "max_iter": 200}).fit(X, y)
    assert early.best_validation_score_ == max(early.validation_scores_)
    assert early.n_iter_ < 200


def test_class_weight_equals_sample_weight_everywhere(mixed):
    X, y = mixed
    weights = np.where(y["click"] == 1, 3.0, 1.0) * np.where(
        y["colour"] == "red", 0.5, 1.0
    )
    a = MultiGateMoE(
        class_weight={"click": {0: 1.0, 1: 3.0}, "colour": {"red": 0.5}}, **FAST
    ).fit(X, y)
    b = MultiGateMoE(**FAST).fit(X, y, sample_weight=weights)
    pd.testing.assert_frame_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(
        a.predict_proba(X)["click"], b.predict_proba(X)["click"]
    )
    yb = y["click"].to_numpy()
    n0, n1 = np.bincount(yb)
    balanced = np.where(yb == 1, len(yb) / (2 * n1), len(yb) / (2 * n0))
    for est in (
        MixtureOfExpertsClassifier(max_iter=5, random_state=0),
        MultiGateMoEClassifier(max_iter=5, random_state=0),
    ):
        a = clone(est).set_params(class_weight="balanced").fit(X, yb)
        b = clone(est).fit(X, yb, sample_weight=balanced)
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="partial_fit"):
        MixtureOfExpertsClassifier(class_weight="balanced").partial_fit(
            X, yb, classes=[0, 1]
        )
    with pytest.raises(ValueError, match="class_weight names classes \\[7\\]"):
        MixtureOfExpertsClassifier(class_weight={7: 2.0}).fit(X, yb)


def test_uncertainty_weights_favour_the_less_noisy_task():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    signal = X[:, 0] + X[:, 1]
    y = pd.DataFrame(
        {
            "clean": signal + rng.normal(scale=0.05, size=600),
            "noisy": signal + rng.normal(scale=2.0, size=600),
        }
    )
    model = MultiGateMoE(task_weights="uncertainty", **{**FAST, "max_iter": 60})
    model.fit(X, y)
    clean, noisy = model.task_weights_
    assert clean > 3 * noisy
    assert len(model.task_weights_curve_) == model.n_iter_
    np.testing.assert_allclose(model.task_weights_curve_[-1], model.task_weights_)


def test_gradnorm_weights_move_and_sum_to_the_task_count(mixed):
    X, y = mixed
    model = MultiGateMoE(task_weights="gradnorm", **FAST).fit(X, y)
    assert model.task_weights_.sum() == pytest.approx(3.0, rel=1e-5)
    assert not np.allclose(model.task_weights_, 1.0)
    assert len(model.task_weights_curve_) == model.n_iter_
    assert model.score_tasks(X, y)["dwell"] > 0.8


@pytest.mark.parametrize("weights", [None, "uncertainty", "gradnorm"])
def test_save_and_load_round_trip(tmp_path, mixed, weights):
    X, y = mixed
    model = MultiGateMoE(
        task_weights=weights,
        task_types={"click": "binary"},
        class_weight={"click": {0: 1.0, 1: 2.0}},
        **{**FAST, "max_iter": 3},
    ).fit(X, y)
    path = tmp_path / "mixed.safetensors"
    skmoe.save(model, path)
    loaded = skmoe.load(path)
    pd.testing.assert_frame_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.task_weights_, model.task_weights_)
    assert loaded.get_params() == model.get_params()
    loaded.partial_fit(X, y)  # training continues from the loaded weights


def test_chained_loss_is_the_cross_entropy_of_the_joint_probability():
    objective = MixedTaskObjective(
        [MultiOutputCrossEntropy([2]), MultiOutputCrossEntropy([2])], chains={1: [0]}
    )
    torch.manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64)
    # click, conversion: unclicked rows (conversion unknown or 0), clicked rows, and
    # a row whose click is unknown.
    targets = torch.tensor(
        [[0, torch.nan], [0, 0], [1, 0], [1, 1], [torch.nan, 1], [1, torch.nan]],
        dtype=torch.float64,
    )
    losses = objective.task_row_losses(logits, targets)
    p_click = torch.softmax(logits[:, :2], 1)[:, 1]
    p_conv = torch.softmax(logits[:, 2:], 1)[:, 1]
    joint = p_click * p_conv
    expected = torch.stack(
        [
            -torch.log(1 - joint[0]),
            -torch.log(1 - joint[1]),
            -torch.log(1 - joint[2]),
            -torch.log(joint[3]),
            torch.tensor(0.0, dtype=torch.float64),  # click unknown: joint unknown
            torch.tensor(0.0, dtype=torch.float64),  # conversion unknown after click
        ]
    )
    torch.testing.assert_close(losses[:, 1], expected)
    # The click task keeps its own cross-entropy on every row where it is known.
    torch.testing.assert_close(
        losses[:4, 0], -torch.log_softmax(logits[:4, :2], 1)[[0, 1, 2, 3], [0, 0, 1, 1]]
    )


def test_task_chain_learns_conversion_from_clicked_rows_only():
    X, Y, _ = make_click_conversion(n_samples=3000, click_rate=0.3, random_state=0)
    y = pd.DataFrame(Y, columns=["click", "conversion"])
    train, test = slice(0, 2000), slice(2000, None)
    # No allow_missing_labels: a chained task needs no label where its parent is 0.
    model = MultiGateMoE(
        task_chain={"conversion": "click"},
        task_types="binary",
        **{**FAST, "max_iter": 15, "learning_rate_init": 3e-3},
    ).fit(X[train], y[train])
    proba = model.predict_proba(X[test])
    clicked = Y[test, 0] == 1
    assert roc_auc_score(Y[test][clicked, 1], proba["conversion"][clicked, 1]) > 0.65
    joint = proba["click"][:, 1] * proba["conversion"][:, 1]
    observed = np.mean(clicked & (Y[test, 1] == 1))
    assert joint.mean() == pytest.approx(observed, abs=0.03)
    with pytest.raises(ValueError, match="missing label in task 'conversion'"):
        MultiGateMoE(task_types="binary", **FAST).fit(X[train], y[train])


def test_predictions_survive_pickle_subsets_and_refits(mixed, fitted):
    # What scikit-learn's pickle, subset, row-order and idempotence checks test,
    # on predict_proba's dict.
    X, y = mixed
    proba = fitted.predict_proba(X)
    loaded = pickle.loads(pickle.dumps(fitted))
    for task, p in loaded.predict_proba(X).items():
        np.testing.assert_array_equal(p, proba[task])
    order = np.random.default_rng(0).permutation(len(X))
    for task, p in fitted.predict_proba(X[order]).items():
        np.testing.assert_allclose(p, proba[task][order], rtol=1e-12)
    for task, p in fitted.predict_proba(X[:7]).items():
        np.testing.assert_allclose(p, proba[task][:7], rtol=1e-12)
    refit = clone(fitted).fit(X, y)
    for task, p in refit.predict_proba(X).items():
        np.testing.assert_array_equal(p, proba[task])
    sparse = fitted.predict_proba(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse["colour"], proba["colour"], rtol=1e-12)


def test_early_stopping_scoring_per_task_or_averaged(mixed):
    X, y = mixed
    seen = []

    def auc(estimator, X_val, y_val, sample_weight=None):
        # A scorer callable gets the task's validation predictions as an estimator.
        seen.append((estimator.classes_.tolist(), len(y_val)))
        return roc_auc_score(y_val, estimator.predict_proba(X_val)[:, 1])

    params = {**FAST, "max_iter": 40, "early_stopping": True, "n_iter_no_change": 5}
    model = MultiGateMoE(scoring={"click": auc, "dwell": "r2"}, **params).fit(X, y)
    assert seen[0] == ([0, 1], 30) and len(seen) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_validation_score_ > 0.9
    log_loss = MultiGateMoE(scoring={"colour": "neg_log_loss"}, **params).fit(X, y)
    assert all(s < 0 for s in log_loss.validation_scores_)
    with pytest.raises(ValueError, match="scoring failed on task 'dwell'"):
        MultiGateMoE(scoring="neg_log_loss", **params).fit(X, y)
    with pytest.raises(ValueError, match=r"scoring names task\(s\) \['buy'\]"):
        MultiGateMoE(scoring={"buy": "r2"}, **params).fit(X, y)
