"""
Explaining the predictions of a fitted pipeline
===============================================

A skmoe estimator at the end of a scikit-learn ``Pipeline`` works with the usual
explanation tools, and the feature names of a pandas DataFrame travel through:

* :func:`sklearn.inspection.permutation_importance` on the raw DataFrame columns
  (one importance per column, however the column is encoded);
* SHAP values, when the ``shap`` package is installed, on the encoded features, named
  by the pipeline's ``get_feature_names_out()``;
* the gate: which expert each customer segment is sent to
  (:class:`~skmoe.inspection.GateWeightsDisplay`).

The data describe customers of a subscription service; whether a customer churns
follows a different rule on each plan.
"""

import sys
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import permutation_importance
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmoe import MixtureOfExpertsClassifier
from skmoe.inspection import GateWeightsDisplay

warnings.filterwarnings("ignore", category=ConvergenceWarning)
QUICK = "--quick" in sys.argv

rng = np.random.default_rng(0)
n = 600 if QUICK else 2000
df = pd.DataFrame(
    {
        "age": rng.integers(18, 80, n),
        "income": rng.lognormal(10, 0.5, n).round(2),
        "tenure_months": rng.integers(0, 120, n),
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "plan": rng.choice(["free", "pro"], n, p=[0.6, 0.4]),
    }
)
free = df["plan"] == "free"
churn = np.where(free, (df["age"] < 35) | (df["income"] < np.exp(9.8)), df["age"] > 55)
y = np.where(churn ^ (rng.random(n) < 0.05), "churn", "stay")
X_train, X_test, y_train, y_test = train_test_split(df, y, random_state=0, stratify=y)

pipe = make_pipeline(
    ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income", "tenure_months"]),
            ("cat", OneHotEncoder(), ["city", "plan"]),
        ]
    ),
    MixtureOfExpertsClassifier(
        n_experts=4,
        expert_hidden_layer_sizes=(16,),
        learning_rate_init=1e-2,
        max_iter=10 if QUICK else 60,
        random_state=0,
    ),
).fit(X_train, y_train)
print(f"test accuracy: {pipe.score(X_test, y_test):.3f}")
print("columns seen by the pipeline:", list(pipe.feature_names_in_))

# %%
# Permutation importance of the raw columns
# -----------------------------------------
# ``tenure_months`` plays no part in the rule and should come out near zero.
result = permutation_importance(
    pipe, X_test, y_test, n_repeats=3 if QUICK else 10, random_state=0
)
importances = pd.Series(result.importances_mean, index=X_test.columns).sort_values()
print(importances.round(3).to_string())
fig, ax = plt.subplots(figsize=(5, 3))
ax.barh(importances.index, importances.values, xerr=result.importances_std)
ax.set_xlabel("drop in accuracy when shuffled")
fig.tight_layout()

# %%
# SHAP values of the encoded features
# -----------------------------------
# The model explained is the fitted skmoe estimator on the encoded features, whose
# names come from the preprocessing step.
preprocess, moe = pipe[:-1], pipe[-1]
names = preprocess.get_feature_names_out()
Z_train = preprocess.transform(X_train)
Z_test = preprocess.transform(X_test)
print("encoded features:", list(names))
try:
    import shap
except ImportError:
    print("shap is not installed; pip install shap to see SHAP values")
else:
    churn_column = list(moe.classes_).index("churn")
    explainer = shap.Explainer(
        lambda Z: moe.predict_proba(Z)[:, churn_column],
        shap.maskers.Independent(Z_train[: 20 if QUICK else 100]),
        feature_names=list(names),
    )
    explanation = explainer(Z_test[: 5 if QUICK else 100])
    mean_abs = pd.Series(np.abs(explanation.values).mean(0), index=names)
    print(mean_abs.sort_values(ascending=False).round(3).to_string())
    fig, ax = plt.subplots(figsize=(5, 3.5))
    mean_abs.sort_values().plot.barh(ax=ax)
    ax.set_xlabel("mean |SHAP value| (churn probability)")
    fig.tight_layout()

# %%
# Which expert each class is sent to
# ----------------------------------
GateWeightsDisplay.from_estimator(pipe, X_test, y_test)
