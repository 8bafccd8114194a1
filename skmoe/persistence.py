"""Save and load fitted skmoe estimators without pickle.

A saved model is one `safetensors <https://github.com/huggingface/safetensors>`_ file:
the module's weights as tensors, and everything else (parameters, classes, feature
names, target scaling, training curves, library versions, a format version) as JSON in
the file's metadata. Loading parses JSON and raw tensors only, so a tampered file can
make loading fail but cannot run code; the tensors' shapes are checked against the
architecture the parameters describe before anything is allocated.
"""

import json

import numpy as np
import safetensors
import sklearn
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from ._engine import resolve_device
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
        "fitted": estimator._fitted_state(),
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
    estimator._restore_fitted_state(fitted)
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
        skeleton = estimator._build_module(
            estimator.n_features_in_, estimator._objective(), hidden
        )
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != shapes:
        raise ValueError(
            "the file's weights do not match the architecture its parameters describe"
        )
    estimator.module_ = estimator._build_module(
        estimator.n_features_in_, estimator._objective(), hidden
    ).to(target)
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
