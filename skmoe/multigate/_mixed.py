"""MultiGateMoE: tasks of different types (binary, multiclass, regression)."""

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import check_scoring, r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_consistent_length

from .._base import call_scorer, with_params
from .._classification import _check_incremental_class_weight, class_weight_factors
from .._engine import MeanSquaredError, MultiOutputCrossEntropy
from .._engine.multitask import (
    FixedTaskWeights,
    GradNormWeights,
    MixedTaskObjective,
    UncertaintyWeights,
)
from .._small_batch import softmax_rows
from .._targets import LabelCodes
from ._multi_gate import ATTRIBUTES_DOC, PARAMETERS_DOC, MultiGateEstimator
from ._tasks import (
    Tasks,
    chain_ancestors,
    split_columns,
    tasks_from_json,
    tasks_to_json,
)

LEARNED_WEIGHTS = ("uncertainty", "gradnorm")

TASK_WEIGHTS_DOC = """\
    task_weights : array-like of shape (n_tasks,), "uncertainty", "gradnorm" or None, \
default=None
        How the tasks' losses add up. ``None`` weighs tasks equally; numbers fix each
        task's non-negative weight. ``"uncertainty"`` learns a homoscedastic
        uncertainty ``sigma_t`` per task along the network (Kendall et al., CVPR
        2018): the loss is ``sum_t L_t / sigma_t^2 + log sigma_t``, so noisier tasks
        weigh less. ``"gradnorm"`` (Chen et al., ICML 2018) moves the weights at every
        step so that each task's gradient norm at the last shared expert layer
        follows its relative training rate (``alpha=1.5``); the weights sum to the
        number of tasks. The weights reached are ``task_weights_``, their course
        ``task_weights_curve_``.
"""


SCORING_DOC = """\
    scoring : str, callable, dict or None, default=None
        The validation score of early stopping (higher is better; the best epoch's
        weights are restored). ``None``: the mean over tasks of accuracy and R². A
        scikit-learn scorer name (``"roc_auc"``, ``"neg_log_loss"``, ``"r2"``, ...) or
        a scorer callable ``scorer(estimator, X, y)`` is applied to every task and
        averaged; ``{task: scorer}`` scores only the tasks named, each with its own,
        and averages them. Each task is scored on its validation rows that carry its
        label. Used only with ``early_stopping=True``.
"""


def _mixed_doc(doc):
    """The shared parameters' doc with this estimator's ``task_weights`` and
    ``scoring``."""
    for name, text, after in [
        ("task_weights", TASK_WEIGHTS_DOC, "allow_missing_labels"),
        ("scoring", SCORING_DOC, "load_balancing_coef"),
    ]:
        start = doc.index(f"    {name} :")
        end = doc.index(f"    {after} :")
        doc = doc[:start] + text + doc[end:]
    return doc


MIXED_PARAMETERS_DOC = """\
    task_types : "auto", str, list or dict, default="auto"
        The type of each task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        ``"auto"`` infers it from the labels as ``sklearn.utils.multiclass.
        type_of_target`` does (two values: binary; integers or strings: multiclass;
        other floats: regression). A list gives one type per column, a dict maps
        task names to types (the others are inferred), a single type applies to all.
    task_chain : dict or None, default=None
        ``{task: parent}`` links a binary task observed only after its binary parent
        is positive, such as ``{"conversion": "click"}`` (ESMM, Ma et al., SIGIR
        2018). The task's tower then models ``p(task | parent)`` and trains, over all
        rows, the product ``p(parent) * p(task | parent)`` against "both positive";
        its label is not needed where the parent is negative. Chains may be longer
        (``{"c": "b", "b": "a"}``) but not cyclic.
    class_weight : dict, "balanced" or None, default=None
        Class weights of the classification tasks: ``"balanced"`` for all of them, or
        ``{task: "balanced" or {label: weight}}``. A row's weight is multiplied by the
        product of its tasks' class weights (a missing label counts 1), so a class
        weight is the same as the corresponding ``sample_weight``. ``partial_fit``
        accepts dicts of weights only.
"""


