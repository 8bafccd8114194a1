"""List-valued categorical columns: embedding bags with mean pooling."""

import numpy as np
import pandas as pd
import pytest
import torch

import skmoe
from skmoe import MixtureOfExpertsRegressor, MultiGateMoERegressor

FAST = dict(max_iter=20, random_state=0, device="cpu", learning_rate_init=1e-2)
GENRES = list("ABCDEFG")


def genre_frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    lists = [
        list(rng.choice(GENRES, rng.integers(0, 4), replace=False)) for _ in range(n)
    ]
    X = pd.DataFrame(
        {
            "genres": pd.Series(lists, dtype=object),
            "year": rng.integers(1950, 2020, n).astype(float),
        }
    )
    y = np.array([2.0 * ("A" in g) - ("C" in g) for g in lists]) + 0.01 * (
        X["year"].to_numpy() - 1985
    )
    return X, y


def test_a_bag_is_the_normalised_multi_hot_encoding_times_the_table():
    X, y = genre_frame()
    est = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    encoder, embedding = est._input_encoder, est.module_.embedding
    assert encoder.bag_sizes == [3]
    vocabulary = encoder.categories[0]
    assert vocabulary == GENRES
    table = embedding.categorical[0].weight.detach().double()
    multi_hot = np.zeros((len(X), len(vocabulary) + 1))
    for i, cell in enumerate(X["genres"]):
        for genre in cell:
            multi_hot[i, vocabulary.index(genre) + 1] += 1
        if not cell:
            multi_hot[i, 0] = 1  # the reserved row
    expected = (multi_hot / multi_hot.sum(1, keepdims=True)) @ table.numpy()
    with torch.no_grad():
        pooled = embedding.double()(torch.as_tensor(encoder.transform(X)))
    np.testing.assert_allclose(
        pooled[:, -table.shape[1] :].numpy(), expected, atol=1e-12
    )


def test_empty_missing_and_unseen_lists_read_the_reserved_row():
    X, y = genre_frame()
    est = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    probe = pd.DataFrame(
        {
            "genres": pd.Series([[], None, ["never-seen"], np.array([])], dtype=object),
            "year": [2000.0] * 4,
        }
    )
    prediction = est.predict(probe)
    np.testing.assert_array_equal(prediction, np.full(4, prediction[0]))
    assert est.predict(X.iloc[:1].assign(year=2000.0))[0] != prediction[0]


def test_lists_tuples_sets_and_arrays_are_one_column_kind():
    X, y = genre_frame(n=200)
    reference = MixtureOfExpertsRegressor(**FAST).fit(X, y).predict(X)
    for kind in (tuple, np.array, set, sorted):
        other = X.assign(genres=X["genres"].map(kind))
        got = MixtureOfExpertsRegressor(**FAST).fit(other, y).predict(other)
        np.testing.assert_array_equal(got, reference)


def test_a_separated_string_column_equals_its_list_column():
    X, y = genre_frame(n=200)
    joined = X.assign(genres=X["genres"].map("|".join))
    a = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    b = MixtureOfExpertsRegressor(list_separators={"genres": "|"}, **FAST).fit(
        joined, y
    )
    np.testing.assert_array_equal(a.predict(X), b.predict(joined))
    assert b._input_encoder.categories == a._input_encoder.categories


def test_lists_longer_than_in_training_keep_their_first_elements():
    X, y = genre_frame(n=200)
    est = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    long = pd.DataFrame(
        {"genres": pd.Series([["A", "B", "C", "D", "E"]], dtype=object), "year": [1.0]}
    )
    cut = long.assign(genres=pd.Series([["A", "B", "C"]], dtype=object))
    np.testing.assert_array_equal(est.predict(long), est.predict(cut))


def test_a_column_mixing_lists_and_scalars_is_refused_by_name():
    X, y = genre_frame(n=100)
    mixed = X.copy()
    mixed.loc[3, "genres"] = "A"
    with pytest.raises(ValueError, match=r"MixtureOfExpertsRegressor: column 'genres'"):
        MixtureOfExpertsRegressor(**FAST).fit(mixed, y)
    est = MixtureOfExpertsRegressor(**FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"'genres' mixes list cells and scalar"):
        est.predict(mixed)


def test_a_scalar_column_refuses_list_cells_at_predict_time():
    X, y = genre_frame(n=100)
    flat = X.assign(genres=X["genres"].map(lambda g: g[0] if g else "none"))
    est = MixtureOfExpertsRegressor(**FAST).fit(flat, y)
    with pytest.raises(ValueError, match=r"'genres' was fitted on scalar cells"):
        est.predict(X)


def test_min_frequency_and_hashing_apply_to_list_elements():
    X, y = genre_frame()
    counts = pd.Series([g for cell in X["genres"] for g in cell]).value_counts()
    threshold = int(counts.iloc[2])  # the three most frequent genres stay
    est = MixtureOfExpertsRegressor(min_frequency=threshold, **FAST).fit(X, y)
    assert sorted(est._input_encoder.categories[0]) == sorted(counts.index[:3])
    hashed = MixtureOfExpertsRegressor(categorical_hash_buckets=16, **FAST).fit(X, y)
    assert hashed.module_.embedding.categorical[0].num_embeddings == 17
    assert np.isfinite(hashed.predict(X)).all()


def test_multi_gate_with_a_list_column_saves_and_loads(tmp_path):
    X, y = genre_frame()
    X["studio"] = np.where(np.arange(len(X)) % 3, "big", "small")
    targets = np.column_stack([y, -y])
    est = MultiGateMoERegressor(**FAST).fit(X, targets)
    skmoe.save(est, tmp_path / "m.safetensors")
    loaded = skmoe.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded._input_encoder.bag_sizes == [3, None]


def test_a_row_s_prediction_does_not_depend_on_the_batch():
    X, y = genre_frame()
    est = MixtureOfExpertsRegressor(n_threads=2, **FAST).fit(X, y)
    whole = est.predict(X)
    for i in (0, 7, 123):
        np.testing.assert_array_equal(est.predict(X.iloc[[i]]), whole[[i]])
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(est.predict(X.iloc[order]), whole[order])
