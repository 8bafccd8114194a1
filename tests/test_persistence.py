"""skmoe.save / skmoe.load: safetensors plus JSON, no pickle, and refusals."""

import json
import pickle

import joblib
import numpy as np
import pytest
import sklearn.base
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import skmoe
from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)

FAST = dict(max_iter=5, random_state=0, device="cpu")
rng = np.random.default_rng(0)
X = rng.normal(size=(120, 5))
Y_REG = np.column_stack([X[:, 0] + X[:, 1], X[:, 2] * 3.0])
Y_CLS = np.column_stack(
    [np.where(X[:, 0] > 0, "up", "down"), np.digitize(X[:, 1], [-0.5, 0.5])]
).astype(object)

CASES = [
    (MixtureOfExpertsClassifier(top_k=2, **FAST), Y_CLS[:, 0]),
    (MixtureOfExpertsClassifier(gating="noisy", top_k=1, **FAST), Y_CLS),
    (MixtureOfExpertsRegressor(**FAST), Y_REG[:, 0]),
    (MixtureOfExpertsRegressor(gating="switch", **FAST), Y_REG),
    (MultiGateMoEClassifier(architecture="ple", **FAST), Y_CLS),
    (MultiGateMoERegressor(architecture="cgc", task_weights=[1, 2], **FAST), Y_REG),
    (MultiGateMoERegressor(architecture="shared_bottom", **FAST), Y_REG),
]


def _outputs(est):
    out = {"predict": est.predict(X), "gate_weights": est.gate_weights(X)}
    if hasattr(est, "predict_proba"):
        out["predict_proba"] = est.predict_proba(X)
    return out


@pytest.mark.parametrize("est, y", CASES, ids=lambda c: type(c).__name__)
def test_round_trip_gives_identical_predictions(tmp_path, est, y):
    est.fit(X, y)
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    loaded = skmoe.load(path)
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    for name, value in _outputs(est).items():
        got = _outputs(loaded)[name]
        if isinstance(value, list):
            for a, b in zip(value, got, strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(value, got)
    if hasattr(est, "classes_"):
        classes = est.classes_ if isinstance(est.classes_, list) else [est.classes_]
        got = (
            loaded.classes_ if isinstance(loaded.classes_, list) else [loaded.classes_]
        )
        for a, b in zip(classes, got, strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    assert loaded.loss_curve_ == est.loss_curve_
    assert loaded.batch_size_ == est.batch_size_
    np.testing.assert_array_equal(loaded.expert_usage_, est.expert_usage_)
    loaded.partial_fit(X, y)  # still trainable
    assert loaded.n_iter_ == est.n_iter_ + 1


def test_file_holds_only_tensors_and_json(tmp_path):
    est = MixtureOfExpertsClassifier(**FAST).fit(X, Y_CLS[:, 0])
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["skmoe"])
        assert set(handle.keys()) == set(est.module_.state_dict())
    assert document["format_version"] == skmoe.persistence.FORMAT_VERSION
    assert document["versions"]["torch"] == torch.__version__
    assert document["params"]["expert_hidden_layer_sizes"] == [64]


def test_feature_names_survive(tmp_path):
    pd = pytest.importorskip("pandas", reason="DataFrame input needs pandas")
    frame = pd.DataFrame(X, columns=list("abcde"))
    est = MixtureOfExpertsRegressor(**FAST).fit(frame, Y_REG[:, 0])
    skmoe.save(est, tmp_path / "m.safetensors")
    loaded = skmoe.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[list("edcba")])


