"""What the multi-gate estimators share: their parameters and their torch module."""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples

from .._base import (
    BATCH_SIZE_DOC,
    SCORING_DOC,
    BaseMixtureOfExperts,
    learning_rate_doc,
)
from .._preprocessing import INPUT_PARAMETERS_DOC
from .._targets import as_2d_target, missing_mask
from ..nn import MultiGateMixtureOfExperts
from ..nn.multigate import ARCHITECTURES

PARAMETERS_DOC = (
    """\
    architecture : {"mmoe", "omoe", "cgc", "ple", "shared_bottom"}, default="mmoe"
        The multi-task model:

        - ``"mmoe"`` (Ma et al., KDD 2018): ``n_experts`` shared experts, one gate and
          one tower per task. Uses ``n_experts``, ``expert_hidden_layer_sizes``,
          ``tower_hidden_layer_sizes``, ``top_k``, ``gating``.
        - ``"omoe"``: the one-gate baseline of the MMoE paper; as MMoE but one gate
          whose mixture every task's tower reads.
        - ``"cgc"`` (Tang et al., RecSys 2020): as MMoE, plus ``n_task_experts``
          experts owned by each task; a task's gate mixes its own and the shared
          experts. Also uses ``n_task_experts``.
        - ``"ple"``: ``n_levels`` stacked CGC levels, with a shared gate over all
          experts feeding the shared experts of the next level. Also uses
          ``n_levels``.
        - ``"shared_bottom"``: one shared MLP of ``expert_hidden_layer_sizes``, then
          the towers; no gates (``n_experts``, ``top_k``, ``gating`` are ignored).
    n_experts : int, default=4
        Number of shared experts (per level for ``"ple"``).
    n_task_experts : int, default=1
        Task-specific experts per task (per level), for ``"cgc"`` and ``"ple"``.
    n_levels : int, default=2
        Extraction levels for ``"ple"``.
    top_k : int or None, default=None
        ``None``: every gate mixes all the experts it sees with softmax weights. ``k``:
        each gate keeps each example's ``k`` largest weights, renormalised; ``k`` at
        least the number of experts a task gate sees uses every one of them.
    gating : {"softmax", "noisy", "switch"}, default="softmax"
        Routing scheme of every gate, as in ``MixtureOfExpertsClassifier``.
    expert_hidden_layer_sizes : tuple of int, default=(32,)
        Layer widths of each expert; the last width is the size of the representation
        the towers read. Needs at least one layer.
    tower_hidden_layer_sizes : tuple of int, default=()
        Hidden widths of each task's tower; ``()`` makes towers linear.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Activation of experts and towers.
    task_weights : array-like of shape (n_tasks,) or None, default=None
        Non-negative weight of each task's loss; ``None`` weighs tasks equally.
    allow_missing_labels : bool, default=False
        If True, NaN (or ``None``) in ``y`` marks a missing label: that row still trains
        the other tasks and is left out of that task's loss; rows with no label at all
        are left out. If False, NaN in ``y`` is an error, as scikit-learn requires.
    alpha : float, default=1e-4
        Strength of the L2 penalty on the weights (not the biases), as in
        ``MLPClassifier``: each batch's loss gains ``alpha / 2 * ||W||^2 /
        batch_size`` (the batch size counted in sample weight).
"""
    + BATCH_SIZE_DOC
    + learning_rate_doc("constant")
    + """\
    learning_rate_init : float, default=1e-3
        Adam learning rate.
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Whether to shuffle the rows at every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, the validation split and gating noise. With
        an int, refits on the CPU are bit-identical. Global random states are untouched.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score) that counts as progress.
    verbose : int, default=0
        ``0`` is silent; ``1`` shows a progress bar over epochs with the running loss.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights. A parameter that shapes
        the network (``architecture``, the expert counts and sizes, ``top_k``,
        ``gating``, ``activation``) changed since the last fit makes such a ``fit``
        (and ``partial_fit``) raise a ``ValueError`` naming it.
    early_stopping : bool, default=False
        Whether to hold out ``validation_fraction`` of the data and stop when the
        validation score over all tasks stops improving; best weights are restored.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without ``tol`` improvement before training stops.
"""
    + SCORING_DOC
    + """\
    load_balancing_coef : float, default=0.0
        Weight of the load-balancing loss, summed over all gates. Off by default:
        tasks are meant to use the experts differently.
    router_z_loss_coef : float, default=1e-3
        Weight of the router z-loss, summed over all gates.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
        ``torch.device``.
    n_threads : int, "auto" or None, default="auto"
        CPU threads. ``fit`` runs torch with this many intra-op threads (the
        process-wide setting is restored afterwards): ``"auto"`` means one, which
        never oversubscribes a shared machine and never depends on its load, so a
        seeded fit is the same bits whatever else runs; ``None`` leaves torch's
        setting alone. CPU predictions compute every row the same way whatever
        this is: it only sets how many blocks of rows run at once (``"auto"``: the
        cores no other process is busy on; ``None``: torch's setting), so they are
        the same bits for any value, any load and any other rows in the call. See
        docs/performance.md for the measurements behind the default.
"""
    + INPUT_PARAMETERS_DOC
)