class MultiGateMoE(MultiGateEstimator):
    __doc__ = f"""Multi-task model whose tasks may differ in type.

    ``y`` is a DataFrame (or a 2-D array) with one column per task; each task is a
    binary or multiclass classification or a regression, with its own tower, loss
    and score, on shared (and, for ``"cgc"``/``"ple"``, task-specific) experts.
    ``predict`` returns a DataFrame with ``y``'s columns when ``y`` was a DataFrame
    (an array otherwise, of dtype object when the tasks' labels differ in type);
    ``predict_proba`` a dict from each classification task to its probabilities;
    ``score`` the mean over tasks of accuracy (classification) and R² (regression);
    ``score_tasks`` each task's score.

    Parameters
    ----------
{_mixed_doc(PARAMETERS_DOC)}{MIXED_PARAMETERS_DOC}
    Attributes
    ----------
    task_names_ : list
        The tasks: ``y``'s column names, or ``0 .. n_tasks - 1`` for an array.
    task_types_ : dict
        The type of each task, given or inferred.
    classes_ : dict
        The class labels of each classification task.
    task_weights_ : ndarray of shape (n_tasks,)
        The task weights at the end of training (fixed, or learned with
        ``"uncertainty"`` and ``"gradnorm"``).
    task_weights_curve_ : list of ndarray
        The task weights after each epoch.
{ATTRIBUTES_DOC}
    See Also
    --------
    MultiGateMoEClassifier : Every task a classification.
    MultiGateMoERegressor : Every task a regression.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from skmoe import MultiGateMoE
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 5))
    >>> y = pd.DataFrame({{
    ...     "click": (X[:, 0] > 0).astype(int),
    ...     "colour": np.where(X[:, 1] > 0.5, "red", np.where(X[:, 1] < -0.5,
    ...                                                       "blue", "green")),
    ...     "dwell": 2 * X[:, 2] + rng.normal(scale=0.1, size=400),
    ... }})
    >>> model = MultiGateMoE(max_iter=30, learning_rate_init=1e-2,
    ...                      task_weights="uncertainty", random_state=0).fit(X, y)
    >>> model.task_types_
    {{'click': 'binary', 'colour': 'multiclass', 'dwell': 'regression'}}
    >>> model.predict(X[:2]).columns.tolist()
    ['click', 'colour', 'dwell']
    >>> sorted(model.predict_proba(X[:2]))
    ['click', 'colour']
    >>> {{task: round(s, 2) for task, s in model.score_tasks(X, y).items()}}
    {{'click': 1.0, 'colour': 0.97, 'dwell': 0.99}}
    """

    _parameter_constraints: dict = {
        **MultiGateEstimator._parameter_constraints,
        "task_weights": ["array-like", StrOptions(set(LEARNED_WEIGHTS)), None],
        "task_types": [str, list, tuple, dict],
        "task_chain": [dict, None],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "scoring": [str, callable, dict, None],
    }

    __init__ = with_params(
        MultiGateEstimator.__init__,
        task_types="auto",
        task_chain=None,
        class_weight=None,
    )

    # -- targets ----------------------------------------------------------------------
    def _validate_targets(self, X, y, reset):
        if y is None:
            raise ValueError(
                "MultiGateMoE requires y to be passed, but the target y is None."
            )
        X = self._encode_input(X, reset)
        check_consistent_length(X, y)
        return X, y

    def _prepare_targets(self, y, sample_weight, reset, classes):
        if reset:
            self._set_tasks(Tasks.learn(y, self.task_types, sample_weight, classes))
            if self.class_weight is not None and "regression" in self._tasks.types:
                # The regression targets' standardisation weighs rows as a
                # sample_weight would, class weights included.
                factors = self._class_factors(self._encode(y), incremental=False)
                if sample_weight.ndim == 2:  # per task
                    factors = factors[:, None]
                weighted = sample_weight * factors
                self._set_tasks(Tasks.learn(y, self.task_types, weighted, classes))
        return self._encode(y), self._objective()

    def _encode(self, y):
        return self._tasks.encode(y, self.allow_missing_labels, lenient=self._chains)

    def _set_tasks(self, tasks):
        self._tasks = tasks
        self._chains = chain_ancestors(self.task_chain, tasks)
        self.task_names_ = list(tasks.names)
        self.task_types_ = dict(zip(tasks.names, tasks.types, strict=True))
        self.classes_ = {
            name: tasks.encoders[t].classes[0]
            for t, name in enumerate(tasks.names)
            if tasks.is_classification(t)
        }
        self.n_outputs_ = len(tasks.names)
        self._y_was_1d = tasks.kind == "1d"
        self._task_weighting = self._make_weighting()

    def _make_weighting(self):
        n_tasks = self.n_outputs_
        if isinstance(self.task_weights, str):
            if self.task_weights == "uncertainty":
                return UncertaintyWeights(n_tasks)
            return GradNormWeights(n_tasks, learning_rate=self.learning_rate_init)
        return FixedTaskWeights(self._output_weights(n_tasks))

    def _objective(self):
        tasks = [
            MultiOutputCrossEntropy(self._tasks.widths()[t : t + 1])
            if self._tasks.is_classification(t)
            else MeanSquaredError(1)
            for t in range(len(self._tasks.names))
        ]
        return MixedTaskObjective(tasks, self._chains, self._task_weighting)

    def _validation_scorer(self):
        """``scoring`` as a function of the validation outputs, targets and weights,
        per task."""
        if self.scoring is None:
            return None
        if isinstance(self.scoring, dict):
            unknown = [k for k in self.scoring if k not in self._tasks.names]
            if unknown:
                raise ValueError(
                    f"scoring names task(s) {unknown} that are not tasks of y "
                    f"(tasks: {self._tasks.names})."
                )
            per_task = {self._tasks.index(k): v for k, v in self.scoring.items()}
        else:
            per_task = dict.fromkeys(range(len(self._tasks.names)), self.scoring)
        per_task = {t: check_scoring(None, s) for t, s in per_task.items()}

        def score(outputs, targets, weights):
            outputs = outputs.detach().cpu().double().numpy()
            targets = targets.detach().cpu().double().numpy()
            weights = weights.detach().cpu().double().numpy()
            chunks = np.split(outputs, np.cumsum(self._tasks.widths())[:-1], axis=1)
            values = []
            for t, scorer in per_task.items():
                rows = ~np.isnan(targets[:, t])
                frozen = (
                    _FrozenClassifier
                    if self._tasks.is_classification(t)
                    else _FrozenRegressor
                )(self._tasks.encoders[t], chunks[t][rows])
                truth = frozen.decode(targets[rows, t])
                try:
                    values.append(
                        call_scorer(
                            scorer, frozen, np.arange(rows.sum()), truth, weights[rows]
                        )
                    )
                except (ValueError, TypeError, AttributeError) as exc:
                    raise ValueError(
                        f"scoring failed on task {self._tasks.names[t]!r} "
                        f"({self._tasks.types[t]}): {str(exc).rstrip('.')}. Give "
                        "a dict of scorers for the tasks they suit."
                    ) from None
            return float(np.mean(values))

        return score

    def _weigh_rows(self, targets, sample_weight, incremental):
        if self.class_weight is None:
            return sample_weight
        return sample_weight * self._class_factors(targets, incremental)

    def _class_factors(self, targets, incremental):
        """Each row's product of its tasks' class weights."""
        class_weight = self.class_weight
        _check_incremental_class_weight(class_weight, incremental, "MultiGateMoE")
        names = self._tasks.names
        if isinstance(class_weight, str):
            per_task = {
                name: class_weight
                for t, name in enumerate(names)
                if self._tasks.is_classification(t)
            }
        else:
            per_task = class_weight
        factors = np.ones(targets.shape[0])
        for name, weights in per_task.items():
            if name not in names or not self._tasks.is_classification(
                self._tasks.index(name)
            ):
                raise ValueError(
                    f"class_weight names task {name!r}, which is not a classification "
                    f"task of y (classification tasks: {list(self.classes_)})."
                )
            t = self._tasks.index(name)
            codes = np.nan_to_num(targets[:, t], nan=-1).astype(np.int64)
            factors *= class_weight_factors(
                weights, self.classes_[name], codes, where=f" of task {name!r}"
            )
        return factors

    # -- training hooks ---------------------------------------------------------------
    def _trained_module(self, module):
        weighting = self._task_weighting
        if isinstance(weighting, GradNormWeights):
            weighting.bind(module.levels[-1].experts.weights[-1])
        if isinstance(weighting, torch.nn.Module):
            weighting.to(next(module.parameters()).device)
            return torch.nn.ModuleList([module, weighting])
        return module

    def _epoch_callbacks(self):
        return (_TaskWeightRecorder(self),)

    def _set_fitted_attributes(self, history, recorder, early_stopping):
        super()._set_fitted_attributes(history, recorder, early_stopping)
        curve = getattr(self, "_weights_curve", [])
        self.task_weights_curve_ = [np.asarray(w) for w in curve]
        self.task_weights_ = np.asarray(
            self._task_weighting.current(self.n_outputs_), dtype=np.float64
        )

    def _stratify(self, targets):
        return None

    def _fitted_state(self):
        state = super()._fitted_state()
        state["tasks"] = tasks_to_json(self._tasks)
        state["task_weights_state"] = list(self._task_weighting.state())
        state["task_weights_curve_"] = [
            np.asarray(w).tolist() for w in self.task_weights_curve_
        ]
        return state

    def _restore_fitted_state(self, state):
        super()._restore_fitted_state(state)
        self._restore_tasks(
            tasks_from_json(state["tasks"]),
            state["task_weights_state"],
            state["task_weights_curve_"],
        )

    def _restore_tasks(self, tasks, weighting_state, curve):
        """Put back the fitted task description (used by ``skmoe.load``)."""
        self._set_tasks(tasks)
        self._weights_curve = [list(w) for w in curve]
        if len(weighting_state) not in (0, self.n_outputs_):
            raise ValueError("the saved task weights do not match the tasks")
        if weighting_state:
            self._task_weighting.load_state(weighting_state)
        self.task_weights_curve_ = [np.asarray(w, dtype=np.float64) for w in curve]
        self.task_weights_ = np.asarray(
            self._task_weighting.current(self.n_outputs_), dtype=np.float64
        )

    # -- public API -------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : DataFrame or array-like of shape (n_samples, n_tasks)
            One column per task; a 1-D ``y`` is one task.
        sample_weight : array-like of shape (n_samples,) or (n_samples, n_tasks), \
