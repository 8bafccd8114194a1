"""Which experts to keep: choosers compared under the default fine-tuning.

For each data set and seed of ``benchmarks/compress.py`` (same splits, same
8-expert teachers), the experts to keep (``--keep``, default 4) are chosen in
several ways, then the pruned model gets ``prune_experts``' default fine-tuning
(the whole model fitted to the teacher's outputs, at most 100 epochs) on the
training rows and is scored on the test rows:

- ``greedy``: ``prune_experts``' default (backward elimination on the score of
  the training rows),
- ``greedy, fidelity``: the same elimination on the agreement with the teacher
  (R² against its predictions, or minus the KL divergence from its probabilities),
- ``greedy, held-out quarter``: the elimination on a random quarter of the
  training rows only,
- ``best subset``: the coalition with the best training score of all,
- ``random``: ``method="random"`` seeded with the seed (the baseline of
  ``benchmarks/compress.py``) and ``--random-draws - 1`` further draws,
- ``greedy, test rows``: the elimination on the test rows themselves, a bound
  no real chooser reaches (it sees the rows it is scored on).

It prints each chooser's test score minus random's, paired by seed, mean ±
standard error, against the seeded draw and against the mean of all draws.
``--quick`` is a smoke test (iris, two seeds, a short fit). Run it under the
shared lock, split by set::

    flock /tmp/skmoe-bench.lock python benchmarks/prune_choice.py \\
        --datasets diabetes --seeds 40 --csv choice.csv
    python benchmarks/prune_choice.py --from-csv choice.csv
"""

import argparse
import csv
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compress import DATASETS, make_teacher, split

import skmoe
from skmoe.compress._prune import (
    DEFAULT_FINE_TUNE_ALPHA,
    DEFAULT_FINE_TUNE_ITER,
    choose_experts,
)
from skmoe.compress._subset import fine_tune, with_experts
from skmoe.inspection._importance import CoalitionGame

FIELDS = ("dataset", "seed", "chooser", "kept", "score")


def fidelity(teacher, X):
    """A scorer: agreement of a model's outputs with ``teacher``'s on ``X``."""
    if is_classifier(teacher):
        reference = np.clip(teacher.predict_proba(X), 1e-12, 1)

        def score(model, X_, y_):
            mine = np.clip(model.predict_proba(X_), 1e-12, 1)
            return -np.mean(np.sum(reference * np.log(reference / mine), axis=1))

    else:
        reference = teacher.predict(X)

        def score(model, X_, y_):
            return r2_score(reference, model.predict(X_))

    return score


def fine_tuned(teacher, kept, X, y):
    """The pruned model with ``prune_experts``' default fine-tuning."""
    model = with_experts(teacher, kept)
    fine_tune(
        model,
        X,
        y,
        DEFAULT_FINE_TUNE_ITER,
        experts=True,
        teacher=teacher,
        alpha=DEFAULT_FINE_TUNE_ALPHA,
    )
    return model


def run(name, seed, keep, draws, max_iter=1000):
    kind, X_train, X_test, y_train, y_test = split(name, seed, 2000)
    teacher = make_teacher(kind, max_iter, seed).fit(X_train, y_train)
    n = teacher.n_experts
    train = CoalitionGame(teacher, X_train, y_train)
    quarter = check_random_state(seed).permutation(len(X_train))[: len(X_train) // 4]
    coalitions = list(itertools.combinations(range(n), keep))
    games = {
        "greedy, fidelity": CoalitionGame(
            teacher, X_train, y_train, scoring=fidelity(teacher, X_train)
        ),
        "greedy, held-out quarter": CoalitionGame(
            teacher, X_train[quarter], y_train[quarter]
        ),
        "greedy, test rows": CoalitionGame(teacher, X_test, y_test),
    }
    choices = {
        "best subset": max(coalitions, key=lambda c: train.value(c).mean()),
        **{
            label: choose_experts(game, keep, "greedy", None)
            for label, game in games.items()
        },
    }
    for draw in range(1, draws):
        rng = check_random_state(seed + 1000 * draw)
        choices[f"random {draw}"] = choose_experts(train, keep, "random", rng)
    models = {
        "greedy": skmoe.prune_experts(teacher, X_train, y_train, n_experts=keep),
        "random": skmoe.prune_experts(
            teacher,
            X_train,
            y_train,
            n_experts=keep,
            method="random",
            random_state=seed,
        ),
    }
    rows = []
    for label, kept in choices.items():
        models[label] = fine_tuned(teacher, kept, X_train, y_train)
    for label, model in models.items():
        kept = getattr(model, "kept_experts_", None) or choices[label]
        rows.append(
            {
                "dataset": name,
                "seed": seed,
                "chooser": label,
                "kept": " ".join(map(str, kept)),
                "score": 100 * model.score(X_test, y_test),
            }
        )
    return rows


def summarise(rows):
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    score = {(r["dataset"], r["seed"], r["chooser"]): r["score"] for r in rows}
    choosers = [c for c in dict.fromkeys(r["chooser"] for r in rows) if c != "random"]
    lines = []
    for versus in ("random", "mean of random draws"):
        lines += [
            f"\nTest score minus {versus} with the same fine-tuning, points, paired "
            "by seed (mean ± standard error; positive: better than random):\n",
            "| chooser | " + " | ".join(datasets) + " |",
            "|" + "---|" * (len(datasets) + 1),
        ]
        for chooser in choosers:
            if chooser.startswith("random ") and versus != "random":
                continue
            cells = []
            for ds in datasets:
                seeds = sorted({s for d, s, _ in score if d == ds})
                diff = []
                for s in seeds:
                    if versus == "random":
                        base = score[(ds, s, "random")]
                    else:
                        base = np.mean(
                            [
                                v
                                for (d, t, c), v in score.items()
                                if (d, t) == (ds, s) and c.startswith("random")
                            ]
                        )
                    diff.append(score[(ds, s, chooser)] - base)
                se = np.std(diff, ddof=1) / np.sqrt(len(diff))
                cells.append(f"{np.mean(diff):+.1f} ± {se:.1f} ({len(diff)})")
            lines.append(f"| {chooser} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--keep", type=int, default=4)
    parser.add_argument("--random-draws", type=int, default=4)
    parser.add_argument("--csv", help="append every measured row to this CSV file")
    parser.add_argument("--from-csv", nargs="+", help="summarise these, fit nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.from_csv:
        rows = []
        for path in args.from_csv:
            with open(path, newline="") as f:
                rows += [
                    dict(r, seed=int(r["seed"]), score=float(r["score"]))
                    for r in csv.DictReader(f)
                ]
    else:
        if args.quick:
            args.datasets, args.seeds, args.max_iter = ["iris"], 2, 5
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.datasets or list(DATASETS):
                new = run(name, seed, args.keep, args.random_draws, args.max_iter)
                print(name, seed, flush=True)
                if args.csv:
                    fresh = not Path(args.csv).exists()
                    with open(args.csv, "a", newline="") as f:
                        writer = csv.DictWriter(f, fieldnames=FIELDS)
                        if fresh:
                            writer.writeheader()
                        writer.writerows(new)
                rows += new
    print(summarise(rows))


if __name__ == "__main__":
    main()
