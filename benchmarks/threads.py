"""Intra-op threads: torch's default (the core count) against ``threads=auto``, quiet and busy.

Usage::

    python benchmarks/threads.py [--repeats 3] [--epochs 3] [--samples 54000]

The workload stands for a run: ``--epochs`` epochs of training steps of the MLP 784-300-100-10
(batch 128, Adam) on ``--samples`` random images of MNIST's size, then an LRP-epsilon pass
(:class:`prune.lrp.Explainer`, batch 1000) over them. It runs in this process four ways: quiet
and next to one busy process (``python -c "while True: pass"``, started here and killed after),
each with torch's default thread count and with ``auto``
(:func:`prune.run.threads.resolve_threads`, resolved after the busy process has started, as a
run resolves it at its start). Each of ``--repeats`` repetitions runs the four sides, in
alternating order; the tables give the median wall times and the two ratios asked for: busy /
quiet with ``auto`` (target <= 1.5) and quiet ``auto`` / quiet default (target <= 1.15), as the
ratio of the medians and per repetition (the sides of one repetition ran within a minute of each
other), with the median of those. With ``--summary`` the run is recorded in
``benchmarks/summaries/threads.json`` (run ``benchmark``) for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
from summary import add_summary_option, command_line, write_run
from torch import nn

from prune.lrp import Explainer
from prune.models import MLP
from prune.run.threads import available_cores, resolve_threads

BUSY = [sys.executable, "-c", "while True: pass"]


def workload(x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    """Train the MLP for ``epochs`` epochs on (x, y), explain x with LRP-epsilon; seconds taken."""
    torch.manual_seed(0)
    start = time.perf_counter()
    net = MLP((1, 28, 28), 10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for i in range(0, len(x), 128):
            opt.zero_grad()
            loss_fn(net(x[i : i + 128]), y[i : i + 128]).backward()
            opt.step()
    net.eval()
    explainer = Explainer(net, "epsilon")
    for i in range(0, len(x), 1000):
        explainer(x[i : i + 1000], y[i : i + 1000])
    return time.perf_counter() - start


def timed(threads: int, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    """:func:`workload` on ``threads`` intra-op threads (torch's count restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return workload(x, y, epochs)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=54000)
    add_summary_option(parser, "threads")
    args = parser.parse_args()
    start = time.perf_counter()

    default = torch.get_num_threads()
    x = torch.rand(args.samples, 1, 28, 28)
    y = torch.randint(0, 10, (args.samples,))
    timed(default, x[:2000], y[:2000], 1)  # warm-up
    times: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], list[int]] = {}
    print(
        f"torch {torch.__version__}, {available_cores()} cores available, torch default "
        f"{default} threads; {args.epochs} epochs on {args.samples} images + LRP-epsilon pass"
    )
    for rep in range(args.repeats):
        for load in ("quiet", "busy")[:: -1 if rep % 2 else 1]:
            proc = subprocess.Popen(BUSY) if load == "busy" else None
            try:
                if proc is not None:
                    time.sleep(0.5)  # the busy process is running before auto looks
                auto = resolve_threads("auto")
                sides = [("default", default), ("auto", auto)]
                for name, threads in sides[:: -1 if rep % 2 else 1]:  # alternating order
                    seconds = timed(threads, x, y, args.epochs)
                    times.setdefault((load, name), []).append(seconds)
                    counts.setdefault((load, name), []).append(threads)
                    print(f"  rep {rep + 1} {load:5} {name:7} {threads} threads {seconds:6.2f} s")
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()

    med = {key: statistics.median(value) for key, value in times.items()}
    print(f"\n| load  | threads | count | wall time (median of {args.repeats}) |")
    print("|-------|---------|-------|------------------------|")
    for load in ("quiet", "busy"):
        for name in ("default", "auto"):
            used = sorted(set(counts[(load, name)]))
            count = ",".join(map(str, used))
            print(f"| {load:5} | {name:7} | {count:5} | {med[(load, name)]:20.2f} s |")
    ratios = {
        "busy / quiet, auto": (("busy", "auto"), ("quiet", "auto"), "target <= 1.5x"),
        "quiet auto / quiet default": (("quiet", "auto"), ("quiet", "default"), "target <= 1.15x"),
        "busy / quiet, default": (("busy", "default"), ("quiet", "default"), "for comparison"),
    }
    print("\n| ratio | of the medians | per repetition (median) | |")
    print("|-------|----------------|-------------------------|-|")
    for label, (top, bottom, note) in ratios.items():
        each = [a / b for a, b in zip(times[top], times[bottom], strict=True)]
        listed = ", ".join(f"{r:.2f}" for r in each)
        print(
            f"| {label} | {med[top] / med[bottom]:.2f}x | {listed} ({statistics.median(each):.2f}x)"
            f" | {note} |"
        )
    if args.summary is not None:
        quiet = times[("quiet", "default")] + times[("quiet", "auto")]
        figures = {
            "repeats": args.repeats,
            "epochs": args.epochs,
            "samples": args.samples,
            "cores": available_cores(),
            "torch_default_threads": default,
            "wall_s": time.perf_counter() - start,
            "sides": {
                f"{load} {name}": {
                    "threads": counts[(load, name)],
                    "wall_s": times[(load, name)],
                    "median_s": med[(load, name)],
                }
                for load in ("quiet", "busy")
                for name in ("default", "auto")
            },
            "ratios": {
                label: [a / b for a, b in zip(times[top], times[bottom], strict=True)]
                for label, (top, bottom, _) in ratios.items()
            },
            "quiet_wall_s_range": [min(quiet), max(quiet)],
        }
        write_run(
            args.summary, "threads", "benchmark", command_line("benchmarks/threads.py"), figures
        )


if __name__ == "__main__":
    main()
