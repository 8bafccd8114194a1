"""ONNX export: onnxruntime reproduces predict / predict_proba for every estimator
and routing scheme, alone and at the end of a scikit-learn Pipeline; bad input is
refused."""

import sys

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
    to_onnx,
)

ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

ROUTINGS = {
    "dense": dict(top_k=None),
    "top2": dict(top_k=2),
    "noisy": dict(top_k=2, gating="noisy"),
    "switch": dict(gating="switch"),
}
RNG = np.random.default_rng(0)
X_TRAIN = RNG.normal(size=(240, 6))
X_TEST = RNG.normal(size=(5000, 6))
FAST = dict(max_iter=3, random_state=0, expert_hidden_layer_sizes=(16,))


def _targets(kind, n_outputs, X):
    columns = []
    for j in range(n_outputs):
        z = X[:, j] + 0.5 * X[:, j + 1]
        if kind == "classifier":
            columns.append(np.digitize(z, [-0.5, 0.5]) + 3 * j)  # 3 classes
        else:
            columns.append(200.0 * z + 50.0 * j)  # far from standardised
    return columns[0] if n_outputs == 1 else np.column_stack(columns)


def _run(model, X):
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, {"X": X})


def _check(estimator, model, X, atol):
    """Every output of the ONNX model against predict / predict_proba."""
    outputs = _run(model, X)
    if hasattr(estimator, "predict_proba"):
        probas = estimator.predict_proba(X)
        probas = probas if isinstance(probas, list) else [probas]
        assert len(outputs) == 1 + len(probas)
        for got, expected in zip(outputs[1:], probas, strict=True):
            np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
        # labels: where the two best classes are not within rounding of each other
        best = [np.sort(p, axis=1)[:, -2:] for p in probas]
        clear = np.all([b[:, 1] - b[:, 0] > 10 * atol for b in best], axis=0)
        labels = estimator.predict(X)
        assert outputs[0].shape == labels.shape
        np.testing.assert_array_equal(outputs[0][clear], labels[clear])
    else:
        predicted = estimator.predict(X).reshape(len(X), -1)
        scale = estimator._scaler.scale  # the model's error is relative to it
        np.testing.assert_allclose(outputs[0], predicted, atol=atol * scale.max())


ESTIMATORS = [
    (MixtureOfExpertsClassifier, 1, {}),
    (MixtureOfExpertsRegressor, 1, {}),
    (MixtureOfExpertsClassifier, 2, {}),
    (MultiGateMoEClassifier, 2, dict(architecture="mmoe")),
    (MultiGateMoERegressor, 2, dict(architecture="ple", n_levels=2)),
]


@pytest.mark.parametrize("routing", ROUTINGS, ids=str)
@pytest.mark.parametrize(
    "cls, n_outputs, extra",
    ESTIMATORS,
    ids=lambda p: getattr(p, "__name__", str(p)),
)
def test_onnx_matches_predictions(cls, n_outputs, extra, routing):
    kind = "classifier" if "Classifier" in cls.__name__ else "regressor"
    estimator = cls(**FAST, **extra, **ROUTINGS[routing])
    estimator.fit(X_TRAIN, _targets(kind, n_outputs, X_TRAIN))
    model64 = to_onnx(estimator, X_TRAIN[:2])
    model32 = to_onnx(estimator, X_TRAIN[:2].astype(np.float32))
    for n_rows in (1, 3, 5000):
        X = X_TEST[:n_rows]
        _check(estimator, model64, X, atol=1e-6)
        _check(estimator, model32, X.astype(np.float32), atol=1e-5)


@pytest.mark.parametrize("architecture", ["omoe", "cgc", "shared_bottom"])
def test_other_multigate_architectures(architecture):
    estimator = MultiGateMoERegressor(architecture=architecture, top_k=None, **FAST)
    estimator.fit(X_TRAIN, _targets("regressor", 2, X_TRAIN))
    _check(estimator, to_onnx(estimator, X_TRAIN[:1]), X_TEST[:300], atol=1e-6)


