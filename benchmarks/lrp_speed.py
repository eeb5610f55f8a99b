"""Speed and peak memory of our LRP against gradient x input and Zennit, measured in one run.

Usage::

    python benchmarks/lrp_speed.py [--models mlp,lenet5,vgg11] [--presets epsilon,...]
        [--repeats 2] [--batch 128] [--threads 2] [--device cpu] [--captum]

Each round calls, for every preset in turn, forward+backward (gradient x input, the floor for
any LRP), our preset and Zennit's equivalent composite, back to back, so that load from other
processes hits all three alike. A ratio is the median over the rounds of the ratio of adjacent
calls; the first round is a warm-up. Threads are fixed (``torch.set_num_threads``). Peak memory
is the increase of the process's peak resident set size over its size before the call (Linux
``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``), with glibc told to return
every block over 64 KiB to the system so that freed tensors leave the resident set; on CUDA it is
``torch.cuda.max_memory_allocated`` above the memory allocated before the call. Memory is the
median over the timed calls; its ratio is left out (nan) where forward+backward peaks below
``MIN_MIB`` (the MLP), as the resident set size is too coarse there.
"""

from __future__ import annotations

import argparse
import copy
import math
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

from prune.lrp import attribute, get_composite
from prune.models import MLP, LeNet5

ZENNIT: dict[str, Callable[[], zc.Composite]] = {
    "epsilon": lambda: zc.LayerMapComposite([*zc.layer_map_base(), (ZLinear, zr.Epsilon())]),
    "epsilon_plus": zc.EpsilonPlus,
    "epsilon_plus_flat": zc.EpsilonPlusFlat,
    "epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=-0.4242, high=2.8215),
    "epsilon_alpha2_beta1": zc.EpsilonAlpha2Beta1,
    "epsilon_alpha2_beta1_flat": zc.EpsilonAlpha2Beta1Flat,
}
DEFAULT_PRESETS = "epsilon,epsilon_plus_flat,epsilon_gamma_box,epsilon_alpha2_beta1"
#: Targets of the speed issue: time ratio to forward+backward per preset, and memory ratio.
TIME_TARGET = {"epsilon": 1.15, "epsilon_plus": 1.6, "epsilon_plus_flat": 1.6}
TIME_TARGET_MODIFIED, MEMORY_TARGET, ZENNIT_TARGET = 1.9, 1.5, 2.0
#: Below this forward+backward peak the resident set size is too coarse for a memory ratio.
MIN_MIB = 4.0


def _measure(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """Seconds and peak memory increase in MiB of one call of ``fn``."""
    if device == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return seconds, (torch.cuda.max_memory_allocated() - start) / 2**20

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    rss = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return seconds, (status("VmHWM:") - rss) / 1024


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

    return LRP(model).attribute(x.detach().requires_grad_(), target=target)


def _groups(model, x, target, out_rel, presets, captum):
    """``{preset: {row name: fn}}``: each group runs back to back, f+b first."""
    fb = lambda: _grad_x_input(model, x, target)  # noqa: E731
    groups = {}
    for preset in presets:
        comp = get_composite(preset)
        group = {
            "forward+backward": fb,
            f"ours {preset}": lambda c=comp: attribute(model, x, target, c),
        }
        if preset in ZENNIT:
            zmodel = copy.deepcopy(model)
            group[f"zennit {preset}"] = lambda p=preset, m=zmodel: _zennit(m, p, x, out_rel)
        groups[preset] = group
    if captum:
        cmodel = copy.deepcopy(model)
        groups["captum"] = {
            "forward+backward": fb,
            "captum LRP (epsilon)": lambda: _captum(cmodel, x, target),
        }
    return groups


def _run_model(model, shape, args) -> list[str]:
    device = args.device
    model = model.to(device).eval()
    x = torch.randn(args.batch, *shape, device=device)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    out_rel = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0) * logits
    groups = _groups(model, x, target, out_rel, args.presets.split(","), args.captum)
    samples: dict[str, list[tuple[float, float, float, float]]] = {}
    for round_ in range(args.repeats + 1):
        for group in groups.values():
            base = None
            for name, fn in group.items():
                seconds, mem = _measure(fn, device)
                base = base or (seconds, mem)
                if round_:  # round 0 is the warm-up
                    samples.setdefault(name, []).append(
                        (
                            seconds,
                            mem,
                            seconds / base[0],
                            mem / base[1] if base[1] >= MIN_MIB else math.nan,
                        )
                    )
    med = {
        name: [statistics.median(col) for col in zip(*s, strict=True)]
        for name, s in samples.items()
    }
    lines = [f"{'method':<34}{'ms':>9}{'x f+b':>8}{'MiB':>8}{'x f+b':>8}{'vs zennit':>11}  targets"]
    for name, (seconds, mem, t_ratio, m_ratio) in med.items():
        vs, verdict = "", ""
        if name.startswith("ours "):
            preset = name[5:]
            zen = samples.get(f"zennit {preset}")
            ours = samples[name]
            if zen:
                speedup = statistics.median(z[0] / o[0] for z, o in zip(zen, ours, strict=True))
                vs = f"{speedup:.2f}x"
            goal = TIME_TARGET.get(preset, TIME_TARGET_MODIFIED)
            checks = [t_ratio <= goal, math.isnan(m_ratio) or m_ratio <= MEMORY_TARGET] + (
                [speedup >= ZENNIT_TARGET] if zen else []
            )
            verdict = (
                "pass"
                if all(checks)
                else "MISS "
                + ",".join(
                    label
                    for label, ok in zip(("time", "memory", "zennit"), checks, strict=False)
                    if not ok
                )
            )
        row = f"{name:<34}{seconds * 1e3:>9.1f}{t_ratio:>8.2f}{mem:>8.1f}{m_ratio:>8.2f}"
        lines.append(f"{row}{vs:>11}  {verdict}")
    return lines


def main() -> None:
    """Run the benchmark and print a table per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,lenet5,vgg11")
    parser.add_argument("--presets", default=DEFAULT_PRESETS, help="comma-separated, or 'all'")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after one warm-up")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--captum", action="store_true", help="also time Captum's LRP")
    args = parser.parse_args()
    if args.presets == "all":
        args.presets = ",".join([*ZENNIT, "abslrp"])
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"batch {args.batch}, median of {args.repeats} rounds after a warm-up; ratios to "
        f"forward+backward (gradient x input) from adjacent calls; targets: time <= "
        f"{TIME_TARGET} else {TIME_TARGET_MODIFIED}, memory <= {MEMORY_TARGET}, zennit >= "
        f"{ZENNIT_TARGET}x",
        flush=True,
    )
    for name, (model, shape) in _models().items():
        if name in args.models.split(","):
            lines = _run_model(model, shape, args)
            print(f"\n== {name} {tuple(shape)} ==", *lines, sep="\n", flush=True)


if __name__ == "__main__":
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # freed tensors must leave the resident set for the peak-memory measurement
        os.execve(
            sys.executable,
            [sys.executable, *sys.argv],
            {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
        )
    main()
