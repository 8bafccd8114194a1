"""The mixture-of-experts layer: a gate, a bank of experts and their combination."""

import torch
from torch import nn

from .dispatch import TIER_MIN_SAVED_SLOTS, plan_dispatch
from .experts import ExpertBank, mix_choices, mix_experts
from .fused import fused_mixture, mixture_backward, mixture_config, mixture_forward
from .gates import Gate
from .losses import balancing_loss
from .routing import is_proven
from .thresholds import DISPATCH_MIN_SAVED_ROWS


class MixtureOfExperts(nn.Module):
    """Gate plus expert bank; each row's output is the gate-weighted sum of experts.

    With ``top_k=None`` every expert runs on every row. With ``top_k=k`` the rows are
    dispatched, in one vectorised gather, into an ``(n_experts, capacity, features)``
    buffer holding only the chosen (row, expert) pairs, so the expert compute grows with
    ``k`` rather than ``n_experts``. No row is ever dropped: each expert's block holds
    as many rows as the batch sends it, padded to a common capacity; when a few
    experts are much busier than the rest, their surplus rows go to an overflow buffer
    of their own (see :func:`capacity_tiers`) rather than padding every expert's
    block to the busiest one's size. For small batches, where the
    dispatch's fixed cost exceeds what it saves, every expert is computed and the
    unchosen ones get weight zero, which gives the same result.

    In training mode, with gradients on, the pass from router logits to output is
    one autograd node with written-out gradients (:func:`skmoe.nn.fused.fused_mixture`),
    equal in values and first derivatives to the same pass composed of tensor
    operations, and as fast or faster; set the attribute ``fused_training = False``
    for the composed pass, which double backward can follow. The fused pass only
    serves a plain :class:`~skmoe.nn.Gate` with a routing spec in
    :data:`skmoe.nn.routing.FAST_SPECS` and a plain :class:`~skmoe.nn.ExpertBank`;
    a subclass of either (say, a gate with its own scoring rule) always trains
    through the composed pass and autograd. :meth:`training_step` goes one step
    further and computes a whole step's gradients without autograd.

    In training mode the forward pass stores the weighted balancing loss in
    ``aux_loss``; add it to the task loss (:func:`skmoe.nn.auxiliary_loss` collects it
    from a whole model). The layer also accumulates, without synchronising the device,
    the gate weight each expert received (see :meth:`expert_usage`).

    For data-parallel training, set the attribute ``balancing_reducer`` to a callable
    that averages a 1-d tensor over the ranks (``all_reduce``, then divide by the
    world size): every training pass then computes the balancing losses from the
    statistics of all ranks' batches together, and its gradients averaged over the
    ranks are those of one process on their union (see
    :func:`~skmoe.nn.balancing_loss`). skmoe's estimators set it during a
    data-parallel fit and remove it afterwards; ``None`` (the default) balances each
    batch on its own.

    Parameters
    ----------
    in_features : int
        Width of the input.
    out_features : int
        Width of the output.
    n_experts : int, default=4
        Number of experts.
    top_k : int or None, default=None
        Experts kept per row; ``None`` for dense routing.
    expert_hidden_layer_sizes : tuple of int, default=(32,)
        Hidden widths of each expert MLP.
    gating : {"softmax", "noisy", "switch"}, default="softmax"
        Routing scheme (see :class:`~skmoe.nn.Gate`).
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Expert non-linearity.
    load_balancing_coef : float, default=0.01
        Weight of :func:`~skmoe.nn.load_balancing_loss` in ``aux_loss``.
    router_z_loss_coef : float, default=0.001
        Weight of :func:`~skmoe.nn.router_z_loss` in ``aux_loss``.
    min_dispatch_savings : int, default=1024
        With ``top_k``, rows are dispatched only when that saves at least this many
        expert-row evaluations (``batch * (n_experts - k)``); smaller batches compute
        every expert, which is faster there and gives the same result. ``0`` always
        dispatches.

    Examples
    --------
    >>> import torch
    >>> layer = MixtureOfExperts(in_features=5, out_features=3, n_experts=8, top_k=2)
    >>> y = layer(torch.randn(16, 5))
    >>> y.shape, layer.aux_loss.ndim
    (torch.Size([16, 3]), 0)
    """

    # Padded slots an overflow buffer must save to be used (see capacity_tiers); a
    # class attribute, so that layers pickled before it existed still dispatch.
    min_tier_savings = TIER_MIN_SAVED_SLOTS
    # Train through skmoe.nn.fused's single autograd node (same values and
    # gradients); False composes the pass from tensor operations, which allows
    # double backward.
    fused_training = True
    # Averages the balancing statistics over data-parallel ranks (see above).
    balancing_reducer = None

    def __init__(
        self,
        in_features,
        out_features,
        n_experts=4,
        top_k=None,
        expert_hidden_layer_sizes=(32,),
        gating="softmax",
        activation="relu",
        load_balancing_coef=0.01,
        router_z_loss_coef=0.001,
        min_dispatch_savings=DISPATCH_MIN_SAVED_ROWS,
    ):
        super().__init__()
        self.min_dispatch_savings = int(min_dispatch_savings)
        self.gate = Gate(in_features, n_experts, top_k=top_k, gating=gating)
        self.experts = ExpertBank(
            n_experts,
            in_features,
            out_features,
            hidden_layer_sizes=expert_hidden_layer_sizes,
            activation=activation,
        )
        self.load_balancing_coef = float(load_balancing_coef)
        self.router_z_loss_coef = float(router_z_loss_coef)
        self.aux_loss = None
        self.register_buffer("usage_sum", torch.zeros(n_experts), persistent=False)
        self.register_buffer("usage_rows", torch.zeros(()), persistent=False)

    @property
    def n_experts(self):
        return self.gate.n_experts

    def forward(self, x, sample_weight=None):
        """Mix the experts' outputs for a batch.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)
        sample_weight : torch.Tensor of shape (batch,) or None, default=None
            Row weights of the balancing losses' statistics in training mode, so
            that a row of weight 2 counts as that row twice; ``None`` weighs every
            row the same.

        Returns
        -------
        torch.Tensor of shape (batch, out_features)
        """
        if self.training and self.uses_fast_path() and _fusable(x):
            return self._fused_forward(x, sample_weight)
        routing = self.gate(x)
        if (
            routing.indices is None
            or x.shape[0] == 0
            or self._dense_is_cheaper(x.shape[0], routing)
        ):
            expert_out = self.experts.forward_shared(x)
            out = mix_experts(routing.dense_weights(), expert_out)
        else:
            out = self._dispatch(x, routing)
        if self.training:
            # Plain attribute writes straight to __dict__: nn.Module.__setattr__ costs
            # microseconds per call, paid at every training step.
            self.__dict__["aux_loss"] = balancing_loss(
                routing,
                self.load_balancing_coef,
                self.router_z_loss_coef,
                sample_weight,
                self.balancing_reducer,
            )
            self._record_usage(routing, x.shape[0])
        else:
            self.__dict__["aux_loss"] = None
        return out

    def uses_fast_path(self):
        """Whether training runs the written-out pass rather than autograd's.

        True for ``fused_training`` on, a plain :class:`~skmoe.nn.Gate` whose routing
        spec is in :data:`skmoe.nn.routing.FAST_SPECS` and a plain
        :class:`~skmoe.nn.ExpertBank`: what the written-out gradients were proven
        equal to autograd's on.

        Examples
        --------
        >>> MixtureOfExperts(4, 2, n_experts=3, top_k=2).uses_fast_path()
        True
        """
        gate = self.gate
        return (
            self.fused_training
            and type(gate) is Gate
            and type(self.experts) is ExpertBank
            and is_proven(gate.spec)
        )

    def training_step(self, x, loss_and_grad, sample_weight=None):
        """One training step's forward and backward pass, without autograd.

        Computes the output, hands it to ``loss_and_grad``, and sets the ``.grad``
        of every parameter to the gradient of that loss plus the balancing loss,
        from written-out formulas (:mod:`skmoe.nn.fused`). The random numbers drawn
        and the gradients equal those of ``loss = task(layer(x)) +
        auxiliary_loss(layer); loss.backward()`` to rounding. The caller steps its
        optimiser afterwards. Noise and jitter follow the module's mode, as in
        :meth:`forward` (call ``train()`` first). This is the seam skmoe's training
        engine uses; a training loop of one's own may call it, or ignore it and use
        autograd.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)
        loss_and_grad : callable
            ``loss_and_grad(out)`` returns the task loss (a 0-d tensor) and its
            gradient with respect to ``out``.
        sample_weight : torch.Tensor of shape (batch,) or None, default=None
            Row weights of the balancing losses' statistics (see :meth:`forward`).

        Returns
        -------
        torch.Tensor or None
            The task loss plus the balancing loss (0-d); ``None``, with nothing
            computed, where this module has no written-out step: a subclass,
            ``fused_training`` off or not :meth:`uses_fast_path`, a frozen
            parameter, or autocast on. Train through autograd then.

        Examples
        --------
        >>> import torch
        >>> layer = MixtureOfExperts(4, 2, n_experts=3, top_k=2).train()
        >>> x, y = torch.randn(8, 4), torch.randn(8, 2)
        >>> def squared_error(out):
        ...     return 0.5 * (out - y).square().sum() / 8, (out - y) / 8
        >>> loss = layer.training_step(x, squared_error)
        >>> loss.ndim, layer.gate.router.weight.grad.shape
        (0, torch.Size([3, 4]))
        """
        if type(self) is not MixtureOfExperts or not self.uses_fast_path():
            return None
        bank, gate = self.experts, self.gate
        bank_params = (*bank.weights, *bank.biases)
        gate_params = (gate.router.weight, gate.router.bias)
        if gate.noise is not None:
            gate_params += (gate.noise.weight, gate.noise.bias)
        if not all(p.requires_grad for p in (*bank_params, *gate_params)):
            return None
        if autocast_on(x):
            return None
        with torch.no_grad():
            saved = self.gate.score_inputs(x)
            out, aux, load, state = mixture_forward(
                x,
                saved.logits,
                saved.scores,
                mixture_config(self),
                bank_params,
                sample_weight,
                self.balancing_reducer,
            )
            task, grad_out = loss_and_grad(out)
            _, grad_logits, grad_scores, bank_grads = mixture_backward(
                state, grad_out, aux.new_ones(()), scores_given=saved.scores is not None
            )
            for param, grad in zip(bank_params, bank_grads, strict=True):
                param.grad = grad
            for param, grad in self.gate.scores_backward(
                saved, grad_logits, grad_scores
            ):
                param.grad = grad
            self._add_usage(load, x.shape[0])
            self.__dict__["aux_loss"] = None
            return task + aux

    def _fused_forward(self, x, sample_weight=None):
        """The training pass as one autograd node (see :mod:`skmoe.nn.fused`)."""
        out, aux, load = fused_mixture(
            self, x, *self.gate.scores(x), sample_weight=sample_weight
        )
        balancing = self.load_balancing_coef or self.router_z_loss_coef
        self.__dict__["aux_loss"] = aux if balancing else None
        self._add_usage(load, x.shape[0])
        return out

    def _add_usage(self, load, n_rows):
        """Add a batch's per-expert combination weight to the usage statistics."""
        self.usage_sum.add_(load.to(self.usage_sum.dtype))
        self.usage_rows.add_(n_rows)

    def _dense_is_cheaper(self, n_rows, routing):
        """Whether computing every expert beats dispatching the chosen ones.

        Dispatch saves ``n_rows * (n_experts - k)`` expert evaluations but costs a
        fixed handful of sorting and gathering operations; below
        ``min_dispatch_savings`` saved rows the dense product wins. Both paths
        give the same outputs and gradients: unchosen experts have weight zero.
        """
        k = routing.indices.shape[1]
        return n_rows * (self.n_experts - k) < self.min_dispatch_savings

    def _record_usage(self, routing, n_rows):
        # add_ rather than +=: augmented assignment to a buffer goes through
        # nn.Module.__setattr__, which costs more than the addition.
        weights = routing.weights.detach().to(self.usage_sum.dtype)  # autocast
        if routing.indices is None:
            self.usage_sum.add_(weights.sum(0))
        else:
            self.usage_sum.index_add_(
                0, routing.indices.reshape(-1), weights.reshape(-1)
            )
        self.usage_rows.add_(n_rows)

    def _dispatch(self, x, routing):
        plan = plan_dispatch(routing.indices, self.n_experts, self.min_tier_savings)
        outs = [
            self.experts(rows, experts) for rows, experts in plan.split(plan.fill(x))
        ]
        return mix_choices(routing.weights, plan.collect(outs))

    def gate_weights(self, x):
        """Combination weights ``(batch, n_experts)``; rows sum to one.

        Computed as in the module's current mode (call ``eval()`` first for
        deterministic inference weights).
        """
        return self.gate(x).dense_weights()

    def reset_usage(self):
        """Zero the expert-usage accumulators."""
        self.usage_sum.zero_()
        self.usage_rows.zero_()

    def expert_usage(self):
        """Mean gate weight of each expert over the rows seen since :meth:`reset_usage`.

        Returns
        -------
        torch.Tensor of shape (n_experts,)
            Sums to one once any row was seen; all zeros before.
        """
        return self.usage_sum / self.usage_rows.clamp(min=1)


