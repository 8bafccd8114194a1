"""Save and load fitted skmoe estimators without pickle.

A saved model is one `safetensors <https://github.com/huggingface/safetensors>`_ file:
the module's weights as tensors, and everything else (parameters, classes, feature
names, target scaling, training curves, library versions, a format version) as JSON in
the file's metadata. Loading parses JSON and raw tensors only, so a tampered file can
make loading fail but cannot run code; the tensors' shapes are checked against the
architecture the parameters describe before anything is allocated.
"""

import json
import math

import numpy as np
import safetensors
import sklearn
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from ._engine import TrainingHistory, resolve_device
from ._preprocessing import InputEncoder
from ._targets import LabelCodes, TargetScaler
from .mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from .multigate import MultiGateMoEClassifier, MultiGateMoERegressor

FORMAT_VERSION = 1
_METADATA_KEY = "skmoe"
_ESTIMATORS = {
    cls.__name__: cls
    for cls in (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
    )
}
_TUPLE_PARAMS = ("expert_hidden_layer_sizes", "tower_hidden_layer_sizes")
_HISTORY_FIELDS = (
    "loss_curve",
    "validation_scores",
    "best_loss",
    "best_validation_score",
    "no_improvement_count",
    "n_iter",
    "converged",
)


def save(estimator, path):
    """Write a fitted skmoe estimator to ``path`` (a safetensors file).

    Parameters
    ----------
    estimator : skmoe estimator
        A fitted ``MixtureOfExperts*`` or ``MultiGateMoE*`` estimator.
    path : str or os.PathLike
        Destination file; ``.safetensors`` is the customary suffix.

    Notes
    -----
    The optimizer's state is not saved: ``partial_fit`` or a warm-started ``fit`` after
    :func:`load` starts Adam afresh. A ``random_state`` given as a ``RandomState``
    instance is saved as ``None``.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn.datasets import load_iris
    >>> import skmoe
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = skmoe.MixtureOfExpertsClassifier(max_iter=5, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "iris.safetensors")
    >>> skmoe.save(clf, path)
    >>> (skmoe.load(path).predict(X) == clf.predict(X)).all()
    np.True_
    """
    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(
            f"skmoe.save handles skmoe estimators ({', '.join(_ESTIMATORS)}); got "
            f"{name}."
        )
    if not estimator.__sklearn_is_fitted__():
        raise ValueError(f"This {name} is not fitted yet; call fit before save.")
    document = {
        "format": "skmoe",
        "format_version": FORMAT_VERSION,
        "estimator": name,
        "versions": {
            "skmoe": __version__,
            "torch": torch.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
        },
        "params": _params_to_json(estimator.get_params(deep=False)),
        "fitted": _fitted_to_json(estimator),
    }
    tensors = {
        key: value.detach().to("cpu").contiguous()
        for key, value in estimator.module_.state_dict().items()
    }
    save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(document)})


