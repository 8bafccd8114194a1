"""
The gate finds the latent clusters of the data
==============================================

:func:`skmoe.datasets.make_clustered_regression` draws rows from a few latent
clusters, each with a non-linear function of its own. A mixture of experts with one
expert per cluster and top-1 routing can give every cluster an expert; its gate then
partitions the input space, and :meth:`~skmoe.MixtureOfExpertsRegressor.apply`
(each row's top expert, as a tree's ``apply`` gives its leaf) shows the partition.
The adjusted Rand index compares it with the true clusters (1: the same partition,
0: no better than chance).

Two dense networks (skmoe with one expert) are fitted beside it: one as wide as the
experts a row uses (the same compute per row) and one as wide as all the experts
together (the same number of weights).

Run it with ``python examples/latent_clusters.py`` (a minute or two on a CPU);
``--quick`` runs a small version in seconds. A full run printed::

    model                           test R2  weights   active
    mixture, 4 experts, top-1         0.872      476      137
    dense, same compute per row       0.728      119      119
    dense, same weights               0.864      455      455
    adjusted Rand index of the gate's partition: 0.786
"""

import argparse
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_clustered_regression
from skmoe.inspection import model_size


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="The gate finds the latent clusters of the data."
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    n_samples, max_iter = (300, 10) if args.quick else (3000, 200)
    n_clusters, width = 4, 16
    X, y, clusters = make_clustered_regression(
        n_samples=n_samples, n_clusters=n_clusters, return_clusters=True, random_state=0
    )
    X_train, X_test, y_train, y_test, _, clusters_test = train_test_split(
        X, y, clusters, random_state=0
    )
    common = dict(max_iter=max_iter, random_state=0, n_threads=args.threads)
    models = {
        "mixture, 4 experts, top-1": MixtureOfExpertsRegressor(
            n_experts=n_clusters,
            top_k=1,
            expert_hidden_layer_sizes=(width,),
            load_balancing_coef=0.1,
            **common,
        ),
        "dense, same compute per row": MixtureOfExpertsRegressor(
            n_experts=1, expert_hidden_layer_sizes=(width,), **common
        ),
        "dense, same weights": MixtureOfExpertsRegressor(
            n_experts=1, expert_hidden_layer_sizes=(n_clusters * width,), **common
        ),
    }
    print(f"{'model':<30} {'test R2':>8} {'weights':>8} {'active':>8}")
    for name, model in models.items():
        model.fit(X_train, y_train)
        size = model_size(model)
        print(
            f"{name:<30} {model.score(X_test, y_test):8.3f} "
            f"{size.total_params:8d} {size.active_params:8d}"
        )
    mixture = models["mixture, 4 experts, top-1"]
    found = mixture.apply(X_test)
    ari = adjusted_rand_score(clusters_test, found)
    print(f"adjusted Rand index of the gate's partition: {ari:.3f}")


if __name__ == "__main__":
    main()
