"""The matrix products of absLRP on a ViT, alone: what any implementation of the rule pays.

absLRP's map is the target's map minus the other classes' map: two backward passes. In each,
every linear or convolutional layer applies its transposed weight twice, ``W`` and ``|W|``
(``x * (W^T c + sign(x) |W|^T c)``), where the gradient applies it once; ``q @ k^T`` takes
both products for both factors, and ``A @ v``, whose attention weights are nonnegative, one
each. With the forward, a linear layer runs five products where forward+backward runs two.

``ProductFloor(model, x)()`` runs the model's forward (without autograd) and then exactly those
products, on the shapes of ``x``'s pass, with fixed random gradients and nothing else: no
elementwise rule, no rescale, no autograd. Its time over forward+backward is the ratio below
which no absLRP of this form can go on the machine; ``benchmarks/lrp_speed.py`` times it beside
the preset.

    floor = ProductFloor(model, x)   # a prune.models.ViT in eval mode, a batch of inputs
    floor()                          # the forward and the products of the two passes
    floor.flop_ratio(target)         # their FLOPs over forward+backward's (torch's formulas)

The FLOP ratio is the floor in arithmetic, independent of the machine: the least time ratio an
absLRP of this form could reach if its elementwise work cost as little, relative to its
products, as the gradient's does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from prune.models.vit import Attention, ViT

#: backward passes of the contrastive map (the target, the other classes)
PASSES = 2


class ProductFloor:
    """The forward and absLRP's backward products on ``model`` for the batch ``x``."""

    def __init__(self, model: ViT, x: Tensor) -> None:
        self.model, self.x = model, x
        seen: dict[nn.Module, Tensor] = {}

        def keep(module: nn.Module, args: tuple, out: Tensor) -> None:
            seen.setdefault(module, args[0].detach())

        handles = [
            m.register_forward_hook(keep)
            for m in model.modules()
            if isinstance(m, nn.Linear | nn.Conv2d | Attention)
        ]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for handle in handles:
                handle.remove()
        gen = torch.Generator(device=x.device).manual_seed(0)

        def like(shape) -> Tensor:
            return torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)

        # per layer: the gradient at its output, its weight and |weight| (input's shape for convs)
        self.linears, self.convs, self.attention = [], [], []
        for module, inp in seen.items():
            if isinstance(module, nn.Linear):
                grad = like((*inp.shape[:-1], module.out_features))
                w = module.weight.detach()
                self.linears.append((grad, w, w.abs()))
            elif isinstance(module, nn.Conv2d):
                out = module(inp)
                w = module.weight.detach()
                self.convs.append((module, like(out.shape), inp, w, w.abs()))
            else:  # Attention: q, k, v (B, H, N, Dh), the scores and weights (B, H, N, N)
                b, n, _ = inp.shape
                qkv = (b, module.heads, n, module.head_dim)
                scores = (b, module.heads, n, n)
                q, k, v = like(qkv), like(qkv), like(qkv)
                weights = like(scores).softmax(-1)
                self.attention.append(
                    (like(scores), q, k, q.abs(), k.abs(), like(qkv), weights, v.clamp(min=0))
                )

    def __call__(self) -> None:
        with torch.no_grad():
            self.model(self.x)
            for _ in range(PASSES):
                for grad, w, w_abs in self.linears:
                    grad @ w, grad @ w_abs
                for module, grad, inp, w, w_abs in self.convs:
                    for weight in (w, w_abs):
                        torch.ops.aten.convolution_backward(
                            grad,
                            inp,
                            weight,
                            None,
                            list(module.stride),
                            list(module.padding),
                            list(module.dilation),
                            False,
                            [0, 0],
                            module.groups,
                            [True, False, False],
                        )
                for c_scores, q, k, q_abs, k_abs, c_out, weights, v_pos in self.attention:
                    c_scores @ k, c_scores @ k_abs  # q's two products
                    c_scores.transpose(-2, -1) @ q, c_scores.transpose(-2, -1) @ q_abs  # k's
                    c_out @ v_pos.transpose(-2, -1)  # the weights' one product
                    weights.transpose(-2, -1) @ c_out  # v's

    def flop_ratio(self, target: Tensor) -> float:
        """FLOPs of :meth:`__call__` over those of forward+backward (gradient x input: the
        gradient of the ``target`` logits with respect to the input alone), counted with
        torch's FLOP formulas."""
        with FlopCounterMode(display=False) as products:
            self()
        x = self.x.detach().clone().requires_grad_()
        frozen = [p for p in self.model.parameters() if p.requires_grad]
        for p in frozen:  # the input's gradient alone, as forward+backward is timed
            p.requires_grad_(False)
        try:
            with FlopCounterMode(display=False) as gradient:
                logits = self.model(x)
                logits.gather(1, target[:, None]).sum().backward()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return products.get_total_flops() / gradient.get_total_flops()
