"""Data set generators."""

from ._mmoe import make_mmoe_synthetic

__all__ = ["make_mmoe_synthetic"]
