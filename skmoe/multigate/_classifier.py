"""MultiGateMoEClassifier."""

from sklearn.base import ClassifierMixin

from .._base import with_params
from .._classification import (
    CLASS_WEIGHT_CONSTRAINT,
    CLASS_WEIGHT_DOC,
    LABEL_SMOOTHING_CONSTRAINT,
    LABEL_SMOOTHING_DOC,
    ClassificationMixin,
)
from ._multi_gate import ATTRIBUTES_DOC, PARAMETERS_DOC, MultiGateEstimator


class MultiGateMoEClassifier(ClassificationMixin, ClassifierMixin, MultiGateEstimator):
    __doc__ = f"""Multi-task classifier: shared experts, a gate and a tower per task.

    ``y`` has one column per task; every task has its own classes (binary or
    multiclass, string labels allowed). ``predict`` returns ``(n_samples, n_tasks)``,
    ``predict_proba`` a list with one ``(n_samples, n_classes_t)`` array per task, and
    ``score`` the fraction of rows with every task right, as ``MultiOutputClassifier``.

    Parameters
    ----------
{PARAMETERS_DOC}{CLASS_WEIGHT_DOC}{LABEL_SMOOTHING_DOC}    Attributes
    ----------
    classes_ : list of ndarray
        Class labels of each task.
{ATTRIBUTES_DOC}
    See Also
    --------
    MultiGateMoERegressor : One regression target per task.
    MixtureOfExpertsClassifier : One gate shared by every output.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MultiGateMoEClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6))
    >>> Y = np.column_stack([X[:, 0] > 0, np.where(X[:, 1] > 0, "a", "b")])
    >>> clf = MultiGateMoEClassifier(architecture="cgc", max_iter=20, random_state=0)
    >>> clf.fit(X, Y).predict(X[:2]).shape
    (2, 2)
    >>> [p.shape for p in clf.predict_proba(X[:2])]
    [(2, 2), (2, 2)]
    """

    _parameter_constraints: dict = {
        **MultiGateEstimator._parameter_constraints,
        "class_weight": CLASS_WEIGHT_CONSTRAINT,
        "label_smoothing": LABEL_SMOOTHING_CONSTRAINT,
    }

    __init__ = with_params(
        MultiGateEstimator.__init__, class_weight=None, label_smoothing=0.0
    )
