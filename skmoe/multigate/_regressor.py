"""MultiGateMoERegressor."""

from sklearn.base import RegressorMixin

from .._regression import RegressionMixin
from ._multi_gate import ATTRIBUTES_DOC, PARAMETERS_DOC, MultiGateEstimator


class MultiGateMoERegressor(RegressionMixin, RegressorMixin, MultiGateEstimator):
    __doc__ = f"""Multi-task regressor: shared experts, a gate and a tower per task.

    ``y`` has one column per task; ``predict`` returns ``(n_samples, n_tasks)``. Each
    target is standardised internally. ``score`` is R² averaged over tasks, as for any
    scikit-learn multi-output regressor.

    Parameters
    ----------
{PARAMETERS_DOC}
    Attributes
    ----------
{ATTRIBUTES_DOC}
    See Also
    --------
    MultiGateMoEClassifier : One classification per task.
    MixtureOfExpertsRegressor : One gate shared by every output.

    Examples
    --------
    >>> from skmoe import MultiGateMoERegressor
    >>> from skmoe.datasets import make_mmoe_synthetic
    >>> X, Y = make_mmoe_synthetic(n_samples=500, correlation=0.9, random_state=0)
    >>> reg = MultiGateMoERegressor(max_iter=20, random_state=0).fit(X, Y)
    >>> reg.predict(X[:3]).shape
    (3, 2)
    >>> reg.gate_weights(X[:3]).shape
    (3, 2, 4)
    """
