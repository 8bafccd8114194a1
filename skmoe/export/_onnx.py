"""``to_onnx``: a fitted skmoe estimator as an ONNX model."""

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted

from .._optional import import_optional

# to_onnx checks the graph on up to this many rows of X_sample, to this tolerance
# (probabilities; regression values relative to the targets' standard deviation).
VERIFY_ROWS = 64
VERIFY_TOLERANCE = 1e-4


def _import_skl2onnx():
    return import_optional("onnx", "skl2onnx", extra="onnx", feature="ONNX export")


def to_onnx(estimator, X_sample, target_opset=None):
    """Export a fitted skmoe estimator to an ONNX model.

    Every estimator, architecture and routing scheme is supported, with its input
    encoding (robust scaling, NaN, categorical columns) and numerical embeddings.
    Sparse routing (``top_k``, noisy top-k, switch) is exported through its
    dense-equivalent computation: all experts are computed and each row's top-k
    weights are scattered into a dense weight matrix, so the graph has fixed shapes
    and no data-dependent branch.

    Outputs: classifiers give ``label`` and ``probabilities`` tensors (one
    ``probabilities_<j>`` per output for several outputs); regressors ``variable`` of
    shape ``(rows, n_outputs)`` on the scale of ``y``; :class:`~skmoe.MultiGateMoE`
    gives, task by task, ``label_<task>`` and ``probabilities_<task>`` for a
    classification and ``variable_<task>`` of shape ``(rows, 1)`` for a regression.

    To convert a whole ``Pipeline`` ending in a skmoe estimator, call
    :func:`skmoe.export.register_converters` and then ``skl2onnx.to_onnx``.

    Parameters
    ----------
    estimator : MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, \
MultiGateMoEClassifier, MultiGateMoERegressor or MultiGateMoE
        A fitted estimator.
    X_sample : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        A few input rows with the columns of ``fit``; they fix the precision: float64
        numerical columns give a float64 graph, anything else a float32 graph.
    target_opset : int or None, default=None
        ONNX opset of the model (13 or later); ``None`` picks the newest that
        skl2onnx has tested.

    Returns
    -------
    onnx.ModelProto
        Without categorical columns, one float input ``X`` of shape
        ``(None, n_features)``. With categorical columns, one input of shape
        ``(None, 1)`` per column, named after it (``x<j>`` for an array): the graph's
        floats for a numerical column (NaN for missing), strings for a column of
        string categories and float64 for one of numbers (a value not among the
        training categories, such as ``""`` or NaN, gets the reserved code of unseen
        and missing values). :func:`skmoe.export.onnx_inputs` builds these feeds from
        a DataFrame.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``X_sample`` does not have the estimator's number of features.
    TypeError
        If the estimator is not one that can be exported (the message names the
        parameter that prevents it, such as a ``categorical_features`` column whose
        categories mix strings and numbers), or the graph does not reproduce its
        predictions on ``X_sample`` (checked with onnxruntime when it is installed).
    ImportError
        If the ``onnx`` extra (onnx, skl2onnx) is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier, to_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(top_k=2, max_iter=20, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> model = to_onnx(clf, X[:1])
    >>> session = ort.InferenceSession(model.SerializeToString())
    >>> label, proba = session.run(None, {"X": X[:5]})
    >>> bool((label == clf.predict(X[:5])).all())
    True
    >>> bool(np.allclose(proba, clf.predict_proba(X[:5]), atol=1e-5))
    True
    """
    skl2onnx = _import_skl2onnx()
    from ._skl2onnx import check_estimator_exportable, register_converters

    check_is_fitted(estimator)
    check_estimator_exportable(estimator)
    if isinstance(target_opset, int) and target_opset < 13:
        raise ValueError(f"to_onnx needs target_opset >= 13, got {target_opset}.")
    per_column = bool(estimator._input_encoder.category_codes())
    if per_column:
        float64 = _numerical_float64(estimator, X_sample)
    else:
        X = X_sample.toarray() if sp.issparse(X_sample) else np.asarray(X_sample)
        if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
            raise ValueError(
                f"X_sample must be 2-D with the {estimator.n_features_in_} features "
                f"{type(estimator).__name__} was fitted on; got shape {X.shape}."
            )
        float64 = X.dtype == np.float64
    register_converters()
    model = skl2onnx.to_onnx(
        estimator,
        initial_types=input_types(estimator, float64),
        target_opset=target_opset,
        options=_TENSORS if is_classifier(estimator) else None,
        model_optim=True,
    )
    _verify(estimator, X_sample, skl2onnx, target_opset)
    return model


