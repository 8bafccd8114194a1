"""Compressing a fitted mixture of experts: pruning, merging and distillation.

On scikit-learn's bundled data sets (nothing is downloaded), an 8-expert top-2
model is fitted and then made smaller in every way skmoe offers:

- ``prune_experts`` with every method, zero-shot (``fine_tune_iter=0``), with the
  gates retrained for 10 epochs, and with the kept experts retrained too;
- ``merge_experts``, zero-shot and with the gates retrained;
- ``distill`` into the default dense student.

It reports the test score (accuracy or R², in points: x100) against the experts
kept, the expert memory and the predict time, as a Markdown table (``--out``)
and a plot (``--plot``).

Run it alone, one torch thread, under the shared lock::

    flock /tmp/skmoe-bench.lock python benchmarks/compress.py \\
        --out docs/compression_results.md --plot docs/compression.png

``--quick`` is a smoke test (two small sets, one seed, a short fit).
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_linnerud,
    load_wine,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skmoe
from skmoe.inspection import model_size

DATASETS = {
    "iris": (load_iris, "clf"),
    "wine": (load_wine, "clf"),
    "breast_cancer": (load_breast_cancer, "clf"),
    "digits": (load_digits, "clf"),
    "diabetes": (load_diabetes, "reg"),
    "linnerud": (load_linnerud, "multi"),
}
METHODS = ("greedy", "shapley", "shapley_backward", "usage", "random")
# (label, fine_tune_iter, fine_tune_experts)
TUNING = (("zero-shot", 0, False), ("gate 10", 10, False), ("all 10", 10, True))


def make_teacher(kind, max_iter, seed):
    common = dict(
        n_experts=8,
        top_k=2,
        max_iter=max_iter,
        random_state=seed,
        n_threads=1,
        device="cpu",
    )
    if kind == "clf":
        return skmoe.MixtureOfExpertsClassifier(**common)
    if kind == "reg":
        return skmoe.MixtureOfExpertsRegressor(**common)
    return skmoe.MultiGateMoERegressor(**common)  # MMoE, a gate per target


def predict_time(model, X, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(X)
        best = min(best, time.perf_counter() - start)
    return best


def row(dataset, seed, family, variant, kept, model, X_test, y_test):
    size = model_size(model)
    return {
        "dataset": dataset,
        "seed": seed,
        "family": family,
        "variant": variant,
        "experts": kept,
        "score": 100 * model.score(X_test, y_test),
        "expert_kib": size.bytes["experts"] / 1024,
        "params": size.total_params,
        "predict_ms": 1000 * predict_time(model, X_test),
    }


def run_dataset(name, seed, max_iter, keeps, methods=METHODS, tuning=TUNING):
    loader, kind = DATASETS[name]
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X,
        y,
        test_size=0.25,
        random_state=seed,
        stratify=y if kind == "clf" else None,
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    teacher = make_teacher(kind, max_iter, seed).fit(X_train, y_train)
    rows = [row(name, seed, "teacher", "8 experts", 8, teacher, X_test, y_test)]
    for k in keeps:
        for method in methods:
            for label, n_iter, experts in tuning:
                model = skmoe.prune_experts(
                    teacher,
                    X_train,
                    y_train,
                    n_experts=k,
                    method=method,
                    fine_tune_iter=n_iter,
                    fine_tune_experts=experts,
                    random_state=seed,
                )
                rows.append(
                    row(
                        name,
                        seed,
                        "prune",
                        f"{method}, {label}",
                        k,
                        model,
                        X_test,
                        y_test,
                    )
                )
        for label, n_iter in (("zero-shot", 0), ("gate 10", 10)):
            model = skmoe.merge_experts(
                teacher, X_train, y_train, n_experts=k, fine_tune_iter=n_iter
            )
            rows.append(
                row(name, seed, "merge", f"merge, {label}", k, model, X_test, y_test)
            )
    student = skmoe.distill(teacher, X_train, y_train)
    rows.append(row(name, seed, "distill", "dense student", 1, student, X_test, y_test))
    return rows


def summarise(rows, keeps):
    """Markdown: points lost against the teacher, averaged over seeds."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    teacher = {(r["dataset"], r["seed"]): r for r in rows if r["family"] == "teacher"}

    def loss(r):
        return teacher[(r["dataset"], r["seed"])]["score"] - r["score"]

    lines = []
    lines.append("Teacher test score (points; mean over seeds):\n")
    lines.append("| " + " | ".join(["", *datasets]) + " |")
    lines.append("|" + "---|" * (len(datasets) + 1))
    cells = [
        f"{np.mean([t['score'] for (d, _), t in teacher.items() if d == ds]):.1f}"
        for ds in datasets
    ]
    lines.append("| teacher | " + " | ".join(cells) + " |")
    variants = list(
        dict.fromkeys(
            (r["variant"], r["experts"]) for r in rows if r["family"] != "teacher"
        )
    )
    for k in [*keeps, 1]:
        chosen = [v for v in variants if v[1] == k]
        if not chosen:
            continue
        lines.append(
            f"\nPoints lost against the teacher with {k} of 8 experts "
            "(lower is better; mean over seeds):\n"
        )
        lines.append("| variant | " + " | ".join([*datasets, "mean", "worst"]) + " |")
        lines.append("|" + "---|" * (len(datasets) + 3))
        for variant, kept in chosen:
            per = []
            for ds in datasets:
                losses = [
                    loss(r)
                    for r in rows
                    if r["dataset"] == ds
                    and r["variant"] == variant
                    and r["experts"] == kept
                ]
                per.append(np.mean(losses))
            lines.append(
                f"| {variant} | "
                + " | ".join(f"{v:+.1f}" for v in per)
                + f" | {np.mean(per):+.2f} | {np.max(per):+.1f} |"
            )
    lines.append("\nModel size and predict time (mean over data sets and seeds):\n")
    lines.append(
        "| model | experts | expert KiB | parameters | predict ms (test set) |"
    )
    lines.append("|---|---|---|---|---|")
    for family, variant, kept in [
        ("teacher", "8 experts", 8),
        *[("prune", "greedy, gate 10", k) for k in keeps],
        *[("merge", "merge, zero-shot", k) for k in keeps],
        ("distill", "dense student", 1),
    ]:
        chosen = [
            r
            for r in rows
            if r["family"] == family
            and r["variant"] == variant
            and r["experts"] == kept
        ]
        if chosen:
            lines.append(
                f"| {family}: {variant} | {kept} | "
                f"{np.mean([r['expert_kib'] for r in chosen]):.1f} | "
                f"{np.mean([r['params'] for r in chosen]):.0f} | "
                f"{np.mean([r['predict_ms'] for r in chosen]):.2f} |"
            )
    student = [r for r in rows if r["family"] == "distill"]
    kept_share = [
        r["score"] / teacher[(r["dataset"], r["seed"])]["score"] for r in student
    ]
    lines.append(
        f"\nDistilled student: {100 * np.mean(kept_share):.1f}% of the teacher's "
        "score on average (score ratio; R² and accuracy alike)."
    )
    return "\n".join(lines) + "\n"


