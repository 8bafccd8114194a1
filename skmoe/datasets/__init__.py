"""Data set generators."""

from ._clustered import make_clustered_classification, make_clustered_regression
from ._mmoe import make_mmoe_synthetic

__all__ = [
    "make_clustered_classification",
    "make_clustered_regression",
    "make_mmoe_synthetic",
]
