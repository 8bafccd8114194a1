"""
Several targets of different types in one model
===============================================

A recommender-style data set: for each impression, whether it was clicked (binary),
whether a click converted (binary, seen only after a click), and the dwell time
(regression). One :class:`skmoe.MultiGateMoE` fits the three:

* the task types are inferred from the labels (``task_types_``);
* ``task_weights="uncertainty"`` learns how much each task's loss counts;
* ``task_chain={"conversion": "click"}`` trains the conversion tower on every row as
  ``p(click) * p(conversion | click)`` (ESMM), although conversions are only known
  for clicked rows;
* ``class_weight`` reweighs the rare clicks, ``scoring`` makes early stopping watch
  the click AUC and the dwell R².
"""

import argparse

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from skmoe import MultiGateMoE
from skmoe.datasets import make_click_conversion

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="small and fast")
args, _ = parser.parse_known_args()
n_samples, max_iter = (1500, 5) if args.quick else (20_000, 60)

X, Y, p_conversion = make_click_conversion(
    n_samples=n_samples, click_rate=0.2, random_state=0
)
rng = np.random.default_rng(0)
y = pd.DataFrame(
    {
        "click": Y[:, 0],
        "conversion": Y[:, 1],  # NaN where there was no click
        "dwell": np.where(Y[:, 0] == 1, 30 + 10 * X[:, 0], np.nan)
        + rng.normal(scale=2, size=n_samples),
    }
)
train, test = slice(0, int(0.75 * n_samples)), slice(int(0.75 * n_samples), None)

model = MultiGateMoE(
    architecture="mmoe",
    task_types={"click": "binary", "conversion": "binary"},
    task_weights="uncertainty",
    task_chain={"conversion": "click"},
    class_weight={"click": "balanced"},
    allow_missing_labels=True,  # dwell is only measured after a click
    early_stopping=True,
    scoring={"click": "roc_auc", "dwell": "r2"},
    max_iter=max_iter,
    learning_rate_init=3e-3,
    random_state=0,
)
model.fit(X[train], y[train])

print("task types:", model.task_types_)
weights = model.task_weights_.round(2).tolist()
print("learned task weights:", dict(zip(model.task_names_, weights, strict=True)))
scores = model.score_tasks(X[test], y[test])
print("scores per task:", {task: round(score, 3) for task, score in scores.items()})
proba = model.predict_proba(X[test])
auc = roc_auc_score(y["click"][test], proba["click"][:, 1])
print(f"click AUC: {auc:.3f}")
joint = proba["click"][:, 1] * proba["conversion"][:, 1]
print(f"mean p(click and conversion): {joint.mean():.3f}")
print(model.predict(X[test][:3]))
