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

    Every estimator and routing scheme is supported. Sparse routing (``top_k``, noisy
    top-k, switch) is exported through its dense-equivalent computation: all experts
    are computed and each row's top-k weights are scattered into a dense weight
    matrix, so the graph has fixed shapes and no data-dependent branch. Classifiers
    output ``label`` and ``probabilities`` (one ``probabilities_<j>`` per output for
    several outputs); regressors output ``variable`` of shape ``(rows, n_outputs)`` on
    the scale of ``y``.

    To convert a whole ``Pipeline`` ending in a skmoe estimator, call
    :func:`skmoe.export.register_converters` and then ``skl2onnx.to_onnx``.

    Parameters
    ----------
    estimator : MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, \
MultiGateMoEClassifier or MultiGateMoERegressor
        A fitted estimator.
    X_sample : {array-like, sparse matrix} of shape (n_samples, n_features)
        A few input rows; they fix the input's width and precision: float64 rows give
        a float64 graph, anything else a float32 graph.
    target_opset : int or None, default=None
        ONNX opset of the model (13 or later); ``None`` picks the newest that
        skl2onnx has tested.

    Returns
    -------
    onnx.ModelProto
        One float input ``X`` of shape ``(None, n_features)``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``X_sample`` does not have the estimator's number of features.
    TypeError
        If the estimator (or its module) is not one that can be exported, or the
        graph does not reproduce its predictions on ``X_sample`` (checked with
        onnxruntime when it is installed).
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
    X = X_sample.toarray() if sp.issparse(X_sample) else np.asarray(X_sample)
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X_sample must be 2-D with the {estimator.n_features_in_} features "
            f"{type(estimator).__name__} was fitted on; got shape {X.shape}."
        )
    if isinstance(target_opset, int) and target_opset < 13:
        raise ValueError(f"to_onnx needs target_opset >= 13, got {target_opset}.")
    register_converters()
    model = skl2onnx.to_onnx(
        estimator, X[:1].astype(dtype), target_opset=target_opset, model_optim=True
    )
    _verify(estimator, X[:VERIFY_ROWS].astype(np.float64), skl2onnx, target_opset)
    return model


def _verify(estimator, X, skl2onnx, target_opset):
    """Refuse to export what the graph does not reproduce.

    A float64 twin of the graph runs on the sample rows in onnxruntime and must give
    ``predict_proba`` (or ``predict``, relative to the targets' spread) to within
    :data:`VERIFY_TOLERANCE`: a part of the estimator the exporter does not know (an
    input encoder, say) shows up here instead of in served predictions.
    """
    try:
        import onnxruntime as ort
    except ImportError:  # the graph is built; without a runtime it goes unchecked
        return
    twin = skl2onnx.to_onnx(estimator, X[:1], target_opset=target_opset)
    session = ort.InferenceSession(
        twin.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, {session.get_inputs()[0].name: X})
    with warnings.catch_warnings():  # fitted on a DataFrame, checked on its values
        warnings.filterwarnings("ignore", "X does not have valid feature names")
        classifier = is_classifier(estimator)
        expected = (estimator.predict_proba if classifier else estimator.predict)(X)
    if classifier:
        expected = expected if isinstance(expected, list) else [expected]
        pairs = zip(outputs[1:], expected, strict=True)
        error = max(np.abs(got - exp).max() for got, exp in pairs)
    else:
        expected = expected.reshape(len(X), -1)
        error = (np.abs(outputs[0] - expected) / estimator._scaler.scale).max()
    if not error <= VERIFY_TOLERANCE:
        raise TypeError(
            f"The ONNX graph of this {type(estimator).__name__} differs from its "
            f"predictions on X_sample (largest difference {error:.3g}): the "
            "estimator has parts the exporter does not know, so it is not exported."
        )