def _tamper(path, edit):
    """Edit a saved file as someone would who also recomputes its checksum: the
    checks behind the checksum must hold on their own."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        document = json.loads(metadata["skmoe"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    edit(document, tensors)
    metadata["skmoe"] = json.dumps(document)
    metadata["skmoe.sha256"] = skmoe.persistence._checksum(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)


@pytest.fixture
def saved(tmp_path):
    est = MixtureOfExpertsClassifier(**FAST).fit(X, Y_CLS[:, 0])
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    return path


def _set(mapping, key, value):
    mapping[key] = value


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d, t: _set(d, "format_version", 99), "newer"),
        (lambda d, t: _set(d, "estimator", "os.system"), "unknown estimator"),
        (lambda d, t: _set(d["params"], "n_experts", 10**9), "do not match"),
        (lambda d, t: _set(d["params"], "n_experts", -1), "parameters are invalid"),
        (lambda d, t: _set(d["params"], "evil", 1), "unknown parameters"),
        (lambda d, t: _set(d["fitted"], "n_features_in_", "5"), "n_features_in_"),
        (lambda d, t: d["fitted"].pop("classes"), "without classes"),
        (
            lambda d, t: _set(
                d["fitted"], "classes", [{"dtype": "|O", "values": [{"x": 1}, 2]}]
            ),
            "object arrays",
        ),
        (lambda d, t: t.pop(next(iter(t))), "do not match"),
        (lambda d, t: t.update({k: v * np.nan for k, v in t.items()}), "non-finite"),
        (lambda d, t: _set(d, "format", "pickle"), "not a skmoe"),
    ],
)
def test_tampered_files_are_refused(saved, edit, message):
    _tamper(saved, edit)
    with pytest.raises(ValueError, match=message):
        skmoe.load(saved)


def test_truncated_and_foreign_files_are_refused(saved, tmp_path):
    data = saved.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable skmoe model"):
        skmoe.load(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="no skmoe metadata"):
        skmoe.load(foreign)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(MixtureOfExpertsClassifier()))
    with pytest.raises(ValueError, match="not a readable"):
        skmoe.load(pickled)
    with pytest.raises(FileNotFoundError):
        skmoe.load(tmp_path / "missing.safetensors")


def test_save_refuses_unfitted_and_foreign_estimators(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        skmoe.save(MixtureOfExpertsClassifier(), tmp_path / "m.safetensors")
    from sklearn.linear_model import LinearRegression

    with pytest.raises(TypeError, match="skmoe estimators"):
        skmoe.save(LinearRegression().fit(X, Y_REG), tmp_path / "m.safetensors")


def test_pickle_and_joblib_round_trip(tmp_path):
    est = MultiGateMoEClassifier(**FAST).fit(X, Y_CLS)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict(X), est.predict(X))
    joblib.dump(est, tmp_path / "m.joblib")
    again = joblib.load(tmp_path / "m.joblib")
    for a, b in zip(again.predict_proba(X), est.predict_proba(X), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_saves_and_pickles_to_cpu_tensors(tmp_path):
    est = MixtureOfExpertsClassifier(max_iter=3, random_state=0, device="cuda")
    est.fit(X, Y_CLS[:, 0])
    skmoe.save(est, tmp_path / "m.safetensors")
    loaded = skmoe.load(tmp_path / "m.safetensors", device="cpu")
    assert loaded.device_.type == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X), atol=1e-5)
    state = est.__getstate__()
    assert all(p.device.type == "cpu" for p in state["module_"].parameters())


def test_model_saved_from_cuda_loads_on_this_cpu(tmp_path):
    # A file written on a CUDA machine differs only in the recorded device; its
    # tensors are always stored on the CPU.
    est = MixtureOfExpertsClassifier(**FAST).fit(X, Y_CLS[:, 0])
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    _tamper(path, lambda d, t: _set(d["fitted"], "device", "cuda:0"))
    loaded = skmoe.load(path)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loaded.device_.type == expected
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X), atol=1e-6)


def test_pickle_from_a_cuda_machine_unpickles_here():
    est = MixtureOfExpertsRegressor(**FAST).fit(X, Y_REG)
    state = est.__getstate__()
    state["_pickled_device"] = "cuda:0"  # what __getstate__ records on a CUDA machine
    clone = MixtureOfExpertsRegressor.__new__(MixtureOfExpertsRegressor)
    clone.__setstate__(state)
    assert clone.device_.type == ("cuda" if torch.cuda.is_available() else "cpu")
    np.testing.assert_allclose(clone.predict(X), est.predict(X), rtol=1e-6)


# -- Pipelines ------------------------------------------------------------------------
def _frame():
    pd = pytest.importorskip("pandas")
    local = np.random.default_rng(1)
    n = 150
    frame = pd.DataFrame(
        {
            "age": local.integers(18, 80, n),
            "income": local.lognormal(10, 0.5, n),
            "city": local.choice(["paris", "lyon", "nice"], n),
        }
    )
    y = np.where((frame["age"] > 40) ^ (frame["city"] == "lyon"), "churn", "stay")
    return frame, y


def _pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    preprocess = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(), StandardScaler()),
                ["age", "income"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    return make_pipeline(preprocess, MixtureOfExpertsClassifier(top_k=2, **FAST))


def test_pipeline_round_trip_gives_identical_probabilities(tmp_path):
    pytest.importorskip("skops")
    frame, y = _frame()
    pipe = _pipeline().fit(frame, y)
    path = tmp_path / "pipe.safetensors"
    skmoe.save(pipe, path)
    loaded = skmoe.load(path)
    assert [name for name, _ in loaded.steps] == [name for name, _ in pipe.steps]
    np.testing.assert_array_equal(
        loaded.predict_proba(frame), pipe.predict_proba(frame)
    )
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    assert loaded[-1] is not pipe[-1] and loaded[-1].top_k_ == 2
    with safe_open(str(path), framework="pt") as handle:
        # the skmoe weights are plain tensors; the transformers went through skops
        assert all(k.startswith("estimators.0.") for k in handle.keys())  # noqa: SIM118
        assert set(handle.metadata()) == {"skmoe", "skmoe.skops", "skmoe.sha256"}


def test_grid_search_best_estimator_saves(tmp_path):
    pytest.importorskip("skops")
    from sklearn.model_selection import GridSearchCV

    frame, y = _frame()
    search = GridSearchCV(
        _pipeline(), {"mixtureofexpertsclassifier__n_experts": [2, 3]}, cv=2
    ).fit(frame, y)
    skmoe.save(search.best_estimator_, tmp_path / "best.safetensors")
    loaded = skmoe.load(tmp_path / "best.safetensors")
    np.testing.assert_array_equal(
        loaded.predict_proba(frame), search.best_estimator_.predict_proba(frame)
    )


def test_planted_untrusted_type_is_refused_before_anything_runs(tmp_path, monkeypatch):
    skops_io = pytest.importorskip("skops.io")
    import base64
    import builtins

    from sklearn.preprocessing import FunctionTransformer

    frame, y = _frame()
    path = tmp_path / "pipe.safetensors"
    skmoe.save(_pipeline().fit(frame, y), path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    raw = base64.b64decode(metadata["skmoe.skops"])
    skeleton = skops_io.loads(raw, trusted=skops_io.get_untrusted_types(data=raw))
    skeleton.steps.insert(0, ("evil", FunctionTransformer(builtins.eval)))
    metadata["skmoe.skops"] = base64.b64encode(skops_io.dumps(skeleton)).decode()
    metadata["skmoe.sha256"] = skmoe.persistence._checksum(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)

    built = []
    monkeypatch.setattr(skops_io, "loads", lambda *a, **k: built.append(a))
    with pytest.raises(ValueError, match=r"not trusted: \['builtins.eval'\]"):
        skmoe.load(path)
    assert built == []  # skops never got to build anything
    monkeypatch.undo()
    loaded = skmoe.load(path, trusted=["builtins.eval"])  # the caller's explicit say
    assert loaded.steps[0][1].func is builtins.eval


def test_save_refuses_objects_without_skmoe_and_missing_folders(tmp_path):
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    with pytest.raises(TypeError, match="holds none"):
        skmoe.save(make_pipeline(LinearRegression()).fit(X, Y_REG), tmp_path / "m")
    est = MixtureOfExpertsRegressor(**FAST).fit(X, Y_REG[:, 0])
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(FileNotFoundError, match="folder"):
        skmoe.save(est, missing / "m.safetensors")
    assert not (tmp_path / "no").exists()


def test_pipelines_without_skops_say_which_extra_to_install(tmp_path, monkeypatch):
    import sys

    frame, y = _frame()
    pipe = _pipeline().fit(frame, y)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    monkeypatch.setitem(sys.modules, "skops", None)
    with pytest.raises(ImportError, match=r"skmoe\[skops\]"):
        skmoe.save(pipe, tmp_path / "pipe.safetensors")
    assert not (tmp_path / "pipe.safetensors").exists()


# -- what save writes, load reads with its defaults ---------------------------------
def _mixed_frame():
    pd = pytest.importorskip("pandas")
    local = np.random.default_rng(2)
    n = 80
    frame = pd.DataFrame(
        {
            "age": local.integers(18, 80, n),
            "income": local.lognormal(10, 0.5, n),
            "score": local.normal(size=n),
            "city": local.choice(["paris", "lyon", "nice"], n),
            "plan": local.choice(["free", "pro"], n),
        }
    )
    frame.loc[::7, "score"] = np.nan
    signal = frame["age"].to_numpy() / 40 + (frame["city"] == "lyon").to_numpy()
    targets = {
        "classifier": np.where(signal > 1.4, "churn", "stay"),
        "regressor": signal,
        "multi-gate": np.column_stack([signal, np.log(frame["income"].to_numpy())]),
    }
    return frame, targets


def _preprocessing(name):
    """A ColumnTransformer applying the transformer ``name`` to columns it takes."""
    from sklearn.compose import make_column_transformer
    from sklearn.feature_selection import SelectKBest
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        KBinsDiscretizer,
        OneHotEncoder,
        OrdinalEncoder,
        PolynomialFeatures,
        QuantileTransformer,
        StandardScaler,
        TargetEncoder,
    )

    numerical, categorical = ["age", "income"], ["city", "plan"]
    steps = {
        "SimpleImputer": lambda: (SimpleImputer(add_indicator=True), ["score", "age"]),
        "OneHotEncoder": lambda: (OneHotEncoder(handle_unknown="ignore"), categorical),
        "OrdinalEncoder": lambda: (OrdinalEncoder(), categorical),
        "TargetEncoder": lambda: (TargetEncoder(), categorical),
        "KBinsDiscretizer": lambda: (
            KBinsDiscretizer(n_bins=4, strategy="uniform"),
            numerical,
        ),
        "StandardScaler": lambda: (StandardScaler(), numerical),
        "QuantileTransformer": lambda: (QuantileTransformer(n_quantiles=40), numerical),
        "PolynomialFeatures": lambda: (PolynomialFeatures(2), numerical),
        "FunctionTransformer(np.log1p)": lambda: (
            FunctionTransformer(np.log1p, np.expm1, feature_names_out="one-to-one"),
            numerical,
        ),
        "SelectKBest": lambda: (SelectKBest(k=2), [*numerical, "score"]),
        "ColumnTransformer": lambda: (
            make_column_transformer(
                (make_pipeline(SimpleImputer(), StandardScaler()), ["score"]),
                (OneHotEncoder(sparse_output=False), categorical),
                remainder="passthrough",
            ),
            [*numerical, "score", *categorical],
        ),
    }
    transformer, columns = steps[name]()
    if name == "SelectKBest":  # SelectKBest takes no NaN
        transformer = make_pipeline(SimpleImputer(), transformer)
    return make_column_transformer((transformer, columns))


# TargetEncoder and SelectKBest's default score function take one target column
PIPELINE_CASES = [
    (step, kind)
    for step in (
        "SimpleImputer",
        "OneHotEncoder",
        "OrdinalEncoder",
        "TargetEncoder",
        "KBinsDiscretizer",
        "StandardScaler",
        "QuantileTransformer",
        "PolynomialFeatures",
        "FunctionTransformer(np.log1p)",
        "SelectKBest",
        "ColumnTransformer",
    )
    for kind in ("classifier", "regressor", "multi-gate")
    if kind != "multi-gate" or step not in ("TargetEncoder", "SelectKBest")
]


@pytest.mark.parametrize("step, kind", PIPELINE_CASES)
def test_pipelines_of_common_transformers_load_with_the_defaults(tmp_path, step, kind):
    pytest.importorskip("skops")
    from sklearn.pipeline import make_pipeline

    fast = dict(max_iter=2, random_state=0, device="cpu")
    estimator = {
        "classifier": lambda: MixtureOfExpertsClassifier(top_k=2, **fast),
        "regressor": lambda: MixtureOfExpertsRegressor(**fast),
        "multi-gate": lambda: MultiGateMoERegressor(**fast),
    }[kind]()
    frame, targets = _mixed_frame()
    pipe = make_pipeline(_preprocessing(step), estimator).fit(frame, targets[kind])
    path = tmp_path / "pipe.safetensors"
    skmoe.save(pipe, path)
    loaded = skmoe.load(path)
    assert loaded[-1] is not pipe[-1]
    assert np.array_equal(loaded.predict(frame), pipe.predict(frame))
    if kind == "classifier":
        assert np.array_equal(loaded.predict_proba(frame), pipe.predict_proba(frame))


class _Doubler(sklearn.base.TransformerMixin, sklearn.base.BaseEstimator):
    """A transformer of the user's own, which load does not build by default."""

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return 2 * np.asarray(X)


