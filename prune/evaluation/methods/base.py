"""Attribution method: the one interface every explanation method implements, and the
registry that names them for configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from prune.registry import Registry


class AttributionMethod(ABC):
    """Maps ``(model, x, target)`` to one relevance value per input element.

    Subclasses implement :meth:`attribute`. Calling the method puts the model in
    ``eval()`` mode with gradients enabled, checks shapes, and restores the previous
    mode afterwards, so it is safe to call from training hooks
    and from ``torch.no_grad()`` blocks. It cannot run under ``torch.inference_mode``,
    where no graph is recorded.

    Attributions are returned detached, with the shape and dtype of ``x``:
    ``(B, *sample)``. Positive values mean evidence for ``target``.
    """

    #: short name used in tables and plots; set by each subclass
    name: str = "attribution"

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Attribute ``target`` logits of ``model`` at ``x`` to the input elements.

        Args:
            model: classifier returning logits ``(B, K)``.
            x: inputs ``(B, *sample)``.
            target: class index per sample, ``(B,)`` long tensor.

        Returns:
            Relevance ``(B, *sample)``, detached.

        Raises:
            RuntimeError: under ``torch.inference_mode``.
            ValueError: when ``target`` does not hold one index per sample.
        """
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{type(self).__name__} needs gradients, but torch.inference_mode is on "
                "(Trainer.validate/test use it by default): run it outside inference mode, "
                "e.g. Trainer(inference_mode=False)"
            )
        target = torch.as_tensor(target, device=x.device).long().reshape(-1)
        if target.numel() != x.shape[0]:
            raise ValueError(
                f"target must hold one class index per sample: got {target.numel()} "
                f"for a batch of {x.shape[0]}"
            )
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                relevance = self.attribute(model, x.detach(), target)
        finally:
            model.train(was_training)
        if relevance.shape != x.shape:
            raise RuntimeError(
                f"{type(self).__name__} returned shape {tuple(relevance.shape)} "
                f"for input {tuple(x.shape)}"
            )
        return relevance.detach().to(x.dtype)

    @abstractmethod
    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Compute the relevance; the model is in eval mode and grad is enabled."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def target_logit_gradient(model: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient of the summed target logits with respect to ``x``.

    Only ``x`` receives a gradient (``torch.autograd.grad`` with ``inputs=x``), so
    parameter ``.grad`` fields stay untouched.

    Returns:
        ``(gradient, logits)``, the gradient shaped like ``x``.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    selected = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(selected, x)
    return grad, logits.detach()


#: attribution methods by name; a method joins with ``@METHODS.register("name")`` beside its class
METHODS: Registry[AttributionMethod] = Registry("attribution method")


def get_method(name: str, **kwargs: Any) -> AttributionMethod:
    """Build the attribution method registered as ``name``.

    The method's :attr:`~AttributionMethod.name` becomes ``name``, so tables and plots show
    the registered name; the generic ``"lrp"`` entry keeps the name of its composite.

    Args:
        name: a name in :data:`METHODS`, e.g. ``"gradient_x_input"`` or ``"lrp_epsilon_plus"``.
        **kwargs: constructor arguments of that method.

    Raises:
        KeyError: for an unknown name; the message lists the known ones.
    """
    method = METHODS.get(name, **kwargs)
    if name != "lrp":
        method.name = name
    return method


def get_methods(
    names: Iterable[str] | Mapping[str, Mapping[str, Any] | None],
) -> dict[str, AttributionMethod]:
    """Build several methods: a list of names, or a mapping name -> kwargs (or None)."""
    if isinstance(names, Mapping):
        return {n: get_method(n, **(kw or {})) for n, kw in names.items()}
    return {n: get_method(n) for n in names}
