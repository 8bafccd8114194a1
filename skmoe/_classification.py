"""Classification behaviour shared by the single- and multi-gate classifiers."""

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import _fit_context

from ._engine import MultiOutputCrossEntropy
from ._targets import LabelCodes, as_2d_target, local_classes, missing_mask


class ClassificationMixin:
    """Label encoding, ``predict``, ``predict_proba``, ``score`` and ``partial_fit``."""

    def _validate_targets(self, X, y, reset):
        X, y = self._validate_training_data(X, y, reset, y_numeric=False)
        if sp.issparse(y):
            y = y.toarray()
        return X, y

    def _prepare_targets(self, y, sample_weight, reset, classes):
        y2d, is_1d = as_2d_target(y)
        missing = missing_mask(y2d)
        if not self._allows_missing_targets():
            if missing.any():
                raise ValueError(
                    "Input y contains missing labels (None or NaN); every row needs a "
                    "label."
                )
            missing = None
        if reset:
            if classes is not None:
                codes = LabelCodes.from_user(classes, y2d.shape[1])
            else:
                codes = LabelCodes.from_targets(y2d, missing)
            self._label_codes = codes
            self._y_was_1d = is_1d
            self.n_outputs_ = y2d.shape[1]
            self.classes_ = codes.classes[0] if is_1d else list(codes.classes)
        elif y2d.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2d.shape[1]} outputs but the estimator was fitted with "
                f"{self.n_outputs_}."
            )
        return self._label_codes.encode(y2d, missing), self._objective()

    def _target_summary(self, y, sample_weight):
        return local_classes(as_2d_target(y)[0])

    def _agreed_targets(self, summaries):
        # The classes of every output: the union of those seen on each rank.
        per_output = zip(*summaries, strict=True)
        return [np.unique(np.concatenate(found)) for found in per_output]

    def _objective(self):
        return MultiOutputCrossEntropy(
            self._label_codes.n_classes(), self._output_weights(self.n_outputs_)
        )

    def _stratify(self, targets):
        return targets[:, 0] if targets.shape[1] == 1 else None

    def _output_logits(self, X):
        """float64 logits of each output, a list of ``(n_samples, n_classes)`` views."""
        logits = self._raw_output(X)
        return np.split(logits, np.cumsum(self._label_codes.n_classes())[:-1], axis=1)

    def _probabilities(self, X):
        return [
            torch.softmax(torch.from_numpy(chunk), dim=1).numpy()
            for chunk in self._output_logits(X)
        ]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels; a 2-D ``y`` fits one classification per column.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a weight of ``k`` counts a row ``k`` times.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the model with one pass over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels.
        classes : array-like of shape (n_classes,) or list of arrays, default=None
            All classes of each output. Required on the first call; ignored after.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if not hasattr(self, "module_") and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit: the labels "
                "of later batches must be known in advance."
            )
        return self._fit(
            X, y, sample_weight=sample_weight, incremental=True, classes=classes
        )

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted labels, one column per output for a 2-D training ``y``.
        """
        # The largest logit is the most probable class: no softmax needed.
        codes = np.column_stack(
            [chunk.argmax(axis=1) for chunk in self._output_logits(X)]
        )
        labels = self._label_codes.decode(codes)
        if not self._y_was_1d and labels.ndim == 1:
            labels = labels.reshape(-1, 1)
        return labels

    def predict_proba(self, X):
        """Predict class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or list of such arrays
            Probabilities in the order of ``classes_``; a list with one array per
            output when the model was fitted on a 2-D ``y``.
        """
        probas = [p / p.sum(axis=1, keepdims=True) for p in self._probabilities(X)]
        return probas[0] if self._y_was_1d else probas

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray or list of ndarray
            Same layout as :meth:`predict_proba`.
        """
        probas = self.predict_proba(X)
        if isinstance(probas, list):
            return [np.log(p) for p in probas]
        return np.log(probas)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy; with several outputs, the fraction of rows right on all.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        float
            Accuracy (subset accuracy for several outputs, as
            ``MultiOutputClassifier.score``). With ``allow_missing_labels=True``, a
            missing label counts as right and rows with no label are left out.
        """
        y_pred = self.predict(X)
        y = np.asarray(y)
        if y_pred.ndim == 1:
            y, y_pred = y.reshape(-1, 1), y_pred.reshape(-1, 1)
        else:
            y = y.reshape(y_pred.shape)
        right = y_pred == y
        rows = np.ones(len(y), dtype=bool)
        if self._allows_missing_targets():
            missing = missing_mask(y)
            right |= missing
            rows = ~missing.all(axis=1)
        weights = None if sample_weight is None else np.asarray(sample_weight)[rows]
        return float(np.average(right.all(axis=1)[rows], weights=weights))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