ATTRIBUTES_DOC = """\
    top_k_ : int or None
        Experts each task gate keeps: ``top_k`` capped at the experts it chooses
        from; ``None`` for dense routing and for ``"shared_bottom"``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when ``X`` was a DataFrame with string column names.
    n_outputs_ : int
        Number of tasks (columns of ``y``).
    module_ : skmoe.nn.MultiGateMixtureOfExperts
        The trained torch module.
    device_ : torch.device
        Device the module lives on.
    loss_curve_ : list of float
        Training loss (weighted task losses plus balancing losses) after each epoch.
    loss_ : float
        Last entry of ``loss_curve_``.
    best_loss_ : float or None
        Lowest training loss; ``None`` with early stopping.
    validation_scores_ : list of float or None
        Validation score after each epoch with early stopping.
    best_validation_score_ : float or None
        Best validation score with early stopping.
    n_iter_ : int
        Number of epochs run.
    batch_size_ : int
        Minibatch size of the last ``fit`` or ``partial_fit`` (``batch_size``
        resolved on its training rows).
    expert_usage_ : ndarray of shape (n_tasks, n_experts)
        Mean gate weight each task gave each expert during the last training epoch
        (last level for ``"ple"``); each row sums to one. Experts are ordered shared
        first, then each task's own.
    expert_usage_curve_ : list of ndarray of shape (n_tasks, n_experts)
        ``expert_usage_`` at the end of every epoch, one entry per entry of
        ``loss_curve_``.
"""


