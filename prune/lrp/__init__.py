"""LRP engine in plain PyTorch: rules, composites, canonizers, attribution, statistics."""

from prune.lrp.attribution import Explainer, LRPResult, attribute, relevance_report
from prune.lrp.composites import COMPOSITES, Composite, get_composite
from prune.lrp.errors import UnsupportedLayerError
from prune.lrp.seeds import log_probability, logit_margin, softmax_gradient
from prune.lrp.stats import RelevanceStats

__all__ = [
    "COMPOSITES",
    "Composite",
    "Explainer",
    "LRPResult",
    "RelevanceStats",
    "UnsupportedLayerError",
    "attribute",
    "get_composite",
    "log_probability",
    "logit_margin",
    "relevance_report",
    "softmax_gradient",
]