# Labels and probabilities as tensors (skl2onnx's classifiers' zipmap=False).
_TENSORS = {"zipmap": False}


def input_types(estimator, float64):
    """The inputs of the exported graph: ``(name, skl2onnx type)`` pairs.

    One input ``X`` of every column when the estimator has no categorical columns;
    else one ``(rows, 1)`` input per column, named after it: the graph's floats for
    numerical columns, strings or float64 for categorical ones.
    """
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    from ._skl2onnx import categorical_input_type, column_name

    float_type = DoubleTensorType if float64 else FloatTensorType
    tables = {t.column: t for t in estimator._input_encoder.category_codes()}
    if not tables:
        return [("X", float_type([None, estimator.n_features_in_]))]
    return [
        (
            column_name(estimator, j),
            (categorical_input_type(tables[j]) if j in tables else float_type)(
                [None, 1]
            ),
        )
        for j in range(estimator.n_features_in_)
    ]


def _numerical_float64(estimator, X_sample):
    """Whether the numerical columns of ``X_sample`` (a DataFrame or a 2-D array of
    the fitted width) are all float64: they then get a float64 graph."""
    n_features = estimator.n_features_in_
    shape = getattr(X_sample, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != n_features:
        raise ValueError(
            f"X_sample must be 2-D with the {n_features} features "
            f"{type(estimator).__name__} was fitted on; got shape {shape}."
        )
    categorical = estimator._input_encoder.categorical_mask
    if hasattr(X_sample, "dtypes"):
        kinds = [d for d, c in zip(X_sample.dtypes, categorical, strict=True) if not c]
    else:
        kinds = [np.asarray(X_sample).dtype] * int((~categorical).sum())
    return bool(kinds) and all(np.dtype(d) == np.float64 for d in kinds)


def onnx_inputs(model, X):
    """The feeds of an exported graph for the rows ``X``, in its input types.

    For a graph with one input per column, a DataFrame's (or 2-D array's) columns
    become ``(rows, 1)`` arrays: strings for string inputs, where a missing value
    (``None``, NaN) becomes ``""``, which no category has, so that it gets the
    reserved code as in ``predict`` (any value not among the categories does);
    numbers with NaN for a missing value otherwise.

    Parameters
    ----------
    model : onnx.ModelProto or onnxruntime.InferenceSession
        A graph from :func:`to_onnx`.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Rows with the columns the estimator was fitted on.

    Returns
    -------
    dict
        ``{input name: ndarray}``, for ``InferenceSession.run``.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> import pandas as pd
    >>> from skmoe import MixtureOfExpertsRegressor, to_onnx
    >>> from skmoe.export import onnx_inputs
    >>> X = pd.DataFrame({"size": np.arange(60.0), "city": ["a", "b", "c"] * 20})
    >>> reg = MixtureOfExpertsRegressor(max_iter=5, random_state=0)
    >>> reg = reg.fit(X, X["size"] + (X["city"] == "b"))
    >>> model = to_onnx(reg, X[:1])
    >>> [i.name for i in model.graph.input]
    ['size', 'city']
    >>> new = pd.DataFrame({"size": [1.0, np.nan], "city": ["b", None]})
    >>> session = ort.InferenceSession(model.SerializeToString())
    >>> (values,) = session.run(None, onnx_inputs(model, new))
    >>> bool(np.allclose(values.ravel(), reg.predict(new)))
    True
    """
    import pandas as pd

    if hasattr(model, "graph"):
        inputs = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input]
    else:
        inputs = [(i.name, _ELEM_TYPES[i.type]) for i in model.get_inputs()]
    if len(inputs) == 1:
        name, elem = inputs[0]
        values = np.asarray(X.toarray() if sp.issparse(X) else X)
        return {name: values.astype(_NUMPY[elem])}
    frame = hasattr(X, "iloc")
    feeds = {}
    for j, (name, elem) in enumerate(inputs):
        column = X.iloc[:, j] if frame else np.asarray(X)[:, j]
        column = np.asarray(column, dtype=object)
        if elem == 8:  # STRING
            missing = np.asarray(pd.isna(column), dtype=bool)
            column = np.array(
                ["" if m else str(v) for v, m in zip(column, missing, strict=True)],
                dtype=object,
            )
        else:
            missing = np.asarray(pd.isna(column), dtype=bool)
            column = np.where(missing, np.nan, column).astype(_NUMPY[elem])
        feeds[name] = column.reshape(-1, 1)
    return feeds


