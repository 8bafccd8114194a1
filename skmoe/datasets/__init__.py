"""Synthetic data sets for mixtures of experts and multi-task learning."""

from ._clustered import make_clustered_classification, make_clustered_regression
from ._esmm import make_click_conversion
from ._interactions import make_interaction_log
from ._mmoe import make_mmoe_synthetic

__all__ = [
    "make_click_conversion",
    "make_clustered_classification",
    "make_clustered_regression",
    "make_interaction_log",
    "make_mmoe_synthetic",
]
