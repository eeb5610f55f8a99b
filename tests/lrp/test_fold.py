"""The first convolution's transposed product by matrix products and col2im (lrp/fast/fold.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prune import lrp
from prune.lrp.fast import base, fold
from prune.models import LeNet5

GEOMETRIES = [  # (in_ch, out_ch, kernel, input size, stride, padding, dilation)
    (1, 20, (5, 5), (28, 28), (1, 1), (0, 0), (1, 1)),
    (3, 64, (3, 3), (9, 11), (1, 1), (1, 1), (1, 1)),
    (1, 16, (5, 3), (28, 17), (2, 2), (2, 1), (1, 1)),  # the conv drops a trailing row/column
    (2, 32, (3, 3), (13, 13), (2, 1), (1, 0), (2, 2)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_fold_transpose_equals_the_native_input_gradient(geometry) -> None:
    c_in, c_out, kernel, size, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(fold.CHUNK + 5, c_in, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(c_out, c_in, *kernel, generator=gen, dtype=torch.float64)
    out = F.conv2d(x, w, None, stride, padding, dilation)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(
        grad, x, w, None, stride, padding, dilation, False, [0, 0], 1, [True, False, False]
    )[0]
    got = fold.fold_transpose(grad, w, x.shape[-2:], stride, padding, dilation)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_fold_conv_has_the_native_output_and_input_gradient() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(20, 1, 5, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    x = torch.rand(2, 1, 7, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    out = fold.FoldConv.apply(x, w, b, (1, 1), (1, 1), (1, 1))
    torch.testing.assert_close(out, F.conv2d(x, w, b, padding=1), rtol=0, atol=0)
    assert torch.autograd.gradcheck(
        lambda t: fold.FoldConv.apply(t, w, b, (1, 1), (1, 1), (1, 1)), (x,)
    )


def test_use_fold_picks_first_layers_on_the_cpu_only() -> None:
    x = torch.zeros(1)
    assert fold.use_fold(torch.zeros(20, 1, 5, 5), x)
    assert fold.use_fold(torch.zeros(64, 3, 3, 3), x)
    assert not fold.use_fold(torch.zeros(16, 2, 3, 3), x)  # the native kernel is faster there
    assert not fold.use_fold(torch.zeros(50, 20, 5, 5), x)
    assert not fold.use_fold(torch.zeros(20, 1, 5, 5, dtype=torch.float64), x)
    assert not fold.use_fold(torch.zeros(20, 1, 5, 5, device="meta"), x.to("meta"))


@pytest.mark.parametrize("preset", sorted(lrp.COMPOSITES))
def test_lenet_relevance_is_the_same_with_and_without_fold(preset, monkeypatch) -> None:
    """LeNet-5's first layer (1 -> 20 channels) takes the fold path in every preset that reaches
    it with one input block, and its relevance equals the reference backend's at every layer."""
    torch.manual_seed(0)
    model = LeNet5((1, 28, 28), 10).eval()
    x = torch.rand(4, 1, 28, 28)
    target = model(x).argmax(1)
    record = ["features.0", "features.3", "classifier.0"]
    used = []

    def spy(weight, t):
        used.append(fold.use_fold(weight, t))
        return used[-1]

    monkeypatch.setattr(base, "use_fold", spy)
    with_fold = lrp.attribute(model, x, target, preset, record)
    native = lrp.attribute(model, x, target, preset, record, backend="reference")
    assert any(used)
    torch.testing.assert_close(with_fold.input, native.input, rtol=1e-5, atol=1e-6)
    for name in record:
        torch.testing.assert_close(with_fold.output[name], native.output[name])