def test_multigate_top_k_ple_single_task():
    estimator = MultiGateMoEClassifier(architecture="ple", top_k=1, **FAST)
    y = _targets("classifier", 1, X_TRAIN).reshape(-1, 1)
    estimator.fit(X_TRAIN, y)
    _check(estimator, to_onnx(estimator, X_TRAIN[:1]), X_TEST[:300], atol=1e-6)


def test_string_labels_and_tanh_experts():
    y = np.array(["low", "mid", "high"])[_targets("classifier", 1, X_TRAIN)]
    estimator = MixtureOfExpertsClassifier(activation="tanh", top_k=2, **FAST)
    estimator.fit(X_TRAIN, y)
    label, proba = _run(to_onnx(estimator, X_TRAIN[:1]), X_TEST[:50])
    np.testing.assert_array_equal(label, estimator.predict(X_TEST[:50]))
    np.testing.assert_allclose(proba, estimator.predict_proba(X_TEST[:50]), atol=1e-6)


def test_graph_has_no_data_dependent_branch():
    estimator = MixtureOfExpertsClassifier(top_k=2, **FAST)
    estimator.fit(X_TRAIN, _targets("classifier", 1, X_TRAIN))
    ops = {node.op_type for node in to_onnx(estimator, X_TRAIN[:1]).graph.node}
    assert "TopK" in ops and "ScatterElements" in ops
    assert not ops & {"If", "Loop", "Scan", "NonZero", "Where", "Compress"}


def test_pipeline_with_column_transformer_converts_into_one_graph():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame(
        {
            "x0": X_TRAIN[:, 0].astype(np.float32),
            "x1": X_TRAIN[:, 1].astype(np.float32),
            "city": np.array(["a", "b", "c"])[np.arange(240) % 3],
        }
    )
    y = (frame["x0"] + (frame["city"] == "b") > 0.3).astype(int).to_numpy()
    pipe = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["x0", "x1"]),
                ("cat", OneHotEncoder(), ["city"]),
            ]
        ),
        MixtureOfExpertsClassifier(top_k=2, **FAST),
    ).fit(frame, y)
    skmoe.export.register_converters()
    model = skl2onnx.to_onnx(pipe, frame[:1])
    session = ort.InferenceSession(model.SerializeToString())
    feeds = {
        "x0": frame[["x0"]].to_numpy(),
        "x1": frame[["x1"]].to_numpy(),
        "city": frame[["city"]].to_numpy().astype(object),
    }
    label, proba = session.run(None, feeds)
    np.testing.assert_allclose(proba, pipe.predict_proba(frame), atol=1e-5)
    assert (label == pipe.predict(frame)).mean() > 0.99


def test_unfitted_estimator_raises_not_fitted():
    with pytest.raises(NotFittedError):
        to_onnx(MixtureOfExpertsRegressor(), X_TRAIN[:1])


@pytest.fixture(scope="module")
def fitted_regressor():
    return MixtureOfExpertsRegressor(**FAST).fit(X_TRAIN, X_TRAIN[:, 0])


@pytest.mark.parametrize("shape", [(1, 5), (1, 7), (6,)])
def test_wrong_width_raises_value_error(fitted_regressor, shape):
    with pytest.raises(ValueError, match="6 features"):
        to_onnx(fitted_regressor, np.zeros(shape))


def test_sparse_sample_rows(fitted_regressor):
    import scipy.sparse as sp

    model = to_onnx(fitted_regressor, sp.csr_matrix(X_TRAIN[:3]))
    (values,) = _run(model, X_TEST[:4].astype(np.float64))
    np.testing.assert_allclose(
        values.ravel(), fitted_regressor.predict(X_TEST[:4]), rtol=1e-6, atol=1e-6
    )


def test_old_opset_raises_value_error(fitted_regressor):
    with pytest.raises(ValueError, match="target_opset >= 13"):
        to_onnx(fitted_regressor, X_TRAIN[:1], target_opset=12)


def test_unknown_module_structure_is_refused(fitted_regressor):
    import copy

    estimator = copy.deepcopy(fitted_regressor)
    estimator.module_ = torch.nn.Sequential(estimator.module_)
    with pytest.raises(TypeError, match="does not support a module of type Sequential"):
        to_onnx(estimator, X_TRAIN[:1])


