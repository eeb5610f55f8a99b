"""Speed and peak memory of our LRP against gradient x input, Zennit and Captum, in one run.

Usage: ``python benchmarks/lrp_speed.py [--threads 2] [--repeats 5] [--batch 128] [--device cpu]``

Times are medians of ``--repeats`` runs after one warm-up, with a fixed number of threads.
Ratios are to forward+backward (gradient x input: the floor for any LRP). Peak memory is the
increase of the process's peak resident set size over its size before the call (Linux
``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``), with glibc told to return
every block over 64 KiB to the system so that freed tensors leave the resident set; on CUDA it is
``torch.cuda.max_memory_allocated`` above the memory allocated before the call.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torchvision
import zennit.composites as zc
from torch import nn
from zennit import rules as zr
from zennit.attribution import Gradient
from zennit.types import Linear as ZLinear

from prune.lrp import COMPOSITES, attribute, get_composite
from prune.models import MLP, LeNet5

ZENNIT: dict[str, Callable[[], zc.Composite]] = {
    "epsilon": lambda: zc.LayerMapComposite([*zc.layer_map_base(), (ZLinear, zr.Epsilon())]),
    "epsilon_plus": zc.EpsilonPlus,
    "epsilon_plus_flat": zc.EpsilonPlusFlat,
    "epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=-0.4242, high=2.8215),
    "epsilon_alpha2_beta1": zc.EpsilonAlpha2Beta1,
    "epsilon_alpha2_beta1_flat": zc.EpsilonAlpha2Beta1Flat,
}


def _peak(fn: Callable[[], object], device: str) -> float:
    """Peak memory increase of ``fn()`` in MiB (see the module docstring for the method)."""
    if device == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    rss = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    return (status("VmHWM:") - rss) / 1024


def _time(fn: Callable[[], object], repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    return {
        "mlp": (MLP(in_shape=(1, 28, 28), num_classes=10), (1, 28, 28)),
        "lenet5": (LeNet5(in_shape=(1, 28, 28), num_classes=10), (1, 28, 28)),
        "vgg11": (torchvision.models.vgg11(num_classes=10), (3, 32, 32)),
    }


def _grad_x_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    xx = x.detach().requires_grad_()
    out = model(xx)
    (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xx)
    return xx.detach() * grad


def _zennit(model: nn.Module, name: str, x: torch.Tensor, out_rel: torch.Tensor) -> torch.Tensor:
    with Gradient(model, ZENNIT[name]()) as attributor:
        return attributor(x, out_rel)[1]


def _captum(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import LRP

    return LRP(model).attribute(x, target=target)


def _methods(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, out_rel: torch.Tensor
) -> dict[str, Callable[[], object]]:
    """Every timed method on one model and batch, by row name."""

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    methods: dict[str, Callable[[], object]] = {
        "forward": forward,
        "forward+backward": lambda: _grad_x_input(model, x, target),
    }
    for preset in COMPOSITES:
        comp = get_composite(preset)
        methods[f"ours {preset}"] = lambda c=comp: attribute(model, x, target, c)
        if preset in ZENNIT:
            zmodel = copy.deepcopy(model)
            methods[f"zennit {preset}"] = lambda p=preset, m=zmodel: _zennit(m, p, x, out_rel)
    cmodel = copy.deepcopy(model)
    methods["captum LRP (epsilon)"] = lambda: _captum(cmodel, x, target)
    return methods


def main() -> None:
    """Run the benchmark and print a table per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="mlp,lenet5,vgg11")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    print(
        f"torch {torch.__version__}, device {device}, threads {args.threads}, batch {args.batch}, "
        f"median of {args.repeats}; ratios to forward+backward (gradient x input)"
    )
    for model_name, (model, shape) in _models().items():
        if model_name not in args.models.split(","):
            continue
        model = model.to(device).eval()
        x = torch.randn(args.batch, *shape, device=device)
        with torch.no_grad():
            logits = model(x)
        target = logits.argmax(1)
        out_rel = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0) * logits
        methods = _methods(model, x, target, out_rel)
        rows = {}
        for name, fn in methods.items():
            try:
                seconds = _time(fn, args.repeats, device)
                mem = _peak(fn, device)
            except Exception as err:
                rows[name] = (None, None, f"{type(err).__name__}: {str(err)[:60]}")
                continue
            rows[name] = (seconds, mem, "")
        base_t, base_m = rows["forward+backward"][:2]
        print(f"\n== {model_name} {tuple(shape)} ==")
        print(f"{'method':<34}{'ms':>10}{'x f+b':>8}{'peak MiB':>10}{'x f+b':>8}{'vs zennit':>11}")
        for name, (t, m, note) in rows.items():
            if t is None:
                print(f"{name:<34}  {note}")
                continue
            vs = ""
            if (
                name.startswith("ours ")
                and f"zennit {name[5:]}" in rows
                and rows[f"zennit {name[5:]}"][0]
            ):
                vs = f"{rows[f'zennit {name[5:]}'][0] / t:.2f}x"
            ratio_m = m / max(base_m, 1e-9)
            print(f"{name:<34}{t * 1e3:>10.2f}{t / base_t:>8.2f}{m:>10.1f}{ratio_m:>8.2f}{vs:>11}")


if __name__ == "__main__":
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # freed tensors must leave the resident set for the peak-memory measurement
        os.execve(
            sys.executable,
            [sys.executable, *sys.argv],
            {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
        )
    main()
