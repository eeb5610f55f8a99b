"""absLRP of a ViT the straightforward way, in the style of the authors' reference code.

Vukadin et al. (2024) implement absLRP with forward hooks: every leaf layer, when it runs, also
runs its absolute twin (``|W|``, ``|b|`` on ``|x|``) and keeps its inputs, its output ``y`` and
the twin's output; explaining then walks the layers backward, and each layer asks autograd for
``x * d(y + y_twin)/dx^T (R / |y|)`` and rescales that to unit L1 per sample. The products of
attention and the residual sums become small modules so that they get hooks too; LayerNorm and
the softmax hold their statistics (mean and variance; maximum and denominator) constant, as the
authors' modules do. The contrastive map is a second walk over the same saved tensors.

This is the baseline of ``benchmarks/lrp_speed.py`` for the ``abslrp`` preset on
``prune.models.ViT``. It gives the map of the project's ``abslrp`` composite
(``tests/lrp/test_abslrp_hooks_baseline.py``), so the two timings compare equal work. It differs
from the authors' code in three places: each twin is made once, where theirs deep-copies the
layer on every call; a forward pre-hook makes each layer's inputs new leaves of the graph, so that
the gradient a layer asks for is its own (at a residual sum the skip input also feeds the other
branch, and a gradient through the whole graph would add that branch's derivative); and the
class-token selection passes relevance unchanged, as in the composite.

    hooks = AbsLRPHooks(model)       # a prune.models.ViT in eval mode; hooks go on its layers
    relevance = hooks(x, target)     # (B, C, H, W): the target's map minus the other classes'
    hooks.remove()
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from prune.models.vit import ViT


class MatMul(nn.Module):
    """``a @ b`` as a layer (``A @ v``)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class QueryKey(nn.Module):
    """``q @ k^T`` as a layer: relevance goes to ``q`` and ``k`` themselves."""

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return q @ k.transpose(-2, -1)


class Add(nn.Module):
    """``a + b`` as a layer (residual sums, the position embedding)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class HeldSoftmax(nn.Module):
    """The softmax over the last axis with its maximum and denominator held constant."""

    def forward(self, x: Tensor) -> Tensor:
        e = (x - x.amax(-1, keepdim=True).detach()).exp()
        return e / e.sum(-1, keepdim=True).detach()


class HeldLayerNorm(nn.Module):
    """A LayerNorm over the last axis with its mean and variance held constant.

    Args:
        norm: the model's LayerNorm, whose weight, bias and eps it shares.
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True).detach()
        var = x.var(-1, unbiased=False, keepdim=True).detach()
        return (x - mean) / (var + self.eps).sqrt() * self.weight + self.bias


