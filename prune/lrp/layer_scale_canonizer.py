"""timm's ``LayerScale`` written out for LRP: ``x * gamma`` as a product that gets a rule.

A ``LayerScale`` (timm's Vision Transformers with ``init_values`` set; DINOv2's) scales a
block's branch channel by channel, ``x * gamma``, in a leaf module that no layer map names.
:class:`ExplicitLayerScale` runs it, for the pass only, as that product: it then gets the
composite's ``mul`` rule, which for a product with one factor that needs relevance (``gamma``
is a parameter) passes the relevance unchanged, as the epsilon rule on a linear map without
bias would. The in-place variant (``x.mul_(gamma)``) runs out of place; the model itself is
never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from prune.lrp.canonizers import Canonizer


def is_layer_scale(module: nn.Module) -> bool:
    """A ``LayerScale`` on the last axis: a module of that name whose only parameter is a
    vector ``gamma`` (timm's ``LayerScale2d``, on axis 1, has another name)."""
    gamma = getattr(module, "gamma", None)
    return (
        type(module).__name__ == "LayerScale"
        and isinstance(gamma, nn.Parameter)
        and gamma.dim() == 1
        and list(module._parameters) == ["gamma"]
        and not module._modules
    )


def _scaled(layer_scale: nn.Module) -> Callable[[Tensor], Tensor]:
    def forward(x: Tensor) -> Tensor:
        return x * layer_scale.gamma

    return forward


class ExplicitLayerScale(Canonizer):
    """Run every ``LayerScale`` (:func:`is_layer_scale`) as ``x * gamma`` during the pass.

    The transformer composites (``attnlrp``, ``cp_lrp``, ``abslrp``) list it, so timm's
    Vision Transformers with LayerScale are explained without asking.
    """

    def replacements(
        self, modules: Sequence[tuple[str, nn.Module, bool]]
    ) -> dict[nn.Module, Callable[..., Any]]:
        """``{layer_scale: x -> x * gamma}`` for each LayerScale of ``modules``."""
        return {module: _scaled(module) for _, module, _ in modules if is_layer_scale(module)}
