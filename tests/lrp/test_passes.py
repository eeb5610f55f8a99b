"""The backward passes of one forward side by side (prune.lrp.passes): the same maps and records
as one after another, the thread setting restored, a failing pass reported."""

from __future__ import annotations

import pytest
import torch

import prune.lrp.passes as passes
from prune.lrp import attribute
from prune.lrp.passes import run_passes
from prune.models.vit import ViT


@pytest.fixture
def threads():
    """The intra-op thread count, set by the test and restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _explain(threads: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2).double().eval()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    record = ["blocks.0.attn.heads_out", "blocks.1.mlp.fc1"]
    result = attribute(model, x, None, "abslrp", record=record)
    return result.input, result.output


def test_side_by_side_passes_give_the_maps_and_records_of_passes_in_turn(
    threads, monkeypatch
) -> None:
    workers, pools = passes._workers, []
    monkeypatch.setattr(passes, "_workers", lambda n: pools.append(n) or workers(n))
    together, records_together = _explain(2)  # two intra-op threads: the passes side by side
    assert pools == [1]  # the second pass ran in a worker thread
    in_turn, records_in_turn = _explain(1)  # one: one after another
    assert pools == [1]
    torch.testing.assert_close(together, in_turn, rtol=1e-12, atol=1e-14)
    assert records_together.keys() == records_in_turn.keys() and len(records_together) == 2
    for name, rec in records_in_turn.items():
        torch.testing.assert_close(records_together[name], rec, rtol=1e-12, atol=1e-14)


def test_the_thread_setting_comes_back_and_a_failing_pass_is_reported(threads) -> None:
    threads(2)
    seen: list[int] = []

    def one_pass(seed: torch.Tensor, retain: bool) -> float:
        seen.append(torch.get_num_threads())  # each pass gets its share of the threads
        if seed.item() < 0:
            raise ValueError("a failing pass")
        return seed.item()

    assert run_passes(one_pass, [torch.tensor(1.0), torch.tensor(2.0)], torch.device("cpu")) == [
        1.0,
        2.0,
    ]
    assert seen == [1, 1] and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="a failing pass"):
        run_passes(one_pass, [torch.tensor(1.0), torch.tensor(-1.0)], torch.device("cpu"))
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_its_passes_side_by_side_with_workers_of_its_own(threads) -> None:
    import multiprocessing

    threads(2)
    run_passes(lambda seed, retain: seed, [torch.tensor(1.0)] * 2, torch.device("cpu"))
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:  # the parent's pool exists; the child's must be made anew
        result = pool.apply_async(_passes_in_child).get(timeout=60)
    assert result == [1.0, 2.0]


def _passes_in_child() -> list[float]:
    torch.set_num_threads(2)
    seeds = [torch.tensor(1.0), torch.tensor(2.0)]
    return run_passes(lambda seed, retain: seed.item(), seeds, torch.device("cpu"))
