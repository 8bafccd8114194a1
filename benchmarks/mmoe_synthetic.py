"""MMoE against one-gate MoE and shared-bottom on the MMoE paper's synthetic tasks.

The synthetic experiment of Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts" (KDD 2018, section 3.2 and figure 4):
two regression tasks whose relatedness is set by the cosine similarity
``correlation`` of their weight vectors (``skmoe.datasets.make_mmoe_synthetic``),
fitted by three multi-task models with about the same number of parameters.

* ``MMoE``: ``MultiGateMoERegressor(architecture="mmoe")``, 8 experts of one layer of
  16 ReLU units, one softmax gate and one tower (8 hidden units) per task.
* ``OMoE``: the same experts and towers behind a single gate (``"omoe"``).
* ``Shared-Bottom``: one shared layer whose width is chosen so that the model has as
  close to MMoE's parameter count as possible, then the same towers.

For every seed and correlation one call of ``make_mmoe_synthetic`` draws the training
and test rows (one task definition), which are split positionally; every model gets
``random_state=seed``. Training uses Adam with ``early_stopping=True``: 10% of the
training rows are held out, training stops after ``n_iter_no_change`` epochs without
improvement of the validation R² and the best weights are restored. The reported loss
is the test mean squared error on the original scale of the labels, averaged over the
two tasks (the paper's "average loss"); the noise floor is ``noise**2 = 0.01``. As
each seed is a different task definition, a second table compares the models seed by
seed: each model's test MSE over MMoE's, and on how many seeds MMoE did better.

For MMoE the script also records how differently the two task gates use the experts:
from ``expert_usage_`` (mean gate weight per task and expert in the last epoch) the
total-variation distance ``0.5 * sum|u_1 - u_2|`` between the tasks' usage vectors,
their Pearson correlation and the experts each task weighs above uniform (``1/8``);
from ``gate_weights`` on the test rows the mean per-row total-variation distance
between the two task gates. The same distances for a freshly initialised MMoE show what
training changed.

Outputs, in ``--out`` (default ``benchmarks/results/``): ``mmoe_synthetic_runs.csv``
(one row per fit), ``mmoe_synthetic_summary.csv`` (mean and standard deviation over
seeds) and, when matplotlib is installed, ``mmoe_synthetic.png`` (against correlation:
test loss with one line per model, loss relative to MMoE, and MMoE's per-row gate
distance, trained and at initialisation). torch runs with ``--threads`` threads
(default 1) and on ``--device`` (default ``cpu``); one untimed warm-up fit of every
model comes first. Progress goes to stderr, one line per seed.

Usage::

    python benchmarks/mmoe_synthetic.py             # full run, 8 seeds
    python benchmarks/mmoe_synthetic.py --quick     # tiny run for the tests
"""

import argparse
import csv
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

import skmoe
from skmoe import MultiGateMoERegressor
from skmoe.datasets import make_mmoe_synthetic
from skmoe.nn import MultiGateMixtureOfExperts

CORRELATIONS = (0.5, 0.9, 1.0)
N_FEATURES = 100
N_EXPERTS = 8
EXPERT_WIDTH = 16
TOWER = (8,)
NOISE = 0.1
MODELS = {"MMoE": "mmoe", "OMoE": "omoe", "Shared-Bottom": "shared_bottom"}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def n_parameters(module):
    return sum(p.numel() for p in module.parameters())


def module_size(architecture, width):
    """Parameter count of the two-task module, without fitting anything."""
    module = MultiGateMixtureOfExperts(
        N_FEATURES,
        [1, 1],
        architecture=architecture,
        n_shared_experts=N_EXPERTS,
        expert_hidden_layer_sizes=(width,),
        tower_hidden_layer_sizes=TOWER,
    )
    return n_parameters(module)


