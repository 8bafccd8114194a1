"""skmoe.save / skmoe.load: safetensors plus JSON, no pickle, and refusals."""

import json
import pickle

import joblib
import numpy as np
import pytest
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
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["skmoe"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    edit(document, tensors)
    save_file(tensors, str(path), metadata={"skmoe": json.dumps(document)})


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
