"""Expert subsets, importance and pruning."""

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris
from sklearn.exceptions import NotFittedError

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe.inspection import expert_importance
from skmoe.inspection._importance import CoalitionGame
from skmoe.nn import MixtureOfExperts, MultiGateMixtureOfExperts, keep_experts


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X[:300], y[:300]


@pytest.fixture(scope="module")
def regressor(diabetes):
    X, y = diabetes
    return MixtureOfExpertsRegressor(
        n_experts=5, top_k=2, max_iter=30, random_state=0, n_threads=1
    ).fit(X, y)


@pytest.fixture(scope="module")
def multigate():
    X, y = load_iris(return_X_y=True)
    Y = np.column_stack([y, X[:, 0] > 5.8])
    return (
        MultiGateMoEClassifier(
            architecture="cgc", n_experts=4, max_iter=20, random_state=0, n_threads=1
        ).fit(X, Y),
        X,
        Y,
    )


@pytest.mark.parametrize("top_k", [None, 1, 2, 3])
@pytest.mark.parametrize("gating", ["softmax", "noisy"])
def test_keep_experts_equals_masking_the_gate(top_k, gating):
    torch.manual_seed(0)
    layer = MixtureOfExperts(5, 3, n_experts=6, top_k=top_k, gating=gating)
    layer = layer.double().eval()
    keep = [4, 1, 3]
    small = keep_experts(layer, keep)
    masked = copy.deepcopy(layer)
    with torch.no_grad():
        for e in set(range(6)) - set(keep):
            masked.gate.router.bias[e] = -math.inf
    if top_k is not None:
        masked.gate.top_k = min(top_k, 3)
    x = torch.randn(40, 5, dtype=torch.float64)
    torch.testing.assert_close(small(x), masked(x))
    fresh = MixtureOfExperts(5, 3, n_experts=3, top_k=small.gate.top_k, gating=gating)
    fresh.load_state_dict(small.state_dict())  # the shapes a module of 3 has
    assert layer.n_experts == 6  # the original is untouched


@pytest.mark.parametrize("architecture", ["mmoe", "omoe", "cgc", "ple"])
def test_keep_experts_multigate_builds_the_smaller_module(architecture):
    model = MultiGateMixtureOfExperts(6, [1, 3], architecture=architecture)
    small = keep_experts(model.eval(), [3, 0])
    fresh = MultiGateMixtureOfExperts(
        6, [1, 3], architecture=architecture, n_shared_experts=2
    )
    fresh.load_state_dict(small.state_dict())
    x = torch.randn(7, 6)
    torch.testing.assert_close(fresh.eval()(x), small(x))
    assert small.gate_weights(x).shape[-1] == fresh.n_experts


