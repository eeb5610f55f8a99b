"""Attribution methods behind one interface: ``method(model, x, target) -> (B, *sample)``."""

from prune.attribution.base import AttributionMethod
from prune.attribution.gradient import Gradient, GradientXInput
from prune.attribution.integrated_gradients import IntegratedGradients
from prune.attribution.lrp import LRP, LRP_PRESETS
from prune.attribution.random_baseline import RandomAttribution
from prune.attribution.registry import METHODS, get_method, get_methods
from prune.attribution.smoothgrad import SmoothGrad

__all__ = [
    "LRP",
    "LRP_PRESETS",
    "METHODS",
    "AttributionMethod",
    "Gradient",
    "GradientXInput",
    "IntegratedGradients",
    "RandomAttribution",
    "SmoothGrad",
    "get_method",
    "get_methods",
]
