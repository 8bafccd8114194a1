"""
What each expert is worth, and pruning the ones that are not
============================================================

A mixture keeps every expert in memory, but how much does each one contribute?
Expert *usage* (the share of gate weight an expert receives) is not expert *value*:
a popular expert can duplicate another, a rarely used one can carry a hard region of
the data. :func:`skmoe.inspection.expert_importance` measures value as each expert's
Shapley value in a game whose players are the experts: a coalition is scored by
masking the other experts and renormalising the gate over the ones left, without
refitting. The values add up exactly to the full model's score minus the score of the
empty coalition.

This example fits an 8-expert, top-2 classifier on the handwritten digits, draws the
Shapley values next to the usage
(:class:`~skmoe.inspection.ExpertImportanceDisplay`), then halves the experts with
:func:`skmoe.prune_experts`: with its default recipe and, for comparison, with a
random choice of experts and no retraining. :func:`skmoe.inspection.model_size` shows
the memory saved. Run it with ``python examples/plot_expert_importance.py``;
``--quick`` runs a small version in seconds.
"""

import sys
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

import skmoe
from skmoe.inspection import ExpertImportanceDisplay, expert_importance, model_size

warnings.filterwarnings("ignore", category=ConvergenceWarning)
QUICK = "--quick" in sys.argv

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)

model = skmoe.MixtureOfExpertsClassifier(
    n_experts=8,
    top_k=2,
    expert_hidden_layer_sizes=(16,),
    max_iter=3 if QUICK else 60,
    random_state=0,
    n_threads=1,
).fit(X_train, y_train)
print(f"8 experts: test accuracy {model.score(X_test, y_test):.3f}")

# %%
# Value against usage
# -------------------
# Exact Shapley values (all 256 coalitions of 8 experts) on the test rows, and the
# mean gate weight of each expert. The Shapley values add up to the full score minus
# the baseline, the score with every expert masked (equal probabilities).
shapley = expert_importance(model, X_test, y_test, method="shapley")
usage = expert_importance(model, X_test, y_test, method="usage")
total = shapley.importances_mean.sum()
print(
    f"Shapley values add up to {total:.3f}"
    f" = {shapley.full_score:.3f} - {shapley.baseline_score:.3f}"
)

fig, (ax_value, ax_usage) = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
ExpertImportanceDisplay.from_result(shapley, ax=ax_value)
ax_value.set_title("Shapley value (accuracy)")
ExpertImportanceDisplay.from_result(usage, ax=ax_usage)
ax_usage.set_title("usage (mean gate weight)")
ax_usage.set_xlabel("share of gate weight")
fig.tight_layout()

# %%
# Halving the experts
# -------------------
# :func:`skmoe.prune_experts` returns a new fitted estimator with 4 experts; the
# original is left as it was. Its default recipe chooses the experts and retrains the
# pruned model briefly on the rows it is given (here the training rows). A random
# choice without retraining is the baseline any recipe has to beat.
pruned = skmoe.prune_experts(model, X_train, y_train, n_experts=4, random_state=0)
random_choice = skmoe.prune_experts(
    model,
    X_train,
    y_train,
    n_experts=4,
    method="random",
    fine_tune_iter=0,
    random_state=0,
)
for name, estimator in [
    ("8 experts", model),
    ("4 experts, default pruning", pruned),
    ("4 experts, random, no retraining", random_choice),
]:
    size = model_size(estimator)
    print(
        f"{name:34s} accuracy {estimator.score(X_test, y_test):.3f}, "
        f"expert weights {size.bytes['experts'] / 1024:.1f} KiB, "
        f"active parameters per row {size.active_params}"
    )

# %%
# The pruned model is an ordinary fitted estimator: its own Shapley values are
# computed the same way, over the 4 experts it kept.
kept = expert_importance(pruned, X_test, y_test)
display = ExpertImportanceDisplay.from_result(kept)
display.ax_.set_title("after pruning to 4 experts")
print("kept experts' Shapley values:", np.round(kept.importances_mean, 3))
plt.show()
