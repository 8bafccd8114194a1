"""Categorical columns of any cardinality: vocabularies with infrequent and reserved
rows, hashing, embedding widths, frames of a single column kind."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import OneHotEncoder

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe._categorical import (
    choose_categories,
    count_categories,
    merge_counts,
    stable_hash,
)

FAST = dict(max_iter=5, random_state=0, device="cpu", learning_rate_init=1e-2)


def id_frame(n=4000, n_ids=2000, seed=0):
    """A Zipf-like id column with far more than a thousand values, a small
    categorical column and one number; the target depends on all three."""
    rng = np.random.default_rng(seed)
    ids = np.where(
        rng.random(n) < 0.5, rng.zipf(1.5, size=n) % n_ids, rng.integers(0, n_ids, n)
    )
    effect = rng.normal(size=n_ids)
    X = pd.DataFrame(
        {
            "user": np.array([f"u{i}" for i in ids], dtype=object),
            "region": rng.choice(["north", "south"], size=n),
            "x": rng.normal(size=n),
        }
    )
    y = effect[ids] + X["x"].to_numpy() + (X["region"] == "north")
    return X, y


def _row(user, region="north", x=0.3):
    return pd.DataFrame({"user": [user], "region": [region], "x": [x]})


def test_a_column_of_thousands_of_ids_fits_and_unseen_ids_predict():
    X, y = id_frame()
    assert X["user"].nunique() > 1000
    est = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    table = est.module_.embedding.categorical[0]
    assert table.num_embeddings == X["user"].nunique() + 1
    unseen = est.predict(_row("never-seen"))
    # Unseen, missing and another unseen id all read the reserved row.
    for other in ("also-unseen", None, np.nan):
        np.testing.assert_array_equal(est.predict(_row(other)), unseen)
    assert est.predict(_row("u1")) != unseen


def test_vocabulary_is_the_same_whatever_the_row_order():
    X, y = id_frame(n=500)
    order = np.random.default_rng(1).permutation(len(X))
    a = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    b = MixtureOfExpertsRegressor(**FAST).fit(X.iloc[order], y[order])
    assert a._input_encoder.categories == b._input_encoder.categories


@pytest.mark.parametrize(
    ("min_frequency", "max_categories"),
    [(3, None), (0.01, None), (None, 5), (2, 4), (None, 1)],
)
def test_infrequent_categories_match_one_hot_encoder(min_frequency, max_categories):
    rng = np.random.default_rng(0)
    column = rng.choice(
        list("abcdefghij"), p=np.linspace(0.2, 0.01, 10) / 1.05, size=400
    )
    column = np.array([*column, "k", "k"], dtype=object)  # one of count 2
    reference = OneHotEncoder(
        min_frequency=min_frequency,
        max_categories=max_categories,
        handle_unknown="infrequent_if_exist",
    ).fit(column[:, None])
    expected = reference.infrequent_categories_[0]
    expected = [] if expected is None else sorted(expected.tolist())
    kept, infrequent = choose_categories(
        *count_categories(column, np.ones(len(column))), min_frequency, max_categories
    )
    assert infrequent == expected
    assert sorted(kept + infrequent) == sorted(set(column))


def test_infrequent_categories_share_one_learned_row_apart_from_unseen():
    X, y = id_frame()
    est = MixtureOfExpertsRegressor(min_frequency=5, **FAST).fit(X, y)
    counts = X["user"].value_counts()
    rare = counts[counts < 5].index[:2]
    frequent = counts[counts >= 5].index[:2]
    encoder = est._input_encoder
    assert set(rare) <= set(encoder.infrequent[0])
    table = est.module_.embedding.categorical[0]
    assert table.num_embeddings == (counts >= 5).sum() + 2  # + infrequent, reserved
    np.testing.assert_array_equal(
        est.predict(_row(rare[0])), est.predict(_row(rare[1]))
    )
    assert est.predict(_row(rare[0])) != est.predict(_row("never-seen"))
    assert est.predict(_row(frequent[0])) != est.predict(_row(frequent[1]))


def test_max_categories_bounds_the_table():
    X, y = id_frame()
    est = MixtureOfExpertsRegressor(max_categories=50, **FAST).fit(X, y)
    tables = [t.num_embeddings for t in est.module_.embedding.categorical]
    assert tables == [51, 3]  # 49 ids + infrequent + reserved; region untouched
    # The most frequent ids keep their own rows (ties broken by sorted order).
    counts = X["user"].value_counts()
    kept, infrequent = (
        est._input_encoder.categories[0],
        est._input_encoder.infrequent[0],
    )
    assert len(kept) == 49
    assert counts[kept].min() >= counts[infrequent].max()


def test_row_weights_count_as_repeated_rows_in_the_vocabulary():
    column = np.array(["a", "b", "b", "c"], dtype=object)
    weighted = count_categories(column, np.array([3.0, 1.0, 1.0, 0.0]))
    assert weighted[0].tolist() == ["a", "b"]  # "c" only on a row of weight 0
    assert weighted[1].tolist() == [3.0, 2.0]
    kept, infrequent = choose_categories(*weighted, min_frequency=3)
    assert (kept, infrequent) == (["a"], ["b"])


def test_shard_counts_merge_to_the_counts_of_all_rows():
    X, _ = id_frame()
    column = X["user"].to_numpy()
    ones = np.ones(len(column))
    whole = choose_categories(*count_categories(column, ones), min_frequency=3)
    shards = [count_categories(column[i::3], ones[i::3]) for i in range(3)]
    assert choose_categories(*merge_counts(shards), min_frequency=3) == whole


def test_hashed_columns_fit_predict_and_bound_the_table():
    X, y = id_frame()
    est = MixtureOfExpertsRegressor(categorical_hash_buckets={"user": 64}, **FAST).fit(
        X, y
    )
    tables = [t.num_embeddings for t in est.module_.embedding.categorical]
    assert tables == [65, 3]
    assert est._input_encoder.categories[0] is None  # no vocabulary kept
    prediction = est.predict(_row("never-seen"))
    assert np.isfinite(prediction).all()
    # Missing values keep the reserved row; a hashed id lands in a bucket.
    np.testing.assert_array_equal(est.predict(_row(None)), est.predict(_row(np.nan)))
    codes = est._input_encoder.transform(_row("never-seen"))[0, -2]
    assert codes == stable_hash("never-seen") % 64 + 1


def test_hash_is_the_same_in_processes_with_other_hash_seeds():
    script = (
        "from skmoe._categorical import HashedLookup;"
        "import numpy as np;"
        "print(HashedLookup(1000).codes(np.array(['a', 'user_7', 3, 2.5, None],"
        " dtype=object)).tolist())"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1
    codes = eval(outputs.pop())  # a list of ints printed by the child
    assert codes[-1] == 0 and all(1 <= c <= 1000 for c in codes[:-1])


def test_hash_collisions_are_as_documented():
    """With n values in b buckets, about n**2 / (2 b) pairs collide: the fraction
    of values sharing a bucket is near n / (2 b) when n << b."""
    n, b = 2000, 200_000
    buckets = np.array([stable_hash(f"item{i}") % b for i in range(n)])
    shared = n - len(np.unique(buckets))
    assert shared <= 4 * n * n / (2 * b)  # 4x the expectation (10) at most


def test_embedding_width_override_per_column_and_global():
    X, y = id_frame(n=400)
    est = MixtureOfExpertsRegressor(categorical_embedding_dim={"user": 24}, **FAST).fit(
        X, y
    )
    dims = [t.embedding_dim for t in est.module_.embedding.categorical]
    assert dims == [24, 2]  # region: the rule's width for 2 categories
    est = MixtureOfExpertsRegressor(categorical_embedding_dim=5, **FAST).fit(X, y)
    assert [t.embedding_dim for t in est.module_.embedding.categorical] == [5, 5]


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("categorical_embedding_dim", {"nope": 3}, "names 'nope'"),
        ("categorical_hash_buckets", {"x": 3}, "not a categorical column"),
    ],
)
def test_per_column_parameters_name_their_columns(param, value, message):
    X, y = id_frame(n=200)
    est = MixtureOfExpertsRegressor(**{param: value}, **FAST)
    with pytest.raises(ValueError, match=message) as info:
        est.fit(X, y)
    assert "MixtureOfExpertsRegressor" in str(info.value)


def test_vocabularies_and_hashing_survive_save_and_load(tmp_path):
    X, y = id_frame(n=800)
    est = MixtureOfExpertsRegressor(
        min_frequency=2,
        categorical_hash_buckets={"region": 7},
        categorical_embedding_dim={"user": 6},
        **FAST,
    ).fit(X, y)
    skmoe.save(est, tmp_path / "model.safetensors")
    loaded = skmoe.load(tmp_path / "model.safetensors")
    probe = pd.concat([X.iloc[:50], _row("never-seen"), _row(None, region="west")])
    np.testing.assert_array_equal(loaded.predict(probe), est.predict(probe))


# -- frames of one column kind (the "only categorical" crash) ---------------
def _only_categorical(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "s": rng.choice(list("abc"), n),
            "c": pd.Categorical(rng.choice(list("xyz"), n)),
        }
    )
    signal = (X["s"] == "a").to_numpy() + 2.0 * (X["c"] == "z").to_numpy()
    return X, signal


@pytest.mark.parametrize(
    "Estimator",
    [
        MixtureOfExpertsRegressor,
        MixtureOfExpertsClassifier,
        MultiGateMoERegressor,
        MultiGateMoEClassifier,
    ],
)
def test_a_frame_of_only_categorical_columns_fits_and_predicts(Estimator):
    X, signal = _only_categorical()
    y = signal if "Regressor" in Estimator.__name__ else signal > 1
    if "MultiGate" in Estimator.__name__:
        y = np.column_stack([y, y])
    est = Estimator(
        max_iter=60, learning_rate_init=1e-2, random_state=0, device="cpu"
    ).fit(X, y)
    assert est.predict(X).shape[0] == len(X)
    assert est.score(X, y) > 0.5


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kinds=st.lists(
        st.sampled_from(["number", "nan_number", "string", "category", "int_code"]),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**16),
)
def test_any_mix_of_column_kinds_fits_and_predicts(kinds, seed):
    rng = np.random.default_rng(seed)
    n = 40
    columns = {}
    for i, kind in enumerate(kinds):
        if kind == "number":
            columns[f"c{i}"] = rng.normal(size=n)
        elif kind == "nan_number":
            values = rng.normal(size=n)
            values[rng.random(n) < 0.3] = np.nan
            columns[f"c{i}"] = values
        elif kind == "string":
            values = rng.choice(["p", "q", "r"], size=n).astype(object)
            values[rng.random(n) < 0.2] = None
            columns[f"c{i}"] = values
        elif kind == "category":
            columns[f"c{i}"] = pd.Categorical(rng.choice(["u", "v"], size=n))
        else:
            columns[f"c{i}"] = rng.integers(0, 1000, size=n)
    X = pd.DataFrame(columns)
    y = rng.normal(size=n)
    est = MixtureOfExpertsRegressor(max_iter=2, random_state=0, device="cpu")
    est.fit(X, y)  # valid input: the fit must succeed
    new = X.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    prediction = est.predict(new)
    assert prediction.shape == (n,)
    assert np.isfinite(prediction).all()
