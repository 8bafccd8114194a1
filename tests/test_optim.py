"""The engine's optimiser: torch's Adam, fused where torch has the kernel."""

import pytest
import torch

from skmoe._engine import make_optimizer
from skmoe.nn import MixtureOfExperts


def _model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MixtureOfExperts(5, 3, n_experts=4, top_k=2, min_dispatch_savings=0)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_make_optimizer_decays_weights_only(weight_decay):
    module = _model()
    optimizer = make_optimizer(module, 1e-3, weight_decay, torch.device("cpu"))
    decays = {
        id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]
    }
    for name, p in module.named_parameters():
        expected = 0.0 if "bias" in name else weight_decay
        assert decays[id(p)] == expected, name


@pytest.mark.parametrize(
    ("device", "fused", "foreach"), [("cpu", True, None), ("meta", None, True)]
)
def test_adam_is_fused_where_torch_has_the_kernel(device, fused, foreach):
    # The meta device stands for one without a fused Adam kernel (MPS on torch 2.4).
    optimizer = make_optimizer(_model(), 1e-3, 1e-4, torch.device(device))
    assert type(optimizer) is torch.optim.Adam
    for group in optimizer.param_groups:
        assert (group["fused"], group["foreach"]) == (fused, foreach)
        # Adam's ordinary semantics otherwise.
        assert group["lr"] == 1e-3
        assert group["betas"] == (0.9, 0.999)
        assert not group["amsgrad"]


def test_the_fused_step_is_torchs_adam():
    # One step of the engine's optimiser equals torch's Adam on the same gradients.
    mine, ref = _model(), _model()
    optimizer = make_optimizer(mine, 1e-2, 1e-3, torch.device("cpu"))
    ref_optimizer = make_optimizer(ref, 1e-2, 1e-3, torch.device("meta"))
    for model, opt in ((mine, optimizer), (ref, ref_optimizer)):
        for _ in range(3):
            opt.zero_grad()
            model(torch.ones(8, 5)).square().mean().backward()
            opt.step()
    for (name, p), q in zip(mine.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