def test_keep_experts_rejects_bad_indices():
    layer = MixtureOfExperts(3, 1, n_experts=3)
    with pytest.raises(ValueError, match="distinct"):
        keep_experts(layer, [0, 0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        keep_experts(layer, [3])
    with pytest.raises(TypeError, match="MixtureOfExperts"):
        keep_experts(torch.nn.Linear(2, 2), [0])


def test_exact_shapley_is_efficient(regressor, diabetes):
    X, y = diabetes
    result = expert_importance(regressor, X, y)
    assert result.importances_mean.shape == (5,)
    assert result.importances.shape == (5, 1)
    assert result.full_score == pytest.approx(regressor.score(X, y), abs=1e-12)
    total = result.full_score - result.baseline_score
    assert result.importances_mean.sum() == pytest.approx(total, abs=1e-12)
    # The empty mixture predicts the training mean: R² near zero.
    assert abs(result.baseline_score) < 0.05


def test_sampled_shapley_is_efficient_and_close_to_exact(regressor, diabetes):
    X, y = diabetes
    exact = expert_importance(regressor, X, y).importances_mean
    sampled = expert_importance(regressor, X, y, n_permutations=40, random_state=0)
    assert sampled.importances.shape == (5, 40)
    total = sampled.full_score - sampled.baseline_score
    assert sampled.importances_mean.sum() == pytest.approx(total, abs=1e-12)
    # Within four standard errors of the exact values.
    error = sampled.importances_std / np.sqrt(40)
    assert np.all(np.abs(sampled.importances_mean - exact) <= 4 * error + 1e-9)


def test_ablation_and_usage(regressor, diabetes):
    X, y = diabetes
    ablation = expert_importance(regressor, X, y, method="ablation")
    assert ablation.importances_mean.shape == (5,)
    # Greedy elimination's first step drops the expert whose masking costs least.
    pruned = skmoe.prune_experts(
        regressor, X, y, n_experts=4, method="greedy", fine_tune_iter=0
    )
    dropped = set(range(5)) - set(pruned.kept_experts_)
    assert dropped == {int(np.argmin(ablation.importances_mean))}
    lost = ablation.full_score - pruned.score(X, y)
    assert lost == pytest.approx(ablation.importances_mean.min(), abs=1e-10)
    usage = expert_importance(regressor, X, y, method="usage").importances_mean
    np.testing.assert_allclose(usage, regressor.gate_weights(X).mean(axis=0))
    assert usage.sum() == pytest.approx(1.0)


def test_multigate_importance_per_task(multigate):
    clf, X, Y = multigate
    result = expert_importance(clf, X, Y)
    assert result.importances_mean.shape == (4, 2)
    for t in range(2):
        assert result.full_score[t] == pytest.approx(
            np.mean(clf.predict(X)[:, t] == Y[:, t])
        )
    np.testing.assert_allclose(
        result.importances_mean.sum(axis=0),
        result.full_score - result.baseline_score,
        atol=1e-12,
    )
    loss = expert_importance(clf, X, Y, method="ablation", scoring="neg_log_loss")
    assert loss.importances_mean.shape == (4, 2)
    assert np.all(loss.full_score < 0)


def test_importance_bad_input(regressor, diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="method must be one of"):
        expert_importance(regressor, X, y, method="gain")
    with pytest.raises(ValueError, match="n_permutations"):
        expert_importance(regressor, X, y, n_permutations=0)
    with pytest.raises(ValueError, match="features"):
        expert_importance(regressor, X[:, :3], y)
    with pytest.raises(NotFittedError):
        expert_importance(MixtureOfExpertsRegressor(), X, y)
    bottom = MultiGateMoERegressor(architecture="shared_bottom", max_iter=2)
    bottom.fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="shared_bottom"):
        expert_importance(bottom, X, np.column_stack([y, y]))


def _weights(estimator):
    return {k: v.clone() for k, v in estimator.module_.state_dict().items()}


@pytest.mark.parametrize(
    "method", ["greedy", "shapley", "shapley_backward", "usage", "random"]
)
def test_prune_returns_a_new_working_estimator(regressor, diabetes, method, tmp_path):
    X, y = diabetes
    before = _weights(regressor)
    prediction = regressor.predict(X)
    pruned = skmoe.prune_experts(
        regressor, X, y, n_experts=3, method=method, fine_tune_iter=2, random_state=0
    )
    assert type(pruned) is MixtureOfExpertsRegressor
    assert pruned.n_experts == 3 and pruned.top_k == 2
    assert pruned.gate_weights(X[:5]).shape == (5, 3)
    # Every prediction path agrees: NumPy small batches and torch chunks.
    np.testing.assert_allclose(pruned.predict(X[:4]), pruned.predict(X)[:4])
    assert np.isfinite(pruned.score(X, y))
    path = tmp_path / "pruned.safetensors"
    skmoe.save(pruned, path)
    np.testing.assert_array_equal(skmoe.load(path).predict(X), pruned.predict(X))
    # The original is untouched.
    for key, value in _weights(regressor).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    np.testing.assert_array_equal(regressor.predict(X), prediction)
    assert regressor.n_experts == 5


def test_zero_shot_pruning_is_the_coalition(regressor, diabetes):
    X, y = diabetes
    pruned = skmoe.prune_experts(
        regressor, X, y, n_experts=2, method="shapley", fine_tune_iter=0
    )
    game = CoalitionGame(regressor, X, y)
    assert pruned.score(X, y) == pytest.approx(
        game.value(pruned.kept_experts_)[0], abs=1e-10
    )
    values = expert_importance(regressor, X, y).importances_mean
    assert set(pruned.kept_experts_) == set(np.argsort(-values)[:2].tolist())


def test_prune_multigate(multigate, tmp_path):
    clf, X, Y = multigate
    pruned = skmoe.prune_experts(clf, X, Y, n_experts=2, fine_tune_iter=2)
    assert type(pruned) is MultiGateMoEClassifier
    assert pruned.gate_weights(X[:3]).shape == (3, 2, 2 + 2)
    assert pruned.predict(X).shape == Y.shape
    path = tmp_path / "mg.safetensors"
    skmoe.save(pruned, path)
    np.testing.assert_array_equal(skmoe.load(path).predict(X), pruned.predict(X))
    assert clf.n_experts == 4


def test_prune_bad_input(regressor, diabetes):
    X, y = diabetes
    for n in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="n_experts must be an int from 1"):
            skmoe.prune_experts(regressor, X, y, n_experts=n)
    with pytest.raises(ValueError, match="method must be one of"):
        skmoe.prune_experts(regressor, X, y, n_experts=2, method="best")
    with pytest.raises(ValueError, match="fine_tune_iter"):
        skmoe.prune_experts(regressor, X, y, n_experts=2, fine_tune_iter=-1)
    with pytest.raises(ValueError, match="features"):
        skmoe.prune_experts(regressor, X[:, :4], y, n_experts=2)
    with pytest.raises(NotFittedError):
        skmoe.prune_experts(MixtureOfExpertsClassifier(), X, y, n_experts=2)


