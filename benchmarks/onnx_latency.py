"""One-row prediction latency: onnxruntime on the exported graph, skmoe's own
``predict``, and scikit-learn's ``MLPClassifier`` of the same width.

    python benchmarks/onnx_latency.py            # about a minute
    python benchmarks/onnx_latency.py --quick    # a few seconds, numbers meaningless

For each routing (dense, top-2, switch) and each of ``--seeds`` fitted models, the
three predictors take turns on the same single rows; the table reports medians over
all rounds in microseconds, and the ratio to ``MLPClassifier.predict``. onnxruntime and
torch run on one thread. Nothing here is a test: no time is asserted.
"""

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
import onnxruntime as ort
import sklearn
import torch
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from skmoe import MixtureOfExpertsClassifier, to_onnx

warnings.filterwarnings("ignore", category=ConvergenceWarning)

ROUTINGS = {
    "dense, 4 experts": dict(n_experts=4),
    "top-2 of 8 experts": dict(n_experts=8, top_k=2),
    "switch, 8 experts": dict(n_experts=8, gating="switch"),
}


def one_row_times(predictors, rows, repeat):
    """Median seconds per one-row call of each predictor, calls interleaved."""
    times = {name: [] for name in predictors}
    for _ in range(repeat):
        for name, fn in predictors.items():
            start = time.perf_counter()
            for row in rows:
                fn(row)
            times[name].append((time.perf_counter() - start) / len(rows))
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_samples, max_iter, n_rows = (400, 2, 20) if args.quick else (5000, 20, 200)
    repeat, seeds = (3, 1) if args.quick else (args.repeat, args.seeds)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1

    results = {}
    for seed in range(seeds):
        X, y = make_classification(
            n_samples, n_features=32, n_informative=16, n_classes=4, random_state=seed
        )
        X = X.astype(np.float32)
        rows = [X[i : i + 1] for i in range(n_rows)]
        mlp = MLPClassifier((64,), max_iter=max_iter, random_state=seed).fit(X, y)
        for routing, params in ROUTINGS.items():
            moe = MixtureOfExpertsClassifier(
                **params,
                expert_hidden_layer_sizes=(64,),
                max_iter=max_iter,
                random_state=seed,
                n_threads=1,
            ).fit(X, y)
            session = ort.InferenceSession(
                to_onnx(moe, X[:1]).SerializeToString(), options
            )
            predictors = {
                "MLPClassifier.predict": mlp.predict,
                "skmoe predict": moe.predict,
                "onnxruntime (skmoe graph)": lambda r, s=session: s.run(None, {"X": r}),
            }
            for name, seconds in one_row_times(predictors, rows, repeat).items():
                results.setdefault((routing, name), []).append(seconds)

    print(
        f"platform: {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, onnxruntime {ort.__version__}, scikit-learn "
        f"{sklearn.__version__}; 1 thread; {seeds} seed(s) x {repeat} rounds x "
        f"{n_rows} rows\n"
    )
    print("| routing | predictor | 1-row latency (µs) | ratio to MLPClassifier |")
    print("| --- | --- | --- | --- |")
    for routing in ROUTINGS:
        reference = statistics.median(results[(routing, "MLPClassifier.predict")])
        for (r, name), values in results.items():
            if r != routing:
                continue
            median = statistics.median(values)
            print(
                f"| {routing} | {name} | {median * 1e6:.0f} | "
                f"{median / reference:.2f} |"
            )


if __name__ == "__main__":
    main()
