"""Any torchvision classification model, fitted to the data's channels and classes."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from enum import Enum
from textwrap import shorten
from typing import Any, ClassVar

import torchvision
from torch import Tensor, nn

from prune.checks import Check, boolean
from prune.errors import ConfigError
from prune.models.adapt import adapt_first_conv, check_forward, replace_head
from prune.models.explicit_attention import explicit_attention as explicit
from prune.models.weights import hub_file, reachable, torchvision_cached


class TorchvisionNet(nn.Module):
    """A model of ``torchvision.models`` (classification), built by name, optionally pretrained.

    How it is fitted to the data:

    - **First layer**: the first ``Conv2d`` (the stem) is given the data's channel count. A
      pretrained stem for grey images gets the sum of its RGB kernels (the response to
      ``(g, g, g)``); for other counts the RGB kernels are repeated and scaled by ``3 / C``. A
      fresh model's stem is rebuilt with ``in_channels=C``.
    - **Head**: a fresh model is built with ``num_classes`` outputs. A pretrained one keeps its
      body and gets a freshly initialised last ``Linear`` (SqueezeNet: 1x1 ``Conv2d``) of
      ``num_classes`` outputs; with exactly the pretrained class count (1000, ImageNet) the
      pretrained head is kept.
    - **Small images**: torchvision's stems are made for 224x224. ResNet's stride-2 7x7 conv and
      3x3 max-pool shrink 28x28 images to 7x7 before ``layer1`` and to 1x1 at ``layer4``; VGG's
      five max-pools need at least 32x32 and fail on 28x28. ``small_input=True`` makes the stem
      a 3x3 stride-1 conv and drops the first max-pool (the CIFAR adaptation of He et al. 2016):
      resnet18 then keeps 28x28 through ``layer1`` and 4x4 at ``layer4``, VGG keeps 1x1 after
      its last pool. Transformers of a fixed image size (``vit_*``) need that size
      (``data.image_size=224``).

    - **Attention heads**: ``explicit_attention=True`` writes every ``nn.MultiheadAttention``
      (the ViTs') out as :class:`prune.models.explicit_attention.SelfAttention`, with the same
      weights, so that its heads can be pruned (``pruner.target=heads``).

    Inception v3 and GoogLeNet lose their auxiliary classifiers (only the main logits train).
    Construction ends with one forward pass of zeros, so a model that cannot take the data's
    image size fails here with one line, before any training.

    Args:
        in_shape: ``(C, H, W)`` of one image.
        num_classes: number of output logits.
        name: a name of ``torchvision.models.list_models(module=torchvision.models)``.
        weights: None (random initialisation), ``DEFAULT``, or the name of a member of the
            model's weights enum (``IMAGENET1K_V1``, or ``ResNet18_Weights.IMAGENET1K_V1``).
            Weights are downloaded once to torch's hub cache (``$TORCH_HOME/hub/checkpoints``,
            default ``~/.cache/torch``); offline without them, construction stops with one line.
        small_input: adapt the stem to images of about 32x32 or smaller (see above).
        explicit_attention: write the model's ``nn.MultiheadAttention`` out (see above).

    Raises:
        ConfigError: for an unknown model or weights name, or ``explicit_attention`` on a model
            without ``nn.MultiheadAttention``.
        FileNotFoundError: for pretrained weights that are not cached and cannot be downloaded.
        ValueError: for a model that cannot take ``in_shape`` or has no adaptable stem or head.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "name": Check(
            "a name of torchvision.models.list_models(module=torchvision.models)",
            lambda v: v in torchvision.models.list_models(module=torchvision.models),
        ),
        "weights": Check("DEFAULT, a weights name or null", lambda v: isinstance(v, str), True),
        "small_input": boolean(),
        "explicit_attention": boolean(),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """Pretrained weights must be cached, or their server reachable (nothing is
        downloaded here)."""
        name, weights = values.get("name", "resnet18"), values.get("weights")
        if weights is None or name not in torchvision.models.list_models(module=torchvision.models):
            return
        member = _weights(str(name), weights)
        if member is not None and not torchvision_cached(member) and not reachable(member.url):
            server = member.url.split("/")[2]
            raise FileNotFoundError(_missing(str(name), member, f"{server} cannot be reached"))

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        name: str = "resnet18",
        weights: str | None = None,
        small_input: bool = False,
        explicit_attention: bool = False,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.name = str(name)
        names = torchvision.models.list_models(module=torchvision.models)
        if self.name not in names:
            raise ConfigError(
                f"model.name={self.name!r} is not a torchvision classification model; choose one "
                f"of torchvision.models.list_models(module=torchvision.models): {', '.join(names)}"
            )
        what = f"torchvision {self.name}"
        weight_enum = _weights(self.name, weights)
        if weight_enum is None:
            model = torchvision.models.get_model(self.name, weights=None, num_classes=num_classes)
        else:
            model = _pretrained(self.name, weight_enum)
            old_classes = len(weight_enum.meta["categories"])
            if old_classes != self.num_classes:
                replace_head(model, old_classes, self.num_classes, what)
        if getattr(model, "aux_logits", False):  # inception_v3, googlenet: main logits only
            model.aux_logits = False
            for aux in ("AuxLogits", "aux1", "aux2"):
                if hasattr(model, aux):
                    setattr(model, aux, None)
        adapt_first_conv(model, self.in_shape[0], weight_enum is not None, small_input, what)
        self.explicit_attention = bool(explicit_attention)
        if self.explicit_attention and not explicit(model):
            raise ConfigError(
                f"model.explicit_attention=true: {what} has no nn.MultiheadAttention to write out"
            )
        self.model = model
        self.weights = (
            None if weight_enum is None else f"{type(weight_enum).__name__}.{weight_enum.name}"
        )
        self.small_input = bool(small_input)
        fix = "for small images set model.small_input=true, or raise data.image_size"
        check_forward(self, self.in_shape, self.num_classes, what, fix)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)`` for images ``(B, *in_shape)``."""
        return self.model(x)


def _weights(name: str, weights: str | None) -> Enum | None:
    """The member of ``name``'s weights enum that ``weights`` names, or None."""
    if weights is None or str(weights).lower() in ("", "none", "null"):
        return None
    enum = torchvision.models.get_model_weights(name)
    key = str(weights).rpartition(".")[2]
    members = [m.name for m in enum]
    if key != "DEFAULT" and key not in members:
        raise ConfigError(
            f"model.weights={weights!r} is not a weight of torchvision {name}; choose null, "
            f"DEFAULT or one of {members}"
        )
    return enum[key]


def _pretrained(name: str, weights: Enum) -> nn.Module:
    """torchvision's pretrained ``name``, its weights from torch's hub cache or downloaded."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # an unreachable server fails in seconds, not minutes
    try:
        # through the builder: it also sets what the weights need (inception's transform_input)
        return torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as err:  # no network (URLError), refused, hash mismatch
        message = shorten(str(err), 200, placeholder=" ...") or type(err).__name__
        raise FileNotFoundError(
            _missing(name, weights, f"the download failed ({message})")
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _missing(name: str, weights: Enum, reason: str) -> str:
    """The one line for weights that are not in torch's hub cache and cannot be fetched."""
    return (
        f"model.weights={type(weights).__name__}.{weights.name}: the {name} weights are not in "
        f"{hub_file(weights.url).parent} and {reason}; put {hub_file(weights.url).name} there "
        f"(from {weights.url}; TORCH_HOME moves the cache), or train from scratch with "
        "model.weights=null"
    )
