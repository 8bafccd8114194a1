"""
Training on a GPU
=================

skmoe estimators take ``device="auto"`` (CUDA when torch sees a GPU, else the CPU),
``"cuda"``, ``"cuda:N"`` or a ``torch.device``. The training data is copied to the
device once and sliced into batches there, so larger batches keep a GPU busy; prediction
runs on the same device in chunks. A model fitted on a GPU pickles and saves with CPU
tensors and loads on a machine without one.

This example is shown, not run, when the documentation is built (the build machines
have no GPU). Run it with ``python examples/gpu_training.py``.
"""

import time

import numpy as np
import torch
from sklearn.datasets import make_classification

from skmoe import MixtureOfExpertsClassifier, to_onnx

if not torch.cuda.is_available():
    raise SystemExit("No CUDA device visible to torch; this example needs one.")

X, y = make_classification(
    n_samples=200_000, n_features=64, n_informative=32, n_classes=4, random_state=0
)
X = X.astype(np.float32)

for device in ("cpu", "cuda"):
    clf = MixtureOfExpertsClassifier(
        n_experts=16,
        top_k=2,
        expert_hidden_layer_sizes=(128,),
        batch_size=4096,
        max_iter=5,
        random_state=0,
        device=device,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    print(f"{device}: {time.perf_counter() - start:.1f} s, device_={clf.device_}")

# %%
# The fitted model serves from anywhere: predictions on the GPU, or an ONNX graph
# built from its weights (copied to the CPU) for onnxruntime.
print(clf.predict(X[:5]))
onnx_model = to_onnx(clf, X[:1])