_NUMPY = {1: np.float32, 11: np.float64, 7: np.int64}
_ELEM_TYPES = {
    "tensor(float)": 1,
    "tensor(double)": 11,
    "tensor(int64)": 7,
    "tensor(string)": 8,
}


def _verify(estimator, X_sample, skl2onnx, target_opset):
    """Refuse to export what the graph does not reproduce.

    A float64 twin of the graph runs on (up to :data:`VERIFY_ROWS` of) the sample
    rows in onnxruntime and must give ``predict_proba`` (or ``predict``, relative to
    the targets' spread) to within :data:`VERIFY_TOLERANCE`: a part of the estimator
    the exporter does not know (an input encoder, say) shows up here instead of in
    served predictions.
    """
    try:
        import onnxruntime as ort
    except ImportError:  # the graph is built; without a runtime it goes unchecked
        return
    if hasattr(X_sample, "iloc"):
        X = X_sample.iloc[:VERIFY_ROWS]
    else:
        X = X_sample[:VERIFY_ROWS]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        if X.dtype.kind == "f":
            X = X.astype(np.float64)
    twin = skl2onnx.to_onnx(
        estimator,
        initial_types=input_types(estimator, float64=True),
        target_opset=target_opset,
        options=_TENSORS if is_classifier(estimator) else None,
    )
    session = ort.InferenceSession(
        twin.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, onnx_inputs(twin, X))
    error = _largest_difference(estimator, X, outputs)
    if not error <= VERIFY_TOLERANCE:
        raise TypeError(
            f"The ONNX graph of this {type(estimator).__name__} differs from its "
            f"predictions on X_sample (largest difference {error:.3g}): the "
            "estimator has parts the exporter does not know, so it is not exported."
        )


def _largest_difference(estimator, X, outputs):
    """The largest difference of the graph's ``outputs`` from the estimator's
    probabilities and values (relative to the targets' spread)."""
    from ._skl2onnx import MultiGateMoE, _outputs

    with warnings.catch_warnings():  # fitted on a DataFrame, checked on its values
        warnings.filterwarnings("ignore", "X does not have valid feature names")
        if isinstance(estimator, MultiGateMoE):
            probabilities = estimator.predict_proba(X)
            predicted = estimator.predict(X)
        elif is_classifier(estimator):
            probabilities = estimator.predict_proba(X)
            probabilities = (
                probabilities if isinstance(probabilities, list) else [probabilities]
            )
        else:
            predicted = estimator.predict(X)
    errors = [0.0]
    for got, (_, kind, index) in zip(outputs, _outputs(estimator), strict=True):
        if kind == "probabilities":
            if isinstance(estimator, MultiGateMoE):
                expected = probabilities[estimator.task_names_[index]]
            else:
                expected = probabilities[index]
            errors.append(np.abs(got - expected).max())
        elif kind == "variable" and isinstance(estimator, MultiGateMoE):
            name = estimator.task_names_[index]
            column = (
                predicted[name]
                if hasattr(predicted, "columns")
                else predicted.reshape(len(got), -1)[:, index]
            )
            expected = np.asarray(column, dtype=np.float64).reshape(-1, 1)
            scale = estimator._tasks.encoders[index].scale
            errors.append((np.abs(got - expected) / scale).max())
        elif kind == "variable":
            expected = predicted.reshape(len(got), -1)
            errors.append((np.abs(got - expected) / estimator._scaler.scale).max())
    return max(errors)