or dict, default=None
            Non-negative weights; a weight of ``k`` counts a row ``k`` times. Of
            shape ``(n_samples, n_tasks)``, or a dict from task (a column name of
            a DataFrame ``y``, or a column position) to one weight per row, they
            weigh each task's loss row by row (a task weighing ``0`` on a row does
            not learn from that row's label; tasks a dict leaves out weigh 1).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._weights_curve = []
        return self._fit(X, y, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the model with one pass over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : DataFrame or array-like of shape (n_samples, n_tasks)
            One column per task.
        classes : dict or None, default=None
            On the first call, ``{task: all its labels}`` for classification tasks
            whose later batches may hold labels this one lacks; ignored after.
        sample_weight : array-like of shape (n_samples,) or (n_samples, n_tasks), \
or dict, default=None
            Non-negative weights; a weight of ``k`` counts a row ``k`` times. Of
            shape ``(n_samples, n_tasks)``, or a dict from task (a column name of
            a DataFrame ``y``, or a column position) to one weight per row, they
            weigh each task's loss row by row (a task weighing ``0`` on a row does
            not learn from that row's label; tasks a dict leaves out weigh 1).

        Returns
        -------
        self : object
            The updated estimator.
        """
        if not hasattr(self, "module_"):
            self._weights_curve = []
        return self._fit(
            X, y, sample_weight=sample_weight, incremental=True, classes=classes
        )

    def _task_outputs(self, X):
        raw = self._raw_output(X)
        return np.split(raw, np.cumsum(self._tasks.widths())[:-1], axis=1)

    def _format(self, columns):
        if self._tasks.kind == "frame":
            import pandas as pd

            return pd.DataFrame(dict(zip(self._tasks.names, columns, strict=True)))
        if len(columns) == 1 and self._tasks.kind == "1d":
            return columns[0]
        kinds = {c.dtype.kind for c in columns}
        if len(kinds) == 1 and kinds <= set("biufUS"):
            return np.column_stack(columns)
        out = np.empty((columns[0].shape[0], len(columns)), dtype=object)
        for t, column in enumerate(columns):
            out[:, t] = column
        return out

    def predict(self, X):
        """Predict every task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        DataFrame or ndarray of shape (n_samples, n_tasks)
            A DataFrame with ``y``'s columns when fitted on a DataFrame; otherwise an
            array (1-D for a 1-D ``y``), of dtype object when the tasks' labels differ
            in type. A chained task predicts its label given its parent is positive.
        """
        columns = [
            _task_prediction(self._tasks.encoders[t], out)
            for t, out in enumerate(self._task_outputs(X))
        ]
        return self._format(columns)

    def predict_proba(self, X):
        """Class probabilities of each classification task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        dict
            ``{task: ndarray of shape (n_samples, n_classes)}`` in the order of
            ``classes_[task]``. For a chained task, the probabilities given that its
            parent is positive (``p(conversion | click)``); multiply by the parent's
            positive probability for the joint one.
        """
        return {
            self._tasks.names[t]: softmax_rows(out)
            for t, out in enumerate(self._task_outputs(X))
            if self._tasks.is_classification(t)
        }

    def score_tasks(self, X, y, sample_weight=None):
        """Each task's score: accuracy for a classification, R² for a regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : DataFrame or array-like of shape (n_samples, n_tasks)
            True labels, with the tasks of ``fit``; missing labels (NaN, ``None``,
            ``pd.NA``) are left out of their task's score.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        dict
            ``{task: score}``.
        """
        names, columns, missing, _ = split_columns(y)
        if names != self._tasks.names:
            raise ValueError(
                f"y's tasks {names} differ from the tasks seen in fit "
                f"{self._tasks.names}."
            )
        predicted = self.predict(X)
        if self._tasks.kind == "frame":
            predicted = [predicted[name].to_numpy() for name in names]
        else:
            predicted = [predicted] if predicted.ndim == 1 else list(predicted.T)
        weights = None if sample_weight is None else np.asarray(sample_weight)
        scores = {}
        for t, name in enumerate(names):
            rows = ~missing[:, t]
            w = None if weights is None else weights[rows]
            truth, guess = columns[t][rows], predicted[t][rows]
            if self._tasks.is_classification(t):
                scores[name] = float(
                    np.average(np.asarray(truth == guess, dtype=float), weights=w)
                )
            else:
                scores[name] = float(
                    r2_score(
                        truth.astype(np.float64),
                        guess.astype(np.float64),
                        sample_weight=w,
                    )
                )
        return scores

    def score(self, X, y, sample_weight=None):
        """Mean over tasks of accuracy (classification) and R² (regression).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : DataFrame or array-like of shape (n_samples, n_tasks)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        float
            The mean of :meth:`score_tasks`.
        """
        return float(np.mean(list(self.score_tasks(X, y, sample_weight).values())))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


def _task_prediction(encoder, outputs):
    """A task's predictions from its raw outputs: the most probable class of a
    classification (``LabelCodes``), the unscaled value of a regression."""
    if isinstance(encoder, LabelCodes):
        return encoder.classes[0][outputs.argmax(axis=1)]
    return encoder.inverse(outputs[:, 0])


class _FrozenRegressor(RegressorMixin, BaseEstimator):
    """One regression task's validation predictions, shaped as a fitted estimator
    for a scikit-learn scorer; ``X`` is the row positions."""

    def __init__(self, encoder=None, outputs=None):
        self.encoder = encoder
        self.outputs = outputs

    def decode(self, column):
        return self.encoder.inverse(column)

    def predict(self, X):
        return _task_prediction(self.encoder, self.outputs[X])


class _FrozenClassifier(ClassifierMixin, BaseEstimator):
    """One classification task's validation predictions, for a scorer."""

    def __init__(self, encoder=None, outputs=None):
        self.encoder = encoder
        self.outputs = outputs
        self.classes_ = encoder.classes[0]

    def decode(self, column):
        return self.classes_[column.astype(np.int64)]

    def predict(self, X):
        return _task_prediction(self.encoder, self.outputs[X])

    def predict_proba(self, X):
        return softmax_rows(self.outputs[X])


class _TaskWeightRecorder:
    """Engine callback: the task weights after each epoch."""

    def __init__(self, estimator):
        self.estimator = estimator

    def on_epoch_begin(self, epoch):
        pass

    def on_epoch_end(self, epoch, history):
        est = self.estimator
        est._weights_curve.append(est._task_weighting.current(est.n_outputs_))