def test_merge_experts(regressor, diabetes, tmp_path):
    X, y = diabetes
    before = _weights(regressor)
    same = skmoe.merge_experts(regressor, X, n_experts=5, fine_tune_iter=0)
    # Merging nothing changes nothing.
    np.testing.assert_allclose(same.predict(X), regressor.predict(X), rtol=1e-6)
    merged = skmoe.merge_experts(regressor, X, y, n_experts=2, fine_tune_iter=2)
    assert merged.n_experts == 2 and merged.top_k == 2
    assert sorted(e for c in merged.expert_clusters_ for e in c) == list(range(5))
    assert merged.expert_usage_.sum() == pytest.approx(1.0)
    path = tmp_path / "merged.safetensors"
    skmoe.save(merged, path)
    np.testing.assert_array_equal(skmoe.load(path).predict(X), merged.predict(X))
    for key, value in _weights(regressor).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="fine_tune_alpha must be a number in"):
        skmoe.merge_experts(regressor, X, y, n_experts=2, fine_tune_alpha=1.5)
    with pytest.raises(ValueError, match="n_experts must be an int from 1"):
        skmoe.merge_experts(regressor, X, n_experts=0)


def test_merge_without_targets_fine_tunes_towards_the_original(regressor, diabetes):
    X, _ = diabetes
    original = regressor.predict(X)
    as_merged = skmoe.merge_experts(regressor, X, n_experts=2, fine_tune_iter=0)
    tuned = skmoe.merge_experts(regressor, X, n_experts=2, fine_tune_iter=20)
    assert tuned.n_iter_ > regressor.n_iter_  # it trained, without y
    gap_before = np.mean((as_merged.predict(X) - original) ** 2)
    assert np.mean((tuned.predict(X) - original) ** 2) < 0.5 * gap_before


def test_merge_defaults_keep_the_accuracy_that_merging_alone_loses():
    # The case docs/compression.md measures: digits, 8 top-2 experts merged into 4.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16, y, test_size=0.25, random_state=0, stratify=y
    )
    teacher = MixtureOfExpertsClassifier(
        n_experts=8, top_k=2, max_iter=60, random_state=0, n_threads=1
    ).fit(X_train, y_train)
    before = teacher.score(X_test, y_test)
    alone = skmoe.merge_experts(
        teacher, X_train, y_train, n_experts=4, fine_tune_iter=0
    )
    merged = skmoe.merge_experts(teacher, X_train, y_train, n_experts=4)
    assert alone.score(X_test, y_test) < before - 0.05  # what the default repairs
    assert merged.score(X_test, y_test) > before - 0.02


def test_merge_multigate(multigate):
    clf, X, Y = multigate
    merged = skmoe.merge_experts(clf, X, n_experts=2)
    assert merged.gate_weights(X[:2]).shape == (2, 2, 4)
    assert merged.predict(X).shape == Y.shape