def _doubling_pipeline():
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_Doubler(), MixtureOfExpertsRegressor(**FAST)).fit(
        X, Y_REG[:, 0]
    )


def test_save_refuses_an_untrusted_type_up_front_and_names_the_remedy(tmp_path):
    pytest.importorskip("skops")
    name = f"{_Doubler.__module__}.{_Doubler.__qualname__}"
    pipe = _doubling_pipeline()
    path = tmp_path / "pipe.safetensors"
    with pytest.raises(TypeError, match="not build by default") as info:
        skmoe.save(pipe, path)
    assert f"trusted={[name]}" in str(info.value)
    assert not path.exists()

    # the caller's explicit say writes it; load then needs the same say
    skmoe.save(pipe, path, trusted=[name])
    with pytest.raises(ValueError, match="not trusted") as info:
        skmoe.load(path)
    assert repr(name) in str(info.value)
    loaded = skmoe.load(path, trusted=[name])
    assert np.array_equal(loaded.predict(X), pipe.predict(X))
    with pytest.raises(TypeError, match="list of type names"):
        skmoe.save(pipe, path, trusted=name)  # a string, not a list
    with pytest.raises(TypeError, match="list of type names"):
        skmoe.load(path, trusted=name)


def test_save_refuses_functions_other_than_ufuncs(tmp_path):
    pytest.importorskip("skops")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    clip = FunctionTransformer(np.clip, kw_args={"a_min": -1, "a_max": 1})
    pipe = make_pipeline(clip, MixtureOfExpertsRegressor(**FAST)).fit(X, Y_REG[:, 0])
    path = tmp_path / "pipe.safetensors"
    with pytest.raises(TypeError, match=r"\['numpy.clip'\]"):
        skmoe.save(pipe, path)
    assert not path.exists()


