"""The training engine: knows modules, tensors and objectives, not estimators."""

from .device import resolve_device
from .objectives import MeanSquaredError, MultiOutputCrossEntropy
from .optim import make_optimizer
from .rows import DenseRows, SparseRows
from .seeding import seeded
from .threads import torch_threads
from .trainer import (
    Batches,
    TrainingConfig,
    TrainingDivergedError,
    TrainingHistory,
    evaluate,
    infer,
    run_epoch,
    train,
)

__all__ = [
    "Batches",
    "DenseRows",
    "MeanSquaredError",
    "MultiOutputCrossEntropy",
    "SparseRows",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingHistory",
    "evaluate",
    "infer",
    "make_optimizer",
    "resolve_device",
    "run_epoch",
    "seeded",
    "torch_threads",
    "train",
]
