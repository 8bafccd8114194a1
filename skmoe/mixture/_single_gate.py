"""What the single-gate estimators share: their parameters and their torch module."""

from .._base import (
    BATCH_SIZE_DOC,
    SCORING_DOC,
    BaseMixtureOfExperts,
    learning_rate_doc,
)
from .._preprocessing import INPUT_PARAMETERS_DOC
from ..nn import MixtureOfExperts

PARAMETERS_DOC = (
    """\
    n_experts : int, default=4
        Number of experts.
    top_k : int or None, default=None
        ``None`` mixes all experts with dense softmax weights. ``k`` keeps each
        example's ``k`` largest gate weights, renormalised to sum to one, and computes
        only those experts. ``k >= n_experts`` uses every expert (so a grid over
        ``n_experts`` and ``top_k`` needs no care); ``top_k_`` reports the value used.
    gating : {"softmax", "noisy", "switch"}, default="softmax"
        Routing scheme. ``"softmax"``: plain softmax gate (with ``top_k``: top-k of
        it). ``"noisy"``: noisy top-k gating (Shazeer et al. 2017), learned Gaussian
        noise on the gate logits while training only, so predictions are
        deterministic. ``"switch"``: Switch Transformer top-1 routing (Fedus et al.
        2022) with input jitter while training; needs ``top_k`` None or 1.
    expert_hidden_layer_sizes : tuple of int, default=(64,)
        Hidden layer widths of each expert MLP; ``()`` makes experts linear.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Activation of the expert hidden layers.
    alpha : float, default=1e-4
        Strength of the L2 penalty on the weights (not the biases), as in
        ``MLPClassifier``: each batch's loss gains ``alpha / 2 * ||W||^2 /
        batch_size`` (the batch size counted in sample weight).
"""
    + BATCH_SIZE_DOC
    + learning_rate_doc("cosine")
    + """\
    learning_rate_init : float, default=1e-3
        Adam learning rate.
    max_iter : int, default=100
        Maximum number of epochs (``MLPClassifier`` has 200; with the cosine
        schedule, 100 did better on the tuning half of ``benchmarks/tabular.py``).
    shuffle : bool, default=True
        Whether to shuffle the rows at every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, the validation split and gating noise.
        With an int, refits on the CPU give bit-identical results. The global numpy
        and torch random states are never used or changed.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score) that counts as progress.
    verbose : int, default=0
        ``0`` is silent; ``1`` shows a progress bar over epochs with the running loss.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights instead of starting anew.
        A parameter that shapes the network (``n_experts``, ``top_k``, ``gating``,
        ``expert_hidden_layer_sizes``, ``activation``) changed since the last fit
        makes such a ``fit`` (and ``partial_fit``) raise a ``ValueError`` naming it.
    early_stopping : bool, default=False
        Whether to hold out ``validation_fraction`` of the data and stop when the
        validation score stops improving; the best weights are restored.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without ``tol`` improvement before training stops.
"""
    + SCORING_DOC
    + """\
    load_balancing_coef : float, default=0.01
        Weight of the Switch Transformer load-balancing loss
        ``n_experts * sum_i f_i * P_i``; ``0`` disables it.
    router_z_loss_coef : float, default=1e-3
        Weight of the ST-MoE router z-loss; ``0`` disables it.
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available, else MPS when available, else CPU),
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``. An
        unavailable device is a ``ValueError`` raised by ``fit``.
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
        Experts each row uses: ``top_k`` capped at ``n_experts``; ``None`` for dense
        routing.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when ``X`` was a DataFrame with string column names.
    n_outputs_ : int
        Number of outputs (columns of ``y``).
    module_ : skmoe.nn.MixtureOfExperts
        The trained torch module.
    device_ : torch.device
        Device the module lives on.
    loss_curve_ : list of float
        Training loss (task loss plus balancing losses) after each epoch.
    loss_ : float
        Last entry of ``loss_curve_``.
    best_loss_ : float or None
        Lowest training loss; ``None`` with early stopping.
    validation_scores_ : list of float or None
        Validation score after each epoch with early stopping (accuracy or R²).
    best_validation_score_ : float or None
        Best validation score with early stopping.
    n_iter_ : int
        Number of epochs run.
    batch_size_ : int
        Minibatch size of the last ``fit`` or ``partial_fit`` (``batch_size``
        resolved on its training rows).
    expert_usage_ : ndarray of shape (n_experts,)
        Mean gate weight each expert received during the last training epoch; it
        sums to one. A collapsed gate shows as a few entries near one.
    expert_usage_curve_ : list of ndarray of shape (n_experts,)
        ``expert_usage_`` at the end of every epoch, one entry per entry of
        ``loss_curve_``.
"""


class SingleGateEstimator(BaseMixtureOfExperts):
    """Builds one :class:`skmoe.nn.MixtureOfExperts` mapping features to outputs."""

    def __init__(
        self,
        n_experts=4,
        top_k=None,
        gating="softmax",
        expert_hidden_layer_sizes=(64,),
        activation="relu",
        alpha=1e-4,
        batch_size="auto",
        learning_rate="cosine",
        learning_rate_init=1e-3,
        max_iter=100,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=0,
        warm_start=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        scoring=None,
        load_balancing_coef=0.01,
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
        self.n_experts = n_experts
        self.top_k = top_k
        self.gating = gating
        self.expert_hidden_layer_sizes = expert_hidden_layer_sizes
        self.activation = activation
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

    def _build_module(self, n_features, objective, hidden_layer_sizes):
        return MixtureOfExperts(
            n_features,
            objective.n_outputs,
            n_experts=self.n_experts,
            top_k=self._effective_top_k(),
            expert_hidden_layer_sizes=hidden_layer_sizes,
            gating=self.gating,
            activation=self.activation,
            load_balancing_coef=self.load_balancing_coef,
            router_z_loss_coef=self.router_z_loss_coef,
        )

    def _usage_layers(self, module):
        return [module]