def test_save_refuses_what_cannot_be_rebuilt_even_when_trusted(tmp_path):
    skops_io = pytest.importorskip("skops.io")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    anonymous = FunctionTransformer(lambda values: values)
    pipe = make_pipeline(anonymous, MixtureOfExpertsRegressor(**FAST))
    pipe.fit(X, Y_REG[:, 0])
    names = skops_io.get_untrusted_types(data=skops_io.dumps(pipe[0]))
    path = tmp_path / "pipe.safetensors"
    with pytest.raises(TypeError, match=r"could not be rebuilt.*top level"):
        skmoe.save(pipe, path, trusted=names)
    assert not path.exists()


# -- integrity ----------------------------------------------------------------------
def _offsets(data):
    """Byte offsets spread over every region of a saved file."""
    header_len = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + header_len]
    tensors_start, end = 8 + header_len, len(data)

    def at(token, span, step):
        first = 8 + header.index(token)
        return list(range(first, first + span, step))

    return {
        "header length": list(range(8)),
        "header JSON, every 40th byte": list(range(8, tensors_start, 40)),
        "checksum value": at(b'"skmoe.sha256":"', 82, 5)[3:],
        "tensor index entry": at(b'"dtype"', 60, 2),
        "last header bytes": list(range(tensors_start - 4, tensors_start)),
        "tensor data": list(
            range(tensors_start, end, max(1, (end - tensors_start) // 40))
        ),
        "end": list(range(end - 8, end)),
    }


def test_every_flipped_byte_and_truncation_is_refused(saved, tmp_path):
    data = saved.read_bytes()
    bad = tmp_path / "bad.safetensors"
    offsets = _offsets(data)
    tried = 0
    for positions in offsets.values():
        for offset in positions:
            for flip in (0x01, 0x80):
                corrupted = bytearray(data)
                corrupted[offset] ^= flip
                bad.write_bytes(bytes(corrupted))
                with pytest.raises(ValueError):
                    skmoe.load(bad)
                tried += 1
    assert tried > 200
    for cut in (1, 7, 8, 20, len(data) // 2, len(data) - 4, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            skmoe.load(bad)


def test_tensor_bytes_changed_with_a_valid_layout_fail_the_checksum(saved):
    with safe_open(str(saved), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] += 0.5
    save_file(tensors, str(saved), metadata=metadata)
    with pytest.raises(ValueError, match="checksum does not match"):
        skmoe.load(saved)


def _columns_with_an_outlier():
    X_out = X.copy()
    X_out[:2, 3] = 1e3  # column 3 has outliers, the others are Gaussian
    return X_out


def test_per_column_clips_round_trip(tmp_path):
    X_out = _columns_with_an_outlier()
    est = MixtureOfExpertsRegressor(**FAST).fit(X_out, Y_REG)
    assert est._input_encoder.clip == [None, None, None, 3.0, None]
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    loaded = skmoe.load(path)
    assert loaded._input_encoder.clip == est._input_encoder.clip
    np.testing.assert_array_equal(loaded.predict(X_out), est.predict(X_out))


def test_file_from_before_per_column_clips_loads_with_every_column_clipped(tmp_path):
    """Files written before the encoder saved its clips had ``input_scaling="robust"``
    (every column clipped) and no ``clip`` entry: they load and predict as saved."""
    X_out = _columns_with_an_outlier()
    est = MixtureOfExpertsRegressor(input_scaling="robust", **FAST).fit(X_out, Y_REG)
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    _tamper(path, lambda d, t: d["fitted"]["input_encoder"].pop("clip"))
    loaded = skmoe.load(path)
    assert loaded._input_encoder.clip == [3.0] * 5
    np.testing.assert_array_equal(loaded.predict(X_out), est.predict(X_out))


@pytest.mark.parametrize(
    "clip, message", [([None] * 4, "wrong length"), ([None] * 4 + [2.0], "3.0 or null")]
)
def test_bad_clips_are_refused(tmp_path, clip, message):
    est = MixtureOfExpertsRegressor(**FAST).fit(X, Y_REG)
    path = tmp_path / "model.safetensors"
    skmoe.save(est, path)
    _tamper(path, lambda d, t: _set(d["fitted"]["input_encoder"], "clip", clip))
    with pytest.raises(ValueError, match=message):
        skmoe.load(path)


def test_pickle_from_before_per_column_clips_predicts_as_pickled():
    """An encoder pickled before it had per-column clips clipped every column."""
    X_out = _columns_with_an_outlier()
    est = MixtureOfExpertsRegressor(input_scaling="robust", **FAST).fit(X_out, Y_REG)
    old = pickle.loads(pickle.dumps(est))
    del old._input_encoder.clip  # what such a pickle holds
    np.testing.assert_array_equal(old.predict(X_out), est.predict(X_out))
