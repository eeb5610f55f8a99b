"""A Vision Transformer for small images, with every product of attention written out."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.checks import Check, boolean, finite_number, int_at_least


class Attention(nn.Module):
    """Multi-head self-attention with an explicit ``qkv`` projection (Vaswani et al. 2017).

    The products are plain tensor operations (``q @ k^T``, ``softmax``, ``A @ v``), so LRP
    composites give each its rule. Pruning a head removes its rows of ``qkv`` and its columns
    of ``proj`` and lowers ``heads`` (``prune.pruning.transformer``).

    ``heads_out`` is an identity on the heads' outputs ``(B, H, N, Dh)``, before they are
    concatenated for ``proj``: recording its output gives each head's relevance, activation
    and gradient with the heads on axis 1, where a head's pruning criteria read them.

    Args:
        dim: width of the tokens.
        heads: number of heads.
        head_dim: width of each head.
        fused: compute the attention with ``F.scaled_dot_product_attention`` (one op, faster)
            instead of its three explicit steps; the output is the same up to float rounding.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, fused: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.fused = heads, head_dim, fused
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.heads_out = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, Dh) each
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, N, N)
            out = attn.softmax(dim=-1) @ v
        out = self.heads_out(out)  # (B, H, N, Dh): the heads on axis 1, for recording
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.proj(out)


class MLP(nn.Module):
    """The block's feed-forward part: ``fc2(GELU(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, head_dim: int, hidden: int, fused: bool) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, head_dim, fused)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A Vision Transformer (Dosovitskiy et al. 2021) sized for 28x28 inputs.

    Patch embedding (a convolution with stride ``patch_size``), a class token, a learned
    position embedding, ``depth`` pre-norm blocks, a final LayerNorm and a linear head on the
    class token.

    Args:
        in_shape: ``(C, H, W)`` of one input; ``H`` and ``W`` divisible by ``patch_size``.
        num_classes: number of classes.
        patch_size: side of a square patch.
        dim: token width.
        depth: number of blocks.
        heads: attention heads per block.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        fused_attention: attention by ``F.scaled_dot_product_attention`` (see
            :class:`Attention`).
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "patch_size": int_at_least(1),
        "dim": int_at_least(1),
        "depth": int_at_least(1),
        "heads": int_at_least(1),
        "mlp_ratio": finite_number(0, above=True),
        "fused_attention": boolean(),
    }

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        patch_size: int = 7,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        fused_attention: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        if h % patch_size or w % patch_size:
            raise ValueError(
                f"patch_size={patch_size} must divide the image size {h}x{w}; choose a divisor"
            )
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.in_shape, self.num_classes = (c, h, w), int(num_classes)
        tokens = (h // patch_size) * (w // patch_size)
        self.patch_embed = nn.Conv2d(c, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.Sequential(
            *[Block(dim, heads, dim // heads, hidden, fused_attention) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], 1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])
