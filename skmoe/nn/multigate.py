"""Multi-task mixtures of experts: MMoE, CGC/PLE and the shared-bottom baseline.

* **MMoE** (Ma et al., KDD 2018): ``n_shared_experts`` experts shared by all tasks;
  every task has its own gate over them and its own tower.
* **One-gate MoE** (the MMoE paper's baseline): the same shared experts and towers,
  but one gate whose mixture every task reads.
* **CGC / PLE** (Tang et al., RecSys 2020): every task also owns ``n_task_experts``
  experts. A task's gate mixes its own experts and the shared ones. PLE stacks
  ``n_levels`` such extraction levels: at every level but the last, a shared gate mixes
  *all* experts into the input of the next level's shared experts, while each task's
  mixture feeds that task's experts at the next level. CGC is PLE with one level.
* **Shared bottom** (Caruana 1997): one shared MLP, then the towers; no gates.

All experts of a level live in one :class:`~skmoe.nn.ExpertBank` and all towers in
another, so a level costs a fixed number of batched matrix products however many
tasks and experts there are.
"""

import torch
from torch import nn

from .experts import ACTIVATIONS, ACTIVATIONS_IN_PLACE, ExpertBank, mix_experts
from .fused import (
    ACTIVATION_GRADS,
    bank_backward,
    bank_forward,
    mix_backward,
    route,
    routing_backward,
    routing_losses,
)
from .gates import Gate
from .layer import autocast_on
from .losses import balancing_loss
from .routing import is_proven

ARCHITECTURES = ("mmoe", "omoe", "cgc", "ple", "shared_bottom")


