"""Lightning callbacks, one per file."""

from prune.callbacks.relevance import RelevanceAccumulator, explain_trainer

__all__ = ["RelevanceAccumulator", "explain_trainer"]
