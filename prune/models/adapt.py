"""Fitting a borrowed classifier to the data: first conv, head, small inputs, a shape check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from textwrap import shorten

import torch
from torch import nn


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at the qualified ``name`` (``features.0.0``) of ``root``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def first_conv(model: nn.Module, what: str) -> tuple[str, nn.Conv2d]:
    """``(name, module)`` of the first ``Conv2d`` that ``model`` registers: its input layer.

    Raises:
        ValueError: naming ``what`` when the model has no ``Conv2d``.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{what} has no Conv2d input layer to adapt to the data's channels")


def conv_like(conv: nn.Conv2d, **changes: int | tuple[int, int]) -> nn.Conv2d:
    """A freshly initialised ``Conv2d`` with ``conv``'s settings, some of them changed."""
    settings = {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
        "groups": conv.groups,
        "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }
    settings.update(changes)
    return nn.Conv2d(**settings).to(conv.weight.device, conv.weight.dtype)


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Pretrained first-layer kernels ``(O, 3, k, k)`` for ``channels`` input channels.

    One channel: the sum over the RGB kernels, so a grey image ``g`` gives the response the RGB
    image ``(g, g, g)`` gave. Other counts: the RGB kernels repeated over the channels and
    scaled by ``3 / channels``, which keeps the size of the response (timm's
    ``adapt_input_conv`` rule).
    """
    if channels == 1:
        return weight.sum(1, keepdim=True)
    repeats = math.ceil(channels / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (weight.shape[1] / channels)


def adapt_first_conv(
    model: nn.Module, channels: int, pretrained: bool, small_input: bool, what: str
) -> None:
    """Fit ``model``'s first conv to ``channels`` inputs and, with ``small_input``, to images of
    about 32x32: in place.

    Channels: a pretrained conv gets :func:`adapt_input_channels` of its kernels; a fresh one
    is rebuilt with ``in_channels=channels`` (PyTorch's default initialisation).

    ``small_input``: a first conv with a stride above 1 becomes a 3x3 stride-1 conv (padding 1;
    a pretrained kernel keeps its centre 3x3), and the first max-pool of the network becomes an
    identity: the CIFAR adaptation of a ResNet stem (He et al. 2016, sec. 4.2), which also lets
    VGG's five pools fit 28x28 images.
    """
    name, conv = first_conv(model, what)
    weight = conv.weight.detach()
    changes: dict[str, int | tuple[int, int]] = {}
    if conv.in_channels != channels:
        changes["in_channels"] = channels
        weight = adapt_input_channels(weight, channels)
    if small_input and conv.stride != (1, 1):
        kh, kw = conv.kernel_size
        if kh >= 3 and kw >= 3:
            changes.update(kernel_size=3, padding=1)
            top, left = (kh - 3) // 2, (kw - 3) // 2
            weight = weight[:, :, top : top + 3, left : left + 3]
        changes.update(stride=1, dilation=1)
    if changes:
        new = conv_like(conv, **changes)
        if pretrained:
            with torch.no_grad():
                new.weight.copy_(weight)
                if conv.bias is not None:
                    new.bias.copy_(conv.bias)
        set_module(model, name, new)
    if small_input:
        pool = next((n for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)), None)
        if pool is not None:
            set_module(model, pool, nn.Identity())


def replace_head(model: nn.Module, old_classes: int, num_classes: int, what: str) -> None:
    """Give ``model`` a fresh head of ``num_classes`` outputs, in place.

    The head is the last ``Linear`` (or 1x1 ``Conv2d``, as in SqueezeNet) whose output count is
    ``old_classes``; it is replaced by a freshly initialised layer of the same kind and input.

    Raises:
        ValueError: naming ``what`` when no such layer exists.
    """
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == old_classes:
            found = name, nn.Linear(module.in_features, num_classes, bias=module.bias is not None)
        elif (
            isinstance(module, nn.Conv2d)
            and module.out_channels == old_classes
            and module.kernel_size == (1, 1)
        ):
            found = name, conv_like(module, out_channels=num_classes)
    if found is None:
        raise ValueError(
            f"{what}: no Linear (or 1x1 Conv2d) layer with {old_classes} outputs to replace by "
            f"a head of {num_classes} classes"
        )
    set_module(model, *found)


def check_forward(
    model: nn.Module, in_shape: Sequence[int], num_classes: int, what: str, fix: str
) -> None:
    """One forward pass of zeros ``(1, *in_shape)`` in eval mode: the model must give
    ``(1, num_classes)`` logits.

    Args:
        model: the adapted model.
        in_shape: ``(C, H, W)`` of one image.
        num_classes: the logits it must give.
        what: how messages name the model.
        fix: what the message suggests when the images do not fit.

    Raises:
        ValueError: naming ``what``, the input shape and the model's complaint, with the fix.
    """
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *in_shape))
    except (RuntimeError, ValueError, AssertionError) as err:
        message = shorten(str(err), 200, placeholder=" ...")
        raise ValueError(
            f"{what} cannot take images of shape {tuple(in_shape)} ({message}); {fix}"
        ) from None
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what} gives {shape} for one image, not (1, {num_classes}) logits")
