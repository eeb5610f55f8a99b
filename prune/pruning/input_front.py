"""Input fronts: modules in front of a network that drop pruned input elements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

FRONT = "input_front"


class InputSelect(nn.Module):
    """Front of an input-pruned fully connected network: flatten, then keep listed elements.

    The first Linear layer loses the columns of the dropped elements, so the saving is real:
    ``2 * (n_dense - k) * out_features`` FLOPs per sample in that layer. The data pipeline
    keeps feeding dense samples; the indices travel with the model (and its state dict).

    Args:
        index: sorted kept flat indices into one dense sample.
    """

    #: Pure data movement: its gradient is a correct LRP rule (relevance of dropped elements
    #: is zero). LRP composites treat modules with this flag as transparent.
    lrp_transparent: ClassVar[bool] = True

    def __init__(self, index: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(list(index), dtype=torch.long))
        self.enabled = True

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *sample) -> (B, k)``."""
        if not self.enabled:
            return x
        return x.flatten(1).index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"kept={self.index.numel()}"


class InputCrop(nn.Module):
    """Front of an input-pruned CNN: crop to the kept pixels' bounding box, zero the others.

    Only the crop saves compute: every convolution then runs on a smaller image (the first
    one on ``h * w`` instead of ``H * W`` positions, deeper ones roughly in proportion), and a
    flatten -> Linear head loses the columns of the feature positions outside the crop. Zeroing
    the dropped pixels inside the box (the mask) saves nothing; it only makes the model see
    exactly the kept inputs, as the fully connected ``InputSelect`` does.

    Args:
        box: ``(top, bottom, left, right)``, half-open pixel bounds in the dense image.
        mask: ``(C, bottom - top, right - left)`` bool, True where an element is kept.
        window: ``(row0, rows, col0, cols)`` of the dense feature map that the crop's feature
            map covers (flatten -> Linear heads); ``(0, 0, 0, 0)`` for pooled heads.
    """

    #: Slicing and masking: its gradient is a correct LRP rule (see ``InputSelect``).
    lrp_transparent: ClassVar[bool] = True

    def __init__(self, box: Sequence[int], mask: Tensor, window: Sequence[int]) -> None:
        super().__init__()
        self.top, self.bottom, self.left, self.right = (int(v) for v in box)
        self.register_buffer("box", torch.as_tensor([int(v) for v in box], dtype=torch.long))
        self.register_buffer("window", torch.as_tensor([int(v) for v in window], dtype=torch.long))
        self.register_buffer("mask", mask.to(torch.bool))
        self.enabled = True

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, bottom - top, right - left)``."""
        if not self.enabled:
            return x
        x = x[..., self.top : self.bottom, self.left : self.right]
        return torch.where(self.mask, x, x.new_zeros(()))

    def extra_repr(self) -> str:
        return f"box=(top={self.top}, bottom={self.bottom}, left={self.left}, right={self.right})"


def _front_hook(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of the network: run its input front first."""
    return (getattr(module, FRONT)(args[0]), *args[1:])


def get_front(model: nn.Module) -> nn.Module | None:
    """The model's input front, or None for a model whose inputs are not pruned."""
    return getattr(model, FRONT, None)


def install_front(model: nn.Module, front: nn.Module) -> None:
    """Put ``front`` before ``model`` as submodule ``input_front`` (replacing an older front).

    It is a registered submodule (its buffers are in the state dict) run by a forward
    pre-hook on the model, so no module of the dense model is renamed or wrapped.
    """
    param = next(model.parameters(), None)
    if param is not None:
        front = front.to(param.device)
    setattr(model, FRONT, front)
    if _front_hook not in model._forward_pre_hooks.values():
        model.register_forward_pre_hook(_front_hook)


@contextlib.contextmanager
def front_bypassed(model: nn.Module) -> Iterator[None]:
    """Let inputs pass the front unchanged (to probe the network behind it)."""
    front = get_front(model)
    if front is None:
        yield
        return
    front.enabled = False
    try:
        yield
    finally:
        front.enabled = True
