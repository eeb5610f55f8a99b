"""Attribution entry point: one forward and one backward pass give input and layer relevance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prune.lrp.composites import Composite, get_composite
from prune.lrp.core import divide_by_input, ratio
from prune.lrp.engine import Engine

INFERENCE_MODE_MESSAGE = (
    "LRP needs gradients, but it was called under torch.inference_mode(). "
    "Lightning's Trainer.validate()/test()/predict() run in inference mode: build the Trainer "
    "used for explaining with Trainer(inference_mode=False) (torch.no_grad() is fine)."
)


@dataclass
class LRPResult:
    """Relevance from one call of :func:`attribute`.

    With several targets per sample (``target`` of shape ``(B, T)``) every tensor gets a target
    axis after the batch axis: ``input`` is ``(B, T, *sample)``, ``output[name]`` ``(B, T, ...)``.

    Attributes:
        input: relevance at the model input, shaped like ``x``.
        output: relevance at the *output* of each recorded module ``{name: (B, ...)}``.
        logits: model output ``(B, K)``, detached.
        explained: the explained output per sample, i.e. the sum of the output relevance.
    """

    input: Tensor
    output: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None
    explained: Tensor | None = None

    def sums(self) -> dict[str, Tensor]:
        """Relevance summed per sample at the input and at every recorded output."""
        dims = self.explained.dim()
        out = {name: rel.flatten(dims).sum(-1) for name, rel in self.output.items()}
        out["<input>"] = self.input.flatten(dims).sum(-1)
        return out


def softmax_gradient(logits: Tensor, labels: Tensor) -> Tensor:
    """Output relevance of softmax-gradient LRP (SGLRP; Iwana et al., ICCVW 2019).

    ``R_k = p_t (delta_kt - p_k)``, the gradient of the target's softmax probability ``p_t`` with
    respect to the logits: the target class gets ``p_t (1 - p_t)``, every other class the negative
    share ``-p_t p_k`` it takes from it. The map therefore contrasts the target with the classes
    the model confuses it with; the output relevance sums to zero per sample.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` target class indices.
    """
    z = logits.detach()
    p = (z.float() if z.dtype in (torch.float16, torch.bfloat16) else z).softmax(1)
    p_t = p.gather(1, labels.reshape(-1, 1).long())
    one_hot = torch.zeros_like(p).scatter_(1, labels.reshape(-1, 1).long(), 1.0)
    return (p_t * (one_hot - p)).to(logits.dtype)


def logit_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Output relevance that explains the margin ``z_t - z_r`` of the target over its strongest
    competitor ``r`` (the largest other logit).

    ``R_t = z_t``, ``R_r = -z_r``, zero elsewhere: relevance sums to the margin, which is what
    decides the classification (class evidence relative to the competitors, as in Montavon et al.
    2019, "Layer-wise relevance propagation: an overview", here against the strongest one).
    Units that tell the target apart from the class it is most confused with get positive
    relevance; units that both classes use cancel. With fewer than two classes there is no
    competitor and this is the target logit.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` target class indices.
    """
    z = logits.detach()
    labels = labels.reshape(-1, 1).long()
    one_hot = torch.zeros_like(z).scatter_(1, labels, 1.0)
    if z.shape[1] < 2:
        return one_hot * z
    rival = z.scatter(1, labels, float("-inf")).argmax(1, keepdim=True)
    return (one_hot - torch.zeros_like(z).scatter_(1, rival, 1.0)) * z


def log_probability(logits: Tensor, labels: Tensor) -> Tensor:
    """Output relevance that explains the target's log-probability ``log p_t``, linearised at the
    logits.

    ``R_k = z_k (delta_kt - p_k)``: the logits times the gradient of ``log p_t`` (the negative
    cross-entropy loss). The target keeps ``z_t (1 - p_t)``, each competitor gives back
    ``z_k p_k``; relevance sums to ``z_t - sum_k p_k z_k``. A sample the model is sure of
    (``p_t`` near 1) sends almost nothing; the samples near a decision boundary, which pruning
    flips first, send the most. With LRP-0 in every layer the unit relevance is the first-order
    Taylor term of the loss (Molchanov et al. 2017), signed.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` target class indices.
    """
    z = logits.detach()
    zf = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    one_hot = torch.zeros_like(zf).scatter_(1, labels.reshape(-1, 1).long(), 1.0)
    return (zf * (one_hot - zf.softmax(1))).to(logits.dtype)


#: Integer dtypes of class-index targets.
INDEX = (torch.int64, torch.int32, torch.int16, torch.uint8)


def _output_relevance(logits: Tensor, target: Tensor | Callable[[Tensor], Tensor] | None) -> Tensor:
    """Output relevance ``(N, K)``: the target logit for class indices, ``target(logits)`` for a
    callable, else ``target`` itself."""
    if callable(target) and not isinstance(target, Tensor):
        target = target(logits)
    if target is None:
        target = logits.argmax(1)
    if target.dtype in INDEX:
        one_hot = torch.zeros_like(logits).scatter_(1, target.reshape(-1, 1).long(), 1.0)
        return one_hot * logits
    if target.shape != logits.shape:
        raise ValueError(
            f"output relevance must have the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    return target.to(logits)


def _gradient_seeds(
    composite: Composite, z: Tensor, target: Any, owed: float | None, passes: int
) -> tuple[list[tuple[float, Tensor]], Tensor]:
    """The seeds of the backward passes with their weights, and the explained output per sample.

    A seed is the output relevance in gradient form, times the rescale the logits still owe:
    ``R / stab(z)`` (``R / z`` where none is owed). Class indices (or none: the predicted
    class) under a one-map composite take a narrow path with the same values: the relevance
    sits on one logit per sample, so the seed is that column's ratio scattered into zeros and
    the explained output is that logit. On a small model the full-width path's extra
    operations cost 3% of a forward+backward (the MLP's epsilon pass: 1.11-1.12x against
    1.08-1.09x of it).
    """
    one_map = passes == 1 and type(composite).seeds is Composite.seeds
    if one_map and (target is None or (isinstance(target, Tensor) and target.dtype in INDEX)):
        index = (z.argmax(1) if target is None else target).reshape(-1, 1).long()
        if index.shape[0] != z.shape[0]:
            raise ValueError(
                f"target has {index.shape[0]} class indices for a batch of {z.shape[0]}"
            )
        zt = z.gather(1, index)
        col = divide_by_input(zt, zt) if owed is None else ratio(zt, zt, owed)
        return [(1.0, torch.zeros_like(z).scatter_(1, index, col))], zt.reshape(-1)
    relevance = _output_relevance(z, target)
    seeds = composite.seeds(z, relevance)
    if len(seeds) != passes:
        raise RuntimeError(f"{composite!r} gave {len(seeds)} seeds but num_maps={passes}")
    stabilized = [
        (weight, divide_by_input(r, z) if owed is None else ratio(r, z, owed))
        for weight, r in seeds
    ]
    return stabilized, relevance.sum(1)


class Explainer:
    """LRP for many batches of one model: the layers are mapped to rules once, not per call.

    ``Explainer(model, composite, record)(x, target)`` equals
    ``attribute(model, x, target, composite, record)``; reusing the explainer saves the per-call
    set-up (a walk over the modules and a rule lookup per layer), which matters for small models
    and large datasets. Build a new one after changing the model's structure (pruning); weights,
    BatchNorm statistics and train/eval flags may change between calls.

    Args:
        model: a classifier returning logits ``(B, K)``.
        composite: a :class:`~prune.lrp.composites.Composite` or a registered name.
        record: qualified names of modules whose output relevance to return.
        trace: from the first call on, run the model as a ``torch.fx`` program (the same
            relevance with less work per batch, see :mod:`prune.lrp.program`); where the model
            cannot be traced, or while hooks are registered on it, it runs as without.

    Raises:
        KeyError: for an unknown composite name or record name.
        UnsupportedLayerError: for a layer the composite has no rule for.
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | str = "epsilon_plus",
        record: Sequence[str] = (),
        trace: bool = True,
    ) -> None:
        self.model, self.composite = model, get_composite(composite)
        self.engine = Engine(model, self.composite, record, trace)
        self._modules = [m for _, m, _ in self.engine.modules]
        self._param = next(
            (p for m in self._modules for p in m._parameters.values() if p is not None), None
        )

    def __call__(
        self, x: Tensor, target: Tensor | Callable[[Tensor], Tensor] | None = None
    ) -> LRPResult:
        """Explain ``model(x)``; ``target`` as in :func:`attribute`."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(INFERENCE_MODE_MESSAGE)
        batch, per_sample = x.shape[0], None
        if isinstance(target, Tensor) and not target.is_floating_point() and target.dim() == 2:
            per_sample = target.shape[1]  # (B, T): one map per (sample, target)
            x = x.repeat_interleave(per_sample, dim=0)
            target = target.reshape(-1)
        param = self._param
        dtype = param.dtype if param is not None and param.is_floating_point() else x.dtype
        # modules in training mode, switched to eval for the pass and back after it (an explain
        # pass inside Lightning's validate finds none: then nothing is set)
        training = [m for m in self._modules if m.training]
        for module in training:
            module.training = False
        try:
            x = x.detach()
            if x.dtype != dtype:
                x = x.to(dtype)
            if torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type):
                result = self._explain(x, target)  # the common case: no context to enter
            else:
                with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
                    result = self._explain(x, target)
        finally:
            for module in training:
                module.training = True
        if per_sample is not None:
            result = _split_targets(result, batch, per_sample)
        return result

    def _explain(self, x: Tensor, target: Any) -> LRPResult:
        x = x.requires_grad_()
        composite, engine = self.composite, self.engine
        with engine:
            engine.run.roots.add(x)
            logits = engine.forward(x)
            # Logits that still owe an epsilon rescale keep it: it is folded into the seed
            # below (R / stab(z) instead of a rescale node and R / z), unless they are recorded.
            owed = engine.run.pending_epsilon(logits) if isinstance(logits, Tensor) else None
            if isinstance(logits, Tensor) and (owed is None or engine.run.is_deferred(logits)):
                logits, owed = engine.materialize(logits), None
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise TypeError(
                f"LRP explains models returning logits (B, K), got {type(logits).__name__}"
            )
        run = engine.run
        if run.root_rule_used and run.root_other_used:
            raise NotImplementedError(
                "the model input is read both by a layer whose rule returns relevance (flat, "
                "w-square, box) and by another op; LRP cannot combine them"
            )
        z = logits.detach()
        # One map per seed (absLRP's contrastive pair has two): one forward pass, then one
        # backward pass per seed through the retained graph; the maps are summed with the seeds'
        # weights. (Stacking the seeds as a 2B batch would double the forward and its memory.)
        seeds, explained = _gradient_seeds(composite, z, target, owed, run.passes)
        rel_in: Tensor | None = None
        outputs: dict[str, Tensor] = {}
        for i, (weight, seed) in enumerate(seeds):
            engine.relevance.clear()  # the record hooks add into it
            (grad,) = torch.autograd.grad(logits, x, seed, retain_graph=i < len(seeds) - 1)
            if run.root_rule_used:
                rel = grad
            elif grad.is_contiguous():  # ours alone (never broadcast): multiply in place
                rel = grad.mul_(x.detach())
            else:
                rel = x.detach() * grad
            rel_in = _weighted_add(rel_in, weight, rel)
            for name, rec in engine.relevance.items():
                outputs[name] = _weighted_add(outputs.get(name), weight, rec.detach())
        return LRPResult(input=rel_in.detach(), output=outputs, logits=z, explained=explained)


def attribute(
    model: nn.Module,
    x: Tensor,
    target: Tensor | Callable[[Tensor], Tensor] | None = None,
    composite: Composite | str = "epsilon_plus",
    record: Sequence[str] = (),
) -> LRPResult:
    """Explain ``model(x)`` with LRP: relevance at the input and at the outputs of ``record``.

    Runs in eval mode with gradients enabled whatever the caller's state, and afterwards
    restores every module's train/eval flag; parameters and buffers are never modified and no
    hook or wrapper is left on the model. Autocast is switched off inside: relevance is computed
    in the parameters' dtype (float32, or float64 for a float64 model). For many batches of one
    model, an :class:`Explainer` does the same without the per-call set-up.

    Args:
        model: a classifier returning logits ``(B, K)``.
        x: a batch of inputs ``(B, *sample)``.
        target: what to explain. ``(B,)`` class indices (relevance at the output = the target
            logit, so the input relevance sums to it); ``(B, T)`` class indices for ``T`` maps
            per sample, computed in one batched pass; a float ``(B, K)`` output relevance
            (one-hot or any); a callable mapping the logits ``(B, K)`` to that output relevance
            (e.g. ``functools.partial(softmax_gradient, labels=y)``); ``None`` for the predicted
            class.
        composite: a :class:`~prune.lrp.composites.Composite` or a registered name.
        record: qualified names of modules whose output relevance to return.

    Returns:
        An :class:`LRPResult`.

    Raises:
        RuntimeError: under ``torch.inference_mode`` (LRP needs gradients).
        UnsupportedLayerError: for a layer or functional op the composite has no rule for.
    """
    return Explainer(model, composite, record, trace=False)(x, target)  # one pass: no tracing


def _weighted_add(total: Tensor | None, weight: float, t: Tensor) -> Tensor:
    part = t if weight == 1.0 else weight * t
    return part if total is None else total + part


def _split_targets(result: LRPResult, batch: int, per_sample: int) -> LRPResult:
    def split(t: Tensor) -> Tensor:
        return t.reshape(batch, per_sample, *t.shape[1:])

    return LRPResult(
        input=split(result.input),
        output={k: split(v) for k, v in result.output.items()},
        logits=result.logits.reshape(batch, per_sample, -1)[:, 0],
        explained=split(result.explained),
    )


def relevance_report(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    composite: Composite | str = "epsilon_plus",
    layers: Sequence[str] | None = None,
) -> str:
    """A table of the relevance sum at every layer next to the explained output.

    Use it to see where relevance is absorbed (biases, epsilon, stabilisers) or created (alpha-beta
    with beta > 0 on an unbalanced layer, flat). Values are batch means of per-sample sums.

    Args:
        model: the classifier.
        x: a batch of inputs.
        target: as in :func:`attribute`.
        composite: as in :func:`attribute`.
        layers: module names to show; default every leaf module.

    Returns:
        The table as text, from the output back to the input.
    """
    if layers is None:
        layers = [n for n, m in model.named_modules() if n and next(m.children(), None) is None]
    res = attribute(model, x, target, composite, record=layers)
    explained = res.explained.double().mean().item()
    lines = [f"{'layer (output of)':<32} {'sum R':>14} {'/ explained':>12}"]
    lines.append(f"{'<explained output>':<32} {explained:>14.6g} {1.0:>12.6f}")
    sums = res.sums()
    for name in [*reversed([n for n in layers if n in sums]), "<input>"]:
        value = sums[name].double().mean().item()
        lines.append(
            f"{name:<32} {value:>14.6g} {value / explained if explained else float('nan'):>12.6f}"
        )
    return "\n".join(lines)
