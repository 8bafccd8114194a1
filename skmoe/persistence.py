"""Save and load fitted skmoe estimators, and whole pipelines, without pickle.

A saved model is one `safetensors <https://github.com/huggingface/safetensors>`_ file:

- tensors: the module's weights. In a file holding several skmoe estimators (a
  Pipeline), estimator ``i``'s tensors are named ``estimators.{i}.<name>``.
- metadata ``"skmoe"``: JSON describing each skmoe estimator (parameters, classes,
  feature names, target scaling, training curves), the library versions and the
  format version.
- metadata ``"skmoe.skops"``: for a Pipeline or another scikit-learn object, the object
  itself in `skops <https://skops.readthedocs.io>`_ format (base64), with each skmoe
  estimator replaced by a placeholder naming its place in the tensors.
- metadata ``"skmoe.sha256"``: a SHA-256 over the other metadata entries and every
  tensor's name, dtype, shape and bytes, checked before anything is built.

Loading parses JSON, raw tensors and skops data only, so a tampered file can make
loading fail but cannot run code: skops builds only types on its trusted list (plus
those in ``_TRUSTED_TYPES``), and :func:`load` refuses a file naming any other type
unless the caller trusts it. :func:`save` checks the same list before writing, so
what it writes with its defaults, :func:`load` reads with its defaults. The tensors'
shapes are checked against the architecture the parameters describe before any module
is allocated.
"""

import base64
import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import safetensors
import sklearn
import sklearn.base
import sklearn.feature_selection
import sklearn.utils.validation
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from ._engine import resolve_device
from .mixture import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from .multigate import MultiGateMoE, MultiGateMoEClassifier, MultiGateMoERegressor

FORMAT_VERSION = 2
_METADATA_KEY = "skmoe"
_SKOPS_KEY = "skmoe.skops"
_CHECKSUM_KEY = "skmoe.sha256"
_PART_PREFIX = "estimators.{}."
_ESTIMATORS = {
    cls.__name__: cls
    for cls in (
        MixtureOfExpertsClassifier,
        MixtureOfExpertsRegressor,
        MultiGateMoEClassifier,
        MultiGateMoERegressor,
        MultiGateMoE,
    )
}
_TUPLE_PARAMS = ("expert_hidden_layer_sizes", "tower_hidden_layer_sizes")


