"""Attribution methods behind one interface, ``method(model, x, target) -> (B, *sample)``, and
their registry :data:`METHODS` (``get_method("gradient_x_input")``)."""

from prune.evaluation.methods.attention_rollout import AttentionRollout
from prune.evaluation.methods.base import METHODS, AttributionMethod, get_method, get_methods
from prune.evaluation.methods.cls_attention import ClassTokenAttention
from prune.evaluation.methods.gradient import Gradient, GradientXInput
from prune.evaluation.methods.integrated_gradients import IntegratedGradients
from prune.evaluation.methods.lrp import LRP
from prune.evaluation.methods.random_baseline import RandomAttribution
from prune.evaluation.methods.smoothgrad import SmoothGrad

__all__ = [
    "LRP",
    "METHODS",
    "AttentionRollout",
    "AttributionMethod",
    "ClassTokenAttention",
    "Gradient",
    "GradientXInput",
    "IntegratedGradients",
    "RandomAttribution",
    "SmoothGrad",
    "get_method",
    "get_methods",
]
