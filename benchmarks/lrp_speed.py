"""Speed and peak memory of our LRP against gradient x input and Zennit, measured in one run.

Usage::

    python benchmarks/lrp_speed.py [--models mlp,lenet5,vgg11] [--presets epsilon,...]
        [--repeats 2] [--batch 128] [--threads 2] [--device cpu] [--captum]

Times come first, under the default allocator: each round runs, for every preset in turn,
forward+backward (gradient x input, the floor for any LRP), our preset and Zennit's equivalent
composite back to back, each as a block of calls long enough (about 50 ms) that one block is not
at the mercy of the scheduler, so that load from other processes hits all three alike. A ratio is
the median over the rounds of the ratio of adjacent blocks; one round is a warm-up. Ours is an
``Explainer`` built once per model (as the relevance accumulator uses it), Zennit's an attributor
whose hooks are registered once; both then explain batch after batch. With ``--per-call`` both
set up inside every call instead (a one-shot ``attribute``, Zennit's ``with Gradient(...)``).
Threads are fixed (``torch.set_num_threads``).

Peak memory comes after, one call at a time: the increase of the process's peak resident set
size over its size before the call (Linux ``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs``), with glibc told (``mallopt``) to return every block over 64 KiB to the
system so that freed tensors leave the resident set; on CUDA it is
``torch.cuda.max_memory_allocated`` above the memory allocated before the call. Memory is the
median over the calls; its ratio is left out (nan) where forward+backward peaks below
``MIN_MIB`` (the MLP), as the resident set size is too coarse there.

With ``--summary`` the run is recorded in ``benchmarks/summaries/lrp_speed.json`` for
``benchmarks/make_pages.py``, as the run ``--run`` (by default ``<device>-b<batch>``, with
``-per-call`` and the models and presets where they are not the defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

import torch
import torchvision
import zennit.composites as zc
from summary import add_summary_option, command_line, write_run
from torch import nn
from zennit import rules as zr
from zennit.attribution import Gradient
from zennit.types import Linear as ZLinear

from prune.lrp import Explainer, attribute, get_composite
from prune.lrp.fast.flow import _EpsReLU
from prune.lrp.rules.base import stabilize
from prune.models import MLP, LeNet5

ZENNIT: dict[str, Callable[[], zc.Composite]] = {
    "epsilon": lambda: zc.LayerMapComposite([*zc.layer_map_base(), (ZLinear, zr.Epsilon())]),
    "epsilon_plus": zc.EpsilonPlus,
    "epsilon_plus_flat": zc.EpsilonPlusFlat,
    "epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=-0.4242, high=2.8215),
    "epsilon_alpha2_beta1": zc.EpsilonAlpha2Beta1,
    "epsilon_alpha2_beta1_flat": zc.EpsilonAlpha2Beta1Flat,
}
DEFAULT_MODELS = "mlp,lenet5,vgg11"
DEFAULT_PRESETS = "epsilon,epsilon_plus_flat,epsilon_gamma_box,epsilon_alpha2_beta1"
#: Targets of the speed issue: time ratio to forward+backward per preset, and memory ratio.
TIME_TARGET = {"epsilon": 1.15, "epsilon_plus": 1.6, "epsilon_plus_flat": 1.6}
TIME_TARGET_MODIFIED, MEMORY_TARGET, ZENNIT_TARGET = 1.9, 1.5, 2.0
#: Length of one timed block of calls, and calls per memory sample.
BLOCK_SECONDS, MEMORY_CALLS = 0.05, 3
#: Below this forward+backward peak the resident set size is too coarse for a memory ratio.
MIN_MIB = 4.0


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _block(fn: Callable[[], object], calls: int, device: str) -> float:
    """Seconds per call of ``fn`` over a block of ``calls`` calls."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / calls


def _peak_mib(fn: Callable[[], object], device: str) -> float:
    """Peak memory increase in MiB during one call of ``fn``."""
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


def _memory_in_child(args) -> dict[str, dict[str, list[list[float]]]]:
    """The memory samples of every model, measured in a fresh process in which glibc serves
    every block over 64 KiB by mmap, so that a freed tensor leaves the resident set at once. (Set
    later in this process, freed heap blocks of the timing phase would be reused unseen.)"""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, __file__, *sys.argv[1:], "--phase", "memory"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


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