def test_unknown_estimator_is_refused(fitted_regressor):
    class Subclassed(MixtureOfExpertsRegressor):
        pass

    estimator = Subclassed(**FAST).fit(X_TRAIN, X_TRAIN[:, 0])
    with pytest.raises(TypeError, match="ONNX export supports MixtureOfExperts"):
        to_onnx(estimator, X_TRAIN[:1])


def test_missing_extra_names_it(fitted_regressor, monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ImportError, match=r"skmoe\[onnx\]"):
        to_onnx(fitted_regressor, X_TRAIN[:1])


def test_latency_benchmark_runs_in_quick_mode():
    from _scripts import run_script

    out = run_script("benchmarks/onnx_latency.py", "--quick").stdout
    header = "| routing | predictor | 1-row latency (µs) | ratio to MLPClassifier |"
    assert header in out
    for name in ("MLPClassifier.predict", "skmoe predict", "onnxruntime (skmoe graph)"):
        assert out.count(f"| {name} |") == 3, out


def test_module_with_unknown_parts_is_refused(fitted_regressor):
    """An input embedding added in front of the mixture is not silently dropped."""
    import copy

    estimator = copy.deepcopy(fitted_regressor)
    estimator.module_.add_module("embedding", torch.nn.Identity())
    with pytest.raises(TypeError, match=r"with the parts \['embedding'\]"):
        to_onnx(estimator, X_TRAIN[:1])


def test_graph_that_disagrees_with_predict_is_refused(fitted_regressor):
    """An input transformation the exporter does not know (here a stand-in for an
    input encoder) is caught by the check against predict on X_sample."""
    import copy

    estimator = copy.deepcopy(fitted_regressor)
    validate = estimator._validate_X
    estimator._validate_X = lambda X: validate(X) * 2.0
    with pytest.raises(TypeError, match="differs from its predictions on X_sample"):
        to_onnx(estimator, X_TRAIN[:5])


@pytest.mark.parametrize("cls", [MixtureOfExpertsRegressor, MultiGateMoEClassifier])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_robust_scaling_and_missing_values_are_in_the_graph(cls, dtype):
    """The default robust scaling, its smooth clip of outliers, NaN and the
    missing-value indicators are exported with the network."""
    X = X_TRAIN * 1000.0 + 7.0  # far from scaled
    X[::6, 1] = np.nan
    X[::9, 4] = np.nan
    y = _targets(
        "classifier" if "Classifier" in cls.__name__ else "regressor", 1, X_TRAIN
    )
    estimator = cls(input_scaling="robust", **FAST).fit(X, y)
    assert estimator._input_encoder.n_indicators == 2
    test = X_TEST[:200] * 1000.0 + 7.0
    test[::4, 1] = np.nan
    test[0, 2], test[1, 3] = 1e30, -1e30  # clipped, not overflowed
    model = to_onnx(estimator, test[:1].astype(dtype))
    _check(estimator, model, test.astype(dtype), 1e-4)


@pytest.mark.parametrize("cls", [MixtureOfExpertsRegressor, MultiGateMoEClassifier])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_scaling_clips_in_the_graph_only_the_columns_it_clips(cls, dtype):
    """With ``input_scaling="auto"`` some columns are clipped and others stay linear:
    the graph does the same, including on test values far outside the training
    range of a linear column."""
    X = X_TRAIN * 1000.0 + 7.0
    X[:3, 2] = 1e7  # outliers: column 2 is clipped, the others stay linear
    X[::6, 1] = np.nan
    y = _targets(
        "classifier" if "Classifier" in cls.__name__ else "regressor", 1, X_TRAIN
    )
    estimator = cls(**FAST).fit(X, y)
    assert estimator._input_encoder.clip == [None, None, 3.0, None, None, None]
    test = X_TEST[:200] * 1000.0 + 7.0
    test[::4, 1] = np.nan
    test[0, 2], test[1, 2] = 1e30, -1e30  # clipped, not overflowed
    test[2, 0] = 20_000.0  # linear, past the training range
    model = to_onnx(estimator, test[:1].astype(dtype))
    _check(estimator, model, test.astype(dtype), 1e-4)
