"""Export of fitted skmoe estimators to ONNX, for serving with onnxruntime.

:func:`to_onnx` exports one estimator; :func:`onnx_inputs` turns rows (a DataFrame
with categorical columns, say) into the feeds of its graph; :func:`register_converters`
registers skmoe's converters with skl2onnx so that whole Pipelines convert with
``skl2onnx.to_onnx``.
Both need the ``onnx`` extra (``pip install "skmoe[onnx]"``), imported only when called.
"""

from ._onnx import onnx_inputs, to_onnx


def register_converters():
    """Register skmoe's converters with skl2onnx (idempotent).

    After this call ``skl2onnx.to_onnx`` converts every skmoe estimator, alone or at
    the end of a ``Pipeline`` of scikit-learn transformers, into one ONNX graph, with
    the outputs described in :func:`to_onnx`.

    Examples
    --------
    >>> import numpy as np
    >>> import skl2onnx
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.export import register_converters
    >>> register_converters()
    >>> X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> pipe = make_pipeline(StandardScaler(),
    ...                      MixtureOfExpertsRegressor(max_iter=2, random_state=0))
    >>> pipe = pipe.fit(X, X[:, 0])
    >>> [o.name for o in skl2onnx.to_onnx(pipe, X[:1]).graph.output]
    ['variable']
    """
    from ._onnx import _import_skl2onnx

    _import_skl2onnx()
    from ._skl2onnx import register_converters as register

    register()


__all__ = ["onnx_inputs", "register_converters", "to_onnx"]
