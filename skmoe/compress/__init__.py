"""Smaller models from fitted ones: expert pruning, expert merging, distillation.

Every function returns a new fitted estimator and leaves the original untouched.
"""

from ._distill import distill
from ._merge import merge_experts
from ._prune import prune_experts

__all__ = ["distill", "merge_experts", "prune_experts"]
