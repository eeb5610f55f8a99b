"""Each head's output made readable in an attention that has no module on it (timm's ``Attention``).

A criterion reads a head's relevance, activations or gradients at the output of the attention's
``heads_out``, heads on axis 1 of ``(B, H, N, Dh)`` (:class:`prune.models.vit.Attention`). timm's
``Attention`` concatenates its heads' outputs to ``(B, N, H * Dh)`` and passes them through its
``norm``, an ``nn.Identity`` unless ``scale_norm``. :func:`expose_heads` puts a
:class:`HeadsView` there: the same identity, which runs the heads through its own ``heads_out``
in the layout a criterion reads. The model's outputs are unchanged bit for bit, it holds no
parameters (the ``state_dict`` keeps its keys), and a head cut keeps it valid (``head_dim``
stays).

    expose_heads(model)    # every timm Attention: norm -> HeadsView
    heads_out_name(model.blocks[0].attn)   # "norm.heads_out"
"""

from __future__ import annotations

from torch import Tensor, nn

HEADS_OUT = "heads_out"
"""Submodule of an attention module whose output holds the heads' outputs ``(B, H, N, Dh)``."""


class HeadsView(nn.Module):
    """The identity on an attention's concatenated head outputs ``(B, N, H * Dh)``, which runs
    them through ``heads_out`` as ``(B, H, N, Dh)`` on the way.

    Args:
        head_dim: the width of one head, ``Dh``.
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.heads_out = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        heads = x.reshape(b, n, c // self.head_dim, self.head_dim).transpose(1, 2)
        return self.heads_out(heads).transpose(1, 2).reshape(b, n, c)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}"


def _timm_attention(module: nn.Module) -> bool:
    """timm's ``Attention`` with its identity ``norm`` and no module on its heads' outputs."""
    return (
        type(module).__name__ == "Attention"
        and type(module).__module__.startswith("timm.")
        and isinstance(getattr(module, "norm", None), nn.Identity)
        and isinstance(getattr(module, "head_dim", None), int)
        and not isinstance(getattr(module, HEADS_OUT, None), nn.Module)
    )


def expose_heads(model: nn.Module) -> list[str]:
    """Give every timm ``Attention`` of ``model`` a :class:`HeadsView` for its identity ``norm``,
    in place; the names of the attentions changed (none a second time)."""
    changed = [name for name, m in model.named_modules() if _timm_attention(m)]
    for name in changed:
        attention = model.get_submodule(name)
        attention.norm = HeadsView(attention.head_dim)
    return changed


def heads_out_name(attention: nn.Module) -> str | None:
    """The path, within ``attention``, of the module whose output holds its heads
    (``heads_out``, or ``norm.heads_out`` behind a :class:`HeadsView`), or None."""
    if isinstance(getattr(attention, HEADS_OUT, None), nn.Module):
        return HEADS_OUT
    if isinstance(getattr(attention, "norm", None), HeadsView):
        return f"norm.{HEADS_OUT}"
    return None
