"""The optimiser: torch's Adam, fused where torch has a fused kernel for the device."""

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
    if torch.device(device).type in FUSED_ADAM_DEVICES:
        return torch.optim.Adam(groups, lr=learning_rate, fused=True)
    return torch.optim.Adam(groups, lr=learning_rate, foreach=True)
