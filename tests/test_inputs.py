"""What goes in: sparse matrices, DataFrames, dtypes, labels, multi-output targets and
devices."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import r2_score

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._engine import SparseRows

FAST = dict(max_iter=10, random_state=0, device="cpu", learning_rate_init=1e-2)


@pytest.fixture(scope="module")
def classification():
    return make_classification(
        n_samples=200, n_features=6, n_informative=4, n_classes=3, random_state=0
    )


# -- sparse input -------------------------------------------------------------------
def test_sparse_batches_match_the_dense_rows():
    dense = np.random.default_rng(0).normal(size=(50, 7))
    dense[dense < 0.5] = 0.0
    csr = sp.csr_matrix(dense)
    rows = SparseRows(
        torch.as_tensor(csr.indptr, dtype=torch.long),
        torch.as_tensor(csr.indices, dtype=torch.long),
        torch.as_tensor(csr.data, dtype=torch.float32),
        7,
    )
    index = torch.tensor([3, 0, 49, 3, 17])
    batch = rows.take(index)
    np.testing.assert_allclose(batch.numpy(), dense[[3, 0, 49, 3, 17]], rtol=1e-6)
    empty = SparseRows(
        torch.zeros(3, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0),
        4,
    )
    assert torch.equal(empty.take(torch.tensor([0, 1])), torch.zeros(2, 4))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_fit_equals_dense_fit(classification, fmt):
    X, y = classification
    X = np.where(np.abs(X) > 1, X, 0.0)
    # Sparse input is never scaled (its zeros stay zeros); unscaled dense input
    # trains the same network on the same numbers.
    dense = MixtureOfExpertsClassifier(top_k=2, input_scaling=None, **FAST).fit(X, y)
    sparse = MixtureOfExpertsClassifier(top_k=2, **FAST).fit(
        sp.coo_matrix(X).asformat(fmt), y
    )
    np.testing.assert_allclose(
        sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X), rtol=1e-5
    )


def test_sparse_training_never_densifies_the_whole_matrix(monkeypatch, classification):
    X, y = classification
    X = sp.random(5000, 300, density=0.01, format="csr", random_state=0)
    y = np.asarray(X.sum(axis=1)).ravel() > np.median(np.asarray(X.sum(axis=1)))
    densified = []
    original = SparseRows.take

    def spy(self, index):
        out = original(self, index)
        densified.append(out.shape[0])
        return out

    monkeypatch.setattr(SparseRows, "take", spy)
    monkeypatch.setattr(
        sp.csr_matrix, "toarray", lambda *a, **k: pytest.fail("toarray")
    )
    MixtureOfExpertsClassifier(max_iter=1, batch_size=256, device="cpu").fit(X, y)
    assert max(densified) == 256


# -- DataFrames, dtypes, labels ------------------------------------------------------
def test_dataframe_input_records_feature_names(classification):
    X, y = classification
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = MixtureOfExpertsClassifier(**FAST).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_numpy = clf.predict_proba(X)
    np.testing.assert_allclose(clf.predict_proba(df), from_numpy)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[df.columns[::-1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, bool])
def test_numeric_dtypes_are_accepted(classification, dtype):
    X, y = classification
    Xc = (X > 0) if dtype is bool else (X * 10).astype(dtype)
    proba = MixtureOfExpertsClassifier(**FAST).fit(Xc, y).predict_proba(Xc)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0)


def test_string_labels_round_trip(classification):
    X, y = classification
    names = np.array(["cat", "dog", "emu"])[y]
    clf = MixtureOfExpertsClassifier(**{**FAST, "max_iter": 30}).fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
    pred = clf.predict(X)
    assert set(pred) <= {"cat", "dog", "emu"}
    assert clf.score(X, names) > 0.6
    np.testing.assert_array_equal(pred, clf.classes_[clf.predict_proba(X).argmax(1)])


def test_single_class_is_an_error(classification):
    X, _ = classification
    with pytest.raises(ValueError, match="only one class"):
        MixtureOfExpertsClassifier(**FAST).fit(X, np.zeros(len(X)))


# -- multi-output --------------------------------------------------------------------
def test_multioutput_classification_follows_multioutputclassifier(classification):
    X, y = classification
    Y = np.column_stack(
        [y, np.where(X[:, 0] > 0, "hi", "lo"), (X[:, 1] > 0).astype(int)]
    )
    clf = MixtureOfExpertsClassifier(**{**FAST, "max_iter": 40}).fit(X, Y)
    assert clf.n_outputs_ == 3
    assert [list(c) for c in clf.classes_] == [
        ["0", "1", "2"],
        ["hi", "lo"],
        ["0", "1"],
    ]
    pred = clf.predict(X)
    assert pred.shape == (len(X), 3)
    proba = clf.predict_proba(X)
    assert isinstance(proba, list) and [p.shape[1] for p in proba] == [3, 2, 2]
    for p in proba:
        np.testing.assert_allclose(p.sum(1), 1.0)
    subset_accuracy = np.mean(np.all(pred == Y, axis=1))
    assert clf.score(X, Y) == pytest.approx(subset_accuracy)
    assert clf.score(X, Y) > 0.5


def test_multilabel_indicator_targets(classification):
    X, _ = classification
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 1] > 0]).astype(int)
    clf = MixtureOfExpertsClassifier(**{**FAST, "max_iter": 40}).fit(X, Y)
    assert clf.predict(X).shape == Y.shape
    assert all(list(c) == [0, 1] for c in clf.classes_)
    assert (clf.predict(X) == Y).mean() > 0.8


def test_multioutput_regression():
    X, y = make_regression(n_samples=200, n_features=6, n_targets=3, random_state=0)
    Y = y * np.array([1.0, 100.0, 0.01])  # targets on very different scales
    reg = MixtureOfExpertsRegressor(**{**FAST, "max_iter": 60}).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (200, 3)
    for j in range(3):
        assert r2_score(Y[:, j], pred[:, j]) > 0.8
    one_column = MixtureOfExpertsRegressor(**FAST).fit(X, Y[:, :1])
    assert one_column.predict(X).shape == (200, 1)


# -- devices -------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_missing_cuda_is_a_clear_value_error_from_fit(classification, device):
    X, y = classification
    clf = MixtureOfExpertsClassifier(device=device)  # __init__ accepts it
    with pytest.raises(ValueError, match="CUDA is not available"):
        clf.fit(X, y)


@pytest.mark.parametrize("device", ["tpu", "not a device", "mps"])
def test_unknown_device_is_a_value_error(classification, device):
    X, y = classification
    with pytest.raises(ValueError, match="device"):
        MixtureOfExpertsClassifier(device=device).fit(X, y)


def test_auto_and_torch_device_cpu(classification):
    X, y = classification
    auto = MixtureOfExpertsClassifier(**{**FAST, "device": "auto"}).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert auto.device_.type == expected
    explicit = MixtureOfExpertsClassifier(**{**FAST, "device": torch.device("cpu")})
    assert explicit.fit(X, y).device_ == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_cpu_closely(classification):
    X, y = classification
    cpu = MixtureOfExpertsClassifier(**FAST).fit(X, y)
    gpu = MixtureOfExpertsClassifier(**{**FAST, "device": "cuda"}).fit(X, y)
    assert gpu.device_.type == "cuda"
    assert (gpu.predict(X) == cpu.predict(X)).mean() > 0.9
