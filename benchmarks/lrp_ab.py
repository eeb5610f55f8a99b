"""Before and after: LRP speed of two revisions of this project, measured in one process.

Usage::

    python benchmarks/lrp_ab.py --base 06f9377 [--new PATH] [--model vit] [--preset abslrp]
        [--batch 128] [--threads 2] [--rounds 31]

``--base`` is a git revision of this repository, checked out for the run into a temporary
worktree (removed after); ``--new`` a source tree, by default this checkout. Both ``prune``
packages are imported into this one process, each under its own modules, and each builds an
``Explainer`` for the same model instance and batch (``--model``: ``vit``, ``mlp``, ``lenet5``
or ``vgg11``, as ``benchmarks/lrp_speed.py`` builds them), checked to give the same map first.
Every round times forward+backward (gradient x input), the two explainers in alternating order,
and forward+backward again, each as a block of calls; the paired ratio new/base of a round is
immune to the machine's load that hits both alike, so its median and quartiles are reported
beside each side's ratio to forward+backward.

On a shared machine two runs of ``lrp_speed.py`` can differ by 10-20%; this pairing resolves a
change of a few percent.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("vit", "mlp", "lenet5", "vgg11")


@contextlib.contextmanager
def _worktree(revision: str) -> Iterator[Path]:
    """A temporary checkout of ``revision`` of this repository."""
    with tempfile.TemporaryDirectory(prefix="lrp-ab-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), revision],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False
            )


def _load(tree: Path) -> dict[str, object]:
    """``prune`` and ``lrp_speed`` of ``tree``, imported afresh (the other tree's modules are
    dropped from ``sys.modules`` first; objects already built keep their own)."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("prune", "lrp_speed")]:
        del sys.modules[name]
    for name in ("abslrp_floor", "abslrp_hooks", "summary"):
        sys.modules.pop(name, None)
    sys.path[:0] = [str(tree), str(tree / "benchmarks")]
    try:
        import lrp_speed

        import prune
        from prune.lrp import Explainer

        if not Path(prune.__file__).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"lrp_ab: {tree} did not provide prune (got {prune.__file__})")
    finally:
        del sys.path[:2]
    return {"Explainer": Explainer, "lrp_speed": lrp_speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision of the 'before' side")
    parser.add_argument("--new", type=Path, default=ROOT, help="source tree of the 'after' side")
    parser.add_argument("--model", choices=MODELS, default="vit")
    parser.add_argument("--preset", default="abslrp")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    if args.batch < 1 or args.threads < 1 or args.rounds < 3:
        parser.error("--batch and --threads must be >= 1 and --rounds >= 3")
    if not (args.new / "prune" / "__init__.py").is_file():
        parser.error(f"--new {args.new} holds no prune package")
    verify = ["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", f"{args.base}^{{commit}}"]
    if subprocess.run(verify, capture_output=True).returncode != 0:
        parser.error(f"--base {args.base!r} names no commit of {ROOT}")
    torch.set_num_threads(args.threads)
    with _worktree(args.base) as base_tree:
        base, new = _load(base_tree), _load(args.new)
        from prune.run.allocator import keep_freed_memory

        keep_freed_memory()  # as train.py, evaluate.py and lrp_speed.py's kept timings run
        speed = new["lrp_speed"]
        model, shape = speed._models()[args.model]
        model.eval()
        x = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            target = model(x).argmax(1)
        sides = {
            "base": base["Explainer"](model, args.preset),
            "new": new["Explainer"](model, args.preset),
        }
        maps = {k: e(x, target).input for k, e in sides.items()}
        scale = maps["base"].abs().max().clamp_min(1e-30)
        difference = ((maps["new"] - maps["base"]).abs().max() / scale).item()
        fb = lambda: speed._grad_x_input(model, x, target)  # noqa: E731
        block = lambda fn, calls: speed._block(fn, calls, "cpu")  # noqa: E731
        calls = max(1, math.ceil(speed.BLOCK_SECONDS / block(fb, 1)))  # as lrp_speed.py times
        for _ in range(2):  # warm-up
            fb()
            for explain in sides.values():
                explain(x, target)
        times: dict[str, list[float]] = {"f+b": [], "base": [], "new": []}
        for r in range(args.rounds):
            before = block(fb, calls)
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            for side in order:
                times[side].append(block(lambda e=sides[side]: e(x, target), calls))
            times["f+b"].append((before + block(fb, calls)) / 2)
    median = statistics.median
    paired = [n / b for n, b in zip(times["new"], times["base"], strict=True)]
    low, _, high = statistics.quantiles(paired, n=4)
    print(
        f"{args.model} {args.preset}, batch {args.batch}, {args.threads} thread(s), "
        f"{args.rounds} rounds; base {args.base}, new {args.new}"
    )
    print(f"largest difference of the maps, relative to the largest value: {difference:.2g}")
    print(f"forward+backward  {median(times['f+b']) * 1e3:8.2f} ms")
    for side in ("base", "new"):
        ratio = median(t / f for t, f in zip(times[side], times["f+b"], strict=True))
        print(f"{side:<16}  {median(times[side]) * 1e3:8.2f} ms  {ratio:.3f}x f+b")
    print(f"new / base, paired: median {median(paired):.3f} (quartiles {low:.3f}-{high:.3f})")


if __name__ == "__main__":
    main()