class MultiGateMixtureOfExperts(nn.Module):
    """Shared (and task-specific) experts, one gate and one tower per task.

    The forward pass returns the tasks' tower outputs concatenated along the last
    dimension, ``(batch, sum(task_out_features))``. In training mode it stores the
    gates' balancing losses, summed, in ``aux_loss``, and accumulates the last
    level's expert usage (see :meth:`expert_usage`). :meth:`training_step` computes
    a whole training step's gradients without autograd. Its ``balancing_reducer``
    attribute serves data-parallel training as
    :class:`~skmoe.nn.MixtureOfExperts`'s does.

    Parameters
    ----------
    in_features : int
        Width of the input.
    task_out_features : sequence of int
        Output width of each task's tower (1 for a regression target, the number of
        classes for a classification task).
    architecture : {"mmoe", "omoe", "cgc", "ple", "shared_bottom"}, default="mmoe"
        Which model to build (see the module docstring).
    n_shared_experts : int, default=4
        Shared experts per level (``"shared_bottom"`` always uses one shared network).
    n_task_experts : int, default=1
        Task-specific experts per task and level (``"cgc"`` and ``"ple"`` only).
    n_levels : int, default=2
        Extraction levels for ``"ple"``; ``"cgc"`` has one.
    expert_hidden_layer_sizes : tuple of int, default=(32,)
        Layer widths of every expert; the last one is the width of the representation
        handed to the towers (or to the next level).
    tower_hidden_layer_sizes : tuple of int, default=()
        Hidden widths of every tower.
    top_k : int or None, default=None
        Experts each gate keeps per row; ``None`` for dense softmax gates.
    gating : {"softmax", "noisy", "switch"}, default="softmax"
        Routing scheme of every gate (see :class:`~skmoe.nn.Gate`).
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Non-linearity of experts and towers.
    load_balancing_coef : float, default=0.0
        Weight of the load-balancing loss, summed over gates.
    router_z_loss_coef : float, default=0.001
        Weight of the router z-loss, summed over gates.

    Examples
    --------
    >>> import torch
    >>> model = MultiGateMixtureOfExperts(10, [1, 3], architecture="ple", n_levels=2)
    >>> model(torch.randn(5, 10)).shape
    torch.Size([5, 4])
    >>> model.gate_weights(torch.randn(5, 10)).shape
    torch.Size([5, 2, 6])
    """

    # Averages the balancing statistics over data-parallel ranks, as
    # MixtureOfExperts.balancing_reducer does.
    balancing_reducer = None

    # Train through training_step's written-out gradients where the engine asks;
    # False leaves every step to autograd.
    fused_training = True

    def __init__(
        self,
        in_features,
        task_out_features,
        architecture="mmoe",
        n_shared_experts=4,
        n_task_experts=1,
        n_levels=2,
        expert_hidden_layer_sizes=(32,),
        tower_hidden_layer_sizes=(),
        top_k=None,
        gating="softmax",
        activation="relu",
        load_balancing_coef=0.0,
        router_z_loss_coef=0.001,
    ):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {architecture!r}."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
            )
        expert_sizes = tuple(int(s) for s in expert_hidden_layer_sizes)
        if not expert_sizes:
            raise ValueError("expert_hidden_layer_sizes needs at least one layer.")
        self.task_out_features = [int(n) for n in task_out_features]
        self.n_tasks = len(self.task_out_features)
        self.architecture = architecture
        if architecture == "shared_bottom":
            n_shared_experts, n_task_experts, n_levels = 1, 0, 1
        elif architecture in ("mmoe", "omoe"):
            n_task_experts, n_levels = 0, 1
        elif architecture == "cgc":
            n_levels = 1
        self.n_shared_experts = int(n_shared_experts)
        self.n_task_experts = int(n_task_experts)
        self.n_levels = int(n_levels)
        self.n_experts = self.n_shared_experts + self.n_tasks * self.n_task_experts
        self.load_balancing_coef = float(load_balancing_coef)
        self.router_z_loss_coef = float(router_z_loss_coef)
        width = expert_sizes[-1]
        self.levels = nn.ModuleList()
        for level in range(self.n_levels):
            self.levels.append(
                _ExtractionLevel(
                    in_features if level == 0 else width,
                    expert_sizes,
                    self.n_tasks,
                    self.n_shared_experts,
                    self.n_task_experts,
                    with_shared_gate=level < self.n_levels - 1,
                    gated=architecture != "shared_bottom",
                    one_gate=architecture == "omoe",
                    top_k=top_k,
                    gating=gating,
                    activation=activation,
                )
            )
        self.towers = ExpertBank(
            self.n_tasks,
            width,
            max(self.task_out_features),
            hidden_layer_sizes=tower_hidden_layer_sizes,
            activation=activation,
        )
        self.aux_loss = None
        self.register_buffer(
            "usage_sum", torch.zeros(self.n_tasks, self.n_experts), persistent=False
        )
        self.register_buffer("usage_rows", torch.zeros(()), persistent=False)

    def _levels(self, x):
        tasks, shared = None, x
        routings = []
        for level in self.levels:
            tasks, shared, level_routings = level(x if tasks is None else tasks, shared)
            routings.append(level_routings)
        return tasks, routings

    def forward(self, x, sample_weight=None):
        """Concatenated task outputs for a batch.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)
        sample_weight : torch.Tensor of shape (batch,) or None, default=None
            Row weights of the balancing losses' statistics in training mode.

        Returns
        -------
        torch.Tensor of shape (batch, sum(task_out_features))
        """
        tasks, routings = self._levels(x)
        out = self.towers(tasks)  # (n_tasks, batch, max_out)
        outputs = torch.cat(
            [out[t, :, :n] for t, n in enumerate(self.task_out_features)], dim=1
        )
        if self.training:
            all_routings = [r for level in routings for r in level]
            self.__dict__["aux_loss"] = self._balancing(all_routings, x, sample_weight)
            with torch.no_grad():
                last = self.levels[-1]
                weights = None
                if last.gated:
                    task_routings = routings[-1][: len(last.task_gates)]
                    weights = [r.dense_weights() for r in task_routings]
                self._record_usage(weights, x.shape[0])
        else:
            self.__dict__["aux_loss"] = None
        return outputs

    def uses_fast_path(self):
        """Whether :meth:`training_step` computes the step without autograd.

        True for ``fused_training`` on and a module built of plain parts: every
        gate a :class:`~skmoe.nn.Gate` whose routing spec is in
        :data:`skmoe.nn.routing.FAST_SPECS`, every expert bank and the towers a
        :class:`~skmoe.nn.ExpertBank`; what the written-out gradients were proven
        equal to autograd's on.

        Examples
        --------
        >>> MultiGateMixtureOfExperts(4, [1, 2], architecture="ple").uses_fast_path()
        True
        """
        return self._fast_path_ready(check_grads=False)

    def _fast_path_ready(self, check_grads=True):
        """:meth:`uses_fast_path`, and with ``check_grads`` every parameter
        trainable, in one walk over the submodules (it runs at every step)."""
        if not self.fused_training or type(self.towers) is not ExpertBank:
            return False
        for sub in self.modules():
            kind = type(sub)
            if kind is Gate:
                if not is_proven(sub.spec):
                    return False
            elif kind not in _PLAIN_PARTS:
                return False
            if check_grads:
                for param in sub._parameters.values():
                    if param is not None and not param.requires_grad:
                        return False
        return True

    def training_step(self, x, loss_and_grad, sample_weight=None):
        """One training step's forward and backward pass, without autograd.

        Computes the output, hands it to ``loss_and_grad``, and sets the ``.grad``
        of every parameter to the gradient of that loss plus the balancing losses,
        from written-out formulas (the expert banks' batched products and the gates'
        routing, as :mod:`skmoe.nn.fused` computes them for
        :meth:`MixtureOfExperts.training_step
        <skmoe.nn.MixtureOfExperts.training_step>`). The random numbers drawn, the
        gradients and the usage statistics equal those of ``loss =
        task(model(x)) + auxiliary_loss(model); loss.backward()`` to rounding. The
        caller steps its optimiser afterwards. Noise and jitter follow the module's
        mode, as in :meth:`forward` (call ``train()`` first). skmoe's training
        engine calls it at every step.

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
            The task loss plus the balancing losses (0-d); ``None``, with nothing
            computed, where this module has no written-out step: a subclass, not
            :meth:`uses_fast_path`, a frozen parameter, autocast on, or an empty
            batch. Train through autograd then.

        Examples
        --------
        >>> import torch
        >>> model = MultiGateMixtureOfExperts(4, [1, 2], architecture="cgc").train()
        >>> x, y = torch.randn(8, 4), torch.randn(8, 3)
        >>> def squared_error(out):
        ...     return 0.5 * (out - y).square().sum() / 8, (out - y) / 8
        >>> loss = model.training_step(x, squared_error)
        >>> loss.ndim, model.towers.weights[0].grad.shape
        (0, torch.Size([2, 32, 2]))
        """
        if type(self) is not MultiGateMixtureOfExperts or x.ndim != 2:
            return None
        if not len(x) and self.balancing_reducer is None:
            # A shard of a data-parallel batch (a reducer set) may be empty and
            # still takes the step every other shard takes; a batch may not.
            return None
        if not self._fast_path_ready():
            return None
        if autocast_on(x):
            return None
        with torch.no_grad():
            return _written_out_step(self, x, loss_and_grad, sample_weight)

    def _record_usage(self, task_weights, n_rows):
        """Add each task gate's summed weights to the usage statistics.

        ``task_weights`` holds the last level's task gates' weights over the
        experts each chooses from, ``(batch, n_choices)``; ``None`` without gates.
        """
        level = self.levels[-1]
        if task_weights is None:  # one shared network, used in full by every task
            self.usage_sum.add_(n_rows)
        else:
            for t in range(self.n_tasks):
                weights = task_weights[min(t, len(task_weights) - 1)]
                per_expert = weights.sum(0).to(self.usage_sum.dtype)
                self.usage_sum[t].index_add_(0, level.choices[t], per_expert)
        self.usage_rows.add_(n_rows)

    def _balancing(self, routings, x, sample_weight):
        loss = x.new_zeros(())
        for routing in routings:
            if routing is None:
                continue
            term = balancing_loss(
                routing,
                self.load_balancing_coef,
                self.router_z_loss_coef,
                sample_weight,
                self.balancing_reducer,
            )
            if term is not None:
                loss = loss + term
        return loss

    def gate_weights(self, x):
        """Last-level task gate weights ``(batch, n_tasks, n_experts)``.

        Experts are ordered shared first, then each task's own; a task's weight on
        another task's experts is zero. Rows sum to one.
        """
        _, routings = self._levels(x)
        return self.levels[-1].task_weights(routings[-1], x.shape[0]).to(x.dtype)

    def reset_usage(self):
        """Zero the expert-usage accumulators."""
        self.usage_sum.zero_()
        self.usage_rows.zero_()

    def expert_usage(self):
        """Mean last-level gate weight per task and expert, ``(n_tasks, n_experts)``."""
        return self.usage_sum / self.usage_rows.clamp(min=1)


