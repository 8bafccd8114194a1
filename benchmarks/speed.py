"""Training and prediction speed of skmoe, as ratios against references timed beside it.

One command runs the suite and prints a markdown table:

    python benchmarks/speed.py            # full size (100k x 32, a few minutes)
    python benchmarks/speed.py --quick    # tiny, to keep the script working

Every figure is a ratio (or a throughput) measured in this one process, against a
reference timed right beside it, because shared machines are noisy. Nothing here is a
test: no time is ever asserted.

Sections
--------
1. ``fit`` of ``MixtureOfExpertsClassifier`` (dense, 8 experts of 64 units, batch 256,
   no validation) against a minimal hand-written torch loop training the same network
   (stacked weights, einsum, plain Adam).
2. Against skorch's ``NeuralNetClassifier`` wrapping the same ``skmoe.nn`` module, with
   its default DataLoader and with a tensor-slicing iterator.
3. Sparse scaling: with ``top_k=2``, epoch time for 4 to 64 experts, dispatched and
   computed densely.
4. ``top_k=1`` against ``MLPClassifier`` of the same active width: epoch time and
   one-row ``predict`` latency (both including input validation); beside them, one
   64-unit expert trained by skmoe, which is the floor torch's per-step cost sets.
5. ``predict`` on 10k rows against predicting the same rows in hand-made chunks.
6. ``GridSearchCV`` with ``n_jobs=2`` against ``n_jobs=1`` (50k rows, 8 fits), for
   the first parallel search (which starts the worker processes) and a second one.
8. Multi-gate training: two binary tasks on section 1's rows; ``fit`` of MMoE (4
   experts of 64 units, a linear tower per task), CGC (2 shared experts and 1 per
   task), PLE (the same, 2 levels) and shared-bottom (one 64-unit network), against
   the single-gate ``MixtureOfExpertsClassifier`` with the same 4 experts on the
   same two outputs (and, for PLE, with 4 experts of two 64-unit layers, as deep as
   PLE's two levels), and against ``MLPClassifier`` with as many parameters (all
   active: the gates are dense) and as many hidden layers as the model has levels,
   on the same multilabel target.
7. On a CUDA device, when torch sees one: samples/s of section 1's model at batch 256
   and 4096 (the estimator copies the data to the device once), the fraction of the
   card's float32 matrix-product peak (timed on an 8192 x 8192 product) that reaches,
   and the host-device synchronisations in a one-epoch fit, counted by torch's sync
   debug mode, against the number of batches.
"""

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier

from skmoe import MixtureOfExpertsClassifier, MultiGateMoEClassifier
from skmoe.nn import MixtureOfExperts

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def timed(fn, repeat):
    """Median wall time of ``fn()`` over ``repeat`` runs, in seconds."""
    return timed_together({"fn": fn}, repeat)["fn"]


