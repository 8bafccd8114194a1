"""CPU-versus-GPU check of every estimator and routing, ready to run on a CUDA machine.

For each estimator (single- and multi-gate, classifier and regressor) and each routing
(dense softmax, top-2, noisy top-1, switch), it reports:

* **fit agreement**: the same seed fitted on the CPU and on the GPU; the largest
  difference between their predictions (probabilities for classifiers, standardised
  targets for regressors). float32 sums in another order drift apart over the steps,
  so the tolerance grows with the epochs (``--fit-tol``);
* **predict agreement**: the GPU-fitted weights evaluated on the GPU (float32) and on
  the CPU (float64), where only rounding differs (``--predict-tol``);
* **throughput** of ``fit`` against a hand-written PyTorch loop (the same module,
  ``torch.optim.Adam``, index-sliced batches, autograd) at batch 4,096, in rows per
  second;
* **host-device synchronisations per training step**, counted with
  ``torch.cuda.set_sync_debug_mode``. Top-k routing reads the per-expert row counts
  on the host once a step to size its dispatch buffer (rows are never dropped, so
  the buffer's size depends on the routing); dense routing needs none.

``--bf16`` fits under ``torch.autocast`` with bfloat16 (mixed precision) and reports
the same figures against a float32 CPU fit, with a looser tolerance.

Without a CUDA device the script says so and runs what it can on the CPU: the
fits, the predictions and the throughput comparison. ``--quick`` uses small sizes.

Run: ``python benchmarks/gpu_check.py`` (``flock /tmp/skmoe-bench.lock`` on a
shared machine).
"""

import argparse
import copy
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    MultiGateMoEClassifier,
    MultiGateMoERegressor,
)
from skmoe.nn import auxiliary_loss

ESTIMATORS = {
    "MoE classifier": MixtureOfExpertsClassifier,
    "MoE regressor": MixtureOfExpertsRegressor,
    "MMoE classifier": MultiGateMoEClassifier,
    "MMoE regressor": MultiGateMoERegressor,
}
ROUTINGS = {
    "dense": dict(top_k=None, gating="softmax"),
    "top-2": dict(top_k=2, gating="softmax"),
    "noisy top-1": dict(top_k=1, gating="noisy"),
    "switch": dict(top_k=1, gating="switch"),
}
BATCH = 4096


