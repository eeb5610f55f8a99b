from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from prune.data.augment import DeviceAugment
from prune.data.base import TensorDataModule
from prune.errors import ConfigError


def _batch(n=16, c=3, h=6, w=5):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)


def _windows(x, p):
    """Every (top, left) window of the zero-padded images."""
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[-2:]
    return [padded[..., t : t + h, s : s + w] for t in range(2 * p + 1) for s in range(2 * p + 1)]


def test_crop_takes_one_window_of_the_padded_image_each():
    x = _batch()
    torch.manual_seed(1)
    out = DeviceAugment(["crop"], crop_padding=2)(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    windows = _windows(x, 2)
    offsets = set()
    for i in range(len(x)):
        found = [k for k, win in enumerate(windows) if torch.equal(out[i], win[i])]
        assert found, f"image {i} is no window of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 3  # offsets differ between images


def test_flip_mirrors_about_half_and_keeps_the_rest():
    x = _batch(n=200)
    torch.manual_seed(2)
    out = DeviceAugment(["flip"])(x)
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 60 < sum(flipped) < 140


def test_augmentation_follows_the_torch_seed():
    x = _batch()
    aug = DeviceAugment(["crop", "flip"])
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    assert torch.equal(a, aug(x))


def test_only_training_batches_are_augmented_then_normalised_by_the_module():
    dm = TensorDataModule(augment=["crop", "flip"], crop_padding=3)
    seen = []
    module = SimpleNamespace(on_after_batch_transfer=lambda b, i: seen.append(b) or ("norm", b))
    x, y = _batch(), torch.arange(16)
    for training in (False, True):
        dm.trainer = SimpleNamespace(training=training, lightning_module=module)
        torch.manual_seed(0)
        result = dm.on_after_batch_transfer((x, y), 0)
        assert result[0] == "norm" and result[1][1] is y
    assert torch.equal(seen[0][0], x) and not torch.equal(seen[1][0], x)


def test_no_augmentation_adds_no_hook():
    from lightning.pytorch.utilities.model_helpers import is_overridden

    assert not is_overridden("on_after_batch_transfer", TensorDataModule())
    assert is_overridden("on_after_batch_transfer", TensorDataModule(augment=["flip"]))


@pytest.mark.parametrize(
    ("augment", "padding", "match"),
    [
        (["rotate"], 4, "data.augment=\\['rotate'\\] must list each of \\['crop', 'flip'\\]"),
        (["flip", "flip"], 4, "at most once"),
        (["crop"], 0, "data.crop_padding must be >= 1"),
        (["crop"], 2.5, "data.crop_padding must be an integer"),
    ],
)
def test_bad_augment_settings_are_refused(augment, padding, match):
    with pytest.raises(ConfigError, match=match):
        DeviceAugment(augment, crop_padding=padding)
