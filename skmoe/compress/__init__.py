"""Smaller models from fitted ones: expert pruning, expert merging, distillation.

Every function returns a new fitted estimator and leaves the original untouched.
"""

from ._prune import prune_experts

__all__ = ["prune_experts"]