def test_distill_regressor_keeps_the_teacher(regressor, diabetes):
    X, _ = diabetes
    before = _weights(regressor)
    student = skmoe.distill(regressor, X, max_iter=60)
    assert type(student) is MixtureOfExpertsRegressor
    assert student.n_experts == 1 and student.top_k is None
    assert student.expert_hidden_layer_sizes == (128,)  # 2 active experts of 64
    # Fitted on the teacher's predictions: it follows the teacher.
    agreement = np.corrcoef(student.predict(X), regressor.predict(X))[0, 1]
    assert agreement > 0.95
    for key, value in _weights(regressor).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_distill_classifier_soft_labels():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    teacher = MixtureOfExpertsClassifier(
        n_experts=4, top_k=2, max_iter=60, random_state=0, n_threads=1
    ).fit(X, labels)
    student = skmoe.distill(teacher, X, labels, alpha=0.3)
    assert list(student.classes_) == list(teacher.classes_)
    assert student.score(X, labels) >= teacher.score(X, labels) - 0.05
    given = MixtureOfExpertsClassifier(n_experts=2, max_iter=30, random_state=0)
    fitted = skmoe.distill(teacher, X, student=given)
    assert not hasattr(given, "module_") and fitted.n_experts == 2


def test_distill_bad_input(regressor, diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="must be a skmoe regressor"):
        skmoe.distill(regressor, X, student=MixtureOfExpertsClassifier())
    with pytest.raises(ValueError, match="must be a skmoe regressor"):
        from sklearn.linear_model import Ridge

        skmoe.distill(regressor, X, student=Ridge())
    with pytest.raises(ValueError, match="alpha"):
        skmoe.distill(regressor, X, y, alpha=2)
    with pytest.raises(NotFittedError):
        skmoe.distill(MixtureOfExpertsRegressor(), X)
    with pytest.raises(ValueError, match="features"):
        skmoe.distill(regressor, X[:, :2])


def test_distill_multigate(multigate):
    clf, X, Y = multigate
    student = skmoe.distill(clf, X, Y, max_iter=20)
    assert student.architecture == "shared_bottom"
    assert student.predict(X).shape == Y.shape


def test_apply_is_the_top_expert(regressor, diabetes, multigate):
    X, _ = diabetes
    np.testing.assert_array_equal(
        regressor.apply(X), regressor.gate_weights(X).argmax(axis=1)
    )
    clf, Xm, _ = multigate
    assert clf.apply(Xm).shape == (len(Xm), 2)
    own = clf.apply(Xm)
    # A task never routes to another task's own experts (CGC: 4 shared, 1 each).
    assert not np.any(own[:, 0] == 5) and not np.any(own[:, 1] == 4)


def test_model_size(regressor, multigate):
    from skmoe.inspection import model_size

    size = model_size(regressor)
    per_expert = 10 * 64 + 64 + 64 * 1 + 1
    assert size.params["experts"] == 5 * per_expert
    assert size.params["gates"] == 10 * 5 + 5
    assert size.active_params == 2 * per_expert + 55
    assert size.bytes["experts"] == 4 * 5 * per_expert
    assert size.total_bytes == sum(size.bytes.values())
    pruned = skmoe.prune_experts(
        regressor, *load_diabetes(return_X_y=True), n_experts=2, fine_tune_iter=0
    )
    assert model_size(pruned).bytes["experts"] * 5 == size.bytes["experts"] * 2
    clf = multigate[0]
    towers = model_size(clf)
    assert towers.params["towers"] > 0
    assert towers.active_params == towers.total_params


def test_clustered_datasets():
    from skmoe.datasets import (
        make_clustered_classification,
        make_clustered_regression,
    )

    X, y, clusters = make_clustered_regression(
        n_samples=500, n_clusters=3, return_clusters=True, random_state=1
    )
    assert X.shape == (500, 5) and set(clusters.tolist()) == {0, 1, 2}
    again = make_clustered_regression(n_samples=500, n_clusters=3, random_state=1)
    np.testing.assert_array_equal(again[1], y)
    # The clusters are what the inputs reveal: each centre is far from the others.
    centres = np.array([X[clusters == k].mean(0) for k in range(3)])
    assert (
        np.min(
            [
                np.linalg.norm(a - b)
                for i, a in enumerate(centres)
                for b in centres[i + 1 :]
            ]
        )
        > 2
    )
    _, yc, cc = make_clustered_classification(
        n_samples=400, n_classes=2, return_clusters=True, random_state=0
    )
    for k in np.unique(cc):  # balanced classes within every cluster
        assert abs(yc[cc == k].mean() - 0.5) < 0.05
    with pytest.raises(ValueError, match="n_classes"):
        make_clustered_classification(n_classes=1)
    with pytest.raises(ValueError, match="n_clusters"):
        make_clustered_regression(n_clusters=0)


