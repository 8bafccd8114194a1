"""The engine's optimiser: LeanAdam must be torch's fused Adam, bit for bit."""

import copy
import pickle

import pytest
import torch

from skmoe._engine import LeanAdam, make_optimizer
from skmoe.nn import MixtureOfExperts, auxiliary_loss


def _model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MixtureOfExperts(5, 3, n_experts=4, top_k=2, min_dispatch_savings=0)


def _groups(module, weight_decay=1e-3):
    params = dict(module.named_parameters())
    decayed = [p for n, p in params.items() if "bias" not in n]
    free = [p for n, p in params.items() if "bias" in n]
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": free, "weight_decay": 0.0},
    ]


def _train(module, optimizer, steps, between=None):
    gen = torch.Generator().manual_seed(1)
    for i in range(steps):
        x = torch.randn(40, 5, generator=gen)
        loss = module(x).square().mean() + auxiliary_loss(module)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if between is not None:
            between(i, optimizer)


def _assert_same(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_lean_adam_equals_fused_adam_bit_for_bit():
    lean_model, ref_model = _model(), _model()
    lean = LeanAdam(_groups(lean_model), lr=1e-2)
    ref = torch.optim.Adam(_groups(ref_model), lr=1e-2, fused=True)
    _train(lean_model, lean, 25)
    _train(ref_model, ref, 25)
    assert lean._lean_plan is not None  # the lean step was really taken
    _assert_same(lean_model, ref_model)
    for p, q in zip(lean_model.parameters(), ref_model.parameters(), strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(lean.state[p][key], ref.state[q][key])


def test_lean_adam_follows_a_changed_learning_rate_and_a_missing_gradient():
    def perturb(i, optimizer):
        if i == 5:
            for group in optimizer.param_groups:
                group["lr"] = 3e-3
        if i == 10:  # a step where one parameter got no gradient
            optimizer.zero_grad()
            module = optimizer.module
            (module.gate.router(torch.ones(2, 5)).sum()).backward()
            optimizer.step()

    lean_model, ref_model = _model(), _model()
    lean = LeanAdam(_groups(lean_model), lr=1e-2)
    ref = torch.optim.Adam(_groups(ref_model), lr=1e-2, fused=True)
    lean.module, ref.module = lean_model, ref_model
    _train(lean_model, lean, 20, perturb)
    _train(ref_model, ref, 20, perturb)
    _assert_same(lean_model, ref_model)


@pytest.mark.parametrize("how", ["state_dict", "pickle"])
def test_a_restored_lean_adam_keeps_training_identically(how):
    module = _model()
    lean = LeanAdam(_groups(module), lr=1e-2)
    _train(module, lean, 5)
    if how == "state_dict":
        twin_module = copy.deepcopy(module)
        twin = LeanAdam(_groups(twin_module), lr=1e-2)
        twin.load_state_dict(copy.deepcopy(lean.state_dict()))
    else:
        twin_module, twin = pickle.loads(pickle.dumps((module, lean)))
    assert twin._lean_plan is None  # rebuilt by the next ordinary step
    _train(module, lean, 5)
    _train(twin_module, twin, 5)
    _assert_same(module, twin_module)


def test_zero_grad_without_set_to_none_zeroes_in_place():
    module = _model()
    lean = LeanAdam(_groups(module), lr=1e-2)
    _train(module, lean, 3)
    module(torch.randn(4, 5)).sum().backward()
    lean.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in module.parameters())
    lean.zero_grad()
    assert all(p.grad is None for p in module.parameters())


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_make_optimizer_decays_weights_only(weight_decay):
    module = _model()
    optimizer = make_optimizer(module, 1e-3, weight_decay, torch.device("cpu"))
    assert isinstance(optimizer, LeanAdam)
    decays = {
        id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]
    }
    for name, p in module.named_parameters():
        expected = 0.0 if "bias" in name else weight_decay
        assert decays[id(p)] == expected, name


def _two_params():
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, generator=gen))
    b = torch.nn.Parameter(torch.randn(3, generator=gen))
    return a, b


def _steps(make, change, steps=8):
    a, b = _two_params()
    optimizer = make([{"params": [a]}])
    for i in range(steps):
        optimizer.zero_grad()
        ((a**2).sum() + (b**3).sum()).backward()
        change(i, optimizer, b)
        optimizer.step()
    return a.detach(), b.detach()


def _add_group(i, optimizer, b):
    if i == 3:
        optimizer.add_param_group({"params": [b]})


def _change_betas(i, optimizer, b):
    if i == 3:
        optimizer.param_groups[0]["betas"] = (0.5, 0.6)


def _change_eps(i, optimizer, b):
    if i == 3:
        optimizer.param_groups[0]["eps"] = 1.0


@pytest.mark.parametrize("change", [_add_group, _change_betas, _change_eps])
def test_lean_adam_follows_added_groups_and_changed_options(change):
    lean = _steps(lambda groups: LeanAdam(groups, lr=1e-2), change)
    ref = _steps(lambda groups: torch.optim.Adam(groups, lr=1e-2, fused=True), change)
    for x, y in zip(lean, ref, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("inf_at", [None, 4])
def test_lean_adam_steps_under_a_grad_scaler_as_fused_adam_does(inf_at):
    def run(make):
        a, _ = _two_params()
        optimizer = make([a])
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for i in range(6):
            optimizer.zero_grad()
            loss = (a**2).sum()
            if i == inf_at:  # that step must be skipped
                loss = loss * float("inf")
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return a.detach()

    lean = run(lambda p: LeanAdam(p, lr=1e-2))
    assert torch.isfinite(lean).all()
    assert torch.equal(lean, run(lambda p: torch.optim.Adam(p, lr=1e-2, fused=True)))


def test_without_the_private_kernels_every_step_is_torchs_own(monkeypatch):
    # The fallback branch: where the private kernels are missing, LeanAdam is
    # torch.optim.Adam(fused=True) step for step.
    import skmoe._engine.optim as optim

    class _OldTorch:
        __version__ = "2.3.1"

    class _NoKernels:
        __version__ = "2.13.0"

    assert not optim.lean_step_supported(_OldTorch)
    assert not optim.lean_step_supported(_NoKernels)
    monkeypatch.setattr(optim, "LEAN_STEP", False)
    lean_model, ref_model = _model(), _model()
    lean = LeanAdam(_groups(lean_model), lr=1e-2)
    ref = torch.optim.Adam(_groups(ref_model), lr=1e-2, fused=True)
    calls = []
    monkeypatch.setattr(LeanAdam, "_lean_step", lambda self, plan: calls.append(1))
    _train(lean_model, lean, 5)
    _train(ref_model, ref, 5)
    assert not calls  # never tried
    _assert_same(lean_model, ref_model)
