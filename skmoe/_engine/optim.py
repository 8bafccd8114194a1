"""The optimiser: torch's Adam, with the per-step Python of its fused path removed.

``torch.optim.Adam(fused=True).step`` launches two kernels per parameter group (the
step counters' increment and the fused update), but first walks every parameter to
rebuild its lists of gradients and moments, groups them by device and dtype and
checks its options: Python that costs as much as the update itself for a tabular
model with a dozen parameter tensors. :class:`LeanAdam` is that optimiser, unchanged
in its state, its ``state_dict`` and its results (equal bit for bit, which is
tested); once a first ordinary step has created the state, it keeps the lists and
calls the same two kernels directly while nothing has changed.
"""

from typing import NamedTuple

import torch

# The lean step calls two of torch's private kernels, whose signatures it was
# tested against from torch 2.4 (the floor) on. Where they are missing or the torch
# is older, every step is the ordinary one (tests cover both branches).
_LEAN_KERNELS = ("_fused_adam_", "_foreach_add_")


def lean_step_supported(torch_module=torch):
    """Whether ``torch_module`` has the private kernels the lean step calls.

    Examples
    --------
    >>> lean_step_supported()
    True
    """
    version = torch_module.__version__.split("+")[0].split(".")
    try:
        major_minor = (int(version[0]), int(version[1]))
    except (IndexError, ValueError):
        return False
    return major_minor >= (2, 4) and all(
        callable(getattr(torch_module, name, None)) for name in _LEAN_KERNELS
    )


LEAN_STEP = lean_step_supported()


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` with a lean ``step`` for the steady state.

    The lean step is taken when this torch has the kernels it calls
    (:func:`lean_step_supported`), no closure is given, every parameter of every group
    has a gradient, no ``GradScaler`` is stepping it, and the groups and their options
    are those of the last ordinary step. In any other case (the first step, a
    parameter without a gradient, a changed learning rate, betas or eps, an added
    group, a loaded ``state_dict``) the ordinary step runs and the lists are rebuilt
    after it.

    Parameters
    ----------
    params : iterable of torch.Tensor or dict
        Parameters or parameter groups, as for ``torch.optim.Adam``.
    **options
        Passed to ``torch.optim.Adam`` with ``fused=True``.
    """

    def __init__(self, params, **options):
        super().__init__(params, fused=True, **options)
        self._lean_plan = None

    def __setstate__(self, state):
        # torch.optim.Optimizer pickles its groups and state only; the lists are
        # rebuilt by the next ordinary step.
        super().__setstate__(state)
        self._lean_plan = None

    def load_state_dict(self, state_dict):
        self._lean_plan = None
        super().load_state_dict(state_dict)

    def step(self, closure=None):
        plan = self._lean_plan
        if closure is None and plan is not None and LEAN_STEP and self._lean_step(plan):
            return None
        loss = super().step(closure)
        self._lean_plan = self._build_plan()
        return loss

    def _build_plan(self):
        """The per-group lists the fused kernels take, or None if they don't apply."""
        plan = []
        for group in self.param_groups:
            params = group["params"]
            if (
                not _plain(group)
                or any(p not in self.state for p in params)
                or len({(p.device, p.dtype) for p in params}) > 1
            ):
                return None
            states = [self.state[p] for p in params]
            plan.append(
                _GroupPlan(
                    group=group,
                    params=list(params),
                    exp_avgs=[s["exp_avg"] for s in states],
                    exp_avg_sqs=[s["exp_avg_sq"] for s in states],
                    steps=[s["step"] for s in states],
                    options=_options(group),
                    key=_key(group),
                )
            )
        return plan

    def _lean_step(self, plan):
        """Run the fused update from the kept lists; False if they no longer apply."""
        if len(plan) != len(self.param_groups):  # a group was added
            return False
        # A GradScaler hands the fused step its scale and inf flag as attributes.
        if getattr(self, "grad_scale", None) is not None:
            return False
        if getattr(self, "found_inf", None) is not None:
            return False
        grads_per_group = []
        for kept, group in zip(plan, self.param_groups, strict=True):
            if kept.group is not group or len(group["params"]) != len(kept.params):
                return False
            if _key(group) != kept.key:  # an option changed
                return False
            grads = [p.grad for p in kept.params]
            if any(g is None for g in grads):
                return False
            grads_per_group.append(grads)
        with torch.no_grad():
            for kept, grads in zip(plan, grads_per_group, strict=True):
                if not kept.params:
                    continue
                torch._foreach_add_(kept.steps, 1)
                torch._fused_adam_(
                    kept.params,
                    grads,
                    kept.exp_avgs,
                    kept.exp_avg_sqs,
                    [],
                    kept.steps,
                    amsgrad=False,
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                    **kept.options,
                )
        return True

    def zero_grad(self, set_to_none=True):
        """Drop the gradients (or zero them with ``set_to_none=False``)."""
        if not set_to_none:
            super().zero_grad(set_to_none)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


class _GroupPlan(NamedTuple):
    """One parameter group's lists for the fused kernels, and its options."""

    group: dict
    params: list
    exp_avgs: list
    exp_avg_sqs: list
    steps: list
    options: dict  # the kernel's keyword arguments
    key: tuple  # see _key


def _plain(group):
    """Whether the group uses none of the options the lean step leaves out."""
    return not (
        group["amsgrad"]
        or group["maximize"]
        or group["differentiable"]
        or group["capturable"]
        or group.get("decoupled_weight_decay", False)
        or isinstance(group["lr"], torch.Tensor)
    )


def _key(group):
    """Every option of a group that the lean step depends on, to detect changes."""
    return (
        group["lr"],
        group["betas"],
        group["eps"],
        group["weight_decay"],
        group["amsgrad"],
        group["maximize"],
        group["differentiable"],
        group["capturable"],
        group.get("decoupled_weight_decay", False),
    )


def _options(group):
    """The options of a parameter group that the fused update takes."""
    return dict(
        lr=group["lr"],
        beta1=float(group["betas"][0]),
        beta2=float(group["betas"][1]),
        weight_decay=group["weight_decay"],
        eps=group["eps"],
    )


def make_optimizer(module, learning_rate, weight_decay, device):
    """Adam, fused where this torch build supports it, with L2 decay on weights only.

    Biases (parameters whose name ends in ``bias`` or sits in a ``biases`` list) are
    not decayed, as in scikit-learn's MLP. Where the fused kernels are available the
    optimiser is a :class:`LeanAdam`.
    """
    decayed, free = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            is_bias = name.endswith("bias") or ".biases." in f".{name}"
            (free if is_bias else decayed).append(param)
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": free, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:
        return LeanAdam(groups, lr=learning_rate)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(groups, lr=learning_rate, foreach=True)
