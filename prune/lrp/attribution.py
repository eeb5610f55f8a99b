"""Attribution entry point: one forward and one backward pass give input and layer relevance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prune.lrp.composites import Composite, get_composite
from prune.lrp.engine import Engine
from prune.lrp.passes import run_passes
from prune.lrp.seeds import gradient_seeds

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
            relevance with less work per batch, see :mod:`prune.lrp.fast.program`); where the model
            cannot be traced, or while hooks are registered on it, it runs as without.
        backend: ``"fast"`` (default) runs each rule's kernel where it has one
            (:mod:`prune.lrp.fast`); ``"reference"`` runs every rule's reference form, the
            formula of its paper (:mod:`prune.lrp.rules`). Both give the same relevance up to
            float rounding.

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
        backend: str = "fast",
    ) -> None:
        self.model, self.composite = model, get_composite(composite)
        self.engine = Engine(model, self.composite, record, trace, backend)
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
        # backward pass per seed through the retained graph, side by side on the CPU
        # (prune.lrp.passes); the maps are summed with the seeds' weights. (Stacking the seeds
        # as a 2B batch would double the forward and its memory.)
        seeds, explained = gradient_seeds(composite, z, target, owed, run.passes)

        def one_pass(seed: Tensor, retain: bool) -> tuple[Tensor, dict[str, Tensor]]:
            with engine.recording() as records:  # the record hooks of this pass add into it
                (grad,) = torch.autograd.grad(logits, x, seed, retain_graph=retain)
            return grad, records

        passes = run_passes(one_pass, [seed for _, seed in seeds], x.device)
        rel_in: Tensor | None = None
        outputs: dict[str, Tensor] = {}
        for (weight, _), (grad, records) in zip(seeds, passes, strict=True):
            if run.root_rule_used:
                rel = grad
            elif grad.is_contiguous():  # ours alone (never broadcast): multiply in place
                rel = grad.mul_(x.detach())
            else:
                rel = x.detach() * grad
            rel_in = _weighted_add(rel_in, weight, rel)
            for name, rec in records.items():
                outputs[name] = _weighted_add(outputs.get(name), weight, rec.detach())
        return LRPResult(input=rel_in.detach(), output=outputs, logits=z, explained=explained)


def attribute(
    model: nn.Module,
    x: Tensor,
    target: Tensor | Callable[[Tensor], Tensor] | None = None,
    composite: Composite | str = "epsilon_plus",
    record: Sequence[str] = (),
    backend: str = "fast",
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
        backend: ``"fast"`` or ``"reference"``, see :class:`Explainer`.

    Returns:
        An :class:`LRPResult`.

    Raises:
        RuntimeError: under ``torch.inference_mode`` (LRP needs gradients).
        UnsupportedLayerError: for a layer or functional op the composite has no rule for.
    """
    return Explainer(model, composite, record, trace=False, backend=backend)(x, target)


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
