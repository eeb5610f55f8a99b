"""LRP engine in plain PyTorch: rules, composites, canonizers, attribution, statistics."""

from prune.lrp.stats import RelevanceStats

__all__ = ["RelevanceStats"]