def save(estimator, path, trusted=None):
    """Write a fitted skmoe estimator, or a fitted Pipeline holding some, to ``path``.

    Parameters
    ----------
    estimator : skmoe estimator or scikit-learn estimator
        A fitted ``MixtureOfExperts*`` or ``MultiGateMoE*`` estimator, or a fitted
        scikit-learn object holding them (a ``Pipeline``, ``GridSearchCV``'s
        ``best_estimator_``, ...). Anything but a bare skmoe estimator needs the
        ``skops`` package (``pip install "skmoe[skops]"``).
    path : str or os.PathLike
        Destination file; ``.safetensors`` is the customary suffix. Its folder must
        exist.
    trusted : list of str or None, default=None
        For a Pipeline or another scikit-learn object: types, named
        ``"module.Class"``, that :func:`load` does not build by default (a transformer
        of your own, a function that is not a NumPy or SciPy ufunc) and that you
        accept to write. A file holding them loads only with the same ``trusted=``
        given to :func:`load`. ``None`` accepts only what :func:`load` builds by
        default: scikit-learn's estimators, transformers and feature-selection score
        functions, NumPy's and SciPy's arrays, dtypes and ufuncs.

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist; nothing is written.
    ValueError
        If the estimator is not fitted, or a parameter that shapes its network
        changed since it was fitted (the file would describe another network).
    TypeError
        If the object holds a type :func:`load` would refuse and ``trusted`` does not
        name it, or an object that cannot be rebuilt from the file (a lambda, a
        function defined inside another); the message names it, and nothing is
        written. Also if ``trusted`` is not a list of type names.

    Notes
    -----
    Before writing a Pipeline, ``save`` rebuilds its scikit-learn part from the bytes
    it is about to write, as :func:`load` will, so a file it writes opens.
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
    _allowed(trusted)  # a TypeError for a malformed list, before anything else
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Cannot save to {path}: the folder {str(folder)!r} does not exist."
        )
    document = {
        "format": "skmoe",
        "format_version": FORMAT_VERSION,
        "versions": {
            "skmoe": __version__,
            "torch": torch.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
        },
    }
    metadata = {}
    if _is_skmoe(estimator):
        document.update(_estimator_document(estimator))
        tensors = _module_tensors(estimator, "")
    else:
        skops_bytes, parts = _dump_composite(estimator, trusted)
        document["estimators"] = [_estimator_document(part) for part in parts]
        tensors = {}
        for i, part in enumerate(parts):
            tensors.update(_module_tensors(part, _PART_PREFIX.format(i)))
        metadata[_SKOPS_KEY] = base64.b64encode(skops_bytes).decode("ascii")
    metadata[_METADATA_KEY] = json.dumps(document)
    metadata[_CHECKSUM_KEY] = _checksum(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)


def load(path, device=None, trusted=None):
    """Read an estimator, or a Pipeline, written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.
    device : str, torch.device or None, default=None
        Where to put the skmoe models. ``None`` uses the device each was fitted on
        when this machine has it, and the CPU otherwise (a model fitted on CUDA loads
        on a CPU-only machine).
    trusted : list of str or None, default=None
        For a file holding a Pipeline or another scikit-learn object: types, named
        ``"module.Class"``, to build although they are not on skops' list of trusted
        types (scikit-learn's estimators and transformers, NumPy's and SciPy's arrays
        and ufuncs) or skmoe's (NumPy dtypes, scikit-learn's feature-selection score
        functions and skmoe's placeholder). Only list types whose code you trust:
        building them may run it. ``None`` trusts nothing more.

    Returns
    -------
    estimator : skmoe estimator or scikit-learn estimator
        The fitted object; its predictions equal the saved one's.

    Raises
    ------
    ValueError
        If the file is not a skmoe model, is truncated, fails its checksum, names an
        untrusted type, or was written by a newer skmoe format.
    TypeError
        If ``trusted`` is not a list of type names.

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
    _allowed(trusted)  # a TypeError for a malformed list, before reading anything
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            document = _read_document(metadata)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        if document["format_version"] >= 2:
            _verify_checksum(metadata, tensors)
        if "estimators" in document:
            return _load_composite(document, metadata, tensors, device, trusted)
        return _load_estimator(document, tensors, device)
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable skmoe model file: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
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


def _is_skmoe(obj):
    return _ESTIMATORS.get(type(obj).__name__) is type(obj)


def _estimator_document(estimator):
    name = type(estimator).__name__
    if not estimator.__sklearn_is_fitted__():
        raise ValueError(f"This {name} is not fitted yet; call fit before save.")
    estimator._check_network_unchanged("be saved with its current parameters")
    return {
        "estimator": name,
        "params": _params_to_json(estimator.get_params(deep=False)),
        "fitted": estimator._fitted_state(),
    }


def _module_tensors(estimator, prefix):
    return {
        prefix + key: value.detach().to("cpu").contiguous()
        for key, value in estimator.module_.state_dict().items()
    }


