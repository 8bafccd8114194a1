"""MixtureOfExpertsClassifier."""

from sklearn.base import ClassifierMixin

from .._base import with_params
from .._classification import (
    CLASS_WEIGHT_CONSTRAINT,
    CLASS_WEIGHT_DOC,
    LABEL_SMOOTHING_CONSTRAINT,
    LABEL_SMOOTHING_DOC,
    ClassificationMixin,
)
from ._single_gate import ATTRIBUTES_DOC, PARAMETERS_DOC, SingleGateEstimator


class MixtureOfExpertsClassifier(
    ClassificationMixin, ClassifierMixin, SingleGateEstimator
):
    __doc__ = f"""Mixture-of-experts classifier: a gate routes examples to expert MLPs.

    Binary, multiclass and multi-output (multilabel or multiclass-multioutput)
    classification; every output gets its own softmax head on the shared experts.
    Trained with Adam on minibatches, with optional balancing losses, early stopping
    and GPU execution.

    Parameters
    ----------
{PARAMETERS_DOC}{CLASS_WEIGHT_DOC}{LABEL_SMOOTHING_DOC}    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels; a list with one array per output for a 2-D ``y``.
{ATTRIBUTES_DOC}
    See Also
    --------
    MixtureOfExpertsRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : A single dense network.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MixtureOfExpertsClassifier(n_experts=4, top_k=2, max_iter=50,
    ...                                  random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.gate_weights(X[:2]).shape
    (2, 4)
    """

    _parameter_constraints: dict = {
        **SingleGateEstimator._parameter_constraints,
        "class_weight": CLASS_WEIGHT_CONSTRAINT,
        "label_smoothing": LABEL_SMOOTHING_CONSTRAINT,
    }

    __init__ = with_params(
        SingleGateEstimator.__init__, class_weight=None, label_smoothing=0.0
    )
