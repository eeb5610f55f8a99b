"""Input surgery: drop pruned input elements (select for MLPs, crop for CNNs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn

from prune.pruning.groups import tracing
from prune.pruning.input_front import (
    InputCrop,
    InputSelect,
    front_bypassed,
    get_front,
    install_front,
)

_STRIDED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass
class _Call:
    name: str
    module: nn.Module
    inputs: tuple[int, ...]
    output: int
    in_shape: tuple[int, ...]


class _Stop(Exception):
    def __init__(self, shape: torch.Size) -> None:
        self.shape = shape


@dataclass
class InputRoute:
    """Where the input goes: ``mode`` "select" (into ``layer``, a Linear) or "crop" (a Conv2d).

    For "crop", ``head`` names the Flatten whose spatial input feeds ``linear`` (None for a
    pooled head), ``stride`` is the product of strides before it.
    """

    mode: str
    layer: str
    head: str | None = None
    linear: str | None = None
    stride: tuple[int, int] = (1, 1)


def _leaf_calls(model: nn.Module, x: Tensor) -> list[_Call]:
    calls: list[_Call] = []
    alive: list[object] = []  # keep outputs alive so that their ids stay unique
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        ids = tuple(id(a) for a in args if isinstance(a, Tensor))
        shape = tuple(args[0].shape) if args and isinstance(args[0], Tensor) else ()
        alive.append(out)
        calls.append(_Call(names[module], module, ids, id(out), shape))

    leaves = [m for m in model.modules() if not list(m.children()) and m is not model]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with tracing(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def _consumer(calls: list[_Call], tensor_id: int, start: int = 0) -> int | None:
    return next((i for i in range(start, len(calls)) if tensor_id in calls[i].inputs), None)


def input_route(model: nn.Module, example_input: Tensor) -> InputRoute:
    """Find how input pruning applies to ``model``.

    Raises:
        ValueError: naming the model when its input feeds neither a (Flatten ->) Linear nor
            a Conv2d, or a CNN's flatten -> Linear head is not a plain spatial grid.
    """
    calls = _leaf_calls(model, example_input)
    i = _consumer(calls, id(example_input))
    if i is not None and isinstance(calls[i].module, (InputSelect, InputCrop)):
        i = _consumer(calls, calls[i].output, i + 1)
    if i is not None and isinstance(calls[i].module, nn.Flatten):
        i = _consumer(calls, calls[i].output, i + 1)
        if i is not None and not isinstance(calls[i].module, nn.Linear):
            i = None
    what = "nothing" if i is None else f"{calls[i].name} ({type(calls[i].module).__name__})"
    if i is not None and isinstance(calls[i].module, nn.Linear):
        return InputRoute("select", calls[i].name)
    if i is None or not isinstance(calls[i].module, nn.Conv2d):
        raise ValueError(
            f"input pruning needs the input to enter a Linear (after a Flatten) or a Conv2d; "
            f"{type(model).__name__} feeds it to {what}"
        )
    route = InputRoute("crop", calls[i].name)
    for j, call in enumerate(calls):
        if isinstance(call.module, nn.Flatten) and len(call.in_shape) == 4:
            if call.in_shape[2] * call.in_shape[3] == 1:
                break  # globally pooled head: no spatial columns to remap
            k = _consumer(calls, call.output, j + 1)
            if k is None or not isinstance(calls[k].module, nn.Linear):
                raise ValueError(
                    f"cannot crop the input of {type(model).__name__}: its spatial flatten "
                    f"{call.name} does not feed a Linear layer"
                )
            sy = sx = 1
            for c in calls[:j]:
                if isinstance(c.module, _STRIDED):
                    s = c.module.stride
                    s = (s, s) if isinstance(s, int) else tuple(s)
                    sy, sx = sy * s[0], sx * s[1]
            route.head, route.linear, route.stride = call.name, calls[k].name, (sy, sx)
            break
    return route


def _feature_shape(model: nn.Module, head: str, x: Tensor) -> tuple[int, int] | None:
    """Spatial size of the feature map entering ``head`` for input ``x``; None if too small."""
    flatten = model.get_submodule(head)

    def stop(_module: nn.Module, args: tuple) -> None:
        raise _Stop(args[0].shape)

    handle = flatten.register_forward_pre_hook(stop)
    try:
        with tracing(model), front_bypassed(model), torch.no_grad():
            model(x)
    except _Stop as s:
        return (int(s.shape[2]), int(s.shape[3])) if s.shape[2] * s.shape[3] > 0 else None
    except RuntimeError:
        return None
    finally:
        handle.remove()
    raise RuntimeError(f"{head} was not called in the forward pass")


def _runs(model: nn.Module, x: Tensor) -> bool:
    try:
        with tracing(model), front_bypassed(model), torch.no_grad():
            model(x)
    except RuntimeError:
        return False
    return True


def _crop_box(
    model: nn.Module, route: InputRoute, kept: Tensor, bounds: Sequence[int], x: Tensor
) -> tuple[list[int], tuple[int, int] | None]:
    """Bounding box of ``kept`` (C, H, W), aligned to the stride, grown until the model runs."""
    rows = kept.any(0).any(1).nonzero().flatten()
    cols = kept.any(0).any(0).nonzero().flatten()
    sy, sx = route.stride
    top, bottom = int(rows[0]) // sy * sy, int(rows[-1]) + 1
    left, right = int(cols[0]) // sx * sx, int(cols[-1]) + 1
    bottom, right = min(bounds[1], -(-bottom // sy) * sy), min(bounds[3], -(-right // sx) * sx)
    top, left = max(top, bounds[0]), max(left, bounds[2])
    while True:
        crop = x[..., top:bottom, left:right]
        size = _feature_shape(model, route.head, crop) if route.head else None
        if size is not None or (route.head is None and _runs(model, crop)):
            return [top, bottom, left, right], size
        if [top, bottom, left, right] == list(bounds):
            raise ValueError(
                f"the kept inputs of {type(model).__name__} need a crop smaller than the "
                "network accepts, and it cannot grow further"
            )
        top, left = max(bounds[0], top - sy), max(bounds[2], left - sx)
        bottom, right = min(bounds[1], bottom + sy), min(bounds[3], right + sx)


def prune_inputs(
    model: nn.Module, input_keep: Sequence[int], input_shape: Sequence[int], example_input: Tensor
) -> None:
    """Keep only the ``input_keep`` elements (flat, dense indices) of each sample, in place.

    A fully connected network gets an :class:`InputSelect` front and its first Linear loses the
    dropped columns: outputs are unchanged for any input whose dropped elements are zero.
    A CNN gets an :class:`InputCrop` front (bounding box of the kept pixels, aligned to the
    stride of a flatten -> Linear head and grown until the network accepts it); such a head
    keeps the columns of the dense feature positions that the crop still computes. With
    unpadded convolutions (LeNet5) those features are exactly the dense ones; with padded
    convolutions (VGGSmall, ResNetSmall) the features at the crop border see zero padding
    instead of neighbouring pixels, so the cropped model needs the fine-tuning that follows.

    Raises:
        ValueError: naming the model when its input cannot be pruned this way.
    """
    input_shape = tuple(int(s) for s in input_shape)
    keep = torch.as_tensor(list(input_keep), dtype=torch.long)
    front = get_front(model)
    route = input_route(model, example_input)
    layer = model.get_submodule(route.linear or route.layer)
    with tracing(model):
        if route.mode == "select":
            old = (
                front.index.cpu()
                if isinstance(front, InputSelect)
                else torch.arange(math.prod(input_shape))
            )
            position = {int(v): i for i, v in enumerate(old)}
            kept_cols = {position[int(v)] for v in keep}
            remove = [i for i in range(layer.in_features) if i not in kept_cols]
            if remove:
                tp.prune_linear_in_channels(layer, remove)
            install_front(model, InputSelect(keep.tolist()))
            return
        if len(input_shape) != 3:
            raise ValueError(f"cropping needs (C, H, W) inputs, got input_shape={input_shape}")
        c, h, w = input_shape
        kept = torch.zeros(math.prod(input_shape), dtype=torch.bool)
        kept[keep] = True
        kept = kept.view(c, h, w)
        dense = example_input.new_zeros(1, c, h, w)
        if isinstance(front, InputCrop):
            bounds = [front.top, front.bottom, front.left, front.right]
            old_window = [int(v) for v in front.window]
        else:
            bounds = [0, h, 0, w]
            grid = _feature_shape(model, route.head, dense) if route.head else None
            old_window = [0, grid[0], 0, grid[1]] if grid else [0, 0, 0, 0]
        box, size = _crop_box(model, route, kept, bounds, dense)
        window = [0, 0, 0, 0]
        if route.head is not None:
            sy, sx = route.stride
            window = [box[0] // sy, size[0], box[2] // sx, size[1]]
            r0, nr, c0, nc = old_window
            if (
                window[0] < r0
                or window[0] + window[1] > r0 + nr
                or window[2] < c0
                or (window[2] + window[3] > c0 + nc)
            ):
                raise ValueError(
                    f"crop window {window} of {type(model).__name__} leaves the previous one "
                    f"{old_window}; the head cannot be remapped"
                )
            per_channel = nr * nc
            channels = layer.in_features // per_channel
            rows = torch.arange(window[0], window[0] + window[1]) - r0
            cols = torch.arange(window[2], window[2] + window[3]) - c0
            spatial = (rows[:, None] * nc + cols[None, :]).flatten()  # (rows*cols,)
            kept_cols = (torch.arange(channels)[:, None] * per_channel + spatial).flatten()
            remove = sorted(set(range(layer.in_features)) - set(kept_cols.tolist()))
            if remove:
                tp.prune_linear_in_channels(layer, remove)
        mask = kept[:, box[0] : box[1], box[2] : box[3]]
        install_front(model, InputCrop(box, mask, window))