def load(path, device=None):
    """Read an estimator written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.
    device : str, torch.device or None, default=None
        Where to put the model. ``None`` uses the device it was fitted on when this
        machine has it, and the CPU otherwise (a model fitted on CUDA loads on a
        CPU-only machine).

    Returns
    -------
    estimator : skmoe estimator
        The fitted estimator; its predictions equal the saved one's.

    Raises
    ------
    ValueError
        If the file is not a skmoe model, is truncated or tampered with, or was
        written by a newer skmoe format.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn.datasets import load_diabetes
    >>> import skmoe
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = skmoe.MixtureOfExpertsRegressor(max_iter=5, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "diabetes.safetensors")
    >>> skmoe.save(reg, path)
    >>> loaded = skmoe.load(path, device="cpu")
    >>> bool((loaded.predict(X) == reg.predict(X)).all())
    True
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            document = _read_document(metadata)
            keys = handle.keys()
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in keys}
            estimator = _rebuild(document, shapes, device)
            state = {key: handle.get_tensor(key) for key in shapes}
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable skmoe model file: {exc}") from None
    except (
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        json.JSONDecodeError,
    ) as exc:
        raise ValueError(
            f"{path} is not a valid skmoe model file: {type(exc).__name__}: {exc}"
        ) from None
    try:
        estimator.module_.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{path} holds weights that do not fit the model: {exc}"
        ) from None
    for tensor in estimator.module_.state_dict().values():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path} holds non-finite weights.")
    estimator.module_.eval()
    estimator._refresh_inference_module()
    return estimator


def _read_document(metadata):
    if _METADATA_KEY not in metadata:
        raise ValueError(
            "the file has no skmoe metadata; it was not written by skmoe.save"
        )
    document = json.loads(metadata[_METADATA_KEY])
    if not isinstance(document, dict) or document.get("format") != "skmoe":
        raise ValueError("the file's metadata is not a skmoe model description")
    version = document.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"unknown skmoe format version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"the file uses skmoe format {version}, newer than the {FORMAT_VERSION} "
            f"this skmoe {__version__} reads; upgrade skmoe to load it"
        )
    return document


def _rebuild(document, shapes, device):
    name = document["estimator"]
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator class {name!r} in the file")
    estimator = _ESTIMATORS[name]()
    params = _params_from_json(document["params"], estimator)
    estimator.set_params(**params)
    try:
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the file's parameters are invalid: {exc}") from None
    estimator._check_routing()
    fitted = document["fitted"]
    _restore_fitted(estimator, fitted)
    if device is None:
        try:
            target = resolve_device(fitted["device"])
        except ValueError:
            target = torch.device("cpu")
    else:
        target = resolve_device(device)
    hidden = estimator._hidden_sizes()
    # Build on the meta device first: shapes are compared before any allocation, so a
    # file with absurd sizes in its parameters fails cleanly.
    with torch.device("meta"):
        skeleton = estimator._build_model(estimator._objective(), hidden)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != shapes:
        raise ValueError(
            "the file's weights do not match the architecture its parameters describe"
        )
    estimator.module_ = estimator._build_model(estimator._objective(), hidden).to(
        target
    )
    estimator.device_ = target
    return estimator


def _params_to_json(params):
    out = {}
    for key, value in params.items():
        if isinstance(value, torch.device):
            value = str(value)
        elif isinstance(value, np.random.RandomState):
            value = None
        elif isinstance(value, (tuple, np.ndarray)):
            value = np.asarray(value).tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _params_from_json(params, estimator):
    if not isinstance(params, dict):
        raise TypeError("params must be a JSON object")
    known = estimator.get_params(deep=False)
    unknown = set(params) - set(known)
    if unknown:
        raise ValueError(f"unknown parameters in the file: {sorted(unknown)}")
    params = dict(params)
    for key in _TUPLE_PARAMS:
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    return params


def _finite_or_none(value):
    return value if value is None or math.isfinite(value) else None


def _array_to_json(array):
    array = np.asarray(array)
    if array.dtype.kind not in "biufUO":
        raise TypeError(f"cannot save an array of dtype {array.dtype}")
    return {"dtype": array.dtype.str, "values": array.tolist()}


def _array_from_json(entry):
    dtype = np.dtype(entry["dtype"])
    if dtype.kind not in "biufUO":
        raise TypeError(f"unsupported dtype {dtype} in the file")
    values = entry["values"]
    if dtype.kind == "O":
        for value in values:
            if not isinstance(value, (str, int, float, bool)):
                raise TypeError("object arrays may only hold strings and numbers")
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    return np.asarray(values, dtype=dtype)


def _fitted_to_json(est):
    history = est._history
    fitted = {
        "n_features_in_": int(est.n_features_in_),
        "feature_names_in_": (
            est.feature_names_in_.tolist()
            if hasattr(est, "feature_names_in_")
            else None
        ),
        "n_outputs_": int(est.n_outputs_),
        "y_was_1d": bool(est._y_was_1d),
        "seed": int(est._seed),
        "n_calls": int(est._n_calls),
        "device": str(est.device_),
        "history": {
            "loss_curve": list(history.loss_curve),
            "validation_scores": list(history.validation_scores),
            "best_loss": _finite_or_none(history.best_loss),
            "best_validation_score": _finite_or_none(history.best_validation_score),
            "no_improvement_count": int(history.no_improvement_count),
            "n_iter": int(history.n_iter),
            "converged": bool(history.converged),
        },
        "attributes": {
            "n_iter_": int(est.n_iter_),
            "loss_curve_": list(est.loss_curve_),
            "loss_": float(est.loss_),
            "best_loss_": est.best_loss_,
            "validation_scores_": est.validation_scores_,
            "best_validation_score_": est.best_validation_score_,
            "expert_usage_": np.asarray(est.expert_usage_).tolist(),
        },
    }
    fitted["input_encoder"] = est._input_encoder.to_json()
    if hasattr(est, "_label_codes"):
        fitted["classes"] = [_array_to_json(c) for c in est._label_codes.classes]
    if hasattr(est, "_scaler"):
        fitted["target_mean"] = est._scaler.mean.tolist()
        fitted["target_scale"] = est._scaler.scale.tolist()
    return fitted


def _restore_fitted(est, fitted):
    n_features = fitted["n_features_in_"]
    n_outputs = fitted["n_outputs_"]
    if not (isinstance(n_features, int) and n_features > 0):
        raise ValueError(f"invalid n_features_in_ {n_features!r}")
    if not (isinstance(n_outputs, int) and n_outputs > 0):
        raise ValueError(f"invalid n_outputs_ {n_outputs!r}")
    est.n_features_in_ = n_features
    names = fitted["feature_names_in_"]
    if names is not None:
        if len(names) != n_features or not all(isinstance(n, str) for n in names):
            raise ValueError("feature_names_in_ does not match n_features_in_")
        est.feature_names_in_ = np.asarray(names, dtype=object)
    est.n_outputs_ = n_outputs
    est._y_was_1d = bool(fitted["y_was_1d"])
    if "input_encoder" in fitted:
        est._input_encoder = InputEncoder.from_json(fitted["input_encoder"], est)
    else:
        # Written before the input encoder existed: the network read X as given.
        est.set_params(input_scaling=None, categorical_features=None)
        est._input_encoder = InputEncoder.identity(est)
    est._seed = int(fitted["seed"])
    est._n_calls = int(fitted["n_calls"])
    if "classes" in fitted:
        classes = [_array_from_json(c) for c in fitted["classes"]]
        if len(classes) != n_outputs or any(len(c) < 2 for c in classes):
            raise ValueError("classes do not match n_outputs_")
        est._label_codes = LabelCodes(classes)
        est.classes_ = classes[0] if est._y_was_1d else list(classes)
    elif hasattr(type(est), "predict_proba"):
        raise ValueError("a classifier file without classes")
    if "target_mean" in fitted:
        scaler = TargetScaler.__new__(TargetScaler)
        scaler.mean = np.asarray(fitted["target_mean"], dtype=np.float64)
        scaler.scale = np.asarray(fitted["target_scale"], dtype=np.float64)
        if scaler.mean.shape != (n_outputs,) or scaler.scale.shape != (n_outputs,):
            raise ValueError("target scaling does not match n_outputs_")
        est._scaler = scaler
    history = TrainingHistory(**{k: fitted["history"][k] for k in _HISTORY_FIELDS})
    if history.best_loss is None:
        history.best_loss = math.inf
    if history.best_validation_score is None:
        history.best_validation_score = -math.inf
    est._history = history
    attributes = fitted["attributes"]
    for key in (
        "n_iter_",
        "loss_curve_",
        "loss_",
        "best_loss_",
        "validation_scores_",
        "best_validation_score_",
    ):
        setattr(est, key, attributes[key])
    est.expert_usage_ = np.asarray(attributes["expert_usage_"], dtype=np.float64)
