"""
Serving a mixture of experts with ONNX
======================================

:func:`skmoe.to_onnx` exports a fitted estimator to an ONNX graph that onnxruntime
serves without PyTorch. Sparse routing (here ``top_k=2``) is exported through its
dense-equivalent computation: every expert is computed and each row's two largest
gate weights are scattered into a dense weight matrix, so the graph has fixed shapes
and no data-dependent branch.

This example exports a classifier, checks that onnxruntime reproduces
``predict_proba``, converts a whole preprocessing ``Pipeline`` into one graph with
skl2onnx, and times one-row predictions against skmoe's own ``predict`` and
scikit-learn's ``MLPClassifier``. Needs ``pip install "skmoe[onnx]"``.
"""

import sys
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
import skl2onnx
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import MixtureOfExpertsClassifier, to_onnx
from skmoe.export import register_converters

warnings.filterwarnings("ignore", category=ConvergenceWarning)
QUICK = "--quick" in sys.argv

X, y = make_classification(
    n_samples=600 if QUICK else 3000,
    n_features=20,
    n_informative=10,
    n_classes=3,
    random_state=0,
)
X = X.astype(np.float32)
clf = MixtureOfExpertsClassifier(
    n_experts=8, top_k=2, max_iter=5 if QUICK else 30, random_state=0, n_threads=1
).fit(X, y)

# %%
# Export and check
# ----------------
# The sample rows fix the input's width and precision (float32 here).
onnx_model = to_onnx(clf, X[:1])
options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
session = ort.InferenceSession(onnx_model.SerializeToString(), options)
label, proba = session.run(None, {"X": X})
print("outputs:", [output.name for output in session.get_outputs()])
difference = np.abs(proba - clf.predict_proba(X)).max()
print(f"largest |ONNX - predict_proba|: {difference:.2e}")
print("labels equal:", bool((label == clf.predict(X)).all()))
print("ops:", sorted({node.op_type for node in onnx_model.graph.node}))

# %%
# A whole pipeline in one graph
# -----------------------------
# After :func:`skmoe.export.register_converters`, ``skl2onnx.to_onnx`` converts a
# Pipeline of scikit-learn transformers ending in a skmoe estimator.
register_converters()
pipe = make_pipeline(
    StandardScaler(),
    MixtureOfExpertsClassifier(n_experts=4, top_k=1, max_iter=5, random_state=0),
).fit(X * 100, y)
# As for skl2onnx's own classifiers, probabilities come as a list of dicts (ZipMap)
# unless ``zipmap`` is off.
pipe_onnx = skl2onnx.to_onnx(pipe, X[:1] * 100, options={"zipmap": False})
pipe_session = ort.InferenceSession(pipe_onnx.SerializeToString())
_, pipe_proba = pipe_session.run(None, {"X": X * 100})
difference = np.abs(pipe_proba - pipe.predict_proba(X * 100)).max()
print(f"pipeline, largest difference: {difference:.2e}")

# %%
# One-row latency
# ---------------
# Each predictor answers the same single rows in turn; the figures are medians in
# microseconds (one thread everywhere).
mlp = MLPClassifier((64,), max_iter=5 if QUICK else 30, random_state=0).fit(X, y)
predictors = {
    "MLPClassifier.predict": mlp.predict,
    "skmoe predict": clf.predict,
    "onnxruntime": lambda row: session.run(None, {"X": row}),
}
rows = [X[i : i + 1] for i in range(50 if QUICK else 200)]
times = {name: [] for name in predictors}
for _ in range(3 if QUICK else 7):
    for name, predict in predictors.items():
        start = time.perf_counter()
        for row in rows:
            predict(row)
        times[name].append((time.perf_counter() - start) / len(rows) * 1e6)
medians = {name: float(np.median(t)) for name, t in times.items()}
for name, us in medians.items():
    print(f"{name:24s} {us:8.0f} µs")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(medians), list(medians.values()))
ax.set_xlabel("one-row prediction (µs, median)")
fig.tight_layout()