def matched_bottom_width(target):
    """Width of the shared bottom whose model is closest in size to ``target``."""
    widths = range(1, 4 * target // N_FEATURES + 2)
    return min(widths, key=lambda w: abs(module_size("shared_bottom", w) - target))


def make_model(architecture, width, seed, args):
    return MultiGateMoERegressor(
        architecture=architecture,
        n_experts=N_EXPERTS,
        expert_hidden_layer_sizes=(width,),
        tower_hidden_layer_sizes=TOWER,
        learning_rate_init=args.learning_rate,
        batch_size=args.batch_size,
        max_iter=args.max_iter,
        early_stopping=args.early_stopping,
        n_iter_no_change=args.n_iter_no_change,
        random_state=seed,
        device=args.device,
        **scaling_param(args),
    )


def scaling_param(args):
    """``input_scaling`` as given by ``--input-scaling``; nothing for the default."""
    if args.input_scaling is None:
        return {}
    return {
        "input_scaling": None if args.input_scaling == "none" else args.input_scaling
    }


def gate_distances(usage, weights):
    """Distances between the two tasks' gates: usage rows and per-row weights."""
    u1, u2 = usage
    with np.errstate(invalid="ignore", divide="ignore"):
        usage_corr = float(np.corrcoef(u1, u2)[0, 1])
    row_tv = 0.5 * np.abs(weights[:, 0] - weights[:, 1]).sum(axis=1)
    return float(0.5 * np.abs(u1 - u2).sum()), usage_corr, float(row_tv.mean())


def initial_gate_weights(X_test, seed):
    """Gate weights of a freshly initialised MMoE module, ``(n, 2, n_experts)``.

    A draw from the same initialisation as the fitted models (not the same draw):
    the baseline that shows what training changed.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = MultiGateMixtureOfExperts(
            N_FEATURES,
            [1, 1],
            architecture="mmoe",
            n_shared_experts=N_EXPERTS,
            expert_hidden_layer_sizes=(EXPERT_WIDTH,),
            tower_hidden_layer_sizes=TOWER,
        )
    with torch.no_grad():
        x = torch.as_tensor(X_test, dtype=torch.float32)
        return module.eval().gate_weights(x).double().numpy()


def gate_statistics(est, X_test, seed):
    """How differently MMoE's two task gates use the experts, after and before fit."""
    usage = np.asarray(est.expert_usage_)  # (2, n_experts)
    u1, u2 = usage
    uniform = 1.0 / usage.shape[1]
    usage_tv, usage_corr, row_tv = gate_distances(usage, est.gate_weights(X_test))
    initial = initial_gate_weights(X_test, seed)
    init_usage_tv, _, init_row_tv = gate_distances(initial.mean(axis=0), initial)
    return {
        "usage_tv": usage_tv,
        "usage_corr": usage_corr,
        "heavy_task1": int((u1 > uniform).sum()),
        "heavy_task2": int((u2 > uniform).sum()),
        "heavy_both": int(((u1 > uniform) & (u2 > uniform)).sum()),
        "gate_row_tv": row_tv,
        "init_usage_tv": init_usage_tv,
        "init_gate_row_tv": init_row_tv,
        "usage_task1": " ".join(f"{v:.3f}" for v in u1),
        "usage_task2": " ".join(f"{v:.3f}" for v in u2),
    }


def run_one(name, architecture, width, correlation, seed, args):
    X, Y = make_mmoe_synthetic(
        args.n_train + args.n_test,
        n_features=N_FEATURES,
        correlation=correlation,
        noise=NOISE,
        random_state=seed,
    )
    X_train, Y_train = X[: args.n_train], Y[: args.n_train]
    X_test, Y_test = X[args.n_train :], Y[args.n_train :]
    est = make_model(architecture, width, seed, args)
    start = time.perf_counter()
    est.fit(X_train, Y_train)
    fit_time = time.perf_counter() - start
    mse = ((est.predict(X_test) - Y_test) ** 2).mean(axis=0)
    row = {
        "model": name,
        "architecture": architecture,
        "correlation": correlation,
        "seed": seed,
        "params": n_parameters(est.module_),
        "width": width,
        "test_mse": float(mse.mean()),
        "test_mse_task1": float(mse[0]),
        "test_mse_task2": float(mse[1]),
        "label_var": float(Y_test.var(axis=0).mean()),
        "n_iter": est.n_iter_,
        "fit_time": fit_time,
    }
    if architecture == "mmoe":
        row.update(gate_statistics(est, X_test, seed))
    return row


def mean_std(values, fmt):
    values = np.asarray(values, dtype=float)
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():{fmt}} ± {std:{fmt}}"


def select(rows, **conditions):
    return [r for r in rows if all(r[k] == v for k, v in conditions.items())]


def summarise(rows, correlations):
    """Mean and standard deviation over seeds per model and correlation."""
    summary = []
    for name in MODELS:
        for corr in correlations:
            group = select(rows, model=name, correlation=corr)
            entry = {"model": name, "correlation": corr, "n_seeds": len(group)}
            entry["params"] = group[0]["params"]
            for key in ("test_mse", "fit_time", "n_iter"):
                values = np.array([r[key] for r in group], dtype=float)
                entry[f"{key}_mean"] = float(values.mean())
                entry[f"{key}_std"] = (
                    float(values.std(ddof=1)) if values.size > 1 else 0.0
                )
            summary.append(entry)
    return summary