def absolute_twin(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` (made before any hook is registered) with ``|W|`` and ``|b|``."""
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
    return twin.requires_grad_(False)


def unit_l1(relevance: Tensor) -> Tensor:
    """``relevance`` rescaled per sample to ``sum |relevance| == 1``."""
    norm = relevance.flatten(1).abs().sum(1).clamp_min(1e-30)
    return relevance / norm.reshape(-1, *([1] * (relevance.dim() - 1)))


class BlockOps(nn.Module):
    """The hooked ops of one transformer block that are not modules of the ViT."""

    def __init__(self, norm1: nn.LayerNorm, norm2: nn.LayerNorm) -> None:
        super().__init__()
        self.norm1, self.norm2 = HeldLayerNorm(norm1), HeldLayerNorm(norm2)
        self.qk, self.softmax, self.av = QueryKey(), HeldSoftmax(), MatMul()
        self.add1, self.add2 = Add(), Add()


class AbsLRPHooks:
    """absLRP of a :class:`~prune.models.vit.ViT` by forward hooks and a per-layer backward walk.

    The ViT's own layers (patch embedding, ``qkv``, ``proj``, the MLPs, the head) get hooks; its
    functional steps run as the layers of :class:`BlockOps`. ``remove()`` takes the hooks off.

    Args:
        model: the ViT (eval mode; its forward is rewritten here, its weights are shared).
    """

    def __init__(self, model: ViT) -> None:
        self.model = model
        self.ops = nn.ModuleList(BlockOps(b.norm1, b.norm2) for b in model.blocks)
        self.norm, self.pos = HeldLayerNorm(model.norm), Add()
        layers: list[nn.Module] = [self.norm, self.pos, model.patch_embed, model.head]
        for block, ops in zip(model.blocks, self.ops, strict=True):
            layers += [block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.act]
            layers += [block.mlp.fc2, *ops.children()]
        self.twins = {layer: absolute_twin(layer) for layer in layers}
        self.saved: dict[nn.Module, tuple[tuple[Tensor, ...], Tensor, Tensor]] = {}
        self.handles: list[RemovableHandle] = []
        for layer in layers:
            self.handles.append(layer.register_forward_pre_hook(self._cut))
            self.handles.append(layer.register_forward_hook(self._save))

    @staticmethod
    def _cut(layer: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Forward pre-hook: the inputs as new leaves, so that the layer's gradient is its own (a
        residual sum's skip input also feeds the other branch, whose derivative a gradient
        through the whole graph would add)."""
        return tuple(a.detach().requires_grad_() for a in args)

    def _save(self, layer: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        """Forward hook: run the absolute twin, keep inputs, output and twin output."""
        twin = self.twins[layer](*(a.abs() for a in args))
        self.saved[layer] = (args, output, twin)

    def _rule(self, layer: nn.Module, relevance: Tensor, keep: bool) -> tuple[Tensor, ...]:
        """The relevance of each input of ``layer``, unit L1, from its output relevance."""
        args, y, twin = self.saved[layer]
        over = torch.where(y == 0, torch.zeros_like(y), relevance / y.abs())
        grads = torch.autograd.grad(y + twin, args, over, retain_graph=keep)
        return tuple(unit_l1(a.detach() * g) for a, g in zip(args, grads, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        """The ViT's logits, through its layers and the hooked ops."""
        m = self.model
        t = m.patch_embed(x)
        b = t.shape[0]
        t = t.flatten(2).transpose(1, 2)
        t = self.pos(torch.cat([m.cls_token.expand(b, -1, -1), t], 1), m.pos_embed)
        for block, ops in zip(m.blocks, self.ops, strict=True):
            att, n = block.attn, t.shape[1]
            qkv = att.qkv(ops.norm1(t)).reshape(b, n, 3, att.heads, att.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            heads = ops.av(ops.softmax(ops.qk(q, k) * att.scale), v)
            t = ops.add1(t, att.proj(heads.transpose(1, 2).reshape(b, n, -1)))
            t = ops.add2(t, block.mlp.fc2(block.mlp.act(block.mlp.fc1(ops.norm2(t)))))
        return m.head(self.norm(t)[:, 0])

    def explain(self, seed: Tensor, keep: bool) -> Tensor:
        """Walk the saved layers backward from the output relevance ``seed`` ``(B, K)``; with
        ``keep`` the graph stays for another walk."""
        m = self.model

        def rule(layer: nn.Module, relevance: Tensor) -> Tensor:
            return self._rule(layer, relevance, keep)[0]

        r = rule(m.head, seed)
        tokens = torch.zeros_like(self.saved[self.norm][1])
        tokens[:, 0] = r  # the class-token selection passes relevance unchanged
        r = rule(self.norm, tokens)
        for block, ops in zip(reversed(m.blocks), reversed(self.ops), strict=True):
            att, mlp = block.attn, block.mlp
            r_skip, r_mlp = self._rule(ops.add2, r, keep)
            r_mlp = rule(mlp.fc1, rule(mlp.act, rule(mlp.fc2, r_mlp)))
            r = r_skip + rule(ops.norm2, r_mlp)
            r_skip, r_proj = self._rule(ops.add1, r, keep)
            r = rule(att.proj, r_proj)
            b, n, _ = r.shape
            r = r.reshape(b, n, att.heads, att.head_dim).transpose(1, 2)
            r_attn, r_v = self._rule(ops.av, r, keep)
            r_q, r_k = self._rule(ops.qk, rule(ops.softmax, r_attn), keep)  # scale: unchanged
            r_qkv = torch.stack([r_q, r_k, r_v]).permute(1, 3, 0, 2, 4).reshape(b, n, -1)
            r = r_skip + rule(ops.norm1, rule(att.qkv, r_qkv))
        r = rule(self.pos, r)[:, 1:]  # the class token's share stays there
        shape = self.saved[m.patch_embed][1].shape  # (B, D, h, w)
        return rule(m.patch_embed, r.transpose(1, 2).reshape(shape))

    def __call__(self, x: Tensor, target: Tensor) -> Tensor:
        """The contrastive absLRP map of ``x`` ``(B, C, H, W)`` for the classes ``target``."""
        logits = self.forward(x)
        one = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        rest = (1 - one) / (logits.shape[1] - 1)
        try:
            return self.explain(one, keep=True) - self.explain(rest, keep=False)
        finally:
            self.saved.clear()

    def remove(self) -> None:
        """Take the hooks off the model's layers."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