def test_gate_only_fine_tuning_keeps_the_experts(regressor, diabetes):
    X, y = diabetes
    zero_shot = skmoe.prune_experts(
        regressor, X, y, n_experts=3, method="usage", fine_tune_iter=0
    )
    tuned = skmoe.prune_experts(
        regressor,
        X,
        y,
        n_experts=3,
        method="usage",
        fine_tune_iter=3,
        fine_tune_experts=False,
    )
    before, after = _weights(zero_shot), _weights(tuned)
    for key in before:
        if key.startswith("experts."):
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert not torch.equal(after["gate.router.weight"], before["gate.router.weight"])
    assert all(p.requires_grad for p in tuned.module_.parameters())
    everything = skmoe.prune_experts(
        regressor, X, y, n_experts=3, method="usage", fine_tune_iter=3
    )
    assert not torch.equal(
        _weights(everything)["experts.weights.0"], before["experts.weights.0"]
    )


def test_prune_ple_saves_and_loads(diabetes, tmp_path):
    X, y = diabetes
    Y = np.column_stack([y, X[:, 0]])
    ple = MultiGateMoERegressor(
        architecture="ple", n_experts=3, top_k=2, max_iter=5, random_state=0
    ).fit(X, Y)
    pruned = skmoe.prune_experts(ple, X, Y, n_experts=1, fine_tune_iter=0)
    assert pruned.n_experts == 1 and pruned.top_k == 2  # 1 shared + 1 own
    path = tmp_path / "ple.safetensors"
    skmoe.save(pruned, path)
    np.testing.assert_array_equal(skmoe.load(path).predict(X), pruned.predict(X))
    np.testing.assert_allclose(pruned.predict(X[:3]), pruned.predict(X)[:3])


def test_prune_then_distill_follows_the_teacher():
    from sklearn.metrics import r2_score

    from skmoe.datasets import make_clustered_regression

    X, y = make_clustered_regression(n_samples=500, n_clusters=4, random_state=0)
    teacher = MixtureOfExpertsRegressor(
        n_experts=4,
        top_k=1,
        expert_hidden_layer_sizes=(16,),
        max_iter=100,
        batch_size=64,
        tol=0,
        random_state=0,
        n_threads=1,
    ).fit(X, y)
    before, prediction = _weights(teacher), teacher.predict(X)
    # "usage" chooses on X alone, so only fine-tuning can read the labels.
    common = dict(n_experts=2, method="usage")
    zero_shot = skmoe.prune_experts(teacher, X, y, fine_tune_iter=0, **common)
    tuned = skmoe.prune_experts(
        teacher, X, y, fine_tune_iter=30, fine_tune_alpha=0.0, **common
    )
    # Trained on the teacher's outputs, the kept experts cover the removed ones'
    # rows: the pruned model follows the teacher, and scores close to it.
    follows = r2_score(prediction, tuned.predict(X))
    assert follows > max(0.95, r2_score(prediction, zero_shot.predict(X)))
    assert tuned.score(X, y) > zero_shot.score(X, y)
    assert tuned.score(X, y) > teacher.score(X, y) - 0.05
    for key, value in _weights(teacher).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    np.testing.assert_array_equal(teacher.predict(X), prediction)
    # fine_tune_alpha=0: the labels are not read at all.
    reversed_labels = skmoe.prune_experts(
        teacher, X, y[::-1], fine_tune_iter=30, fine_tune_alpha=0.0, **common
    )
    np.testing.assert_array_equal(reversed_labels.predict(X), tuned.predict(X))
    with_labels = skmoe.prune_experts(
        teacher, X, y[::-1], fine_tune_iter=30, fine_tune_alpha=0.5, **common
    )
    assert not np.array_equal(with_labels.predict(X), tuned.predict(X))