class MultiGateEstimator(BaseMixtureOfExperts):
    """Builds one :class:`skmoe.nn.MultiGateMixtureOfExperts` with a tower per task."""

    _parameter_constraints: dict = {
        **BaseMixtureOfExperts._parameter_constraints,
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "n_task_experts": [Interval(Integral, 1, None, closed="left")],
        "n_levels": [Interval(Integral, 1, None, closed="left")],
        "tower_hidden_layer_sizes": ["array-like"],
        "task_weights": ["array-like", None],
        "allow_missing_labels": ["boolean"],
    }
    _network_params: tuple = (
        *BaseMixtureOfExperts._network_params,
        "architecture",
        "n_task_experts",
        "n_levels",
        "tower_hidden_layer_sizes",
    )

    def __init__(
        self,
        architecture="mmoe",
        n_experts=4,
        n_task_experts=1,
        n_levels=2,
        top_k=None,
        gating="softmax",
        expert_hidden_layer_sizes=(32,),
        tower_hidden_layer_sizes=(),
        activation="relu",
        task_weights=None,
        allow_missing_labels=False,
        alpha=1e-4,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=1e-3,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=0,
        warm_start=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        scoring=None,
        load_balancing_coef=0.0,
        router_z_loss_coef=1e-3,
        device="auto",
        n_threads="auto",
        num_embedding=None,
        categorical_features="from_dtype",
        input_scaling="auto",
        min_frequency=None,
        max_categories=None,
        categorical_hash_buckets=None,
        categorical_embedding_dim=None,
        list_separators=None,
    ):
        self.architecture = architecture
        self.n_experts = n_experts
        self.n_task_experts = n_task_experts
        self.n_levels = n_levels
        self.top_k = top_k
        self.gating = gating
        self.expert_hidden_layer_sizes = expert_hidden_layer_sizes
        self.tower_hidden_layer_sizes = tower_hidden_layer_sizes
        self.activation = activation
        self.task_weights = task_weights
        self.allow_missing_labels = allow_missing_labels
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.scoring = scoring
        self.load_balancing_coef = load_balancing_coef
        self.router_z_loss_coef = router_z_loss_coef
        self.device = device
        self.n_threads = n_threads
        self.num_embedding = num_embedding
        self.categorical_features = categorical_features
        self.input_scaling = input_scaling
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.categorical_hash_buckets = categorical_hash_buckets
        self.categorical_embedding_dim = categorical_embedding_dim
        self.list_separators = list_separators

    def _split_task_weights(self, sample_weight, y):
        """One weight per row and task: a 2-D ``sample_weight`` of shape
        ``(n_samples, n_tasks)`` or a dict from task (a column name of a DataFrame
        ``y``, or a column position) to one weight per row, tasks it does not name
        weighing 1. Returns each row's mean weight over the tasks, which weighs the
        row as a 1-D ``sample_weight`` would, and each task's weight relative to it,
        which scales the task's loss on that row. A 1-D ``sample_weight`` passes
        through."""
        if sample_weight is None:
            return None, None
        per_task = isinstance(sample_weight, dict)
        if not per_task:
            try:
                per_task = np.asarray(sample_weight).ndim == 2
            except (TypeError, ValueError):  # ragged: the 1-D check says why
                per_task = False
        if not per_task:
            return sample_weight, None
        name = type(self).__name__
        n_rows = _num_samples(y)
        columns = list(
            getattr(y, "columns", range(1 if np.ndim(y) == 1 else y.shape[1]))
        )
        if isinstance(sample_weight, dict):
            weights = np.ones((n_rows, len(columns)))
            for task, values in sample_weight.items():
                if task not in columns:
                    raise ValueError(
                        f"{name}: sample_weight names the task {task!r}, which is not "
                        f"a column of y; the tasks are {columns!r}."
                    )
                values = np.asarray(values, dtype=np.float64)
                if values.shape != (n_rows,):
                    raise ValueError(
                        f"{name}: sample_weight[{task!r}] has shape {values.shape}; "
                        f"it needs one weight per row, ({n_rows},)."
                    )
                weights[:, columns.index(task)] = values
        else:
            weights = np.asarray(sample_weight, dtype=np.float64)
            if weights.shape != (n_rows, len(columns)):
                raise ValueError(
                    f"{name}: a 2-D sample_weight needs one column per task, shape "
                    f"({n_rows}, {len(columns)}); got {weights.shape}."
                )
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(
                f"{name}: sample_weight must hold finite, non-negative weights."
            )
        rows = weights.mean(axis=1)
        relative = np.divide(
            weights, rows[:, None], out=np.zeros_like(weights), where=rows[:, None] > 0
        )
        return rows, relative

    def _allows_missing_targets(self):
        return self.allow_missing_labels

    def _validate_training_data(self, X, y, reset, y_numeric):
        if y is not None and not self.allow_missing_labels and not sp.issparse(y):
            try:
                values = np.asarray(y)
            except (ValueError, TypeError):  # ragged: the shared checks say so
                values = None
            if (
                values is not None
                and values.ndim in (1, 2)
                and missing_mask(as_2d_target(values)[0]).any()
            ):
                raise ValueError(
                    f"{type(self).__name__}: y contains missing labels (NaN or "
                    "None); set allow_missing_labels=True to train each task on "
                    "its labelled rows, or drop those rows."
                )
        return super()._validate_training_data(X, y, reset, y_numeric)

    def _output_weights(self, n_outputs):
        if self.task_weights is None:
            return None
        weights = np.asarray(self.task_weights, dtype=np.float64).ravel()
        if weights.shape[0] != n_outputs:
            raise ValueError(
                f"task_weights has {weights.shape[0]} entries but y has {n_outputs} "
                "tasks; give one weight per task."
            )
        if (
            not np.all(np.isfinite(weights))
            or (weights < 0).any()
            or weights.sum() == 0
        ):
            raise ValueError(
                "task_weights must be finite, non-negative and not all zero; got "
                f"{self.task_weights!r}."
            )
        return weights.tolist()

    def _gated(self):
        return self.architecture != "shared_bottom"

    def _gate_choices(self):
        if not self._gated():
            return None
        choices = self.n_experts
        if self.architecture in ("cgc", "ple"):
            choices += self.n_task_experts
        return choices

    def _build_module(self, n_features, objective, hidden_layer_sizes):
        if not hidden_layer_sizes:
            raise ValueError(
                "expert_hidden_layer_sizes needs at least one layer: its last width is "
                "the representation the towers read."
            )
        task_out = (
            getattr(objective, "task_widths", None)
            or getattr(objective, "n_classes", None)
            or [1] * objective.n_outputs
        )
        return MultiGateMixtureOfExperts(
            n_features,
            task_out,
            architecture=self.architecture,
            n_shared_experts=self.n_experts,
            n_task_experts=self.n_task_experts,
            n_levels=self.n_levels,
            expert_hidden_layer_sizes=hidden_layer_sizes,
            tower_hidden_layer_sizes=self._hidden_sizes("tower_hidden_layer_sizes"),
            top_k=self._effective_top_k(),
            gating=self.gating if self._gated() else "softmax",
            activation=self.activation,
            load_balancing_coef=self.load_balancing_coef,
            router_z_loss_coef=self.router_z_loss_coef,
        )

    def _usage_layers(self, module):
        return [module]

    def gate_weights(self, X):
        """Each task's gate weights over the experts.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples, n_tasks, n_experts)
            The last level's task gates (``"ple"``); experts ordered shared first,
            then each task's own. Rows sum to one; with ``top_k=k`` each has exactly
            ``k`` non-zeros, and a task's weight on another task's experts is zero.
        """
        return super().gate_weights(X)
