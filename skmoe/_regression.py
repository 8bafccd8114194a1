"""Regression behaviour shared by the single- and multi-gate regressors."""

import numpy as np
from sklearn.base import _fit_context
from sklearn.metrics import r2_score

from ._engine import MeanSquaredError
from ._targets import TargetScaler, as_2d_target


class RegressionMixin:
    """Target scaling, ``predict`` and ``partial_fit`` for regressors.

    Targets are standardised per output before training (with the statistics of the
    first ``fit`` or ``partial_fit`` call) and predictions mapped back, so the default
    learning rate suits targets of any scale.
    """

    def _fitted_state(self):
        state = super()._fitted_state()
        state["target_mean"] = self._scaler.mean.tolist()
        state["target_scale"] = self._scaler.scale.tolist()
        return state

    def _restore_fitted_state(self, state):
        super()._restore_fitted_state(state)
        scaler = TargetScaler.__new__(TargetScaler)
        scaler.mean = np.asarray(state["target_mean"], dtype=np.float64)
        scaler.scale = np.asarray(state["target_scale"], dtype=np.float64)
        shape = (self.n_outputs_,)
        if scaler.mean.shape != shape or scaler.scale.shape != shape:
            raise ValueError("target scaling does not match n_outputs_")
        self._scaler = scaler

    def _validate_targets(self, X, y, reset):
        return self._validate_training_data(X, y, reset, y_numeric=True)

    def _prepare_targets(self, y, sample_weight, reset, classes):
        y2d, is_1d = as_2d_target(np.asarray(y, dtype=np.float64))
        if reset:
            # Statistics agreed by the ranks of a data-parallel fit, else this y's.
            agreed = isinstance(classes, TargetScaler)
            self._scaler = classes if agreed else TargetScaler(y2d, sample_weight)
            self._y_was_1d = is_1d
            self.n_outputs_ = y2d.shape[1]
        elif y2d.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2d.shape[1]} outputs but the estimator was fitted with "
                f"{self.n_outputs_}."
            )
        targets = self._scaler.transform(y2d).astype(np.float32)
        return targets, self._objective()

    def _target_summary(self, y, sample_weight):
        y2d = as_2d_target(np.asarray(y, dtype=np.float64))[0]
        return TargetScaler.moments(y2d, sample_weight)

    def _agreed_targets(self, summaries):
        return TargetScaler.from_moments(summaries)

    def _validation_truth(self, targets):
        """The validation rows with every target present, and their targets."""
        rows = ~np.isnan(targets).any(axis=1)
        y = self._scaler.inverse(targets[rows].astype(np.float64))
        return rows, (y.ravel() if self._y_was_1d else y)

    def _objective(self):
        return MeanSquaredError(self.n_outputs_, self._output_weights(self.n_outputs_))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a weight of ``k`` counts a row ``k`` times.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one pass over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R², averaged uniformly over outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        float
            R² as ``RegressorMixin.score``. With ``allow_missing_labels=True``,
            each output's R² uses only the rows where its target is present.
        """
        if not self._allows_missing_targets():
            return super().score(X, y, sample_weight=sample_weight)
        y_pred = self.predict(X)
        y = np.asarray(y, dtype=np.float64).reshape(y_pred.shape)
        y2d, pred2d = y.reshape(len(y), -1), y_pred.reshape(len(y), -1)
        weights = None if sample_weight is None else np.asarray(sample_weight)
        scores = []
        for j in range(y2d.shape[1]):
            present = ~np.isnan(y2d[:, j])
            scores.append(
                r2_score(
                    y2d[present, j],
                    pred2d[present, j],
                    sample_weight=None if weights is None else weights[present],
                )
            )
        return float(np.mean(scores))

    def predict(self, X):
        """Predict targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, 2-D when the model was fitted on a 2-D ``y``.
        """
        raw = self._raw_output(X)
        y = self._scaler.inverse(raw)
        return y.ravel() if self._y_was_1d else y
