"""Any timm model, fitted to the data's channels and classes (needs the ``timm`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from textwrap import shorten
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, boolean
from prune.errors import ConfigError
from prune.models.adapt import check_forward
from prune.models.weights import reachable, timm_cached


class TimmNet(nn.Module):
    """A model of ``timm`` (Wightman, PyTorch Image Models), built by name, optionally pretrained.

    timm fits the model itself: ``timm.create_model(name, num_classes=K, in_chans=C, **kwargs)``.

    - **First layer**: built for ``C`` channels. Pretrained stem kernels for grey images are the
      sum of the RGB kernels; for other counts they are repeated and scaled by ``3 / C``
      (timm's ``adapt_input_conv``).
    - **Head**: built with ``num_classes`` outputs; pretrained weights are loaded without the
      classifier (freshly initialised) when the class count differs from theirs.
    - **Image size**: convolutional models take any size their strides allow; transformers of
      a fixed size (``vit_*``, ``deit_*``) need that size (``data.image_size=224``), or are
      built for the data's (``kwargs={"img_size": 28, "patch_size": 7}``).

    Construction ends with one forward pass of zeros, so a model that cannot take the data's
    image size fails here with one line, before any training.

    Args:
        in_shape: ``(C, H, W)`` of one image.
        num_classes: number of output logits.
        name: a name of ``timm.list_models()``.
        pretrained: load timm's pretrained weights (downloaded once to the Hugging Face cache,
            ``$HF_HOME/hub``, or torch's hub cache; offline without them, construction stops
            with one line).
        kwargs: more keyword arguments of the model's constructor (a ViT's ``img_size``,
            ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``); one it does not take
            stops construction with one line.

    Raises:
        ImportError: without the ``timm`` package (``pip install 'lrp-prune[timm]'``).
        ConfigError: for an unknown model name, or a keyword argument the model does not take.
        FileNotFoundError: for pretrained weights that are not cached and cannot be downloaded.
        ValueError: for a model that cannot take ``in_shape``.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "name": Check("a name of timm.list_models()", lambda v: isinstance(v, str) and bool(v)),
        "pretrained": boolean(),
        "kwargs": Check(
            "a mapping of keyword arguments", lambda v: v is None or isinstance(v, Mapping)
        ),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """Pretrained weights must be cached, or the Hugging Face Hub reachable (nothing is
        downloaded here)."""
        if values.get("pretrained") is not True:
            return
        timm = _import_timm()
        name = str(values.get("name", "resnet18"))
        _check_name(timm, name)
        from huggingface_hub import constants

        if not timm_cached(name) and not reachable(constants.ENDPOINT):
            raise FileNotFoundError(_missing(name, f"{constants.ENDPOINT} cannot be reached"))

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        name: str = "resnet18",
        pretrained: bool = False,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        timm = _import_timm()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.name, self.pretrained = str(name), bool(pretrained)
        _check_name(timm, self.name)
        self.kwargs = dict(kwargs or {})
        fitted = {"num_classes": self.num_classes, "in_chans": self.in_shape[0]}
        if clash := sorted(fitted.keys() & self.kwargs.keys()):
            raise ConfigError(f"model.kwargs.{clash[0]} is set from the data; leave it out")
        kwargs = {**self.kwargs, **fitted}
        try:
            if self.pretrained:
                self.model = _pretrained(timm, self.name, kwargs)
            else:
                self.model = timm.create_model(self.name, pretrained=False, **kwargs)
        except TypeError as err:
            if not self.kwargs or "keyword argument" not in str(err):
                raise
            raise ConfigError(
                f"model.kwargs={self.kwargs}: timm {self.name} does not take them ({err})"
            ) from None
        fix = "raise data.image_size (transformers need their own size, e.g. 224)"
        check_forward(self, self.in_shape, self.num_classes, f"timm {self.name}", fix)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)`` for images ``(B, *in_shape)``."""
        return self.model(x)


def _import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ImportError(
            "model=timm needs the timm package: pip install 'lrp-prune[timm]' (or timm>=1.0)"
        ) from None
    return timm


def _check_name(timm: Any, name: str) -> None:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:10]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ConfigError(f"model.name={name!r} is not a timm model{hint}; see timm.list_models()")


def _missing(name: str, reason: str) -> str:
    """The one line for pretrained weights that are not here and cannot be fetched."""
    from huggingface_hub import constants

    return (
        f"model.pretrained=true: the timm {name} weights are not cached "
        f"({constants.HF_HUB_CACHE}, {torch.hub.get_dir()}/checkpoints) and {reason}; run once "
        "with network access (HF_HOME, TORCH_HOME move the caches), or train from scratch with "
        "model.pretrained=false"
    )


def _pretrained(timm: Any, name: str, kwargs: dict[str, int]) -> nn.Module:
    """timm's pretrained ``name``: its weights from the caches, or downloaded into them.

    Without a route to the Hugging Face Hub the download is not tried: the Hub client would
    retry for about a minute before failing. Cached weights still load (the client's offline
    mode), and missing ones fail at once.
    """
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    try:
        constants.HF_HUB_OFFLINE = offline or not reachable(constants.ENDPOINT)
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # the name is known: what fails is fetching or reading weights
        message = shorten(str(err), 200, placeholder=" ...") or type(err).__name__
        reason = f"could not be loaded ({type(err).__name__}: {message})"
        raise FileNotFoundError(_missing(name, reason)) from None
    finally:
        constants.HF_HUB_OFFLINE = offline