def test_prune_then_distill_classifier():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    teacher = MixtureOfExpertsClassifier(
        n_experts=4, top_k=2, max_iter=60, random_state=0, n_threads=1
    ).fit(X, labels)
    pruned = skmoe.prune_experts(
        teacher, X, labels, n_experts=2, fine_tune_iter=20, fine_tune_alpha=0.3
    )
    assert list(pruned.classes_) == list(teacher.classes_)
    assert pruned.predict_proba(X).shape == (len(X), 3)
    assert np.mean(pruned.predict(X) == teacher.predict(X)) > 0.8


def test_validation_fraction_keeps_the_best_epoch(regressor, diabetes):
    X, y = diabetes
    zero_shot = skmoe.prune_experts(
        regressor, X, y, n_experts=3, method="usage", fine_tune_iter=0
    )
    # A learning rate far too high wrecks the model within an epoch or two.
    wild = dict(
        n_experts=3, method="usage", fine_tune_iter=5, fine_tune_learning_rate=1.0
    )
    unguarded = skmoe.prune_experts(regressor, X, y, **wild)
    guarded = skmoe.prune_experts(regressor, X, y, validation_fraction=0.25, **wild)
    assert unguarded.score(X, y) < zero_shot.score(X, y) - 0.5
    # Early stopping on the held-out rows keeps the best epoch, the pruned
    # weights included, so the damage is never kept.
    assert guarded.score(X, y) > zero_shot.score(X, y) - 0.05
    again = skmoe.prune_experts(regressor, X, y, validation_fraction=0.25, **wild)
    np.testing.assert_array_equal(again.predict(X), guarded.predict(X))
    # The fine-tuning learning rate is not left on the estimator.
    assert guarded.learning_rate_init == regressor.learning_rate_init


def test_prune_fine_tuning_bad_input(regressor, diabetes):
    X, y = diabetes
    for value in (-0.1, 1.5, True, "all"):
        with pytest.raises(ValueError, match="fine_tune_alpha must be a number"):
            skmoe.prune_experts(regressor, X, y, n_experts=2, fine_tune_alpha=value)
    for value in (0, 1, 1.5, True):
        with pytest.raises(ValueError, match="validation_fraction must be a number"):
            skmoe.prune_experts(regressor, X, y, n_experts=2, validation_fraction=value)
    for value in (0, -1e-3, True, "fast"):
        with pytest.raises(ValueError, match="fine_tune_learning_rate must be"):
            skmoe.prune_experts(
                regressor, X, y, n_experts=2, fine_tune_learning_rate=value
            )


@pytest.mark.parametrize("multi_gate", [False, True])
def test_compression_and_inspection_of_a_model_with_id_and_list_columns(multi_gate):
    """The mixture behind a feature embedding is pruned, merged, distilled and
    weighed like a plain one; the embedding is kept as it is."""
    import pandas as pd

    from skmoe import MixtureOfExpertsRegressor, MultiGateMoERegressor
    from skmoe.inspection import expert_importance, model_size

    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame(
        {
            "user": rng.integers(0, 150, n).astype(str),
            "tags": [list(rng.choice(list("abc"), k)) for k in rng.integers(0, 3, n)],
            "x": rng.normal(size=n),
        }
    )
    y = X["x"].to_numpy() + X["tags"].map(len).to_numpy()
    Estimator = MultiGateMoERegressor if multi_gate else MixtureOfExpertsRegressor
    target = np.column_stack([y, -y]) if multi_gate else y
    model = Estimator(n_experts=4, max_iter=10, random_state=0, min_frequency=2)
    model.fit(X, target)
    before = {k: v.clone() for k, v in model.module_.state_dict().items()}
    for new in (
        skmoe.prune_experts(model, X, target, n_experts=2),
        skmoe.merge_experts(model, X, target, n_experts=2),
    ):
        assert new.n_experts == 2
        assert new.module_.embedding.categorical[0].num_embeddings == (
            model.module_.embedding.categorical[0].num_embeddings
        )
        assert np.isfinite(new.predict(X)).all()
    student = skmoe.distill(model, X, target)
    assert np.isfinite(student.predict(X)).all()
    importance = expert_importance(model, X, target, method="ablation")
    assert importance.importances_mean.shape[0] == 4
    assert model_size(model).params["embeddings"] > 0
    for key, value in model.module_.state_dict().items():
        assert torch.equal(value, before[key]), key
