"""The synthetic interaction log: ids by popularity, list-valued tags, three tasks."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from skmoe import MultiGateMoE
from skmoe.datasets import make_interaction_log


def test_shapes_columns_and_dtypes():
    X, Y, optimum = make_interaction_log(n_samples=3000, n_context=3, random_state=0)
    assert list(X.columns) == [
        "user_id",
        "item_id",
        "item_tags",
        "context_0",
        "context_1",
        "context_2",
    ]
    assert X.shape == (3000, 6) and Y.shape == (3000, 3) and optimum.shape == (3000, 3)
    assert isinstance(X["user_id"].dtype, pd.CategoricalDtype)
    assert isinstance(X["item_id"].dtype, pd.CategoricalDtype)
    assert X["context_0"].dtype == np.float64
    assert all(isinstance(cell, tuple) and 1 <= len(cell) <= 4 for cell in X.item_tags)
    assert list(Y.columns) == ["click", "rating", "conversion"]
    assert Y["click"].dtype == np.int64 and set(Y["click"]) == {0, 1}
    assert list(optimum.columns) == ["p_click", "expected_rating", "p_conversion"]
    assert ((optimum[["p_click", "p_conversion"]] > 0) & (optimum < 1)).all().all()


def test_same_seed_same_log_and_another_seed_another():
    a = make_interaction_log(n_samples=500, random_state=3)
    b = make_interaction_log(n_samples=500, random_state=3)
    c = make_interaction_log(n_samples=500, random_state=4)
    for left, right in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(left, right)
    assert not a[1]["rating"].equals(c[1]["rating"])


def test_arrays_hold_the_same_log_as_the_frames():
    X, Y, optimum = make_interaction_log(n_samples=800, random_state=1)
    arrays, Y_array, optimum_array = make_interaction_log(
        n_samples=800, random_state=1, as_frame=False
    )
    np.testing.assert_array_equal(arrays["user_id"], X["user_id"].astype(int))
    np.testing.assert_array_equal(arrays["item_id"], X["item_id"].astype(int))
    np.testing.assert_array_equal(arrays["context"], X.filter(like="context_"))
    np.testing.assert_array_equal(Y_array, Y.to_numpy(dtype=float))
    np.testing.assert_array_equal(optimum_array, optimum.to_numpy())
    # The padded tag indices name the same tags as the tuples.
    names = [
        tuple(f"tag_{t:02d}" for t in row[row >= 0]) for row in arrays["item_tags"]
    ]
    assert names == list(X["item_tags"])


def test_joined_tags_are_the_tuples_joined():
    X, _, _ = make_interaction_log(n_samples=300, random_state=2)
    joined, _, _ = make_interaction_log(n_samples=300, random_state=2, tags="string")
    assert list(joined["item_tags"]) == ["|".join(cell) for cell in X["item_tags"]]


def test_ids_follow_a_zipf_law():
    X, _, _ = make_interaction_log(
        n_samples=50_000, n_users=5000, n_items=1000, zipf_exponent=1.1, random_state=0
    )
    counts = np.sort(X["item_id"].value_counts().to_numpy())[::-1]
    # p(rank k) ∝ (k + 1)**-1.1: the top item is drawn 2**1.1 times as often as
    # the second and 10**1.1 as often as the tenth.
    expected = np.arange(1, 1001) ** -1.1
    expected *= 50_000 / expected.sum()
    assert counts[0] == pytest.approx(expected[0], rel=0.05)
    assert counts[9] == pytest.approx(expected[9], rel=0.15)
    slope = np.polyfit(np.log(np.arange(1, 101)), np.log(counts[:100]), 1)[0]
    assert slope == pytest.approx(-1.1, abs=0.1)
    # Popularity is not the id's order.
    top = X["item_id"].value_counts().index[:10].astype(int)
    assert sorted(top) != list(range(10))
    uniform, _, _ = make_interaction_log(
        n_samples=50_000, n_items=1000, zipf_exponent=0.0, random_state=0
    )
    assert uniform["item_id"].value_counts().max() < 90


def test_conversion_is_seen_only_after_a_click_at_the_asked_rates():
    _, Y, optimum = make_interaction_log(
        n_samples=40_000, click_rate=0.15, conversion_rate=0.3, random_state=0
    )
    clicked = Y["click"] == 1
    assert Y.loc[~clicked, "conversion"].isna().all()
    assert Y.loc[clicked, "conversion"].isin([0.0, 1.0]).all()
    assert clicked.mean() == pytest.approx(0.15, abs=0.01)
    assert Y.loc[clicked, "conversion"].mean() == pytest.approx(0.3, abs=0.02)
    # The optimum is what the labels are drawn from.
    assert Y["click"].mean() == pytest.approx(optimum["p_click"].mean(), abs=0.01)
    residual = Y["rating"] - optimum["expected_rating"]
    assert np.sqrt(np.mean(residual**2)) == pytest.approx(0.5, abs=0.01)


def test_the_labels_depend_on_ids_tags_and_context():
    """Each source of signal moves the optimum: the log is not noise."""
    X, Y, optimum = make_interaction_log(n_samples=30_000, random_state=0)
    rating = optimum["expected_rating"]
    by_user = rating.groupby(X["user_id"], observed=True).transform("mean")
    by_item = rating.groupby(X["item_id"], observed=True).transform("mean")
    assert np.corrcoef(by_user, rating)[0, 1] > 0.3
    assert np.corrcoef(by_item, rating)[0, 1] > 0.3
    by_tags = rating.groupby(X["item_tags"].map("|".join)).transform("mean")
    assert np.corrcoef(by_tags, rating)[0, 1] > 0.2
    assert roc_auc_score(Y["click"], optimum["p_click"]) > 0.7


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="click_rate"):
        make_interaction_log(n_samples=10, click_rate=1.5)
    with pytest.raises(ValueError, match="n_context"):
        make_interaction_log(n_samples=10, n_context=1)
    with pytest.raises(TypeError, match="n_users"):
        make_interaction_log(n_samples=10, n_users=2.5)
    with pytest.raises(ValueError, match="tags"):
        make_interaction_log(n_samples=10, tags="set")


def test_a_multi_task_model_beats_the_base_rates():
    X, Y, optimum = make_interaction_log(
        n_samples=4000, n_users=300, n_items=200, random_state=0
    )
    train, test = slice(0, 3000), slice(3000, None)
    model = MultiGateMoE(
        task_chain={"conversion": "click"},
        max_iter=6,
        learning_rate_init=3e-3,
        random_state=0,
        device="cpu",
    ).fit(X[train], Y[train])
    predicted = model.predict(X[test])
    proba = model.predict_proba(X[test])
    rating, click = Y["rating"][test].to_numpy(), Y["click"][test].to_numpy()
    rmse = np.sqrt(np.mean((predicted["rating"].to_numpy() - rating) ** 2))
    best_rmse = np.sqrt(np.mean((optimum["expected_rating"][test] - rating) ** 2))
    assert best_rmse < rmse < 0.9 * rating.std()
    auc = roc_auc_score(click, proba["click"][:, 1])
    assert 0.6 < auc <= roc_auc_score(click, optimum["p_click"][test]) + 0.02
