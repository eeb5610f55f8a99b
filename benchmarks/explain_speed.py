"""Time the dataset-level explain pass against a plain forward+backward pass over the same data.

The explain pass is what the pipeline runs: ``Trainer(inference_mode=False).validate`` with the
``RelevanceAccumulator`` callback (LRP on every batch, unit relevance of every prunable layer,
per-class sums on the device). The floor is a plain loop doing forward + backward (gradient x
input) on the same batches. Both normalise uint8 batches on the device.

    python benchmarks/explain_speed.py --data-root ../shared/data --model mlp --composite epsilon

With ``--summary`` the run is recorded in ``benchmarks/summaries/explain_speed.json`` (run
``<model>-<composite>-<device>``) for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from summary import add_summary_option, command_line, write_run

from prune.callbacks.relevance import RelevanceAccumulator, explain_trainer
from prune.data import MNISTDataModule
from prune.models import MLP, LeNet5
from prune.module import ClassifierModule
from prune.pruning.groups import find_groups

MODELS = {"mlp": MLP, "lenet5": LeNet5}


def explain_pass(module, loader, composite, record, num_classes, device) -> float:
    acc = RelevanceAccumulator(composite, record=record, num_classes=num_classes)
    trainer = explain_trainer(acc, accelerator=device)
    start = time.perf_counter()
    trainer.validate(module, dataloaders=loader, verbose=False)
    elapsed = time.perf_counter() - start
    assert acc.stats.num_samples == len(loader.dataset)
    return elapsed


def plain_pass(module, loader, device) -> float:
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    net = module.to(dev).net.eval()  # a Trainer's teardown leaves the module on the CPU
    start = time.perf_counter()
    for x, y in loader:
        x = module.normalize(x.to(dev)).requires_grad_(True)
        out = net(x)
        (grad,) = torch.autograd.grad(out.gather(1, y.to(dev)[:, None]).sum(), x)
        _ = grad * x
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp")
    parser.add_argument("--composite", default="epsilon")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    add_summary_option(parser, "explain_speed")
    args = parser.parse_args()
    dm = MNISTDataModule(
        root=args.data_root, download=False, val_size=0, eval_batch_size=args.batch_size
    )
    dm.setup()
    torch.manual_seed(0)
    net = MODELS[args.model](in_shape=dm.in_shape, num_classes=dm.num_classes)
    module = ClassifierModule(net, mean=dm.mean.flatten(), std=dm.std.flatten())
    if args.device == "gpu":
        module = module.cuda()
    example = torch.zeros(1, *dm.in_shape, device=module.device)
    record = [g.name for g in find_groups(module.net, example)]
    loader = dm.relevance_dataloader()
    ours, floor = [], []
    for _ in range(args.repeats):  # interleaved so machine noise hits both
        floor.append(plain_pass(module, loader, args.device))
        ours.append(
            explain_pass(module, loader, args.composite, record, dm.num_classes, args.device)
        )
    o, f = statistics.median(ours), statistics.median(floor)
    ratios = sorted(a / b for a, b in zip(ours, floor, strict=True))  # adjacent runs
    n = len(loader.dataset)
    print(
        f"data: {dm.source}, {n} images, batch {args.batch_size}, model {args.model}, "
        f"composite {args.composite}, device {args.device}, threads {torch.get_num_threads()}"
    )
    print(f"recorded layers: {record}")
    print(
        f"explain pass: {o:.2f} s ({n / o:.0f} img/s)   forward+backward: {f:.2f} s "
        f"({n / f:.0f} img/s)   ratio: {statistics.median(ratios):.2f}x, median of adjacent "
        f"runs ({ratios[0]:.2f}-{ratios[-1]:.2f}; target <= 1.5x)"
    )
    if args.summary is not None:
        write_run(
            args.summary,
            "explain_speed",
            f"{args.model}-{args.composite}-{args.device}",
            command_line("benchmarks/explain_speed.py"),
            {
                "model": args.model,
                "composite": args.composite,
                "device": args.device,
                "images": n,
                "batch": args.batch_size,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "data": dm.source.split(" (")[0],
                "explain_s": o,
                "floor_s": f,
                "ratio": statistics.median(ratios),
                "ratio_range": [ratios[0], ratios[-1]],
            },
        )


if __name__ == "__main__":
    main()