def paired_with_mmoe(rows, name, correlation):
    """Per-seed test MSE of ``name`` over MMoE's, and the seeds MMoE did better on."""
    mmoe = {
        r["seed"]: r["test_mse"]
        for r in select(rows, model="MMoE", correlation=correlation)
    }
    other = {
        r["seed"]: r["test_mse"]
        for r in select(rows, model=name, correlation=correlation)
    }
    ratios = [other[seed] / mmoe[seed] for seed in mmoe]
    wins = sum(mmoe[seed] < other[seed] for seed in mmoe)
    return ratios, wins


def print_tables(rows, summary, correlations):
    print(
        "| model | correlation | params | test MSE (mean ± std) "
        "| fit time, s (mean ± std) | epochs |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for entry in summary:
        group = select(rows, model=entry["model"], correlation=entry["correlation"])
        print(
            f"| {entry['model']} | {entry['correlation']:.1f} | {entry['params']} "
            f"| {mean_std([r['test_mse'] for r in group], '.4f')} "
            f"| {mean_std([r['fit_time'] for r in group], '.2f')} "
            f"| {entry['n_iter_mean']:.0f} |"
        )
    print()
    print("Paired by seed (same data): test MSE relative to MMoE, and MMoE's wins.")
    print()
    print(
        "| correlation | model | MSE / MMoE MSE (mean ± std) | seeds MMoE is better |"
    )
    print("| --- | --- | --- | --- |")
    for corr in correlations:
        for name in ("OMoE", "Shared-Bottom"):
            ratios, wins = paired_with_mmoe(rows, name, corr)
            print(
                f"| {corr:.1f} | {name} | {mean_std(ratios, '.3f')} "
                f"| {wins} / {len(ratios)} |"
            )
    print()
    print(
        "MMoE gates (mean ± std over seeds): total-variation distance and Pearson "
        "correlation of the tasks' expert_usage_ rows, experts each task weighs above "
        f"1/{N_EXPERTS} (task 1, task 2, both), mean per-row total-variation distance "
        "of the two gates on the test rows; 'init' columns: the same distances for a "
        "freshly initialised MMoE."
    )
    print()
    print(
        "| correlation | usage distance | init | usage correlation "
        "| experts above uniform (1, 2, both) | per-row gate distance | init |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for corr in correlations:
        group = select(rows, model="MMoE", correlation=corr)

        def cell(key, fmt=".3f", group=group):
            values = [r[key] for r in group if np.isfinite(r[key])]
            return mean_std(values, fmt) if values else "n/a"

        heavy = ", ".join(
            f"{np.mean([r[k] for r in group]):.1f}"
            for k in ("heavy_task1", "heavy_task2", "heavy_both")
        )
        print(
            f"| {corr:.1f} | {cell('usage_tv')} | {cell('init_usage_tv')} "
            f"| {cell('usage_corr', '.2f')} | {heavy} | {cell('gate_row_tv')} "
            f"| {cell('init_gate_row_tv')} |"
        )


def write_csv(path, rows):
    fields = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot(path, rows, summary, correlations):
    """Test loss, loss relative to MMoE and MMoE's gate distance against correlation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    def sd(values):
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    xs = list(correlations)
    fig, (ax_loss, ax_ratio, ax_gate) = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = dict(zip(MODELS, ("C0", "C1", "C2"), strict=True))
    for name in MODELS:
        entries = [e for e in summary if e["model"] == name]
        ax_loss.errorbar(
            [e["correlation"] for e in entries],
            [e["test_mse_mean"] for e in entries],
            yerr=[e["test_mse_std"] for e in entries],
            marker="o",
            capsize=3,
            color=colors[name],
            label=f"{name} ({entries[0]['params']} params)",
        )
    ax_loss.axhline(NOISE**2, color="grey", linestyle=":", label="noise floor")
    ax_loss.set_ylabel("test MSE, mean of both tasks")
    ax_loss.set_title("Test loss (mean ± std over seeds)")
    ax_loss.legend()

    ax_ratio.axhline(1.0, color=colors["MMoE"], label="MMoE")
    for name in ("OMoE", "Shared-Bottom"):
        ratios = [paired_with_mmoe(rows, name, c)[0] for c in xs]
        ax_ratio.errorbar(
            xs,
            [np.mean(r) for r in ratios],
            yerr=[sd(r) for r in ratios],
            marker="o",
            capsize=3,
            color=colors[name],
            label=name,
        )
    ax_ratio.set_ylabel("test MSE / MMoE's test MSE, same seed")
    ax_ratio.set_title("Loss relative to MMoE (mean ± std)")
    ax_ratio.legend()

    for key, label, style in (
        ("gate_row_tv", "trained", "-"),
        ("init_gate_row_tv", "at initialisation", "--"),
    ):
        values = [
            [r[key] for r in select(rows, model="MMoE", correlation=c)] for c in xs
        ]
        ax_gate.errorbar(
            xs,
            [np.mean(v) for v in values],
            yerr=[sd(v) for v in values],
            marker="o",
            capsize=3,
            linestyle=style,
            color=colors["MMoE"],
            label=label,
        )
    ax_gate.set_ylabel("mean per-row TV distance of the two gates")
    ax_gate.set_title("MMoE: how differently the task gates route")
    ax_gate.legend()
    for ax in (ax_loss, ax_ratio, ax_gate):
        ax.set_xlabel("task correlation")
        ax.set_xticks(xs)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run for the tests")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seeds", type=int, default=8, help="seeds (default 8)")
    parser.add_argument("--n-train", type=int, default=10_000, help="training rows")
    parser.add_argument("--n-test", type=int, default=2_000, help="test rows")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=200, help="epoch cap")
    parser.add_argument(
        "--n-iter-no-change", type=int, default=10, help="early-stopping patience"
    )
    parser.add_argument(
        "--early-stopping",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="early stopping on 10%% of the training rows (--no-early-stopping: "
        "train max_iter epochs, the estimators' default)",
    )
    parser.add_argument(
        "--correlations",
        type=float,
        nargs="+",
        default=list(CORRELATIONS),
        help="task correlations (default 0.5 0.9 1.0)",
    )
    parser.add_argument(
        "--input-scaling",
        choices=["auto", "robust", "none"],
        default=None,
        help="the estimators' input_scaling (default: their default)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="torch device")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.n_train, args.n_test = 2, 300, 100
        args.max_iter, args.n_iter_no_change = 5, 2
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    correlations = tuple(args.correlations)
    seeds = range(args.seeds)

    mmoe_params = module_size("mmoe", EXPERT_WIDTH)
    widths = {"mmoe": EXPERT_WIDTH, "omoe": EXPERT_WIDTH}
    widths["shared_bottom"] = matched_bottom_width(mmoe_params)

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, skmoe {skmoe.__version__}; "
        f"device {args.device}, {args.threads} thread(s); {len(seeds)} seeds; "
        f"{args.n_train} train / {args.n_test} test rows; batch {args.batch_size}, "
        f"lr {args.learning_rate}, max_iter {args.max_iter}, "
        + (
            f"early stopping (patience {args.n_iter_no_change})"
            if args.early_stopping
            else "no early stopping"
        )
        + f", input_scaling {args.input_scaling or 'default'}"
        + (" (quick)" if args.quick else "")
    )
    print(
        f"shared-bottom width {widths['shared_bottom']} to match MMoE's "
        f"{mmoe_params} parameters"
    )
    print()
    start = time.perf_counter()
    rows = []
    with threadpool_limits(limits=args.threads):
        warm = argparse.Namespace(**{**vars(args), "n_train": 200, "n_test": 50})
        warm.max_iter = 1
        for architecture in MODELS.values():  # untimed warm-up fits
            run_one("warm-up", architecture, widths[architecture], 0.5, 0, warm)
        for seed in seeds:
            for corr in correlations:
                for name, architecture in MODELS.items():
                    rows.append(
                        run_one(
                            name, architecture, widths[architecture], corr, seed, args
                        )
                    )
            print(
                f"seed {seed + 1}/{len(seeds)} done after "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    total = time.perf_counter() - start

    summary = summarise(rows, correlations)
    print_tables(rows, summary, correlations)
    runs_path = args.out / "mmoe_synthetic_runs.csv"
    summary_path = args.out / "mmoe_synthetic_summary.csv"
    write_csv(runs_path, rows)
    write_csv(summary_path, summary)
    print()
    print(f"wrote {runs_path} and {summary_path}")
    plot_path = args.out / "mmoe_synthetic.png"
    if plot(plot_path, rows, summary, correlations):
        print(f"wrote {plot_path}")
    else:
        print("matplotlib is not installed; no plot written")
    print(f"total time: {total:.0f} s")


if __name__ == "__main__":
    main()
