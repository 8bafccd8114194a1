"""Looking inside fitted skmoe estimators: what each expert is worth, model size."""

from ._importance import expert_importance

__all__ = ["expert_importance"]
