"""
Routing schemes side by side on the handwritten digits data set.
================================================================

:class:`skmoe.MixtureOfExpertsClassifier` can combine its experts in four ways, all
chosen by parameters:

* ``dense``: ``top_k=None``, every expert runs on every row and the softmax gate mixes
  them (the classic mixture of experts);
* ``top-2``: ``top_k=2``, each row is sent to its two highest-scoring experts only;
* ``noisy top-2``: ``gating="noisy", top_k=2``, learned Gaussian noise on the gate
  logits while training spreads the rows over the experts (Shazeer et al. 2017);
* ``switch``: ``gating="switch"``, one expert per row (Fedus et al. 2022).

For each scheme the script fits the same model (8 experts) on scikit-learn's bundled
``load_digits`` data, over a few seeds of a stratified train/test split, and prints
the test accuracy, the fit time, the number of experts a test row actually uses
(from ``gate_weights``) and ``expert_usage_``: the mean gate weight every expert
received during the last training epoch. Usage spread evenly over the experts means
the load-balancing loss kept the gate from collapsing onto a few of them.

Run it with ``python examples/routing_comparison.py`` (under a minute on a two-core
CPU); ``--quick`` runs a tiny version in a few seconds. Fit times are wall-clock
seconds. torch runs on one CPU thread unless ``--threads`` says otherwise: on data
this small more threads do not speed training up, and on a machine whose cores are
busy with other work they can slow it down many times over.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import MixtureOfExpertsClassifier

ROUTINGS = {
    "dense": {"top_k": None},
    "top-2": {"top_k": 2},
    "noisy top-2": {"gating": "noisy", "top_k": 2},
    "switch": {"gating": "switch"},
}


def run(routing, X, y, seeds, n_experts, max_iter):
    """Fit one routing scheme once per seed; return per-seed measurements."""
    results = []
    for seed in seeds:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=seed
        )
        model = make_pipeline(
            StandardScaler(),
            MixtureOfExpertsClassifier(
                n_experts=n_experts,
                max_iter=max_iter,
                random_state=seed,
                **ROUTINGS[routing],
            ),
        )
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_time = time.perf_counter() - start
        moe = model[-1]
        weights = moe.gate_weights(model[:-1].transform(X_test))
        results.append(
            {
                "accuracy": model.score(X_test, y_test),
                "fit_time": fit_time,
                "epochs": moe.n_iter_,
                "active": np.count_nonzero(weights, axis=1).mean(),
                "usage": moe.expert_usage_,
            }
        )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny run: few rows, few epochs, one seed"
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="number of train/test splits (default 3)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(args.threads)

    X, y = load_digits(return_X_y=True)
    n_experts, max_iter, seeds = 8, 200, range(args.seeds)
    if args.quick:
        X, y = X[:400], y[:400]
        max_iter, seeds = 5, range(1)
    print(
        f"load_digits: {X.shape[0]} rows, {X.shape[1]} features, "
        f"{len(np.unique(y))} classes; {n_experts} experts, max_iter={max_iter}, "
        f"{len(seeds)} seed(s)"
    )
    print()
    header = (
        f"{'routing':<12} {'test accuracy':>15} {'fit time (s)':>13} "
        f"{'epochs':>7} {'experts/row':>12}  expert_usage_ (seed 0)"
    )
    print(header)
    print("-" * len(header))
    # One untimed fit first, so that no routing pays torch's one-off start-up cost.
    run("dense", X[:100], y[:100], range(1), n_experts, 1)
    usages = {}
    for routing in ROUTINGS:
        results = run(routing, X, y, seeds, n_experts, max_iter)
        usages[routing] = results[0]["usage"]
        acc = np.array([r["accuracy"] for r in results])
        fit = np.array([r["fit_time"] for r in results])
        epochs = np.mean([r["epochs"] for r in results])
        active = np.mean([r["active"] for r in results])
        usage = " ".join(f"{u:.2f}" for u in results[0]["usage"])
        print(
            f"{routing:<12} {acc.mean():>8.3f} ± {acc.std():.3f} "
            f"{fit.mean():>13.2f} {epochs:>7.0f} {active:>12.1f}  [{usage}]"
        )
    print()
    print(
        "expert_usage_: mean gate weight of each expert in the last training epoch "
        f"(even split: {1 / n_experts:.3f} each)."
    )
    plot_usage(usages)


def plot_usage(usages):
    """Draw each routing's expert usage side by side, when matplotlib is installed."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from skmoe.inspection import ExpertUsageDisplay

    fig, axes = plt.subplots(1, len(usages), figsize=(12, 2.8), sharey=True)
    for ax, (routing, usage) in zip(axes, usages.items(), strict=True):
        ExpertUsageDisplay(usage).plot(ax=ax)
        ax.set_title(routing)
    fig.tight_layout()


if __name__ == "__main__":
    main()
