"""
Expert collapse and the balancing losses
========================================

Without a balancing term a gate tends to send most rows to a few experts: those
experts train faster, score better, and get even more rows. The others starve. This
*collapse* wastes capacity. skmoe's ``load_balancing_coef`` adds the Switch
Transformer's auxiliary loss ``n_experts * sum(f_i * P_i)``, which is smallest when
rows and router probability are spread evenly; ``router_z_loss_coef`` keeps the router
logits small.

This example fits the same switch (top-1) model on the handwritten digits, 8 experts of
only 4 hidden units each so that no single expert can read all ten digits, with both
terms off, with the default balancing and with a stronger one. It prints the test
accuracy and the largest share of test rows one expert receives, then draws the expert
usage
(:class:`~skmoe.inspection.ExpertUsageDisplay`) and the usage entropy per epoch
(:class:`~skmoe.inspection.TrainingCurveDisplay`): 1 means every expert gets the same
share of the rows, 0 that one expert takes all. In a full run the unbalanced gate sends
about two thirds of the rows to one expert and scores lowest; the stronger the
balancing, the more experts share the work and the higher the accuracy.
"""

import sys
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsClassifier
from skmoe.inspection import ExpertUsageDisplay, TrainingCurveDisplay

warnings.filterwarnings("ignore", category=ConvergenceWarning)
QUICK = "--quick" in sys.argv

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)

settings = {
    "no balancing": dict(load_balancing_coef=0.0, router_z_loss_coef=0.0),
    "balancing (default)": dict(load_balancing_coef=0.01),
    "strong balancing": dict(load_balancing_coef=0.1),
}
models = {}
for name, params in settings.items():
    models[name] = MixtureOfExpertsClassifier(
        n_experts=8,
        gating="switch",
        expert_hidden_layer_sizes=(4,),
        learning_rate_init=3e-3,
        max_iter=3 if QUICK else 40,
        random_state=0,
        n_threads=1,
        **params,
    ).fit(X_train, y_train)
    model = models[name]
    print(
        f"{name:20s} test accuracy {model.score(X_test, y_test):.3f}, "
        f"largest expert share {model.gate_weights(X_test).mean(0).max():.2f}"
    )

# %%
# Which experts the test rows go to
# ---------------------------------
# The dotted line is the even share, ``1 / n_experts``.
fig, axes = plt.subplots(1, len(models), figsize=(11, 3), sharey=True)
for ax, (name, model) in zip(axes, models.items(), strict=True):
    ExpertUsageDisplay.from_estimator(model, X_test, ax=ax)
    ax.set_title(name)
fig.tight_layout()

# %%
# How the usage evolved
# ---------------------
# The entropy panel shows when the unbalanced gate collapsed.
for name, model in models.items():
    display = TrainingCurveDisplay.from_estimator(model)
    display.figure_.suptitle(name)
    display.figure_.set_size_inches(6, 4)
