"""Lightning callbacks, one per file."""

from prune.callbacks.relevance import RelevanceAccumulator

__all__ = ["RelevanceAccumulator"]