class _ExtractionLevel(nn.Module):
    """One level: an expert bank (shared experts first, then each task's) and gates."""

    def __init__(
        self,
        in_features,
        expert_sizes,
        n_tasks,
        n_shared,
        n_task,
        with_shared_gate,
        gated,
        one_gate,
        top_k,
        gating,
        activation,
    ):
        super().__init__()
        self.n_tasks, self.n_shared, self.n_task = n_tasks, n_shared, n_task
        self.n_experts = n_shared + n_tasks * n_task
        self.experts = ExpertBank(
            self.n_experts,
            in_features,
            expert_sizes[-1],
            hidden_layer_sizes=expert_sizes[:-1],
            activation=activation,
        )
        self._act = ACTIVATIONS_IN_PLACE[activation]  # on the bank's fresh output
        self.gated = gated
        # Expert e reads the input of group group[e]: 0 is the shared input, 1 + t task
        # t's input.
        group = [0] * n_shared + [1 + t for t in range(n_tasks) for _ in range(n_task)]
        self.register_buffer("group", torch.tensor(group), persistent=False)
        # Task t chooses among the shared experts and its own.
        choices = [
            list(range(n_shared))
            + list(range(n_shared + t * n_task, n_shared + (t + 1) * n_task))
            for t in range(n_tasks)
        ]
        self.register_buffer("choices", torch.tensor(choices), persistent=False)
        n_choices = n_shared + n_task
        if gated:
            if top_k is not None and top_k > n_choices:
                raise ValueError(
                    f"top_k={top_k} is larger than the {n_choices} experts a task gate "
                    "chooses from."
                )
            self.task_gates = nn.ModuleList(
                Gate(in_features, n_choices, top_k=top_k, gating=gating)
                for _ in range(1 if one_gate else n_tasks)
            )
            self.shared_gate = (
                Gate(in_features, self.n_experts, top_k=top_k, gating=gating)
                if with_shared_gate
                else None
            )
        else:
            self.task_gates = None
            self.shared_gate = None

    def forward(self, task_inputs, shared_input):
        """Map the tasks' inputs and the shared input to the next level's.

        ``task_inputs`` is ``(batch, in)`` at the first level (every task reads the raw
        input) and ``(n_tasks, batch, in)`` after it.
        """
        first = task_inputs.dim() == 2
        if first:
            h = self.experts.forward_shared(task_inputs)
        else:
            inputs = torch.cat([shared_input.unsqueeze(0), task_inputs], dim=0)
            h = self.experts(inputs.index_select(0, self.group))
        h = self._act(h)  # (n_experts, batch, width)
        if not self.gated:
            return h.expand(self.n_tasks, -1, -1), None, [None]
        routings = []
        mixtures = []
        for t, gate in enumerate(self.task_gates):
            routing = gate(task_inputs if first else task_inputs[t])
            routings.append(routing)
            # A task without experts of its own chooses among all: no gather.
            chosen = h if self.n_task == 0 else h.index_select(0, self.choices[t])
            mixtures.append(mix_experts(routing.dense_weights(), chosen))
        if len(mixtures) < self.n_tasks:  # one gate: every task reads its mixture
            mixtures = mixtures * self.n_tasks
        shared = None
        if self.shared_gate is not None:
            routing = self.shared_gate(task_inputs if first else shared_input)
            routings.append(routing)
            shared = mix_experts(routing.dense_weights(), h)
        return torch.stack(mixtures), shared, routings

    def gates(self):
        """The level's gates: the task gates, then the shared gate if any."""
        if not self.gated:
            return []
        gates = list(self.task_gates)
        if self.shared_gate is not None:
            gates.append(self.shared_gate)
        return gates

    def task_weights(self, routings, batch):
        """Task gates' weights over all experts, ``(batch, n_tasks, n_experts)``."""
        if not self.gated:  # one shared network, used in full by every task
            return self.group.new_ones(batch, self.n_tasks, self.n_experts).float()
        rows = []
        for t in range(self.n_tasks):
            dense = routings[min(t, len(self.task_gates) - 1)].dense_weights()
            full = dense.new_zeros(batch, self.n_experts)
            rows.append(full.index_copy(1, self.choices[t], dense))
        return torch.stack(rows, dim=1)