def _fusable(x):
    """Whether the fused training pass applies: grad on, a batch, no autocast."""
    if not torch.is_grad_enabled() or x.ndim != 2 or x.shape[0] == 0:
        return False
    return not autocast_on(x)


def autocast_on(x):
    """Whether autocast is on for ``x``'s device (the written-out passes refuse it)."""
    device_type = x.device.type
    return device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)


def auxiliary_loss(module):
    """Sum the balancing losses stored by the mixture layers inside ``module``.

    Every submodule with a non-``None`` ``aux_loss`` attribute counts:
    :class:`MixtureOfExperts` and :class:`MultiGateMixtureOfExperts` store theirs there.

    Call it after a training-mode forward pass and add the result to the task loss.
    Each layer's stored loss is released as it is collected, so the module keeps no
    autograd graph alive between steps (and stays picklable and copyable).
    This is all a plain PyTorch loop, or a skorch ``NeuralNet.get_loss`` override,
    needs to train the layers with their balancing terms.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.Tensor
        A scalar (zero when no layer stored a loss).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(MixtureOfExperts(4, 2, n_experts=3))
    >>> model.train()(torch.randn(6, 4)).shape
    torch.Size([6, 2])
    >>> bool(auxiliary_loss(model) > 0)
    True
    >>> model[0].aux_loss is None
    True
    """
    total = collect_aux_losses(module.modules())
    if total is None:
        param = next(module.parameters(), None)
        device = param.device if param is not None else None
        return torch.zeros((), device=device)
    return total


def collect_aux_losses(modules):
    """Sum and release the balancing losses stored by ``modules``.

    The loop behind :func:`auxiliary_loss`, for callers that find the layers once and
    collect at every step (the training engine does).

    Parameters
    ----------
    modules : iterable of torch.nn.Module

    Returns
    -------
    torch.Tensor or None
        The sum; ``None`` when no module stored a loss.

    Examples
    --------
    >>> import torch
    >>> layer = MixtureOfExperts(4, 2, n_experts=3)
    >>> _ = layer.train()(torch.randn(6, 4))
    >>> collect_aux_losses([layer]).ndim, collect_aux_losses([layer])
    (0, None)
    """
    total = None
    for sub in modules:
        stored = sub.__dict__.get("aux_loss")  # a plain dict lookup, once per module
        if stored is not None:
            total = stored if total is None else total + stored
            sub.__dict__["aux_loss"] = None
    return total
