"""Classification behaviour shared by the single- and multi-gate classifiers."""

from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight

from ._engine import MultiOutputCrossEntropy
from ._engine.objectives import MISSING_CLASS
from ._fitted_state import array_from_json, array_to_json
from ._small_batch import softmax_rows
from ._targets import LabelCodes, as_2d_target, local_classes, missing_mask

CLASS_WEIGHT_DOC = """\
    class_weight : dict, list of dict, "balanced" or None, default=None
        Weights of the classes: ``{label: weight}``, one such dict per output for a
        2-D ``y``, or ``"balanced"`` for ``n_samples / (n_classes *
        np.bincount(y))``. A row's weight is multiplied by its class's weight (by the
        product over outputs for a 2-D ``y``, as scikit-learn's trees do), so a class
        weight is the same as the corresponding ``sample_weight``. ``"balanced"`` is
        computed from the data of each ``fit``; ``partial_fit`` accepts dicts only.
"""

CLASS_WEIGHT_CONSTRAINT = [dict, list, StrOptions({"balanced"}), None]

LABEL_SMOOTHING_DOC = """\
    label_smoothing : float in [0, 1), default=0.0
        Label smoothing of the cross-entropy, as in ``torch.nn.CrossEntropyLoss``:
        each label's target puts ``1 - label_smoothing`` on its class and spreads
        ``label_smoothing`` evenly over all classes. The validation score of early
        stopping stays the accuracy.
"""

LABEL_SMOOTHING_CONSTRAINT = [Interval(Real, 0, 1, closed="left")]


def class_weight_factors(class_weight, classes, codes, where=""):
    """Each row's class weight: ``codes`` are one task's class codes, with
    ``MISSING_CLASS`` (factor 1) where the label is missing."""
    present = codes != MISSING_CLASS
    labels = classes[codes[present]]
    if isinstance(class_weight, dict):
        unknown = [k for k in class_weight if k not in set(classes.tolist())]
        if unknown:
            raise ValueError(
                f"class_weight{where} names classes {unknown} that are not in y "
                f"(classes: {classes.tolist()})."
            )
    try:
        weights = compute_class_weight(class_weight, classes=classes, y=labels)
    except ValueError as exc:
        raise ValueError(f"class_weight{where}: {exc}") from None
    factors = np.ones(codes.shape[0])
    factors[present] = weights[codes[present]]
    return factors


def _check_incremental_class_weight(class_weight, incremental, name):
    candidates = [class_weight]
    if isinstance(class_weight, (list, tuple)):
        candidates += list(class_weight)
    elif isinstance(class_weight, dict):
        candidates += list(class_weight.values())
    balanced = any(isinstance(c, str) and c == "balanced" for c in candidates)
    if incremental and balanced:
        raise ValueError(
            f"{name}: class_weight='balanced' needs the class frequencies of the "
            "whole data, which partial_fit does not see; pass a dict of weights, "
            "for example from sklearn.utils.class_weight.compute_class_weight."
        )


class ClassificationMixin:
    """Label encoding, ``predict``, ``predict_proba``, ``score`` and ``partial_fit``."""

    def _fitted_state(self):
        state = super()._fitted_state()
        state["classes"] = [array_to_json(c) for c in self._label_codes.classes]
        return state

    def _restore_fitted_state(self, state):
        super()._restore_fitted_state(state)
        if "classes" not in state:
            raise ValueError("a classifier file without classes")
        classes = [array_from_json(c) for c in state["classes"]]
        if len(classes) != self.n_outputs_ or any(len(c) < 2 for c in classes):
            raise ValueError("classes do not match n_outputs_")
        self._label_codes = LabelCodes(classes)
        self.classes_ = classes[0] if self._y_was_1d else list(classes)

    def _weigh_rows(self, targets, sample_weight, incremental):
        class_weight = self.class_weight
        if class_weight is None:
            return sample_weight
        name = type(self).__name__
        _check_incremental_class_weight(class_weight, incremental, name)
        n_outputs = targets.shape[1]
        if isinstance(class_weight, dict) or class_weight == "balanced":
            per_output = [class_weight] * n_outputs
            if isinstance(class_weight, dict) and n_outputs > 1:
                raise ValueError(
                    f"{name}: y has {n_outputs} outputs; give class_weight as "
                    "'balanced' or a list of one dict per output."
                )
        else:
            per_output = list(class_weight)
            if len(per_output) != n_outputs:
                raise ValueError(
                    f"{name}: class_weight has {len(per_output)} entries but y has "
                    f"{n_outputs} outputs; give one dict per output."
                )
        factors = np.ones(targets.shape[0])
        for j, weights in enumerate(per_output):
            where = "" if n_outputs == 1 else f" of output {j}"
            factors *= class_weight_factors(
                weights, self._label_codes.classes[j], targets[:, j], where
            )
        return sample_weight * factors

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
        elif classes is not None:
            self._check_same_classes(classes)
        return self._label_codes.encode(y2d, missing), self._objective()

    def _check_same_classes(self, classes):
        """``classes=`` on a later ``partial_fit`` call must repeat the first one's,
        as scikit-learn's ``SGDClassifier`` requires."""
        given = LabelCodes.from_user(classes, self.n_outputs_).classes
        fitted = self._label_codes.classes
        if not all(np.array_equal(a, b) for a, b in zip(given, fitted, strict=True)):
            shown = fitted[0] if self._y_was_1d else fitted
            raise ValueError(
                f"{type(self).__name__}.partial_fit: classes={classes!r} is not the "
                f"same as the classes the model was fitted with, {shown!r}. Pass the "
                "same classes on every call (or omit classes after the first)."
            )

    def _target_summary(self, y, sample_weight):
        return local_classes(as_2d_target(y)[0])

    def _agreed_targets(self, summaries):
        # The classes of every output: the union of those seen on each rank.
        per_output = zip(*summaries, strict=True)
        return [np.unique(np.concatenate(found)) for found in per_output]

    def _objective(self):
        return MultiOutputCrossEntropy(
            self._label_codes.n_classes(),
            self._output_weights(self.n_outputs_),
            label_smoothing=self.label_smoothing,
        )

    def _validation_truth(self, codes):
        """The validation rows with every label present, and their labels."""
        rows = (codes != MISSING_CLASS).all(axis=1)
        labels = self._label_codes.decode(codes[rows].astype(np.int64))
        if not self._y_was_1d and labels.ndim == 1:
            labels = labels.reshape(-1, 1)
        return rows, labels

    def _stratify(self, targets):
        return targets[:, 0] if targets.shape[1] == 1 else None

    def _output_logits(self, X):
        """float64 logits of each output, a list of ``(n_samples, n_classes)`` views."""
        logits = self._raw_output(X)
        return np.split(logits, np.cumsum(self._label_codes.n_classes())[:-1], axis=1)

    def _probabilities(self, X):
        return [softmax_rows(chunk) for chunk in self._output_logits(X)]

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
            All classes of each output. Required on the first call; on later calls
            it may be omitted or must equal the first call's.
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
