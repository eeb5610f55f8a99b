"""Which values a traced graph reads once (prune/lrp/fast/reads.py), and absLRP's program, which
skips the unit-L1 rescales that change nothing: the same relevance as the installed wrappers,
which rescale every input, wherever a value is read more than once or recorded."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import Tensor, nn

import prune.lrp.fast.abslrp as abslrp_kernels
from prune.lrp import Explainer, attribute
from prune.lrp.fast.reads import analyse, reshape_check


def _graph(fn) -> dict[str, torch.fx.Node]:
    return {n.name: n for n in torch.fx.symbolic_trace(fn).graph.nodes}


def test_reads_count_each_argument_and_leave_out_shapes() -> None:
    def fn(x: Tensor) -> Tensor:
        y = x * 2.0
        z = y.reshape(y.shape[0], -1)
        return z + z

    nodes = _graph(fn)
    count, metadata = analyse(list(nodes.values()), set())
    assert count[nodes["mul"]] == 1  # its shape is no read
    assert count[nodes["reshape"]] == 2  # z + z reads z twice
    assert nodes["getattr_1"] in metadata and nodes["getitem"] in metadata


def test_an_opaque_layer_counts_as_reading_twice() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Identity())
    graph = torch.fx.symbolic_trace(model).graph
    nodes = list(graph.nodes)
    opaque = {n for n in nodes if n.target == "1"}
    count, _ = analyse(nodes, opaque)
    assert count[nodes[1]] == 2


@pytest.mark.parametrize(
    ("fn", "keeps"),
    [
        (lambda x: x.transpose(1, 2), True),
        (lambda x: x.transpose(-2, -1), True),
        (lambda x: x.transpose(0, 1), False),
        (lambda x: x.permute(0, 2, 1), True),
        (lambda x: x.permute(1, 0, 2), False),
        (lambda x: x[:, 0], True),
        (lambda x: x.flatten(1), True),
        (lambda x: x.reshape(x.shape[0], -1) * 0.5, True),
    ],
)
def test_reshapes_keep_the_samples_on_the_first_axis(fn, keeps) -> None:
    x = torch.randn(4, 3, 5)
    graph = torch.fx.symbolic_trace(fn).graph
    node = next(n for n in graph.nodes if n.op == "output").args[0]
    _, metadata = analyse(list(graph.nodes), set())
    same = reshape_check(node, metadata)
    assert same is not None
    assert same(x, fn(x)) is keeps


@pytest.mark.parametrize(
    "fn",
    [lambda x: x[0], lambda x: x * x, lambda x: x.sum(1), lambda x: torch.cat([x, x], 1)],
)
def test_other_ops_are_no_reshapes(fn) -> None:
    graph = torch.fx.symbolic_trace(fn).graph
    node = next(n for n in graph.nodes if n.op == "output").args[0]
    _, metadata = analyse(list(graph.nodes), set())
    assert reshape_check(node, metadata) is None


class _Reads(nn.Module):
    """A value read three times (``h * h + h``), one read once through a reshape, one recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x.flatten(1))
        h = h * h + h
        g = self.act(self.fc2(h)).reshape(x.shape[0], 2, 4).flatten(1)
        return self.fc3(g)


def _count_free(monkeypatch) -> list[int]:
    free = []
    original = abslrp_kernels.unit_input

    def spy(x, grad_in, how):
        free.append(how is abslrp_kernels.Rescale.FREE)
        return original(x, grad_in, how)

    monkeypatch.setattr(abslrp_kernels, "unit_input", spy)
    import prune.lrp.fast.abslrp_transformer as transformer_kernels

    monkeypatch.setattr(transformer_kernels, "unit_input", spy)
    return free


@pytest.mark.parametrize("record", [[], ["act"], ["fc2"]])
def test_abslrp_program_skips_only_rescales_that_change_nothing(record, monkeypatch) -> None:
    torch.manual_seed(0)
    model = _Reads().double().eval()
    x = torch.randn(5, 1, 6, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1])
    want = attribute(model, x, target, "abslrp", record)  # wrappers: every input rescaled
    free = _count_free(monkeypatch)
    explainer = Explainer(model, "abslrp", record)
    explainer(x, target)  # traced on the first call
    assert explainer.engine._program is not None
    free.clear()
    got = explainer(x, target)
    for name, w in [("input", want.input), *want.output.items()]:
        g = got.input if name == "input" else got.output[name]
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12 * w.abs().max().item(), msg=name)
    # none needed: fc3's input (the GELU's output through reshapes), the GELU's (fc2's output),
    # fc2's (the sum's) and the sum's h * h; each one recorded keeps one; h, read thrice, keeps
    assert sum(free) == 2 * (4 - len(record))  # per pass, two passes (the contrastive pair)