# The parts the written-out step computes, besides gates; any other module (a
# subclass of one of these included) makes the model train through autograd.
_PLAIN_PARTS = frozenset(
    {
        MultiGateMixtureOfExperts,
        _ExtractionLevel,
        ExpertBank,
        nn.ModuleList,
        nn.ParameterList,
        nn.Linear,
    }
)


class _GateStep:
    """One gate's part of :func:`_written_out_step`: its scores, routing and
    combination weights, and the expert outputs it mixed."""

    __slots__ = ("aux", "columns", "gate", "mixed", "routed", "saved", "weights")

    def __init__(self, gate, gate_input, sample_weight, coefs, columns=None):
        self.gate = gate
        self.saved = saved = gate.score_inputs(gate_input)
        self.routed = route(saved.logits, saved.scores, gate.kept)
        lb_coef, z_coef, reducer = coefs
        self.aux = routing_losses(
            self.routed, None, lb_coef, z_coef, sample_weight, reducer
        )
        self.weights = self.routed.dense_weights()
        self.columns = columns

    def mix(self, expert_out):
        """Mix all of the level's experts; a gate that chooses among some of them
        gives the others weight zero (no copy of the chosen experts' outputs)."""
        weights = self.weights
        if self.columns is not None:
            full = weights.new_zeros(weights.shape[0], expert_out.shape[0])
            weights = full.index_copy_(1, self.columns, weights)
        self.mixed = weights, expert_out
        return mix_experts(weights, expert_out)

    def backward(self, grad_mixture, grad_aux, need_input):
        """Set the gate's parameter gradients; return those of the experts' outputs
        and, with ``need_input``, of the gate's input."""
        grad_weights, grad_experts = mix_backward(*self.mixed, grad_mixture)
        routed, saved, gate = self.routed, self.saved, self.gate
        if self.columns is not None:
            grad_weights = grad_weights.index_select(1, self.columns)
        if routed.k is not None:
            grad_weights = grad_weights.gather(1, routed.indices)
        grad_logits, grad_scores = routing_backward(
            routed, grad_weights, grad_aux, scores_given=saved.scores is not None
        )
        for param, grad in gate.scores_backward(saved, grad_logits, grad_scores):
            param.grad = grad
        grad_input = None
        if need_input:
            grad_input = gate.input_backward(saved, grad_logits, grad_scores)
        return grad_experts, grad_input


