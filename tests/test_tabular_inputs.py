"""Tabular inputs handled inside the estimators: numerical embeddings, categorical
columns, missing values and input scaling, through every prediction path."""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _conformance import run_check
from sklearn.utils.estimator_checks import parametrize_with_checks

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe.nn import MixtureOfExperts
from skmoe.nn.embeddings import (
    EmbeddedModel,
    FeatureEmbedding,
    PeriodicEmbedding,
    PiecewiseLinearEmbedding,
)

FAST = dict(max_iter=30, random_state=0, device="cpu", learning_rate_init=1e-2)


def frame(n=240, seed=0):
    """Numerical columns with NaN, a string column and a pandas category column; the
    target depends on all of them (and on whether ``x2`` is missing)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    x2_missing = rng.random(n) < 0.25
    x2[x2_missing] = np.nan
    colour = rng.choice(["red", "green", "blue"], size=n)
    size = pd.Categorical(rng.choice(["S", "M", "L", "XL"], size=n))
    X = pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "size": size})
    effect = {"red": 2.0, "green": -1.0, "blue": 0.0}
    y = x1 + np.vectorize(effect.get)(colour) + 1.5 * x2_missing
    return X, y


X_FRAME, Y_REG = frame()
Y_CLS = np.where(Y_REG - np.median(Y_REG) > 0, "high", "low")
ESTIMATORS = [
    (MixtureOfExpertsClassifier, Y_CLS),
    (MixtureOfExpertsRegressor, Y_REG),
    (MultiGateMoEClassifier, np.column_stack([Y_CLS, Y_CLS[::-1]])),
    (MultiGateMoERegressor, np.column_stack([Y_REG, -Y_REG])),
]
IDS = [E.__name__ for E, _ in ESTIMATORS]


def _output(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


# -- the torch modules ---------------------------------------------------------------
def test_piecewise_linear_encoding_matches_its_definition():
    edges = [0.0, 1.0, 3.0, 4.0]
    emb = PiecewiseLinearEmbedding([edges, [-1.0, 1.0]], d_embedding=2)
    x = torch.tensor([[-1.0, 0.0], [0.5, 5.0], [2.0, -3.0], [6.0, 0.0]])
    encoded = emb.encode(x)
    # First bin open to the left, last open to the right, the middle one clamped.
    expected_first = [[-1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.5, 0.0], [1, 1, 3.0]]
    np.testing.assert_allclose(encoded[:, 0].numpy(), expected_first)
    # A feature with one bin is linear on both sides; its padding stays zero.
    np.testing.assert_allclose(encoded[:, 1, 0].numpy(), [0.5, 3.0, -1.0, 0.5])
    assert (encoded[:, 1, 1:] == 0).all()
    with pytest.raises(ValueError, match="two bin edges"):
        PiecewiseLinearEmbedding([[1.0]])


def test_periodic_embedding_is_periodic_in_its_frequencies():
    torch.manual_seed(0)
    emb = PeriodicEmbedding(2, d_embedding=3, n_frequencies=1)
    with torch.no_grad():
        emb.frequencies.fill_(1.0)
    x = torch.tensor([[0.25, -0.5]])
    torch.testing.assert_close(emb(x), emb(x + 1.0), atol=1e-5, rtol=1e-5)
    assert emb(x).shape == (1, 6)


def test_feature_embedding_layout_and_reserved_slot():
    emb = FeatureEmbedding(1, n_passthrough=1, cardinalities=[2])
    x = torch.tensor([[0.3, 1.0, 0.0], [0.3, 1.0, 2.0]])
    out = emb(x)
    assert out.shape == (2, emb.out_features) == (2, 1 + 1 + 2)
    # Numerical and passthrough columns unchanged; code 0 reads the reserved row.
    torch.testing.assert_close(out[:, :2], x[:, :2])
    torch.testing.assert_close(out[0, 2:], emb.categorical[0].weight[0])
    torch.testing.assert_close(out[1, 2:], emb.categorical[0].weight[2])
    model = EmbeddedModel(emb, MixtureOfExperts(emb.out_features, 3, n_experts=2))
    assert model(x).shape == (2, 3)
    torch.testing.assert_close(model.gate_weights(x).sum(1), torch.ones(2))


# -- categorical features, NaN and scaling through the estimators --------------------
@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
def test_dataframe_with_strings_categories_and_nan(Estimator, y):
    est = Estimator(**FAST).fit(X_FRAME, y)
    assert list(est._input_encoder.categorical_mask) == [False, False, True, True]
    assert est._input_encoder.categories[0] == ["blue", "green", "red"]
    assert est._input_encoder.has_missing == [False, True]
    out = _output(est, X_FRAME)
    assert np.isfinite(np.asarray(out, dtype=float)).all()
    # Unseen and missing categories share the reserved slot.
    unseen, missing = X_FRAME.copy(), X_FRAME.copy()
    unseen["colour"] = "purple"
    missing["colour"] = None
    np.testing.assert_allclose(
        np.asarray(_output(est, unseen), dtype=float),
        np.asarray(_output(est, missing), dtype=float),
    )


@pytest.mark.parametrize("Estimator, y", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("num_embedding", [None, "periodic", "piecewise_linear"])
def test_save_load_and_pickle_keep_predictions(Estimator, y, num_embedding, tmp_path):
    est = Estimator(num_embedding=num_embedding, **FAST).fit(X_FRAME, y)
    expected = np.asarray(_output(est, X_FRAME), dtype=float)
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    loaded = skmoe.load(path)
    np.testing.assert_array_equal(
        np.asarray(_output(loaded, X_FRAME), dtype=float), expected
    )
    unpickled = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(
        np.asarray(_output(unpickled, X_FRAME), dtype=float), expected
    )


@pytest.mark.parametrize("num_embedding", [None, "periodic", "piecewise_linear"])
def test_small_batches_predict_as_large_ones(num_embedding):
    """The small-batch NumPy path serves plain mixtures and leaves embedded ones to
    PyTorch; both give each row the same answer as a large batch."""
    est = MixtureOfExpertsRegressor(num_embedding=num_embedding, **FAST)
    X = X_FRAME[["x1", "x2"]]
    est.fit(X, Y_REG)
    assert (est._inference_module()[2] is not None) == (num_embedding is None)
    np.testing.assert_allclose(est.predict(X[:5]), est.predict(X)[:5], rtol=1e-12)


def test_categorical_features_by_index_name_and_mask_agree():
    y = Y_CLS
    fits = [
        MixtureOfExpertsClassifier(categorical_features=spec, **FAST).fit(X_FRAME, y)
        for spec in ([2, 3], ["colour", "size"], [False, False, True, True])
    ]
    reference = fits[0].predict_proba(X_FRAME)
    for est in fits[1:]:
        np.testing.assert_array_equal(est.predict_proba(X_FRAME), reference)
    # A NumPy object array with the categorical columns named by index.
    array = X_FRAME.to_numpy(dtype=object)
    est = MixtureOfExpertsClassifier(categorical_features=[2, 3], **FAST)
    est.fit(array, y)
    assert est.score(array, y) > 0.8


def test_categories_help_where_they_carry_the_signal():
    X, y = frame(n=600, seed=1)
    X_test, y_test = frame(n=600, seed=2)
    params = dict(FAST, max_iter=60)
    numbers_only = MixtureOfExpertsRegressor(**params).fit(X[["x1", "x2"]], y)
    with_categories = MixtureOfExpertsRegressor(**params).fit(X, y)
    assert with_categories.score(X_test, y_test) > 0.9
    assert with_categories.score(X_test, y_test) > numbers_only.score(
        X_test[["x1", "x2"]], y_test
    )


def test_missing_indicator_learns_what_missingness_means():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 2))
    missing = rng.random(800) < 0.5
    X[missing, 1] = np.nan
    y = missing.astype(int)  # only the missingness tells the classes apart
    est = MixtureOfExpertsClassifier(**FAST).fit(X[:600], y[:600])
    assert est.score(X[600:], y[600:]) > 0.95


def test_all_nan_column_and_nan_unseen_in_fit():
    X = X_FRAME[["x1"]].assign(empty=np.nan)
    est = MixtureOfExpertsRegressor(input_scaling="robust", **FAST).fit(X, Y_REG)
    assert est._input_encoder.has_missing == [False, True]
    assert np.isfinite(est.predict(X)).all()
    # NaN where training had none reads as the (weighted, lower) median.
    with_nan = X.copy()
    with_nan.loc[:, "x1"] = np.nan
    at_median = X.copy()
    at_median.loc[:, "x1"] = np.sort(X["x1"])[len(X) // 2 - 1]
    np.testing.assert_allclose(est.predict(with_nan), est.predict(at_median))


def test_no_scaling_changes_nothing_and_scaling_is_robust():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) * [1.0, 1e4] + [0.0, 5e5]
    y = X[:, 0] + X[:, 1] / 1e4
    raw = MixtureOfExpertsRegressor(input_scaling=None, **FAST).fit(X, y)
    np.testing.assert_array_equal(raw._input_encoder.transform(X), X)
    scaled = MixtureOfExpertsRegressor(input_scaling="robust", **FAST).fit(X, y)
    encoded = scaled._input_encoder.transform(X)
    assert np.abs(np.median(encoded, axis=0)).max() < 0.05
    assert np.abs(encoded).max() < 3.0
    assert scaled.score(X, y) > 0.9


def test_unit_weight_quantiles_equal_the_weighted_rule():
    # Unit weights take a partial sort; any other constant weight the cumulative
    # rule. Both must pick the same values, ties, NaN and zero weights included.
    from skmoe._preprocessing import _weighted_quantiles

    rng = np.random.default_rng(0)
    quantiles = [(0.25, 0.5, 0.75), np.linspace(0.0, 1.0, 17), (0.0, 1 / 3, 1.0)]
    for n in (1, 2, 3, 7, 50, 301):
        for column in (rng.normal(size=n), rng.integers(0, 4, size=n) * 1.0):
            column[rng.random(n) < 0.1] = np.nan
            ones = np.ones(n)
            ones[rng.random(n) < 0.2] = 0.0  # absent rows
            for q in quantiles:
                np.testing.assert_array_equal(
                    _weighted_quantiles(column, ones, q),
                    _weighted_quantiles(column, 2.0 * ones, q),
                )


def test_partial_fit_keeps_the_first_calls_encoder():
    est = MixtureOfExpertsClassifier(**FAST)
    est.partial_fit(X_FRAME[:120], Y_CLS[:120], classes=["high", "low"])
    encoder = est._input_encoder
    est.partial_fit(X_FRAME[120:], Y_CLS[120:])
    assert est._input_encoder is encoder
    assert est.predict(X_FRAME).shape == (len(X_FRAME),)


def test_sparse_input_stays_sparse_and_refuses_embeddings():
    X = sp.random(50, 6, density=0.3, random_state=0, format="csr")
    y = np.arange(50) % 2
    est = MixtureOfExpertsClassifier(**FAST).fit(X, y)
    assert sp.issparse(est._input_encoder.transform(X))
    with pytest.raises(ValueError, match="num_embedding='periodic' needs dense"):
        MixtureOfExpertsClassifier(num_embedding="periodic", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="categorical features need dense"):
        MixtureOfExpertsClassifier(categorical_features=[0], **FAST).fit(X, y)


@pytest.mark.parametrize(
    "spec, X, message",
    [
        (["colour", "shape"], X_FRAME, "categorical feature 'shape' is not a column"),
        (["colour"], X_FRAME[["x1", "x2"]].to_numpy(), "has no column names"),
        ([7], X_FRAME, "index 7 is out of range"),
        ([True, False], X_FRAME, "one entry per feature"),
        ([1.5], X_FRAME, "must be 'from_dtype'"),
    ],
)
def test_bad_categorical_features(spec, X, message):
    est = MixtureOfExpertsClassifier(categorical_features=spec, **FAST)
    with pytest.raises(ValueError, match=message) as info:
        est.fit(X, Y_CLS)
    assert "MixtureOfExpertsClassifier" in str(info.value)


# -- scikit-learn's checks with embeddings on ---------------------------------------
CHECKED = dict(FAST, max_iter=60, expert_hidden_layer_sizes=(16,))


@parametrize_with_checks(
    [
        MixtureOfExpertsClassifier(num_embedding="periodic", **CHECKED),
        MixtureOfExpertsRegressor(num_embedding="piecewise_linear", **CHECKED),
    ],
)
def test_sklearn_checks_with_embeddings(estimator, check):
    run_check(estimator, check)


def test_file_from_before_the_input_encoder_loads_unscaled(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    X = X_FRAME[["x1"]].to_numpy()
    est = MixtureOfExpertsRegressor(input_scaling=None, **FAST).fit(X, Y_REG)
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["skmoe"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    del document["fitted"]["input_encoder"]
    for key in ("num_embedding", "categorical_features", "input_scaling"):
        del document["params"][key]
    document["format_version"] = 1  # files of that time carried no checksum
    save_file(tensors, str(path), metadata={"skmoe": json.dumps(document)})
    loaded = skmoe.load(path)
    assert loaded.input_scaling is None and loaded.categorical_features is None
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


def test_default_scaling_clips_only_the_columns_with_outliers():
    """Under the default ``input_scaling="auto"``, light-tailed columns are scaled
    linearly (a Gaussian column's values beyond 3 scaled units stay there), while
    heavy-tailed columns and columns with rare extreme values are clipped into
    (-3, 3); ``"robust"`` clips every column."""
    rng = np.random.default_rng(0)
    n = 1000
    gaussian = rng.normal(size=n) * 50.0 + 10.0
    uniform = rng.uniform(-1.0, 1.0, size=n)
    heavy = rng.standard_t(df=1.5, size=n)
    rare = rng.normal(size=n)
    rare[:3] = 1e3
    X = np.column_stack([gaussian, uniform, heavy, rare])
    y = X[:, 0] / 50.0 + X[:, 1]
    est = MixtureOfExpertsRegressor(max_iter=2, random_state=0, device="cpu")
    assert est.get_params()["input_scaling"] == "auto"
    encoder = est.fit(X, y)._input_encoder
    encoded = encoder.transform(X)
    for j in (0, 1):  # linear: (x - median) / (IQR / 1.349), nothing bent
        q25, median, q75 = np.quantile(X[:, j], [0.25, 0.5, 0.75], method="lower")
        np.testing.assert_allclose(
            encoded[:, j], (X[:, j] - median) / ((q75 - q25) / 1.349), rtol=1e-2
        )
        np.testing.assert_allclose(
            encoded[:, j], (X[:, j] - encoder.center[j]) / encoder.scale[j]
        )
    assert np.abs(encoded[:, 0]).max() > 3.0  # the Gaussian tails are not squeezed
    assert np.abs(encoded[:, 2:]).max() < 3.0  # the outliers are
    assert np.abs(encoded[:, 2:]).max() > 2.9
    # A later value outside the training range passes a linear column linearly.
    far = X[:1].copy()
    far[0, 0] = 10.0 + 50.0 * 20.0
    assert encoder.transform(far)[0, 0] == pytest.approx(
        (far[0, 0] - encoder.center[0]) / encoder.scale[0]
    )
    robust = MixtureOfExpertsRegressor(
        input_scaling="robust", max_iter=2, random_state=0, device="cpu"
    ).fit(X, y)
    assert np.abs(robust._input_encoder.transform(X)).max() < 3.0
    # Rows of zero weight do not count: without the 3 extreme rows, "rare" is
    # Gaussian.
    weights = np.ones(n)
    weights[:3] = 0.0
    weighted = MixtureOfExpertsRegressor(max_iter=2, random_state=0, device="cpu")
    weighted.fit(X, y, sample_weight=weights)
    assert np.abs(weighted._input_encoder.transform(X[3:])[:, 3]).max() > 3.0


def test_auto_scaling_rule_is_the_one_the_data_parallel_encoder_uses():
    """The encoder fitted from every shard's rows clips the same columns as one
    fitted on all the rows."""
    from skmoe._preprocessing import InputEncoder

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    X[5, 2] = 40.0  # one outlier, in the second shard's half
    X[:, 1] = rng.lognormal(sigma=1.5, size=400)
    whole = InputEncoder("MixtureOfExpertsRegressor", None, "auto", None)
    whole.fit_transform(X)
    shards = [X[200:], X[:200]]
    encoders = []
    for rank, shard in enumerate(shards):
        other = shards[1 - rank]

        def exchange(summary, other=other):
            return [summary, (other, np.ones(len(other)), [], [False] * 3)]

        encoder = InputEncoder("MixtureOfExpertsRegressor", None, "auto", None)
        encoder.fit_transform_shared(shard, None, exchange)
        encoders.append(encoder)
    assert whole.clip == [None, 3.0, 3.0]
    assert [e.clip for e in encoders] == [whole.clip, whole.clip]