def plot(rows, keeps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher = {
        (r["dataset"], r["seed"]): r["score"] for r in rows if r["family"] == "teacher"
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, label in zip(axes, ("zero-shot", "gate 10"), strict=True):
        for method in (*METHODS, "merge"):
            if not any(r["variant"].startswith(f"{method}, ") for r in rows):
                continue
            variant = f"{method}, {label}"
            means = []
            for k in keeps:
                chosen = [
                    teacher[(r["dataset"], r["seed"])] - r["score"]
                    for r in rows
                    if r["variant"] == variant and r["experts"] == k
                ]
                means.append(np.mean(chosen))
            ax.plot(keeps, means, marker="o", label=method)
        ax.set_title(f"pruning / merging, {label}")
        ax.set_xlabel("experts kept (of 8)")
        ax.invert_xaxis()
    axes[0].set_ylabel("points lost vs teacher (mean over sets)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--out", help="write the Markdown table here")
    parser.add_argument("--plot", help="write the plot here (PNG)")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, help="pruning methods (default: all)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.quick:
        names, seeds, max_iter, keeps = ["iris"], 1, 5, [4]
        methods, tuning = ("greedy", "random"), TUNING[:2]
    else:
        names, seeds, max_iter, keeps = (
            list(DATASETS),
            args.seeds,
            args.max_iter,
            [4, 2],
        )
        methods, tuning = args.methods or METHODS, TUNING
    rows = []
    for seed in range(seeds):  # every set once before any twice
        for name in names:
            start = time.perf_counter()
            rows += run_dataset(name, seed, max_iter, keeps, methods, tuning)
            print(
                f"{name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True
            )
    table = summarise(rows, keeps)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.plot:
        plot(rows, keeps, args.plot)


if __name__ == "__main__":
    main()