def timed_together(fns, repeat):
    """Median wall time of each of ``fns`` (a dict), timed in turn ``repeat`` times.

    Each round runs every function once, so a slow spell of a shared machine hits all
    of them rather than whichever happened to be running; ratios stay meaningful.
    """
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def make_data(n_rows, n_features, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    w = rng.normal(size=(n_features, n_classes))
    y = (X @ w + 0.5 * rng.normal(size=(n_rows, n_classes))).argmax(1)
    return X, y


def hand_loop(X, y, epochs, batch_size, n_experts, hidden, seed=0):
    """A straightforward torch loop for the same dense mixture: no tricks."""
    torch.manual_seed(seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n, d = Xt.shape
    c = int(yt.max()) + 1

    def param(*shape, fan_in):
        bound = 1 / fan_in**0.5
        return torch.nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

    gate_w, gate_b = param(d, n_experts, fan_in=d), param(n_experts, fan_in=d)
    w1, b1 = param(n_experts, d, hidden, fan_in=d), param(n_experts, hidden, fan_in=d)
    w2, b2 = (
        param(n_experts, hidden, c, fan_in=hidden),
        param(n_experts, c, fan_in=hidden),
    )
    optimizer = torch.optim.Adam([gate_w, gate_b, w1, b1, w2, b2], lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = Xt[idx], yt[idx]
            gate = torch.softmax(xb @ gate_w + gate_b, dim=1)
            h = torch.relu(torch.einsum("bd,edh->ebh", xb, w1) + b1[:, None])
            out = torch.einsum("ebh,ehc->ebc", h, w2) + b2[:, None]
            logits = torch.einsum("be,ebc->bc", gate, out)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def estimator(epochs, batch_size, n_experts, hidden, device="cpu", **params):
    return MixtureOfExpertsClassifier(
        n_experts=n_experts,
        expert_hidden_layer_sizes=(hidden,),
        max_iter=epochs,
        batch_size=batch_size,
        tol=0.0,
        n_iter_no_change=10**6,
        random_state=0,
        device=device,
        **params,
    )


def section_hand_loop(X, y, args, rows):
    epochs, batch, E, H = args.epochs, 256, 8, 64
    t = timed_together(
        {
            "ref": lambda: hand_loop(X, y, epochs, batch, E, H),
            "est": lambda: estimator(epochs, batch, E, H).fit(X, y),
            "no_aux": lambda: estimator(
                epochs, batch, E, H, load_balancing_coef=0.0, router_z_loss_coef=0.0
            ).fit(X, y),
        },
        args.repeat,
    )
    ref, est, no_aux = t["ref"], t["est"], t["no_aux"]
    n = len(X) * epochs
    rows.append(
        ("1. hand loop, dense 8x64, batch 256", "samples/s", f"{n / ref:,.0f}", "1.00")
    )
    rows.append(
        (
            "1. skmoe fit, defaults (balancing on)",
            "samples/s",
            f"{n / est:,.0f}",
            f"{est / ref:.2f}",
        )
    )
    rows.append(
        (
            "1. skmoe fit, balancing off",
            "samples/s",
            f"{n / no_aux:,.0f}",
            f"{no_aux / ref:.2f}",
        )
    )


def section_skorch(X, y, args, rows):
    try:
        from skorch import NeuralNetClassifier
        from skorch.dataset import Dataset
    except ImportError:
        rows.append(("2. skorch", "-", "skorch not installed", "-"))
        return
    from skmoe.nn import auxiliary_loss

    class MoENet(NeuralNetClassifier):
        def get_loss(self, y_pred, y_true, X=None, training=False):
            loss = super().get_loss(y_pred, y_true, X=X, training=training)
            return loss + auxiliary_loss(self.module_) if training else loss

    class SliceIterator:
        """Batches by slicing tensors instead of collating rows one by one."""

        def __init__(self, dataset, batch_size=256, shuffle=False, **_):
            self.X = torch.as_tensor(dataset.X)
            self.y = torch.as_tensor(dataset.y)
            self.batch_size, self.shuffle = batch_size, shuffle

        def __iter__(self):
            n = len(self.X)
            order = torch.randperm(n) if self.shuffle else torch.arange(n)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield self.X.index_select(0, idx), self.y.index_select(0, idx)

        def __len__(self):
            return (len(self.X) + self.batch_size - 1) // self.batch_size

    def net(**extra):
        torch.manual_seed(0)
        return MoENet(
            MixtureOfExperts,
            module__in_features=X.shape[1],
            module__out_features=int(y.max()) + 1,
            module__n_experts=8,
            module__expert_hidden_layer_sizes=(64,),
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=1e-3,
            max_epochs=args.epochs,
            batch_size=256,
            train_split=None,
            verbose=0,
            iterator_train__shuffle=True,
            **extra,
        )

    y64 = y.astype(np.int64)
    t = timed_together(
        {
            "skmoe": lambda: estimator(args.epochs, 256, 8, 64).fit(X, y),
            "default": lambda: net().fit(X, y64),
            "sliced": lambda: net(iterator_train=SliceIterator, dataset=Dataset).fit(
                X, y64
            ),
        },
        args.repeat,
    )
    skmoe_time, default, sliced = t["skmoe"], t["default"], t["sliced"]
    n = len(X) * args.epochs
    rows.append(
        (
            "2. skorch, default DataLoader",
            "samples/s",
            f"{n / default:,.0f}",
            f"{default / skmoe_time:.2f} x skmoe time",
        )
    )
    rows.append(
        (
            "2. skorch, tensor-slicing iterator",
            "samples/s",
            f"{n / sliced:,.0f}",
            f"{sliced / skmoe_time:.2f} x skmoe time",
        )
    )


def section_sparse(X, y, args, rows):
    results = timed_together(
        {
            (E, k): lambda E=E, k=k: estimator(1, 256, E, 64, top_k=k).fit(X, y)
            for E in args.experts
            for k in (2, None)
        },
        args.repeat,
    )
    base = results[(args.experts[0], 2)]
    for E in args.experts:
        sparse, dense = results[(E, 2)], results[(E, None)]
        rows.append(
            (
                f"3. top_k=2 epoch, {E} experts",
                "s / epoch",
                f"{sparse:.3f} (dense {dense:.3f})",
                f"{sparse / base:.2f} x {args.experts[0]} experts; "
                f"sparse/dense {sparse / dense:.2f}",
            )
        )


def section_mlp(X, y, args, rows):
    epochs = args.epochs
    mlp = MLPClassifier(
        (64,),
        max_iter=epochs,
        batch_size=256,
        tol=0,
        n_iter_no_change=10**6,
        random_state=0,
    )
    moe = estimator(epochs, 256, 8, 64, top_k=1)
    # One expert and no balancing: a plain 64-unit MLP trained by skmoe's loop, the
    # floor that torch's per-operation cost sets for any model at this size.
    single = estimator(
        epochs, 256, 1, 64, load_balancing_coef=0.0, router_z_loss_coef=0.0
    )
    t = timed_together(
        {
            "mlp": lambda: mlp.fit(X, y),
            "moe": lambda: moe.fit(X, y),
            "single": lambda: single.fit(X, y),
        },
        args.repeat,
    )
    t_mlp, t_moe, t_single = t["mlp"], t["moe"], t["single"]
    rows.append(
        ("4. MLPClassifier((64,)) epoch", "s / epoch", f"{t_mlp / epochs:.3f}", "1.00")
    )
    for label, seconds in (
        ("4. skmoe top_k=1, 8 experts of 64", t_moe),
        ("4. skmoe, 1 expert of 64 (an MLP in torch)", t_single),
    ):
        rows.append(
            (label, "s / epoch", f"{seconds / epochs:.3f}", f"{seconds / t_mlp:.2f}")
        )
    one = X[:1]
    p = timed_together(
        {"mlp": lambda: mlp.predict(one), "moe": lambda: moe.predict(one)}, 500
    )
    p_mlp, p_moe = p["mlp"], p["moe"]
    rows.append(("4. MLPClassifier 1-row predict", "ms", f"{p_mlp * 1e3:.3f}", "1.00"))
    rows.append(
        ("4. skmoe 1-row predict", "ms", f"{p_moe * 1e3:.3f}", f"{p_moe / p_mlp:.2f}")
    )
    return moe


def section_predict(X, args, rows, moe):
    rows_10k = X[:10_000]
    whole = timed(lambda: moe.predict(rows_10k), args.repeat * 3)
    by_hand = timed(
        lambda: [
            moe.predict(rows_10k[i : i + 1000]) for i in range(0, len(rows_10k), 1000)
        ],
        args.repeat * 3,
    )
    rows.append(
        (
            "5. predict 10k rows in one call",
            "ms",
            f"{whole * 1e3:.1f}",
            f"{whole / by_hand:.2f} x chunks by hand",
        )
    )


def section_grid(X, y, args, rows):
    grid = {"n_experts": [2, 4], "top_k": [None, 1]}
    base = estimator(1 if args.quick else 5, 256, 4, 32)

    def search(n_jobs):
        return GridSearchCV(base, grid, cv=2, n_jobs=n_jobs).fit(X, y)

    serial = timed(lambda: search(1), 1)
    # The first parallel search starts joblib's worker processes (each imports
    # torch); later searches in the same session reuse them.
    cold = timed(lambda: search(2), 1)
    warm = timed(lambda: search(2), 1)
    rows.append(("6. GridSearchCV n_jobs=1", "s", f"{serial:.1f}", "1.00"))
    for label, value in (("first call", cold), ("workers running", warm)):
        rows.append(
            (
                f"6. GridSearchCV n_jobs=2, {label}",
                "s",
                f"{value:.1f}",
                f"{value / serial:.2f}",
            )
        )


def mlp_width(n_params, n_in, n_out, depth):
    """Width of an MLP with ``depth`` equal hidden layers whose parameter count is
    nearest ``n_params``."""

    def count(w):
        return (n_in + 1) * w + (depth - 1) * (w + 1) * w + (w + 1) * n_out

    return min(range(1, 4097), key=lambda w: abs(count(w) - n_params))


def section_multigate(X, y, args, rows):
    epochs = args.epochs
    tasks = np.column_stack([y % 2, y // 2])  # two binary tasks
    common = dict(
        max_iter=epochs,
        batch_size=256,
        tol=0.0,
        n_iter_no_change=10**6,
        random_state=0,
        device="cpu",
        expert_hidden_layer_sizes=(64,),
    )
    single_name = "single-gate MoE, 4 experts"
    deep_name = "single-gate MoE, 4 experts of (64, 64)"
    models = {
        single_name: MixtureOfExpertsClassifier(n_experts=4, **common),
        "MMoE, 4 experts": MultiGateMoEClassifier(n_experts=4, **common),
        "CGC, 2 shared + 2 task experts": MultiGateMoEClassifier(
            architecture="cgc", n_experts=2, n_task_experts=1, **common
        ),
        "PLE, 2 levels": MultiGateMoEClassifier(
            architecture="ple", n_experts=2, n_task_experts=1, **common
        ),
        "shared-bottom, 64 units": MultiGateMoEClassifier(
            architecture="shared_bottom", **common
        ),
        # PLE's experts over its two levels are two layers deep: the single-gate
        # model with experts as deep is its like-for-like reference.
        deep_name: MixtureOfExpertsClassifier(
            n_experts=4, **{**common, "expert_hidden_layer_sizes": (64, 64)}
        ),
    }
    # Each model's MLP has its parameter count (every parameter is active: the
    # gates are dense) and as many hidden layers as the model has levels of experts.
    widths = {}
    for name, model in models.items():
        model.set_params(max_iter=1).fit(X[:512], tasks[:512])
        model.set_params(max_iter=epochs)
        n_params = sum(p.numel() for p in model.module_.parameters())
        depth = 2 if name in ("PLE, 2 levels", deep_name) else 1
        hidden = (mlp_width(n_params, X.shape[1], tasks.shape[1], depth),) * depth
        widths[name] = (hidden, n_params)
    mlps = {
        hidden: MLPClassifier(
            hidden,
            max_iter=epochs,
            batch_size=256,
            tol=0,
            n_iter_no_change=10**6,
            random_state=0,
        )
        for hidden, _ in widths.values()
    }
    fns = {name: lambda m=m: m.fit(X, tasks) for name, m in models.items()}
    fns.update({hidden: lambda m=m: m.fit(X, tasks) for hidden, m in mlps.items()})
    t = timed_together(fns, args.repeat)
    for name in models:
        hidden, n_params = widths[name]
        n_mlp = sum(p.size for p in mlps[hidden].coefs_ + mlps[hidden].intercepts_)
        reference = ""
        if name == "PLE, 2 levels":
            reference = f"{t[name] / t[deep_name]:.2f} x single-gate (64, 64); "
        rows.append(
            (
                f"8. {name} fit ({n_params:,} parameters)",
                "s / epoch",
                f"{t[name] / epochs:.3f}",
                f"{t[name] / t[single_name]:.2f} x single-gate; {reference}"
                f"{t[name] / t[hidden]:.2f} x MLP{hidden} ({n_mlp:,} parameters)",
            )
        )


def training_flops_per_sample(n_features, n_experts, hidden, n_classes):
    """Matrix-product FLOPs of one training sample: forward pass, then twice it back."""
    forward = 2 * (
        n_features * n_experts  # router
        + n_experts * (n_features * hidden + hidden * n_classes)  # experts
        + n_experts * n_classes  # mixing
    )
    return 3 * forward


def matmul_peak(device, size=8192, repeat=10):
    """Float32 FLOP/s of a large matrix product on ``device``: the practical peak."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.matmul(a, b)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        torch.matmul(a, b)
    torch.cuda.synchronize(device)
    return 2 * size**3 * repeat / (time.perf_counter() - start)


def count_syncs(fn):
    """Host-device synchronisations ``fn()`` causes, as torch's sync debug mode sees."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def section_gpu(args, rows):
    if not torch.cuda.is_available():
        rows.append(("7. GPU", "-", "no CUDA device visible to torch", "-"))
        return
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = matmul_peak(device)
    rows.append(
        (f"7. {name}: float32 matmul peak", "TFLOP/s", f"{peak / 1e12:.1f}", "-")
    )
    X, y = make_data(args.gpu_rows, 32)
    flops = training_flops_per_sample(32, 8, 64, int(y.max()) + 1)
    for batch in (256, 4096):
        estimator(1, batch, 8, 64, device="cuda").fit(X[: 4 * batch], y[: 4 * batch])
        seconds = timed(
            lambda batch=batch: estimator(args.epochs, batch, 8, 64, device="cuda").fit(
                X, y
            ),
            args.repeat,
        )
        rate = len(X) * args.epochs / seconds
        rows.append(
            (
                f"7. {name}, dense 8x64, batch {batch}",
                "samples/s",
                f"{rate:,.0f}",
                f"{rate * flops / peak:.2%} of matmul peak",
            )
        )
        syncs = count_syncs(
            lambda batch=batch: estimator(1, batch, 8, 64, device="cuda").fit(X, y)
        )
        n_batches = -(-len(X) // batch)
        rows.append(
            (
                f"7. {name}, batch {batch}: host syncs in a 1-epoch fit",
                "count",
                str(syncs),
                f"{n_batches} batches",
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip (4 also skips 5, which uses its model)",
    )
    parser.add_argument(
        "--gpu-rows", type=int, default=1_000_000, help="rows for section 7 (GPU)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.repeat = 2_000, 1, 1
        args.gpu_rows = 20_000
    args.experts = [4, 8, 16] if args.quick else [4, 8, 16, 32, 64]
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(args.skip.split(",")) - {""}
    X, y = make_data(args.rows, 32)
    estimator(1, 256, 2, 8).fit(X[:512], y[:512])  # warm up torch
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} torch thread(s); "
        f"data {args.rows} x 32, {args.epochs} epoch(s), median of {args.repeat}"
    )
    rows = []
    if "1" not in skip:
        section_hand_loop(X, y, args, rows)
    if "2" not in skip:
        section_skorch(X, y, args, rows)
    if "3" not in skip:
        section_sparse(X, y, args, rows)
    if "4" not in skip:
        moe = section_mlp(X, y, args, rows)
        if "5" not in skip:  # predicts with section 4's model
            section_predict(X, args, rows, moe)
    if "6" not in skip:
        section_grid(X[:50_000], y[:50_000], args, rows)
    if "8" not in skip:
        section_multigate(X, y, args, rows)
    if "7" not in skip:
        section_gpu(args, rows)
    print("| measurement | unit | figure | ratio |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
