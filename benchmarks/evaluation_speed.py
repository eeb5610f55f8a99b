"""Speed of the explanation evaluation: 1,000 MNIST-shaped images, every attribution method.

Usage::

    python benchmarks/evaluation_speed.py [--data-root /path/with/MNIST/raw] [--n 1000]
        [--threads 2] [--batch-size 250] [--methods gradient lrp_epsilon_plus ...]
        [--out results/evaluation_speed]

Runs ``prune.evaluation.explanations.evaluate_explanations`` (feature removal, pixel flipping and
AOPC, GAE on its default subset) with its default settings on a LeNet-5 and prints the time of
every method and the total; the target is under 5 minutes on a 2-core CPU. With
``--data-root`` the MNIST test images are read from torchvision's raw files
(``MNIST/raw/t10k-images-idx3-ubyte[.gz]``) and the model is first trained for
``--train-steps`` steps, on the training files if present, otherwise on the test images that
are *not* evaluated (stated in the output); without it the model is untrained and the
images are random. Training time is not part of the measured time. With ``--summary`` the run
is recorded in ``benchmarks/summaries/evaluation_speed.json`` (run ``lenet5``, or
``lenet5-random-images`` without MNIST) for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from summary import add_summary_option, command_line, write_run

from prune.evaluation.explanations import evaluate_explanations
from prune.evaluation.figures import save_figure
from prune.evaluation.methods import METHODS, get_method
from prune.models import LeNet5

MEAN, STD = 0.1307, 0.3081  # MNIST normalisation; a black pixel is -MEAN / STD


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) as torchvision stores MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(root: Path, stem: str) -> Path | None:
    """``root/MNIST/raw/stem[.gz]`` or ``root/raw/...`` or ``root/...``, whichever exists."""
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for name in (stem, stem + ".gz"):
            if (folder / name).exists():
                return folder / name
    return None


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    images, labels = (
        find(root, f"{split}-images-idx3-ubyte"),
        find(root, f"{split}-labels-idx1-ubyte"),
    )
    if images is None or labels is None:
        return None
    x = torch.from_numpy(read_idx(images).copy()).float().div(255).unsqueeze(1)
    return (x - MEAN) / STD, torch.from_numpy(read_idx(labels).astype(np.int64))


def quick_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """A few Adam steps on random mini-batches."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--methods", nargs="*", default=[m for m in METHODS if m != "lrp"])
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json + PNGs")
    add_summary_option(parser, "evaluation_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = LeNet5(in_shape=(1, 28, 28), num_classes=10)
    test = load_split(args.data_root, "t10k") if args.data_root else None
    if test is None:
        if args.data_root:
            print(f"no MNIST test files under {args.data_root}: using random images")
        g = torch.Generator().manual_seed(0)
        x, y = (
            torch.randn(args.n, 1, 28, 28, generator=g),
            torch.randint(0, 10, (args.n,), generator=g),
        )
        print("data: random N(0,1) images, untrained LeNet-5")
    else:
        x, y = test[0][: args.n], test[1][: args.n]
        train = load_split(args.data_root, "train")
        source = "MNIST training files"
        if train is None:
            train, source = (
                (test[0][args.n :], test[1][args.n :]),
                "MNIST test images not evaluated",
            )
        quick_train(model, *train, args.train_steps)
        print(
            f"data: {x.shape[0]} MNIST test images; "
            f"LeNet-5 trained {args.train_steps} steps on {source}"
        )

    methods = {name: get_method(name) for name in args.methods}
    start, cpu_start = time.perf_counter(), time.process_time()
    result = evaluate_explanations(
        model,
        x,
        y,
        methods,
        background=-MEAN / STD,
        batch_size=args.batch_size,
        figures=args.out is not None,
    )
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(f"threads={torch.get_num_threads()} images={x.shape[0]} batch={args.batch_size}")
    print(
        "config:",
        json.dumps({k: v for k, v in result["config"].items() if k != "flip_fractions"}),
    )
    print(f"{'method':32s} {'time_s':>8s} {'aopc_morf':>10s} {'conf_removed':>13s} {'gae':>7s}")
    for name, row in result["table"].items():
        print(
            f"{name:32s} {row['time_s']:8.1f} {row['flip/aopc_morf']:10.3f} "
            f"{row['removal/conf_removed']:13.3f} {row.get('gae/gae', float('nan')):7.3f}"
        )
    print(f"{'GAE reference (shared)':32s} {result['config']['gae_reference_time_s']:8.1f}")
    print(f"total: {total:.1f} s wall ({'under' if total < 300 else 'OVER'} the 5-minute target)")
    # other jobs on the same cores inflate wall time; CPU time / threads is the idle-machine floor
    print(f"cpu time: {cpu:.1f} s over {torch.get_num_threads()} threads; load average {load:.1f}")
    if args.out is not None:
        figures = result.pop("figures")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2))
        for name, fig in figures.items():
            save_figure(fig, args.out / f"{name}.png")
        print(f"wrote {args.out}/results.json and {', '.join(figures)} PNGs")
    if args.summary is not None:
        write_run(
            args.summary,
            "evaluation_speed",
            "lenet5" if test is not None else "lenet5-random-images",
            command_line("benchmarks/evaluation_speed.py"),
            {
                "model": "LeNet5",
                "data": "MNIST" if test is not None else "random images",
                "images": x.shape[0],
                "methods": len(methods),
                "batch": args.batch_size,
                "threads": torch.get_num_threads(),
                "total_s": total,
                "cpu_s": cpu,
                "load_average": load,
                "method_s": {name: row["time_s"] for name, row in result["table"].items()},
            },
        )


if __name__ == "__main__":
    main()