def _checksum(metadata, tensors):
    """SHA-256 over the metadata entries (but the checksum) and every tensor."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != _CHECKSUM_KEY:
            digest.update(json.dumps([key, metadata[key]]).encode())
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _verify_checksum(metadata, tensors):
    if metadata.get(_CHECKSUM_KEY) != _checksum(metadata, tensors):
        raise ValueError(
            "the file's checksum does not match its contents; it was corrupted or "
            "edited after skmoe.save wrote it"
        )


def _load_estimator(document, tensors, device):
    shapes = {key: tuple(value.shape) for key, value in tensors.items()}
    estimator = _rebuild(document, shapes, device)
    try:
        estimator.module_.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"it holds weights that do not fit the model: {exc}") from None
    for tensor in estimator.module_.state_dict().values():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError("it holds non-finite weights.")
    estimator.module_.eval()
    return estimator


# -- Pipelines and other scikit-learn objects, through skops ------------------------
class _SavedEstimator:
    """Stands, in the skops data, for the skmoe estimator stored as part ``index``."""

    def __init__(self, index):
        self.index = index


_SLOT_TYPE = f"{__name__}.{_SavedEstimator.__qualname__}"
# Types skops does not trust by default that load builds anyway, each harmless to
# build: the placeholder holds one int; skops rebuilds a ``numpy.dtype`` (which fitted
# SimpleImputer, KBinsDiscretizer and others keep) from an empty array read with
# ``np.load(allow_pickle=False)``, calling nothing the file names; and the feature
# selectors' score functions (``SelectKBest``'s default among them) are looked up by
# name, not called, while loading, and only compute statistics of the data given them.
_TRUSTED_TYPES = (
    _SLOT_TYPE,
    "numpy.dtype",
    *(
        f"{function.__module__}.{function.__name__}"
        for function in (
            sklearn.feature_selection.chi2,
            sklearn.feature_selection.f_classif,
            sklearn.feature_selection.f_regression,
            sklearn.feature_selection.mutual_info_classif,
            sklearn.feature_selection.mutual_info_regression,
            sklearn.feature_selection.r_regression,
        )
    ),
)


def _skops():
    try:
        import skops.io
    except ImportError:
        raise ImportError(
            "Saving or loading a Pipeline (or any object other than a bare skmoe "
            "estimator) needs skops: pip install 'skmoe[skops]'."
        ) from None
    return skops.io


def _reachable(obj, wanted, found=None, seen=None):
    """The objects for which ``wanted`` holds, reachable from ``obj`` through
    scikit-learn objects' attributes, lists, tuples and dicts, in a stable order."""
    found = [] if found is None else found
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if wanted(obj):
        found.append(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            _reachable(value, wanted, found, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _reachable(value, wanted, found, seen)
    elif isinstance(obj, sklearn.base.BaseEstimator):
        _reachable(vars(obj), wanted, found, seen)
    return found


def _allowed(trusted):
    """The type names load builds: skops' defaults aside, ours and the caller's."""
    if isinstance(trusted, str) or not all(
        isinstance(name, str) for name in trusted or ()
    ):
        raise TypeError(
            "trusted must be a list of type names such as ['module.Class'], "
            f"got {trusted!r}."
        )
    return sorted({*_TRUSTED_TYPES, *(trusted or ())})


def _untrusted(skops_io, data, trusted):
    """The types named in the skops ``data`` that load would refuse, sorted."""
    return sorted(set(skops_io.get_untrusted_types(data=data)) - set(_allowed(trusted)))


def _dump_composite(obj, trusted):
    """skops bytes of ``obj`` with its skmoe estimators replaced by placeholders,
    checked to load as :func:`load` will load them."""
    if not isinstance(obj, sklearn.base.BaseEstimator):
        raise TypeError(
            "skmoe.save handles skmoe estimators and scikit-learn objects holding "
            f"them (a Pipeline, for example); got {type(obj).__name__}."
        )
    parts = _reachable(obj, _is_skmoe)
    if not parts:
        raise TypeError(
            f"skmoe.save handles skmoe estimators ({', '.join(_ESTIMATORS)}) and "
            f"scikit-learn objects holding them; this {type(obj).__name__} holds none "
            "(skops.io.dump saves it)."
        )
    sklearn.utils.validation.check_is_fitted(obj)
    skops_io = _skops()
    memo = {id(part): _SavedEstimator(i) for i, part in enumerate(parts)}
    data = skops_io.dumps(copy.deepcopy(obj, memo))
    untrusted = _untrusted(skops_io, data, trusted)
    if untrusted:
        raise TypeError(
            f"skmoe.save: this {type(obj).__name__} holds types that skmoe.load does "
            f"not build by default: {untrusted}. Nothing was written. Replace them "
            "with scikit-learn's own transformers or NumPy ufuncs, or, if whoever "
            f"loads the file trusts their code, pass trusted={untrusted} to "
            "skmoe.save and the same trusted= to skmoe.load."
        )
    try:
        skops_io.loads(data, trusted=_allowed(trusted))
    except Exception as exc:  # skops raises whatever rebuilding an object raised
        raise TypeError(
            f"skmoe.save: this {type(obj).__name__} could not be rebuilt from the "
            f"file it would write ({type(exc).__name__}: {exc}). Nothing was "
            "written. A lambda or a function defined inside another cannot be "
            "found again by name; define it at the top level of a module."
        ) from None
    return data, parts


def _load_composite(document, metadata, tensors, device, trusted):
    skops_io = _skops()
    data = base64.b64decode(metadata[_SKOPS_KEY], validate=True)
    untrusted = _untrusted(skops_io, data, trusted)
    if untrusted:
        raise ValueError(
            f"it names types that are not trusted: {untrusted}. Nothing was loaded. "
            "If you trust the file's source and these types' code, pass "
            f"trusted={untrusted} to skmoe.load."
        )
    parts = []
    for i, part in enumerate(document["estimators"]):
        prefix = _PART_PREFIX.format(i)
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        parts.append(_load_estimator(part, own, device))
    if sum(len(p.module_.state_dict()) for p in parts) != len(tensors):
        raise ValueError("it holds tensors that belong to no estimator")
    skeleton = skops_io.loads(data, trusted=_allowed(trusted))
    slots = _reachable(skeleton, lambda o: isinstance(o, _SavedEstimator))
    if sorted(slot.index for slot in slots) != list(range(len(parts))):
        raise ValueError("its placeholders do not match the estimators it holds")
    return copy.deepcopy(skeleton, {id(slot): parts[slot.index] for slot in slots})


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
    estimator.top_k_ = estimator._effective_top_k()
    estimator._fitted_network = estimator._network_signature()
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
        _refuse_functions(key, value)
        out[key] = _dict_to_json(value)
    return out


def _refuse_functions(key, value):
    """A ``TypeError`` for a parameter holding a function, which no file can
    store without running code at load time."""
    inner = value.values() if isinstance(value, dict) else ()
    if callable(value) or any(callable(v) for v in inner):
        raise TypeError(
            f"skmoe.save cannot store the parameter {key}={value!r}, which holds a "
            "function: give scorers by name (such as 'roc_auc') or set the "
            "parameter to None before saving, or pickle the estimator instead."
        )


def _dict_to_json(value):
    """A dict (task or class names may be ints) as ``{"__items__": [[k, v], ...]}``."""
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            k = k.item() if isinstance(k, np.generic) else k
            if not isinstance(k, (str, int, float, bool)):
                raise TypeError(f"cannot save the dict key {k!r}")
            items.append([k, _dict_to_json(v)])
        return {"__items__": items}
    return value.item() if isinstance(value, np.generic) else value


def _dict_from_json(value):
    if isinstance(value, dict):
        if set(value) != {"__items__"}:
            raise TypeError("a saved dict must hold its items under __items__")
        return {k: _dict_from_json(v) for k, v in value["__items__"]}
    return value


def _params_from_json(params, estimator):
    if not isinstance(params, dict):
        raise TypeError("params must be a JSON object")
    known = estimator.get_params(deep=False)
    unknown = set(params) - set(known)
    if unknown:
        raise ValueError(f"unknown parameters in the file: {sorted(unknown)}")
    params = {key: _dict_from_json(value) for key, value in params.items()}
    for key in _TUPLE_PARAMS:
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    return params
