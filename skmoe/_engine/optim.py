"""The optimiser: torch's Adam, fused where torch has a fused kernel for the device."""

import math

import torch

# torch has a fused Adam kernel for these devices from torch 2.4 (skmoe's floor) on;
# elsewhere (MPS before torch 2.5, for one) Adam runs its foreach implementation.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(module, learning_rate, weight_decay, device):
    """Adam, fused where torch has the kernel, with L2 decay on weights only.

    Biases (parameters whose name ends in ``bias`` or sits in a ``biases`` list) are
    not decayed, as in scikit-learn's MLP. On a CPU or CUDA ``device`` the optimiser is
    ``torch.optim.Adam(fused=True)``, the fastest of torch's Adam implementations for
    these models (``benchmarks/adam_variants.py``); on other devices it is
    ``torch.optim.Adam(foreach=True)``.

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(3, 1)
    >>> optimizer = make_optimizer(layer, 1e-3, 1e-4, torch.device("cpu"))
    >>> [(g["weight_decay"], g["fused"]) for g in optimizer.param_groups]
    [(0.0001, True), (0.0, True)]
    """
    sparse = sparse_parameters(module)
    decayed, free = [], []
    for name, param in module.named_parameters():
        if param.requires_grad and not any(param is p for p in sparse):
            is_bias = name.endswith("bias") or ".biases." in f".{name}"
            (free if is_bias else decayed).append(param)
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": free, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if torch.device(device).type in FUSED_ADAM_DEVICES:
        dense = torch.optim.Adam(groups, lr=learning_rate, fused=True)
    else:
        dense = torch.optim.Adam(groups, lr=learning_rate, foreach=True)
    if not sparse:
        return dense
    lazy = LazyAdam(sparse, lr=learning_rate, weight_decay=weight_decay)
    return SplitOptimizer(dense, lazy)


def sparse_parameters(module):
    """The parameters of ``module`` whose gradients are sparse: the weights of
    ``nn.Embedding(sparse=True)`` tables."""
    return [
        sub.weight
        for sub in module.modules()
        if isinstance(sub, torch.nn.Embedding)
        and sub.sparse
        and sub.weight.requires_grad
    ]


class LazyAdam(torch.optim.Optimizer):
    """Adam for parameters with sparse gradients: only the rows a batch read move.

    On the rows of a step's gradient it is torch's Adam, with the same formula in
    the same order (L2 decay, moments, bias correction by the global step count),
    so a first step equals dense Adam's exactly. It differs from dense Adam in one
    way: a row's moments, and the L2 penalty, act only on the steps that read it,
    where dense Adam keeps moving every row on its momentum after the batches that
    read it. A step costs time proportional to the rows read, not to the table.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
    lr : float, default=1e-3
    betas : tuple of float, default=(0.9, 0.999)
    eps : float, default=1e-8
    weight_decay : float, default=0.0
        L2 penalty of the rows read, added to their gradient as in ``torch.optim.Adam``.

    Examples
    --------
    >>> import torch
    >>> table = torch.nn.Embedding(1000, 4, sparse=True)
    >>> optimizer = LazyAdam(table.parameters(), lr=0.1)
    >>> before = table.weight.detach().clone()
    >>> table(torch.tensor([3, 7])).sum().backward()
    >>> optimizer.step()
    >>> changed = (table.weight != before).any(dim=1).nonzero().ravel().tolist()
    >>> changed
    [3, 7]
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One lazy Adam step on the rows of every parameter's sparse gradient."""
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.coalesce()
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                rows, values = grad.indices()[0], grad.values()
                if group["weight_decay"]:
                    values = values.add(param[rows], alpha=group["weight_decay"])
                exp_avg = state["exp_avg"][rows].lerp_(values, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2)
                exp_avg_sq.addcmul_(values, values, value=1 - beta2)
                state["exp_avg"][rows] = exp_avg
                state["exp_avg_sq"][rows] = exp_avg_sq
                step = state["step"]
                bias_correction1 = 1 - beta1**step
                bias_correction2_sqrt = math.sqrt(1 - beta2**step)
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
                update = exp_avg / denom * (-group["lr"] / bias_correction1)
                param.index_add_(0, rows, update)
        return loss


class SplitOptimizer:
    """Dense Adam for most parameters beside :class:`LazyAdam` for sparse tables.

    ``param_groups`` lists both optimisers' groups, so that the step size is set
    on both at once.

    Parameters
    ----------
    dense, sparse : torch.optim.Optimizer

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 2, sparse=True),
    ...                             torch.nn.Linear(2, 1))
    >>> optimizer = make_optimizer(model, 1e-2, 0.0, torch.device("cpu"))
    >>> type(optimizer).__name__, len(optimizer.param_groups)
    ('SplitOptimizer', 3)
    """

    def __init__(self, dense, sparse):
        self.optimizers = (dense, sparse)

    @property
    def param_groups(self):
        return [g for optimizer in self.optimizers for g in optimizer.param_groups]

    def zero_grad(self, set_to_none=True):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self):
        return [optimizer.state_dict() for optimizer in self.optimizers]

    def load_state_dict(self, state):
        for optimizer, part in zip(self.optimizers, state, strict=True):
            optimizer.load_state_dict(part)
