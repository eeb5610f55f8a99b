"""Global Attribution Evaluation (GAE): local consistency times contrastiveness.

Vukadin et al. 2024, "Advancing attribution-based neural network explainability through
relative absolute magnitude layer-wise relevance propagation and multi-component
evaluation", ACM TIST, sec. 4: ``GAE(m_A) = LC(m_A) * C(m_A)``. The paper gives the
structure; the exact terms below follow the authors' reference code
(github.com/davor10105/relative-absolute-magnitude-propagation, ``abslrp_gae/gae/gae.py``)
with three corrections, stated where they apply.

Definition implemented, per scored image ``x`` (``P`` pixels, explained class ``c`` =
the model's prediction, ``a = relu(A(x, c))`` the method's map, ``T`` = ``steps``):

1. Masking trajectories (method independent). For order ``o`` in {MoRF, LeRF}:
   ``x^{o,0} = x``; at step ``k = 0..T-1`` record the logit ``o_k = f_c(x^{o,k})`` and the
   impact ``g^{o,k} = |(x^{o,k} - fill) * grad_x f_c(x^{o,k})|`` (input x gradient relative
   to the removal value; the reference removes to 0, where this is its ``|x * grad|``).
   Then ``x^{o,k+1}`` has exactly ``round((k+1)/T * P)`` pixels replaced by ``fill``: the
   previous ones plus the highest (MoRF) or lowest (LeRF) impact pixels among those still
   present. *Correction 1*: the reference ranks all pixels each step, so its LeRF keeps
   re-selecting already-masked (zero-impact) pixels while its MoRF adds a fresh
   ``k/T`` of the image every step; here both orders mask the same fractions.
2. Impact map ``M = sign(N(sum_k g^{LeRF,k}) - N(sum_k g^{MoRF,k}))`` with ``N`` the unit
   L1 normalisation per sample: +1 where the model's own gradient says "important".
3. Faithfulness ``F = sum(M * a) / (sum(a) + eps)`` in [-1, 1].
4. Robustness. With ``D(u, v) = sum|u - v| / (sum|u| + sum|v| + eps)`` and, for
   ``k = 1..T-1``, ``a^{o,k} = relu(A(x^{o,k}, c))``:
   ``dr_k = D(a, a^{MoRF,k}) - D(a, a^{LeRF,k})`` and
   ``do_k = (o^{LeRF}_k - o^{MoRF}_k) / (|o_0| + eps)``;
   ``R = 1 - 2 D(dr, do)`` in [-1, 1]: the explanation should change where the output
   changes. *Correction 2*: both differences are taken as "change under MoRF minus
   change under LeRF", as in the authors' earlier ``ramp_gae`` code; the newer reference
   subtracts the relevance term the other way round, which scores an explanation that
   tracks the output as -1.
5. Local consistency ``LC = relu(F + R) / 2`` in [0, 1].
6. Contrastiveness. A 2x2 mosaic is built for *every* scored image from that image and
   three other images of the same scored batch, of other classes where the batch has
   them (*correction 3*: the reference tiles image ``m`` with images ``m + j * B/4``
   while scoring tiles ``4m..4m+3``, so tiles and scores disagree unless ``B = 4``).
   Tiles are the images resized to half size (area interpolation); the scored image
   sits in a random quadrant. Each quadrant gets the score ``s_t = 2 p_{c_t} / p_c - 1``
   (``p`` = softmax of the model on the *whole* scored image, ``c_t`` the tile's class;
   1 for the scored image's own quadrant). With ``a_mos = relu(A(mosaic, c))``:
   ``C = relu(sum(S * a_mos) / (sum(a_mos) + eps))`` in [0, 1].
7. ``GAE = LC * C`` in [0, 1]; higher is better.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.evaluation.masking import apply_mask, num_pixels, pixel_relevance, ranks, relevance_order

EPS = 1e-9

Attribute = Callable[[nn.Module, Tensor, Tensor], Tensor]


def normalized_l1_distance(u: Tensor, v: Tensor) -> Tensor:
    """``D(u, v) = sum|u - v| / (sum|u| + sum|v| + eps)`` per sample (the reference's "dice")."""
    u, v = u.flatten(1), v.flatten(1)
    return (u - v).abs().sum(1) / (u.abs().sum(1) + v.abs().sum(1) + EPS)


def _overlap(relevance: Tensor, weight: Tensor) -> Tensor:
    """``sum(weight * relevance) / (sum(relevance) + eps)`` per sample."""
    r = relevance.flatten(1)
    return (weight.flatten(1) * r).sum(1) / (r.sum(1) + EPS)


def masking_trajectory(
    model: nn.Module, x: Tensor, target: Tensor, fill: Tensor, steps: int, order: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Iterative MoRF / LeRF masking driven by the model's own input x gradient.

    Returns:
        ``inputs (T, B, *sample)``, target ``logits (T, B)`` and summed impact
        ``(B, *sample)``, for steps ``k = 0..T-1`` (masked fraction ``k / T``).
    """
    total = num_pixels(x)
    masked = torch.zeros(x.shape[0], total, dtype=torch.bool, device=x.device)
    inputs, logits, impact = [], [], torch.zeros_like(x)
    current = x
    for k in range(steps):
        with torch.enable_grad():
            xk = current.detach().requires_grad_(True)
            out = model(xk).gather(1, target[:, None]).squeeze(1)
            (grad,) = torch.autograd.grad(out.sum(), xk)
        g = ((current - fill) * grad).abs()
        inputs.append(current)
        logits.append(out.detach())
        impact += g
        if k == steps - 1:
            break
        new = round((k + 1) / steps * total) - round(k / steps * total)
        score = pixel_relevance(g) * (1 if order == "morf" else -1)
        score = score.masked_fill(masked, -math.inf)  # only pixels still present compete
        masked |= ranks(relevance_order(score)) < new
        current = apply_mask(x, masked, fill)
    return torch.stack(inputs), torch.stack(logits), impact


def mosaic_tiles(classes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Pick the four tiles of each image's mosaic from the batch.

    Image ``i`` is always one tile; the three partners are other images of the batch,
    preferring classes not yet in the mosaic, then images not yet used. A batch of one
    image tiles it with itself.

    Returns:
        ``tiles (B, 4)`` batch indices in quadrant order (top-left, top-right,
        bottom-left, bottom-right) and ``position (B,)``, the quadrant of image ``i``.
    """
    b = classes.shape[0]
    device = classes.device
    idx = torch.arange(b, device=device)
    keys = torch.rand(b, b, generator=generator).to(device)  # random tie-breaking in [0, 1)
    keys = keys - 4.0 * torch.eye(b, device=device)  # the image itself only as a last resort
    chosen = [idx]
    for _ in range(3):
        used = torch.stack(chosen, 1)  # (B, r)
        same_class = (classes[None, :, None] == classes[used][:, None, :]).any(2)  # (B, B)
        reused = (idx[None, :, None] == used[:, None, :]).any(2)
        chosen.append((keys - 1.0 * same_class - 2.0 * reused).argmax(1))
    partners = torch.stack(chosen[1:], 1)  # (B, 3)
    position = torch.randint(4, (b,), generator=generator).to(device)
    tiles = torch.empty(b, 4, dtype=torch.long, device=device)
    slots = torch.arange(4, device=device).expand(b, 4)
    other = slots[slots != position[:, None]].view(b, 3)
    tiles.scatter_(1, position[:, None], idx[:, None])
    tiles.scatter_(1, other, partners)
    return tiles, position


def assemble_mosaic(quadrants: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, 4, C, h, w)`` quadrants -> ``(B, C, 2h, 2w)`` cropped to ``size``."""
    top = torch.cat([quadrants[:, 0], quadrants[:, 1]], dim=-1)
    bottom = torch.cat([quadrants[:, 2], quadrants[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2)[..., : size[0], : size[1]]


def make_mosaic(x: Tensor, tiles: Tensor) -> Tensor:
    """2x2 mosaics ``(B, C, H, W)`` of the images ``x[tiles]`` at half resolution."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(math.ceil(h / 2), math.ceil(w / 2)), mode="area")
    return assemble_mosaic(small[tiles], (h, w))


@dataclass
class GAEReference:
    """Everything GAE needs that does not depend on the attribution method."""

    x: Tensor
    target: Tensor
    morf_inputs: Tensor  # (T, B, *sample)
    lerf_inputs: Tensor
    morf_logits: Tensor  # (T, B)
    lerf_logits: Tensor
    impact_sign: Tensor  # (B, *sample) in {-1, 0, 1}
    mosaic: Tensor  # (B, *sample)
    tiles: Tensor  # (B, 4)
    position: Tensor  # (B,)
    score_map: Tensor  # (B, 1, H, W)


@torch.no_grad()
def gae_reference(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    classes: Tensor,
    fill: Tensor,
    steps: int = 10,
    generator: torch.Generator | None = None,
) -> GAEReference:
    """Masking trajectories, impact map and mosaics for images ``x`` ``(B, C, H, W)``.

    Args:
        model: classifier in eval mode.
        x: the scored images.
        target: explained class per image (the model's prediction).
        classes: class of each image as a mosaic tile (labels, or predictions).
        fill: removal values broadcastable to ``x``.
        steps: masking steps ``T`` (fractions ``0, 1/T, ..., (T-1)/T``); at least 2.
        generator: randomness of the mosaic layout (default: seed 0).
    """
    if steps < 2:
        raise ValueError(f"gae steps must be >= 2, got {steps}")
    if x.dim() != 4:
        raise ValueError(f"GAE needs images (B, C, H, W), got shape {tuple(x.shape)}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    morf_x, morf_o, morf_g = masking_trajectory(model, x, target, fill, steps, "morf")
    lerf_x, lerf_o, lerf_g = masking_trajectory(model, x, target, fill, steps, "lerf")
    l1 = lambda t: t / (t.flatten(1).abs().sum(1).view(-1, *[1] * (t.dim() - 1)) + EPS)  # noqa: E731
    impact_sign = (l1(lerf_g) - l1(morf_g)).sign()

    tiles, position = mosaic_tiles(classes, generator)
    prob = model(x).softmax(-1)  # p on each whole scored image
    p_tiles = prob.gather(1, classes[tiles])  # (B, 4)
    p_own = prob.gather(1, target[:, None])  # (B, 1)
    scores = 2 * p_tiles / (p_own + EPS) - 1
    scores.scatter_(1, position[:, None], 1.0)
    h, w = x.shape[-2:]
    hh, ww = math.ceil(h / 2), math.ceil(w / 2)
    quadrants = scores.view(*scores.shape, 1, 1, 1).expand(-1, -1, 1, hh, ww)
    return GAEReference(
        x=x,
        target=target,
        morf_inputs=morf_x,
        lerf_inputs=lerf_x,
        morf_logits=morf_o,
        lerf_logits=lerf_o,
        impact_sign=impact_sign,
        mosaic=make_mosaic(x, tiles),
        tiles=tiles,
        position=position,
        score_map=assemble_mosaic(quadrants, (h, w)),
    )


def gae_scores(
    attribute: Attribute,
    model: nn.Module,
    ref: GAEReference,
    attribution: Tensor | None = None,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """GAE and its components per image for one attribution method.

    Args:
        attribute: the method, ``attribute(model, x, target) -> (B, *sample)``.
        model: the classifier the reference was built with.
        ref: output of :func:`gae_reference`.
        attribution: the method's map on ``ref.x`` when already computed.
        batch_size: the most images per attribution call.

    Returns:
        ``faithfulness``, ``robustness``, ``local_consistency``, ``contrastiveness`` and
        ``gae``, each ``(B,)``.
    """
    b, steps = ref.x.shape[0], ref.morf_inputs.shape[0]
    if attribution is None:
        attribution = attribute(model, ref.x, ref.target)
    a = attribution.relu()
    # all perturbed inputs of steps 1..T-1 and the mosaics in one stream of batches
    stream = torch.cat(
        [ref.morf_inputs[1:].flatten(0, 1), ref.lerf_inputs[1:].flatten(0, 1), ref.mosaic]
    )
    targets = ref.target.repeat(2 * (steps - 1) + 1)
    chunk = batch_size or stream.shape[0]
    maps = torch.cat(
        [
            attribute(model, xs, ts)
            for xs, ts in zip(stream.split(chunk), targets.split(chunk), strict=True)
        ]
    ).relu()
    n = (steps - 1) * b
    morf_a, lerf_a, mosaic_a = maps[:n], maps[n : 2 * n], maps[2 * n :]

    faithfulness = _overlap(a, ref.impact_sign)
    a_rep = a.repeat(steps - 1, *[1] * (a.dim() - 1))  # step-major, like the stream
    dr = normalized_l1_distance(a_rep, morf_a) - normalized_l1_distance(a_rep, lerf_a)
    dr = dr.view(steps - 1, b).T  # (B, T-1)
    o0 = ref.morf_logits[0].abs() + EPS
    do = ((ref.lerf_logits[1:] - ref.morf_logits[1:]) / o0).T  # (B, T-1)
    robustness = 1 - 2 * normalized_l1_distance(dr, do)
    local_consistency = (faithfulness + robustness).relu() / 2
    contrastiveness = _overlap(mosaic_a, ref.score_map.expand_as(mosaic_a)).relu()
    return {
        "faithfulness": faithfulness,
        "robustness": robustness,
        "local_consistency": local_consistency,
        "contrastiveness": contrastiveness,
        "gae": local_consistency * contrastiveness,
    }
