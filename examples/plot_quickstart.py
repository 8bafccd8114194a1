"""
Quickstart: a mixture of experts on a mixed-type pandas DataFrame.
==================================================================

The data describe customers of a fictional subscription service: two numeric columns
(``age``, ``income``) and two categorical ones (``city``, ``plan``). Whether a customer
churns follows a different rule on each plan: on the free plan the young and the
low-income leave, on the pro plan the older customers do. A model that can send the
two segments to different experts has an easy job.

The example shows

* a ``ColumnTransformer`` that scales the numeric columns and one-hot encodes the
  categorical ones, feeding a :class:`skmoe.MixtureOfExpertsClassifier`;
* ``GridSearchCV`` over the number of experts (``n_experts``) and the routing
  (``top_k=None``: dense softmax mixture, ``top_k=1``: each row uses one expert);
* the fitted model's ``expert_usage_`` (mean gate weight of each expert during the last
  training epoch) and ``gate_weights(X)`` (which experts each row is sent to).

Run it with ``python examples/plot_quickstart.py``. With matplotlib installed,
``--plot loss.png`` also saves the training loss curve of the best model to
``loss.png``; without the option nothing is drawn and matplotlib is not needed.
"""

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmoe import MixtureOfExpertsClassifier

try:
    import pandas as pd
except ImportError:
    sys.exit("This example builds a pandas DataFrame: pip install pandas")


def make_customers(n=800, seed=0):
    """A customer table and its churn labels; the rule depends on the plan."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.lognormal(10, 0.5, n).round(2),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "plan": rng.choice(["free", "pro"], n, p=[0.6, 0.4]),
        }
    )
    free = df["plan"] == "free"
    churn_free = (df["age"] < 35) | (df["income"] < np.exp(9.8))
    churn_pro = df["age"] > 55
    churn = np.where(free, churn_free, churn_pro)
    flip = rng.random(n) < 0.05  # a little label noise
    y = np.where(churn ^ flip, "churn", "stay")
    return df, y


def save_loss_plot(moe, path):
    """Save ``moe.loss_curve_`` to ``path``; return False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # write files only, never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(moe.loss_curve_) + 1), moe.loss_curve_)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"n_experts={moe.n_experts}, top_k={moe.top_k}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="save the loss curve of the best model to PATH (needs matplotlib)",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    df, y = make_customers()
    X_train, X_test, y_train, y_test = train_test_split(
        df, y, test_size=0.25, stratify=y, random_state=0
    )

    preprocess = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ]
    )
    model = make_pipeline(
        preprocess,
        MixtureOfExpertsClassifier(
            expert_hidden_layer_sizes=(16,),
            learning_rate_init=1e-2,
            max_iter=50,
            random_state=0,
        ),
    )
    grid = {
        "mixtureofexpertsclassifier__n_experts": [2, 4],
        "mixtureofexpertsclassifier__top_k": [None, 1],
    }
    search = GridSearchCV(model, grid, cv=3)

    start = time.perf_counter()
    search.fit(X_train, y_train)
    elapsed = time.perf_counter() - start

    best = {key.split("__")[-1]: value for key, value in search.best_params_.items()}
    print(f"grid search: {len(search.cv_results_['params'])} candidates x 3 folds")
    print(f"fit time: {elapsed:.1f} s")
    print(f"best params: {best}")
    print(f"cross-validated accuracy: {search.best_score_:.3f}")
    print(f"test accuracy: {search.score(X_test, y_test):.3f}")

    pipeline = search.best_estimator_
    moe = pipeline[-1]
    print(f"expert usage: {np.round(moe.expert_usage_, 3).tolist()}")

    rows = X_test.head(6)
    true_labels = y_test[:6]
    weights = moe.gate_weights(pipeline[:-1].transform(rows))
    table = pd.DataFrame(
        weights.round(3),
        index=rows.index,
        columns=[f"expert_{i}" for i in range(moe.n_experts)],
    )
    table.insert(0, "predicted", pipeline.predict(rows))
    table.insert(0, "actual", true_labels)
    with pd.option_context("display.width", 120):
        print("gate weights of a few test rows:")
        print(pd.concat([rows, table], axis=1).to_string())

    if args.plot:
        if save_loss_plot(moe, args.plot):
            print(f"loss curve saved to {args.plot}")
        else:
            print("matplotlib is not installed; no plot saved")


if __name__ == "__main__":
    main()
