"""MixtureOfExpertsRegressor."""

from sklearn.base import RegressorMixin

from .._regression import RegressionMixin
from ._single_gate import ATTRIBUTES_DOC, PARAMETERS_DOC, SingleGateEstimator


class MixtureOfExpertsRegressor(RegressionMixin, RegressorMixin, SingleGateEstimator):
    __doc__ = f"""Mixture-of-experts regressor: a gate routes examples to expert MLPs.

    Single- and multi-output regression with a squared-error loss. Targets are
    standardised per output internally and predictions mapped back.

    Parameters
    ----------
{PARAMETERS_DOC}
    Attributes
    ----------
{ATTRIBUTES_DOC}
    See Also
    --------
    MixtureOfExpertsClassifier : The classification counterpart.
    sklearn.neural_network.MLPRegressor : A single dense network.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    >>> reg = MixtureOfExpertsRegressor(learning_rate_init=1e-2, random_state=0)
    >>> reg = reg.fit(X, y)
    >>> bool(reg.score(X, y) > 0.9)
    True
    """