def make_data(n_rows, n_features=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    signal = X[:, 0] - X[:, 1] * X[:, 2] + np.tanh(X[:, 3])
    targets = {
        "classifier": np.column_stack([signal > 0, X[:, 4] + X[:, 5] > 0]).astype(int),
        "regressor": np.column_stack([signal, X[:, 4] * X[:, 5]]),
    }
    return X, targets


def target_for(name, targets):
    kind = "classifier" if "classifier" in name else "regressor"
    # Single-gate estimators take one output here, multi-gate ones two tasks.
    return targets[kind][:, 0] if name.startswith("MoE ") else targets[kind]


def build(name, routing, device, max_iter, n_experts=4):
    return ESTIMATORS[name](
        n_experts=n_experts,
        expert_hidden_layer_sizes=(32,),
        batch_size=BATCH,
        max_iter=max_iter,
        learning_rate_init=1e-2,
        random_state=0,
        device=device,
        **ROUTINGS[routing],
    )


def outputs(estimator, X):
    """What to compare: probabilities, or predictions in the standardised scale."""
    if is_classifier(estimator):
        proba = estimator.predict_proba(X)
        return np.hstack(proba) if isinstance(proba, list) else proba
    prediction = np.asarray(estimator.predict(X)).reshape(len(X), -1)
    return (prediction - estimator._scaler.mean) / estimator._scaler.scale


def largest_difference(first, second, X):
    return float(np.abs(outputs(first, X) - outputs(second, X)).max())


def on_cpu(estimator):
    """A copy of a fitted estimator whose weights live on the CPU."""
    copied = copy.deepcopy(estimator)
    copied.module_ = copied.module_.cpu()
    copied.device_ = torch.device("cpu")
    copied._refresh_inference_module()
    return copied


def fit(estimator, X, y, bf16):
    device_type = torch.device(estimator.device).type
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not bf16:
            return estimator.fit(X, y)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            return estimator.fit(X, y)


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_written_rows_per_second(estimator, X, y, device, n_epochs, bf16):
    """A plain PyTorch loop over the fitted estimator's module and objective."""
    module = copy.deepcopy(estimator.module_).to(device).train()
    objective = estimator._objective()
    X_t = torch.as_tensor(X, dtype=torch.float32, device=device)
    if is_classifier(estimator):
        codes = estimator._label_codes.encode(np.asarray(y).reshape(len(y), -1))
        y_t = torch.as_tensor(codes, device=device)
    else:
        scaled = estimator._scaler.transform(np.asarray(y).reshape(len(y), -1))
        y_t = torch.as_tensor(scaled, dtype=torch.float32, device=device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    synchronise(device)
    started = time.perf_counter()
    for _ in range(n_epochs):
        order = torch.randperm(len(X_t), generator=generator).to(device)
        for start in range(0, len(X_t), BATCH):
            index = order[start : start + BATCH]
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                out = module(X_t.index_select(0, index))
                loss = objective.row_loss(out, y_t.index_select(0, index)).mean()
                aux = auxiliary_loss(module)
                if aux is not None:
                    loss = loss + aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronise(device)
    return n_epochs * len(X_t) / (time.perf_counter() - started)


def fit_rows_per_second(name, routing, X, y, device, n_epochs, bf16):
    estimator = build(name, routing, str(device), n_epochs)
    estimator.set_params(tol=0.0, n_iter_no_change=n_epochs + 1)
    synchronise(device)
    started = time.perf_counter()
    fit(estimator, X, y, bf16)
    synchronise(device)
    return n_epochs * len(X) / (time.perf_counter() - started), estimator


def syncs_per_step(name, routing, X, y, device):
    """Host-device synchronisations counted over one epoch, per step."""
    estimator = build(name, routing, str(device), 1)
    fit(estimator, X[:BATCH], y[:BATCH], False)  # the first steps build the state
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            estimator.set_params(warm_start=True, max_iter=1)
            fit(estimator, X, y, False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    n_steps = -(-len(X) // BATCH)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return len(syncs) / n_steps


def check(args):
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print(
            "No CUDA device: running the CPU parts only (fits, predictions and the "
            "throughput against a hand-written loop, all on the CPU). Run this script "
            "on a machine with a GPU for the CPU-versus-GPU agreement."
        )
    n_rows = BATCH if args.quick else 16 * BATCH
    n_epochs = 1 if args.quick else args.epochs
    X, targets = make_data(n_rows)
    X_test = X[:2048]  # within the training rows: the fits are compared, not scored
    print(
        f"\n{n_rows} rows, batch {BATCH}, {n_epochs} epoch(s), "
        f"{'bf16 autocast' if args.bf16 else 'float32'}, device {device}\n"
    )
    print(
        "| estimator | routing | fit diff | predict diff | fit rows/s | "
        "hand loop rows/s | ratio | syncs/step |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    failures = []
    fit_tol = args.fit_tol * (4 if args.bf16 else 1)
    for name in ESTIMATORS:
        for routing in ROUTINGS:
            y = target_for(name, targets)
            reference = fit(build(name, routing, "cpu", n_epochs), X, y, False)
            rate, fitted = fit_rows_per_second(
                name, routing, X, y, device, n_epochs, args.bf16
            )
            hand = hand_written_rows_per_second(
                fitted, X, y, device, n_epochs, args.bf16
            )
            fit_diff = predict_diff = syncs = float("nan")
            if cuda or args.bf16:
                fit_diff = largest_difference(fitted, reference, X_test)
            if cuda:
                predict_diff = largest_difference(fitted, on_cpu(fitted), X_test)
                syncs = syncs_per_step(name, routing, X, y, device)
                if fit_diff > fit_tol or predict_diff > args.predict_tol:
                    failures.append(f"{name}, {routing}")
            print(
                f"| {name} | {routing} | {fit_diff:.2e} | {predict_diff:.2e} | "
                f"{rate:,.0f} | {hand:,.0f} | {rate / hand:.2f} | {syncs:.1f} |"
            )
    if failures:
        print(f"\nOutside the tolerances: {'; '.join(failures)}")
        return 1
    print("\nAll within tolerance." if cuda else "\nCPU parts done.")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fit-tol", type=float, default=5e-3)
    parser.add_argument("--predict-tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