def _epsilon_by_hand(model: MLP, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The MLP's epsilon pass written out, without the engine around it: native linear layers,
    the engine's fused epsilon ReLU, the logits' rescale folded into the seed. Our ``epsilon``
    preset gives the same relevance; the gap between the two rows is the engine's own work."""
    eps = 1e-6  # EpsilonOnly's default
    xx = x.detach().requires_grad_()
    h = xx.flatten(1)
    for layer in model.layers:
        if isinstance(layer, nn.Linear):
            h = nn.functional.linear(h, layer.weight.detach(), layer.bias.detach())
        elif isinstance(layer, nn.ReLU):
            h = _EpsReLU.apply(h, eps)
        else:
            raise TypeError(f"the hand-written pass covers Linear and ReLU, not {layer}")
    z = h.detach().gather(1, target[:, None])
    seed = torch.zeros_like(h).scatter_(1, target[:, None], z / stabilize(z, eps))
    (grad,) = torch.autograd.grad(h, xx, seed)
    return xx.detach() * grad


def _captum(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import LRP

    return LRP(model).attribute(x.detach().requires_grad_(), target=target)


def _zennit_once(model: nn.Module, name: str, x: torch.Tensor, out_rel: torch.Tensor):
    with Gradient(model, ZENNIT[name]()) as attributor:
        return attributor(x, out_rel)[1]


def _groups(model, x, target, out_rel, presets, captum, stack, per_call):
    """``{preset: {row name: fn}}``: each group runs back to back, f+b first.

    Zennit's hooks are registered (``stack.enter_context``) on a copy of the model per preset,
    for the whole run, and our explainer is built once per preset; with ``per_call`` both set
    up inside every call instead.
    """
    fb = lambda: _grad_x_input(model, x, target)  # noqa: E731
    groups = {}
    for preset in presets:
        if per_call:  # set-up inside every call: a one-shot attribute, hooks per call
            composite = get_composite(preset)
            ours = lambda c=composite: attribute(model, x, target, c)  # noqa: E731
        else:
            explainer = Explainer(model, get_composite(preset))
            ours = lambda e=explainer: e(x, target)  # noqa: E731
        group = {"forward+backward": fb, f"ours {preset}": ours}
        if preset == "epsilon" and isinstance(model, MLP):
            group["epsilon by hand"] = lambda: _epsilon_by_hand(model, x, target)
        if preset in ZENNIT:
            zmodel = copy.deepcopy(model)
            if per_call:
                group[f"zennit {preset}"] = lambda p=preset, m=zmodel: _zennit_once(
                    m, p, x, out_rel
                )
            else:
                attributor = stack.enter_context(Gradient(zmodel, ZENNIT[preset]()))
                group[f"zennit {preset}"] = lambda a=attributor: a(x, out_rel)[1]
        groups[preset] = group
    if captum:
        cmodel = copy.deepcopy(model)
        try:
            _captum(cmodel, x, target)
        except (TypeError, RuntimeError) as err:  # e.g. no rule for nn.Flatten (MLP, LeNet-5)
            print(f"captum LRP does not run on {type(model).__name__}: {err}", flush=True)
        else:
            groups["captum"] = {
                "forward+backward": fb,
                "captum LRP (epsilon)": lambda: _captum(cmodel, x, target),
            }
    return groups


def _setup(model, shape, args, stack):
    model = model.to(args.device).eval()
    x = torch.randn(args.batch, *shape, device=args.device)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    out_rel = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0) * logits
    return _groups(
        model, x, target, out_rel, args.presets.split(","), args.captum, stack, args.per_call
    )


def _time(groups, args) -> dict[str, list[tuple[float, float]]]:
    """``{row: [(seconds per call, ratio to the adjacent f+b block), ...]}`` over the rounds."""
    samples: dict[str, list[tuple[float, float]]] = {}
    for group in groups.values():
        for fn in group.values():  # warm-up (and the first call's one-off costs)
            fn()
    fb = next(iter(groups.values()))["forward+backward"]
    calls = max(1, math.ceil(BLOCK_SECONDS / _block(fb, 1, args.device)))
    for round_ in range(args.repeats + 1):
        for group in groups.values():
            base = None
            for name, fn in group.items():
                seconds = _block(fn, calls, args.device)
                base = seconds if base is None else base
                if round_:  # round 0 is the warm-up
                    samples.setdefault(name, []).append((seconds, seconds / base))
    return samples


def _memory(groups, args) -> dict[str, list[tuple[float, float]]]:
    """``{row: [(peak MiB, ratio to f+b), ...]}``, one call per sample."""
    samples: dict[str, list[tuple[float, float]]] = {}
    for group in groups.values():
        for fn in group.values():  # warm-up
            fn()
    for _ in range(MEMORY_CALLS):
        for group in groups.values():
            base = None
            for name, fn in group.items():
                mem = _peak_mib(fn, args.device)
                base = mem if base is None else base
                ratio = mem / base if base >= MIN_MIB else math.nan
                samples.setdefault(name, []).append((mem, ratio))
    return samples


def _table(times, memory) -> list[str]:
    med = {
        name: [statistics.median(col) for col in zip(*s, strict=True)] for name, s in times.items()
    }
    lines = [f"{'method':<34}{'ms':>9}{'x f+b':>8}{'MiB':>8}{'x f+b':>8}{'vs zennit':>11}  targets"]
    for name, (seconds, t_ratio) in med.items():
        mem, m_ratio = (statistics.median(col) for col in zip(*memory[name], strict=True))
        vs, verdict = "", ""
        if name.startswith("ours "):
            preset = name[5:]
            zen = times.get(f"zennit {preset}")
            ours = times[name]
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


def _summary_rows(times, memory) -> dict[str, dict[str, float]]:
    """The medians of every row, as ``_table`` prints them, for the summary file."""
    rows = {}
    for name, samples in times.items():
        seconds, t_ratio = (statistics.median(col) for col in zip(*samples, strict=True))
        mem, m_ratio = (statistics.median(col) for col in zip(*memory[name], strict=True))
        row = {"ms": seconds * 1e3, "time_ratio": t_ratio, "mib": mem, "memory_ratio": m_ratio}
        zen = times.get(f"zennit {name[5:]}") if name.startswith("ours ") else None
        if zen:
            row["vs_zennit"] = statistics.median(
                z[0] / o[0] for z, o in zip(zen, samples, strict=True)
            )
        rows[name] = {k: v for k, v in row.items() if not math.isnan(v)}
    return rows


def _run_name(args) -> str:
    """The run's default name in the summary file: device, batch and what is not the default."""
    name = f"{args.device}-b{args.batch}"
    if args.per_call:
        name += "-per-call"
    if args.models != DEFAULT_MODELS:
        name += "-" + args.models.replace(",", "-")
    if args.presets != DEFAULT_PRESETS:
        name += "-" + ("all" if args.presets_all else args.presets.replace(",", "-"))
    return name


def main() -> None:
    """Run the benchmark and print a table per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--presets", default=DEFAULT_PRESETS, help="comma-separated, or 'all'")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--captum", action="store_true", help="also time Captum's LRP")
    parser.add_argument(
        "--per-call",
        action="store_true",
        help="set up inside every call: one-shot attribute() and Zennit hooks per call",
    )
    parser.add_argument("--phase", choices=["all", "memory"], default="all", help=argparse.SUPPRESS)
    add_summary_option(parser, "lrp_speed")
    parser.add_argument("--run", default=None, help="the run's name in the summary file")
    args = parser.parse_args()
    args.presets_all = args.presets == "all"
    if args.presets == "all":
        args.presets = ",".join([*ZENNIT, "abslrp"])
    torch.set_num_threads(args.threads)
    if args.phase == "all":
        print(
            f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
            f"batch {args.batch}, median of {args.repeats} rounds after a warm-up; ratios to "
            f"forward+backward (gradient x input) from adjacent calls; targets: time <= "
            f"{TIME_TARGET} else {TIME_TARGET_MODIFIED}, memory <= {MEMORY_TARGET}, zennit >= "
            f"{ZENNIT_TARGET}x",
            flush=True,
        )
    models = {k: v for k, v in _models().items() if k in args.models.split(",")}
    with contextlib.ExitStack() as stack:
        runs = {name: _setup(model, shape, args, stack) for name, (model, shape) in models.items()}
        if args.phase == "memory":
            print(json.dumps({name: _memory(groups, args) for name, groups in runs.items()}))
            return
        times = {name: _time(groups, args) for name, groups in runs.items()}
    memory = _memory_in_child(args)
    for name, (_, shape) in models.items():
        lines = _table(times[name], memory[name])
        print(f"\n== {name} {tuple(shape)} ==", *lines, sep="\n", flush=True)
    if args.summary is not None:
        figures = {
            "device": args.device,
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "per_call": args.per_call,
            "zennit": version("zennit"),
            "models": {
                name: {"shape": list(shape), "rows": _summary_rows(times[name], memory[name])}
                for name, (_, shape) in models.items()
            },
        }
        command = command_line("benchmarks/lrp_speed.py", _without_run(sys.argv[1:]))
        write_run(args.summary, "lrp_speed", args.run or _run_name(args), command, figures)


def _without_run(argv: list[str]) -> list[str]:
    """``argv`` without ``--run NAME`` (it names the record, it does not change the run)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--run":
            skip = True
        elif not arg.startswith("--run="):
            out.append(arg)
    return out


if __name__ == "__main__":
    main()
