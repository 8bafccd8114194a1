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
from .gates import Gate
from .losses import balancing_loss

ARCHITECTURES = ("mmoe", "omoe", "cgc", "ple", "shared_bottom")


class MultiGateMixtureOfExperts(nn.Module):
    """Shared (and task-specific) experts, one gate and one tower per task.

    The forward pass returns the tasks' tower outputs concatenated along the last
    dimension, ``(batch, sum(task_out_features))``. Its ``balancing_reducer``
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
                self._record_usage(routings[-1], x.shape[0])
        else:
            self.__dict__["aux_loss"] = None
        return outputs

    def _record_usage(self, routings, n_rows):
        """Add each task gate's summed weights to the usage statistics."""
        level = self.levels[-1]
        if not level.gated:  # one shared network, used in full by every task
            self.usage_sum.add_(n_rows)
        else:
            for t in range(self.n_tasks):
                routing = routings[min(t, len(level.task_gates) - 1)]
                per_expert = routing.dense_weights().sum(0).to(self.usage_sum.dtype)
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
