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
    nodes = to_onnx(estimator, X_TRAIN[:1]).graph.node
    ops = {node.op_type for node in nodes}
    assert "TopK" in ops and "ScatterElements" in ops
    assert not ops & {"If", "Loop", "Scan", "NonZero", "Compress"}
    # The one element-wise selection reads a NaN as 0 (as predict does).
    made_by = {out: node.op_type for node in nodes for out in node.output}
    wheres = [node for node in nodes if node.op_type == "Where"]
    assert [made_by[node.input[0]] for node in wheres] == ["IsNaN"]


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
    model = skl2onnx.to_onnx(pipe, frame[:1], options={"zipmap": False})
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


# -- skl2onnx's classifier options ----------------------------------------------------


def _pipeline_pair(labels):
    """The same Pipeline ending in a skmoe classifier and in LogisticRegression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = X_TRAIN.astype(np.float32)
    y = np.asarray(labels)[_targets("classifier", 1, X_TRAIN)]
    ours = make_pipeline(StandardScaler(), MixtureOfExpertsClassifier(**FAST))
    theirs = make_pipeline(StandardScaler(), LogisticRegression())
    return X, ours.fit(X, y), theirs.fit(X, y)


def _outputs_as_python(model, X):
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, {"X": X}), [o.name for o in session.get_outputs()]


@pytest.mark.parametrize(
    "options",
    [
        None,
        {"zipmap": False},
        {"zipmap": True},
        {"zipmap": "columns"},
        {"nocl": True},
        {"zipmap": False, "nocl": True},
    ],
    ids=str,
)
@pytest.mark.parametrize(
    "labels", [["low", "mid", "high"], [0.0, 1.0, 2.0], [3, 5, 7]], ids=str
)
def test_zipmap_and_nocl_work_as_for_skl2onnx_classifiers(options, labels):
    """A Pipeline ending in a skmoe classifier takes skl2onnx's classifier options
    and gives the outputs (names, kinds, label types, keys) that LogisticRegression
    gives."""
    X, ours, theirs = _pipeline_pair(labels)
    skmoe.export.register_converters()
    got, names = _outputs_as_python(skl2onnx.to_onnx(ours, X[:1], options=options), X)
    want, want_names = _outputs_as_python(
        skl2onnx.to_onnx(theirs, X[:1], options=options), X
    )
    assert names == want_names
    assert [type(o) for o in got] == [type(o) for o in want]
    assert got[0].dtype == want[0].dtype
    classes = ours.classes_
    proba = ours.predict_proba(X)
    nocl = bool(options and options.get("nocl"))
    expected_labels = (
        np.argmax(proba, axis=1) if nocl else classes[np.argmax(proba, axis=1)]
    )
    np.testing.assert_array_equal(got[0], expected_labels)
    keys = list(range(len(classes))) if nocl else list(classes)
    if isinstance(got[1], list):  # zipmap: one {class: probability} per row
        assert list(got[1][0]) == list(want[1][0]) == keys
        table = np.array([[row[k] for k in keys] for row in got[1]])
    elif len(got) > 2:  # zipmap="columns": one column per class
        table = np.column_stack(got[1:])
    else:
        table = got[1]
    np.testing.assert_allclose(table, proba, atol=1e-5)


def test_multi_output_classifier_keeps_tensors_and_refuses_zipmap_columns():
    estimator = MultiGateMoEClassifier(**FAST).fit(
        X_TRAIN, _targets("classifier", 2, X_TRAIN)
    )
    skmoe.export.register_converters()
    X = X_TRAIN[:20].astype(np.float32)
    model = skl2onnx.to_onnx(estimator, X[:1], options={"nocl": True})
    label, *probas = ort.InferenceSession(model.SerializeToString()).run(None, {"X": X})
    expected = estimator.predict_proba(X)
    np.testing.assert_array_equal(
        label, np.column_stack([p.argmax(axis=1) for p in expected])
    )
    for got, want in zip(probas, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="zipmap='columns' needs a classifier with"):
        skl2onnx.to_onnx(estimator, X[:1], options={"zipmap": "columns"})


# -- raw DataFrames: categorical columns, NaN, numerical embeddings -------------------


def _frame(n, seed):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n) * 50.0 + 10.0,
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n).astype(object),
            "age": rng.normal(size=n),
            "grade": pd.Categorical(rng.choice([1, 2, 7], n)),
        }
    )
    frame.loc[::7, "size"] = np.nan
    frame.loc[::11, "city"] = None
    return frame


def _frame_target(frame, kind):
    z = frame["size"].fillna(0.0) / 50.0 + (frame["city"] == "rome") - frame["age"]
    if kind == "classifier":
        return np.array(["no", "yes"])[(z > 0).to_numpy().astype(int)]
    return 3.0 * z.to_numpy() + 100.0


def _frame_test_rows():
    """Rows with unseen categories, missing categories and NaN in both numerical
    columns (one of which had no NaN in training)."""
    test = _frame(300, seed=1)
    test.loc[0, "city"] = "berlin"  # unseen
    test.loc[1, "city"] = np.nan
    test.loc[2, "age"] = np.nan  # no NaN in training
    test.loc[3, ["size", "age"]] = np.nan
    test["grade"] = test["grade"].cat.add_categories([99])
    test.loc[4, "grade"] = 99  # unseen
    test.loc[5, "grade"] = np.nan
    return test


def _check_frame(estimator, model, frame, atol):
    from skmoe.export import onnx_inputs

    session = ort.InferenceSession(model.SerializeToString())
    outputs = session.run(None, onnx_inputs(model, frame))
    if hasattr(estimator, "predict_proba"):
        label, proba = outputs
        np.testing.assert_allclose(proba, estimator.predict_proba(frame), atol=atol)
        np.testing.assert_array_equal(label, estimator.predict(frame))
    else:
        scale = estimator._scaler.scale.max()
        np.testing.assert_allclose(
            outputs[0].ravel(), estimator.predict(frame), atol=atol * scale, rtol=0
        )


@pytest.mark.parametrize("num_embedding", [None, "periodic", "piecewise_linear"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_raw_frame_with_categories_nan_and_embeddings(kind, num_embedding):
    frame = _frame(300, seed=0)
    cls = (
        MixtureOfExpertsClassifier
        if kind == "classifier"
        else (MixtureOfExpertsRegressor)
    )
    estimator = cls(num_embedding=num_embedding, top_k=2, **FAST)
    estimator.fit(frame, _frame_target(frame, kind))
    test = _frame_test_rows()
    model = to_onnx(estimator, frame[:2])
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    # one (rows, 1) input per column: float64 numbers, strings, float64 categories
    assert inputs == {"size": 11, "city": 8, "age": 11, "grade": 11}
    _check_frame(estimator, model, test, atol=1e-6)
    model32 = to_onnx(
        estimator, frame[:2].astype({"size": "float32", "age": "float32"})
    )
    assert model32.graph.input[0].type.tensor_type.elem_type == 1  # float32
    _check_frame(estimator, model32, test, atol=1e-4)


def test_categorical_column_indices_of_an_array():
    """categorical_features by index on a float array: one input per column named
    x0, x1, ...; a NaN category reads as missing."""
    X = X_TRAIN.copy()
    X[:, 2] = np.arange(240) % 4 * 10.0
    X[::9, 2] = np.nan
    y = _targets("classifier", 1, X_TRAIN)
    estimator = MixtureOfExpertsClassifier(categorical_features=[2], **FAST).fit(X, y)
    test = X_TEST[:200].copy()
    test[:, 2] = np.arange(200) % 6 * 10.0  # 40 and 50 unseen
    test[::5, 2] = np.nan
    model = to_onnx(estimator, X[:3])
    assert [i.name for i in model.graph.input] == [f"x{j}" for j in range(6)]
    _check_frame(estimator, model, test, atol=1e-6)


def test_nan_at_inference_in_a_column_without_nan_in_training(fitted_regressor):
    test = X_TEST[:50].copy()
    test[::3, 1] = np.nan
    (values,) = _run(to_onnx(fitted_regressor, X_TRAIN[:2]), test)
    np.testing.assert_allclose(
        values.ravel(), fitted_regressor.predict(test), rtol=0, atol=1e-6
    )


def test_skl2onnx_guesses_the_frame_inputs():
    """skl2onnx.to_onnx on the estimator fitted on a frame, with the input types it
    guesses from the frame (integers and strings)."""
    frame = _frame(300, seed=0)
    frame["grade"] = frame["grade"].astype(np.int64)
    frame["city"] = frame["city"].fillna("")
    y = _frame_target(frame, "classifier")
    estimator = MixtureOfExpertsClassifier(
        categorical_features=["city", "grade"], **FAST
    ).fit(frame, y)
    skmoe.export.register_converters()
    model = skl2onnx.to_onnx(estimator, frame[:1], options={"zipmap": False})
    session = ort.InferenceSession(model.SerializeToString())
    feeds = {c: frame[[c]].to_numpy() for c in frame.columns}
    feeds["city"] = feeds["city"].astype(object)
    label, proba = session.run(None, feeds)
    np.testing.assert_allclose(proba, estimator.predict_proba(frame), atol=1e-5)
    assert (label == estimator.predict(frame)).mean() > 0.99


# -- multi-gate models ----------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["mmoe", "ple"])
def test_mixed_task_types_one_output_per_task(architecture):
    pd = pytest.importorskip("pandas")
    from skmoe import MultiGateMoE

    frame = _frame(300, seed=0)
    z = _frame_target(frame, "regressor")
    y = pd.DataFrame(
        {
            "click": (z > 100).astype(int),
            "colour": np.array(["red", "green", "blue"])[np.digitize(z, [98, 102])],
            "dwell": z * 10.0,
        }
    )
    estimator = MultiGateMoE(
        architecture=architecture, num_embedding="periodic", **FAST
    ).fit(frame, y)
    test = _frame_test_rows()
    model = to_onnx(estimator, frame[:2])
    names = [o.name for o in model.graph.output]
    assert names == [
        "label_click",
        "probabilities_click",
        "label_colour",
        "probabilities_colour",
        "variable_dwell",
    ]
    from skmoe.export import onnx_inputs

    session = ort.InferenceSession(model.SerializeToString())
    outputs = dict(zip(names, session.run(None, onnx_inputs(model, test)), strict=True))
    predicted, proba = estimator.predict(test), estimator.predict_proba(test)
    for task in ("click", "colour"):
        np.testing.assert_allclose(
            outputs[f"probabilities_{task}"], proba[task], atol=1e-6
        )
        np.testing.assert_array_equal(outputs[f"label_{task}"], predicted[task])
    np.testing.assert_allclose(
        outputs["variable_dwell"].ravel(), predicted["dwell"], rtol=1e-9, atol=1e-6
    )


def test_mixed_tasks_of_an_array_with_a_chain():
    from skmoe import MultiGateMoE

    click = (X_TRAIN[:, 0] > 0).astype(int)
    buy = click & (X_TRAIN[:, 1] > 0)
    y = np.column_stack([click, buy, 5.0 * X_TRAIN[:, 2]])
    estimator = MultiGateMoE(
        task_types=["binary", "binary", "regression"], task_chain={1: 0}, **FAST
    ).fit(X_TRAIN, y)
    model = to_onnx(estimator, X_TRAIN[:2])
    names = [o.name for o in model.graph.output]
    assert names == [
        "label_0",
        "probabilities_0",
        "label_1",
        "probabilities_1",
        "variable_2",
    ]
    outputs = _run(model, X_TEST[:300])
    predicted, proba = (
        estimator.predict(X_TEST[:300]),
        estimator.predict_proba(X_TEST[:300]),
    )
    for t in (0, 1):
        np.testing.assert_allclose(outputs[2 * t + 1], proba[t], atol=1e-6)
        np.testing.assert_array_equal(outputs[2 * t], predicted[:, t])
    np.testing.assert_allclose(outputs[4].ravel(), predicted[:, 2], atol=1e-6)


@pytest.mark.parametrize("cls", [MultiGateMoEClassifier, MultiGateMoERegressor])
def test_multigate_estimators_on_a_raw_frame(cls):
    frame = _frame(300, seed=0)
    kind = "classifier" if cls is MultiGateMoEClassifier else "regressor"
    first = _frame_target(frame, kind)
    second = (
        np.where(frame["age"] > 0, "old", "young")
        if kind == "classifier"
        else frame["age"].to_numpy() * 7.0
    )
    estimator = cls(architecture="cgc", num_embedding="piecewise_linear", **FAST).fit(
        frame, np.column_stack([first, second])
    )
    test = _frame_test_rows()
    from skmoe.export import onnx_inputs

    model = to_onnx(estimator, frame[:2])
    outputs = ort.InferenceSession(model.SerializeToString()).run(
        None, onnx_inputs(model, test)
    )
    if kind == "classifier":
        np.testing.assert_array_equal(outputs[0], estimator.predict(test))
        for got, want in zip(outputs[1:], estimator.predict_proba(test), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6)
    else:
        scale = estimator._scaler.scale
        np.testing.assert_allclose(
            outputs[0], estimator.predict(test), atol=1e-6 * scale.max(), rtol=0
        )


# -- what cannot export ---------------------------------------------------------------


def test_categories_of_mixed_types_are_refused_naming_the_parameter():
    frame = _frame(300, seed=0)
    frame["city"] = frame["city"].where(frame.index % 5 != 0, 3)  # strings and ints
    estimator = MixtureOfExpertsRegressor(**FAST).fit(
        frame, _frame_target(frame, "regressor")
    )
    with pytest.raises(TypeError, match=r"'city' \(categorical_features\)") as info:
        to_onnx(estimator, frame[:2])
    assert "EmbeddedModel" not in str(info.value)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_infrequent_categories_export_to_their_shared_row(kind):
    frame = _frame(300, seed=0)
    frame.loc[::50, "city"] = "rare"  # 6 rows: infrequent under min_frequency=10
    cls = (
        MixtureOfExpertsClassifier
        if kind == "classifier"
        else MixtureOfExpertsRegressor
    )
    estimator = cls(min_frequency=10, **FAST).fit(frame, _frame_target(frame, kind))
    assert estimator._input_encoder.infrequent[0] == ["rare"]
    test = _frame_test_rows()
    test.loc[6:9, "city"] = "rare"
    _check_frame(estimator, to_onnx(estimator, frame[:2]), test, atol=1e-6)


@pytest.mark.parametrize(
    ("params", "change", "says"),
    [
        ({"categorical_hash_buckets": 8}, None, "categorical_hash_buckets"),
        ({}, "lists", "list-valued"),
        ({"list_separators": {"city": "|"}}, None, "list_separators"),
    ],
)
def test_hashed_and_list_columns_are_refused_naming_the_parameter(params, change, says):
    frame = _frame(300, seed=0)
    if change == "lists":
        frame["city"] = frame["city"].map(lambda c: [] if c is None else [c])
    estimator = MixtureOfExpertsRegressor(**params, **FAST).fit(
        frame, _frame_target(_frame(300, seed=0), "regressor")
    )
    with pytest.raises(TypeError, match=says) as info:
        to_onnx(estimator, frame[:2])
    assert "'city'" in str(info.value)


def test_distilled_student_of_a_raw_frame():
    """distill's student is fitted on the teacher's raw frame and exports from it."""
    frame = _frame(300, seed=0)
    teacher = MixtureOfExpertsRegressor(num_embedding="piecewise_linear", **FAST)
    teacher.fit(frame, _frame_target(frame, "regressor"))
    student = skmoe.distill(teacher, frame, max_iter=2)
    test = _frame_test_rows()
    _check_frame(student, to_onnx(student, frame[:2]), test, atol=1e-6)


def test_categorical_codes_from_a_pipeline_step():
    """A skmoe estimator with categorical_features after an OrdinalEncoder reads the
    codes from the one tensor the Pipeline hands it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    frame = _frame(300, seed=0)
    frame["city"] = frame["city"].fillna("none")
    numbers = ColumnTransformer(
        [("city", OrdinalEncoder(), ["city"])], remainder="passthrough"
    )
    pipe = make_pipeline(
        numbers, MixtureOfExpertsRegressor(categorical_features=[0], **FAST)
    )
    pipe.fit(frame[["city", "size"]], _frame_target(frame, "regressor"))
    skmoe.export.register_converters()
    model = skl2onnx.to_onnx(pipe, frame[["city", "size"]][:1])
    test = _frame_test_rows()[["city", "size"]].iloc[6:]  # no unseen cities
    test["city"] = test["city"].fillna("none")
    feeds = {
        "city": test[["city"]].to_numpy().astype(object),
        "size": test[["size"]].to_numpy(),
    }
    (values,) = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(
        values.ravel(), pipe.predict(test), rtol=0, atol=1e-6 * 50.0
    )


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