def _written_out_step(model, x, loss_and_grad, sample_weight):
    """:meth:`MultiGateMixtureOfExperts.training_step`'s arithmetic (no autograd)."""
    n_tasks, n_rows = model.n_tasks, x.shape[0]
    coefs = (
        model.load_balancing_coef,
        model.router_z_loss_coef,
        model.balancing_reducer,
    )
    aux = x.new_zeros(())
    # Forward, level by level, in the order forward() draws its random numbers.
    tasks = shared = x
    levels = []
    for depth, level in enumerate(model.levels):
        first = depth == 0
        bank = level.experts
        params = (*bank.weights, *bank.biases)
        if first:
            inputs = x.expand(bank.n_experts, *x.shape)
        else:
            inputs = torch.cat([shared.unsqueeze(0), tasks]).index_select(
                0, level.group
            )
        h, acts = bank_forward(inputs, params, bank.activation)
        h = ACTIVATIONS_IN_PLACE[bank.activation](h)  # (n_experts, batch, width)
        steps = []
        if not level.gated:
            tasks, shared = h.expand(n_tasks, -1, -1), None
        else:
            mixtures = []
            for t, gate in enumerate(level.task_gates):
                columns = level.choices[t] if level.n_task else None
                gate_input = tasks if first else tasks[t]
                steps.append(_GateStep(gate, gate_input, sample_weight, coefs, columns))
                mixtures.append(steps[-1].mix(h))
            if len(mixtures) < n_tasks:  # one gate: every task reads its mixture
                mixtures = mixtures * n_tasks
            if level.shared_gate is not None:
                gate_input = tasks if first else shared
                steps.append(
                    _GateStep(level.shared_gate, gate_input, sample_weight, coefs)
                )
                shared = steps[-1].mix(h)
            tasks = torch.stack(mixtures)
            for step in steps:
                if step.aux is not None:
                    aux = aux + step.aux
        levels.append((level, params, acts, h, steps))
    towers = model.towers
    tower_params = (*towers.weights, *towers.biases)
    out, tower_acts = bank_forward(tasks, tower_params, towers.activation)
    widths = model.task_out_features
    outputs = torch.cat([out[t, :, :n] for t, n in enumerate(widths)], dim=1)
    usage = None
    if model.levels[-1].gated:
        usage = [step.weights for step in levels[-1][4]]
    model._record_usage(usage, n_rows)
    model.__dict__["aux_loss"] = None
    task, grad_out = loss_and_grad(outputs)

    # Backward: the towers, then the levels from the last.
    grad_aux = aux.new_ones(())
    width = max(widths)
    if all(n == width for n in widths):
        grad_towers = grad_out.reshape(n_rows, n_tasks, width).transpose(0, 1)
    else:
        grad_towers = grad_out.new_zeros(n_tasks, n_rows, width)
        start = 0
        for t, n in enumerate(widths):
            grad_towers[t, :, :n] = grad_out[:, start : start + n]
            start += n
    param_grads, grad_tasks = bank_backward(
        tower_acts, tower_params, towers.activation, grad_towers
    )
    _set_grads(tower_params, param_grads)
    grad_shared = None
    for depth in reversed(range(len(levels))):
        level, params, acts, h, steps = levels[depth]
        first = depth == 0
        if not level.gated:  # every task read h
            grad_h = grad_tasks.sum(0, keepdim=True)
        else:
            grad_h = None
            n_task_gates = len(level.task_gates)
            grad_inputs = []
            for t, step in enumerate(steps):
                if t == n_task_gates:  # the shared gate
                    grad_mixture = grad_shared
                elif n_task_gates == n_tasks:
                    grad_mixture = grad_tasks[t]
                else:  # one gate: every task read its mixture
                    grad_mixture = grad_tasks.sum(0)
                grad_experts, grad_in = step.backward(grad_mixture, grad_aux, not first)
                grad_inputs.append(grad_in)
                grad_h = grad_experts if grad_h is None else grad_h.add_(grad_experts)
        grad_h = ACTIVATION_GRADS[level.experts.activation](grad_h, h)
        param_grads, grad_level_input = bank_backward(
            acts, params, level.experts.activation, grad_h, need_input=not first
        )
        _set_grads(params, param_grads)
        if first:
            break
        # Expert e read input group[e]: 0 the shared one, 1 + t task t's.
        grouped = grad_level_input.new_zeros(n_tasks + 1, *grad_level_input.shape[1:])
        grouped.index_add_(0, level.group, grad_level_input)
        grad_shared, grad_tasks = grouped[0], grouped[1:]
        for t, grad_in in enumerate(grad_inputs):
            if t == len(level.task_gates):
                grad_shared += grad_in
            else:
                grad_tasks[t] += grad_in
    return task + aux


def _set_grads(params, grads):
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad
