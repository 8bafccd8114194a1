"""Data set generators."""

from ._esmm import make_click_conversion
from ._mmoe import make_mmoe_synthetic

__all__ = ["make_click_conversion", "make_mmoe_synthetic"]
