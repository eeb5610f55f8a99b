"""Speed and peak memory of our LRP against gradient x input and Zennit, measured in one run.

Usage::

    python benchmarks/lrp_speed.py [--models mlp,lenet5,vgg11] [--presets epsilon,...]
        [--repeats 2] [--batch 128] [--threads 2] [--device cpu] [--captum]
    python benchmarks/lrp_speed.py --models vit      # the transformer presets

``vit`` is ``prune.models.ViT`` at the sizes of ``conf/model/vit.yaml`` on 1x28x28 inputs, and
``timm_vit`` timm's ``VisionTransformer`` at the same sizes (``--models timm_vit``); their
presets are attnlrp, cp_lrp and abslrp (those of the CNNs without ``--presets``). On ``vit``,
beside each, the same relevance computed by another implementation: LXT's explicit functional
rules (a ViT forward written with ``lxt.explicit.functional``, as
``tests/lrp/test_transformer.py`` checks it) for attnlrp and cp_lrp, and for abslrp the
straightforward hook-based absLRP of ``benchmarks/abslrp_hooks.py``. Before timing, a tiny
float64 ViT checks that each of them gives our map, so that the timings compare equal work. For
abslrp also its floor: the forward and the matrix products of its two backward passes alone
(``benchmarks/abslrp_floor.py``), timed, and their FLOPs over forward+backward's.

Times come first: each round runs, for every preset in turn,
forward+backward (gradient x input, the floor for any LRP), our preset and Zennit's equivalent
composite back to back, each as a block of calls long enough (about 50 ms) that one block is not
at the mercy of the scheduler, so that load from other processes hits all three alike. A ratio is
the median over the rounds of the ratio of adjacent blocks; one round is a warm-up. Ours is an
``Explainer`` built once per model (as the relevance accumulator uses it), Zennit's an attributor
whose hooks are registered once; both then explain batch after batch. With ``--per-call`` both
set up inside every call instead (a one-shot ``attribute``, Zennit's ``with Gradient(...)``).
Threads are fixed (``torch.set_num_threads``). ``--allocator`` picks glibc's memory
thresholds for the timing: ``system`` (its own, moving thresholds), ``kept`` (fixed by
``prune.run.allocator.keep_freed_memory``, as ``train.py``, ``evaluate.py`` and ``tune.py`` run),
or ``both``: the ``system`` timing in this process, then the ``kept`` one in a fresh process (the
setting cannot be undone), each with its own forward+backward, and the page faults per call of
every row under each.

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
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
import yaml
import zennit.composites as zc
from abslrp_floor import ProductFloor
from abslrp_hooks import AbsLRPHooks
from summary import add_summary_option, command_line, write_run
from torch import nn
from zennit import rules as zr
from zennit.attribution import Gradient
from zennit.types import Linear as ZLinear

from prune.lrp import Explainer, attribute, get_composite
from prune.lrp.fast.flow import _EpsReLU
from prune.lrp.rules.base import stabilize
from prune.models import MLP, LeNet5
from prune.models.vit import ViT
from prune.run.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parent.parent
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
#: The transformer's presets (``--models vit`` without ``--presets``).
TRANSFORMER_PRESETS = "attnlrp,cp_lrp,abslrp"
#: Threads of a run; a run with another count is named after it (``-1-thread``).
DEFAULT_THREADS = 2
TRANSFORMERS = ("vit", "timm_vit")
#: Targets of the speed issue: time ratio to forward+backward per preset, and memory ratio.
TIME_TARGET = {"epsilon": 1.15, "epsilon_plus": 1.6, "epsilon_plus_flat": 1.6}
TIME_TARGET_MODIFIED, MEMORY_TARGET, ZENNIT_TARGET = 1.9, 1.5, 2.0
#: ... and of the transformer's presets (time only).
TRANSFORMER_TIME_TARGET = {"cp_lrp": 1.15, "attnlrp": 1.3, "abslrp": 2.5}
#: The other implementations timed beside ours, by the prefix of their rows.
BASELINES = ("zennit", "lxt", "hooks")
#: LXT's stabiliser in the timed passes (ours: the presets' default epsilon), and in the check.
LXT_EPS, CHECK_EPS = 1e-6, 1e-15
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


def _times_in_child() -> dict:
    """The timing phase under ``--allocator kept`` in a fresh process: ``{model: times}``."""
    argv = _without(sys.argv[1:], "--allocator")
    cmd = [sys.executable, __file__, *argv, "--allocator", "kept", "--phase", "times"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


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
        "vit": (ViT(in_shape=(1, 28, 28), num_classes=10, **_vit_sizes()), (1, 28, 28)),
        "timm_vit": (_timm_vit(), (1, 28, 28)),
    }


def _timm_vit() -> nn.Module:
    """timm's ``VisionTransformer`` (fused attention, its default) at the sizes of ours."""
    from timm.models.vision_transformer import VisionTransformer

    sizes = _vit_sizes()
    return VisionTransformer(
        img_size=28,
        patch_size=sizes["patch_size"],
        in_chans=1,
        num_classes=10,
        embed_dim=sizes["dim"],
        depth=sizes["depth"],
        num_heads=sizes["heads"],
        mlp_ratio=sizes["mlp_ratio"],
    )


def _vit_sizes() -> dict[str, object]:
    """The ViT's constructor arguments in ``conf/model/vit.yaml``."""
    net = yaml.safe_load((ROOT / "conf" / "model" / "vit.yaml").read_text())["net"]
    return {k: v for k, v in net.items() if not k.startswith("_")}


def _presets(args, name: str) -> list[str]:
    """The presets timed on model ``name``: ``--presets`` (``all``: every preset of its kind),
    else its kind's default."""
    transformer = name in TRANSFORMERS
    if args.presets == "all":
        return TRANSFORMER_PRESETS.split(",") if transformer else [*ZENNIT, "abslrp"]
    if args.presets is not None:
        return args.presets.split(",")
    return (TRANSFORMER_PRESETS if transformer else DEFAULT_PRESETS).split(",")


class _Pass(torch.autograd.Function):
    """LXT's identity rule around an elementwise function: the relevance passes unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return fn(x)

    @staticmethod
    def backward(ctx, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        return relevance, None


class _HeldConstant(torch.autograd.Function):
    """``A @ v`` with the attention weights ``A`` as the weight matrix of LXT's
    ``linear_epsilon`` rule on ``v`` (CP-LRP; ``A`` gets no relevance), for every sample and
    head at once: ``R_v = v * A^T (R / (A v + eps))``."""

    @staticmethod
    def forward(ctx, attn: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
        out = attn @ v
        ctx.save_for_backward(attn, v, out)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, relevance: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        attn, v, out = ctx.saved_tensors
        return None, (attn.transpose(-2, -1) @ (relevance / (out + ctx.eps))).mul_(v), None


def _lxt_logits(model: ViT, x: torch.Tensor, held_constant: bool, eps: float) -> torch.Tensor:
    """The ViT's forward written with LXT's explicit functional rules (AttnLRP, or CP-LRP with
    ``held_constant``); the gradient of the logits is then their relevance."""
    import lxt.explicit.functional as lf

    p = model.patch_embed
    patches = F.unfold(x, p.kernel_size, stride=p.stride).transpose(1, 2)  # (B, N, C k k)
    h = lf.linear_epsilon(patches, p.weight.flatten(1), p.bias, eps)
    h = lf.add2(
        torch.cat([model.cls_token.expand(x.shape[0], -1, -1), h], 1), model.pos_embed, False, eps
    )
    for block in model.blocks:
        a, m = block.attn, block.mlp
        n1 = lf.layer_norm_grad_fn.apply(h, block.norm1.weight, block.norm1.bias, 1e-5, eps)
        b, n, _ = n1.shape
        qkv = lf.linear_epsilon(n1, a.qkv.weight, a.qkv.bias, eps)
        q, k, v = qkv.reshape(b, n, 3, a.heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if held_constant:
            attn = (q @ k.transpose(-2, -1) * a.scale).softmax(-1).detach()
            out = _HeldConstant.apply(attn, v, eps)
        else:
            scores = lf.mul2(lf.matmul(q, k.transpose(-2, -1), False, eps), a.scale)
            out = lf.matmul(lf.softmax(scores, -1), v, False, eps)
        out = lf.linear_epsilon(
            out.transpose(1, 2).reshape(b, n, -1), a.proj.weight, a.proj.bias, eps
        )
        h = lf.add2(h, out, False, eps)
        n2 = lf.layer_norm_grad_fn.apply(h, block.norm2.weight, block.norm2.bias, 1e-5, eps)
        hidden = _Pass.apply(lf.linear_epsilon(n2, m.fc1.weight, m.fc1.bias, eps), F.gelu)
        h = lf.add2(h, lf.linear_epsilon(hidden, m.fc2.weight, m.fc2.bias, eps), False, eps)
    h = lf.layer_norm_grad_fn.apply(h, model.norm.weight, model.norm.bias, 1e-5, eps)
    return lf.linear_epsilon(h[:, 0], model.head.weight, model.head.bias, eps)


def _lxt(
    model: ViT, x: torch.Tensor, out_rel: torch.Tensor, held_constant: bool, eps: float = LXT_EPS
) -> torch.Tensor:
    """LXT's input relevance for the output relevance ``out_rel``."""
    xx = x.detach().requires_grad_()
    (relevance,) = torch.autograd.grad(_lxt_logits(model, xx, held_constant, eps), xx, out_rel)
    return relevance


def _check_vit_baselines() -> None:
    """On a tiny float64 ViT, LXT's AttnLRP and CP-LRP and the hook-based absLRP give our maps:
    the timings below compare equal work. Raises ``AssertionError`` naming the one that differs."""
    torch.manual_seed(0)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.normal_(0, 0.1)
        model.cls_token.normal_(0, 0.5)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    logits = model(x).detach()
    out_rel = torch.zeros_like(logits).scatter_(
        1, target[:, None], logits.gather(1, target[:, None])
    )
    hooks = AbsLRPHooks(copy.deepcopy(model))
    theirs = {
        "abslrp": hooks(x, target),
        "attnlrp": _lxt(model, x, out_rel, False, CHECK_EPS),
        "cp_lrp": _lxt(model, x, out_rel, True, CHECK_EPS),
    }
    hooks.remove()
    for preset, relevance in theirs.items():
        want = attribute(model, x, target, get_composite(preset, **_check_kwargs(preset))).input
        error = ((relevance - want).abs().max() / want.abs().max()).item()
        assert error < 1e-8, f"{preset}: the baseline's map differs from ours by {error:.2e}"


def _check_kwargs(preset: str) -> dict[str, float]:
    return {} if preset == "abslrp" else {"epsilon": CHECK_EPS, "stabilizer": CHECK_EPS}


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


def _vit_baselines(model, preset, x, target, out_rel, stack) -> dict[str, Callable[[], object]]:
    """The other implementation of ``preset`` on the ViT: LXT's explicit rules (attnlrp,
    cp_lrp), or absLRP by hooks (abslrp, on a copy of the model, whose hooks stay for the run)
    and absLRP's products alone (its floor)."""
    if preset in ("attnlrp", "cp_lrp"):
        held = preset == "cp_lrp"
        return {f"lxt {preset}": lambda: _lxt(model, x, out_rel, held)}
    if preset == "abslrp":
        hooks = AbsLRPHooks(copy.deepcopy(model))
        stack.callback(hooks.remove)
        floor = ProductFloor(model, x)
        return {"hooks abslrp": lambda: hooks(x, target), "floor abslrp": floor}
    return {}


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
        if isinstance(model, ViT):
            group.update(_vit_baselines(model, preset, x, target, out_rel, stack))
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


def _setup(name, model, shape, args, stack):
    model = model.to(args.device).eval()
    x = torch.randn(args.batch, *shape, device=args.device)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    out_rel = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0) * logits
    return _groups(
        model, x, target, out_rel, _presets(args, name), args.captum, stack, args.per_call
    )


def _faults() -> int:
    """The process's minor page faults so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _time(groups, args) -> dict[str, list[tuple[float, ...]]]:
    """``{row: [(seconds per call, ratio to the adjacent f+b block, page faults per call),
    ...]}`` over the rounds."""
    samples: dict[str, list[tuple[float, ...]]] = {}
    for group in groups.values():
        for fn in group.values():  # warm-up (and the first call's one-off costs)
            fn()
    fb = next(iter(groups.values()))["forward+backward"]
    calls = max(1, math.ceil(BLOCK_SECONDS / _block(fb, 1, args.device)))
    for round_ in range(args.repeats + 1):
        for group in groups.values():
            base = None
            for name, fn in group.items():
                faults = _faults()
                seconds = _block(fn, calls, args.device)
                faults = (_faults() - faults) / calls
                base = seconds if base is None else base
                if round_:  # round 0 is the warm-up
                    samples.setdefault(name, []).append((seconds, seconds / base, faults))
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


def _leads(times, name: str) -> dict[str, float]:
    """How many times faster the row ``ours <preset>`` ran than each other implementation of
    that preset (``zennit``, ``lxt``, ``hooks``): the median of the ratios of adjacent blocks."""
    if not name.startswith("ours "):
        return {}
    ours = times[name]
    return {
        ref: statistics.median(t[0] / o[0] for t, o in zip(other, ours, strict=True))
        for ref in BASELINES
        if (other := times.get(f"{ref} {name[5:]}"))
    }


def _targets(model: str, preset: str) -> tuple[float, float | None]:
    """The time target of ``preset`` on ``model``, and its memory target (None: none)."""
    if model in TRANSFORMERS:
        return TRANSFORMER_TIME_TARGET.get(preset, TIME_TARGET_MODIFIED), None
    return TIME_TARGET.get(preset, TIME_TARGET_MODIFIED), MEMORY_TARGET


def _table(model, times, memory) -> list[str]:
    med = {
        name: [statistics.median(col) for col in zip(*s, strict=True)] for name, s in times.items()
    }
    head = f"{'method':<34}{'ms':>9}{'x f+b':>8}{'faults':>8}{'MiB':>8}{'x f+b':>8}"
    lines = [f"{head}{'faster than':>16}  targets"]
    for name, (seconds, t_ratio, faults) in med.items():
        mem, m_ratio = (statistics.median(col) for col in zip(*memory[name], strict=True))
        leads = _leads(times, name)
        vs = ", ".join(f"{v:.2f}x {ref}" for ref, v in leads.items())
        verdict = ""
        if name.startswith("ours "):
            goal, memory_goal = _targets(model, name[5:])
            checks = {"time": t_ratio <= goal}
            if memory_goal is not None:
                checks["memory"] = math.isnan(m_ratio) or m_ratio <= memory_goal
            if "zennit" in leads:
                checks["zennit"] = leads["zennit"] >= ZENNIT_TARGET
            missed = [label for label, ok in checks.items() if not ok]
            verdict = "MISS " + ",".join(missed) if missed else "pass"
        row = f"{name:<34}{seconds * 1e3:>9.1f}{t_ratio:>8.2f}{faults:>8.0f}"
        row += f"{mem:>8.1f}{m_ratio:>8.2f}"
        lines.append(f"{row}{vs:>16}  {verdict}")
    return lines


def _summary_rows(times, memory) -> dict[str, dict[str, float]]:
    """The medians of every row, as ``_table`` prints them, for the summary file; ``vs_<other>``
    is how many times faster ours ran than that implementation (``vs_zennit``, ``vs_lxt``,
    ``vs_hooks``)."""
    rows = {}
    for name, samples in times.items():
        seconds, t_ratio, faults = (statistics.median(col) for col in zip(*samples, strict=True))
        mem, m_ratio = (statistics.median(col) for col in zip(*memory[name], strict=True))
        row = {"ms": seconds * 1e3, "time_ratio": t_ratio, "faults": faults}
        row.update(mib=mem, memory_ratio=m_ratio)
        row.update({f"vs_{ref}": v for ref, v in _leads(times, name).items()})
        rows[name] = {k: v for k, v in row.items() if not math.isnan(v)}
    return rows


def _run_name(args) -> str:
    """The run's default name in the summary file: device, batch and what is not the default."""
    name = f"{args.device}-b{args.batch}"
    if args.per_call:
        name += "-per-call"
    if args.models != DEFAULT_MODELS:
        name += "-" + args.models.replace(",", "-")
    if args.presets not in (None, DEFAULT_PRESETS):
        name += "-" + args.presets.replace(",", "-")
    if args.threads != DEFAULT_THREADS:
        name += f"-{args.threads}-thread" + ("s" if args.threads > 1 else "")
    return name


def main() -> None:
    """Run the benchmark and print a table per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument(
        "--presets",
        default=None,
        help="comma-separated, or 'all' (default: each model's kind's presets)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--captum", action="store_true", help="also time Captum's LRP")
    parser.add_argument(
        "--per-call",
        action="store_true",
        help="set up inside every call: one-shot attribute() and Zennit hooks per call",
    )
    parser.add_argument(
        "--allocator",
        choices=["system", "kept", "both"],
        default="system",
        help="glibc's thresholds while timing: its own, kept (keep_freed_memory), or both",
    )
    parser.add_argument(
        "--phase", choices=["all", "memory", "times"], default="all", help=argparse.SUPPRESS
    )
    add_summary_option(parser, "lrp_speed")
    parser.add_argument("--run", default=None, help="the run's name in the summary file")
    args = parser.parse_args()
    if args.phase == "times" or (args.phase == "all" and args.allocator == "kept"):
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    if args.phase == "all":
        print(
            f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
            f"batch {args.batch}, median of {args.repeats} rounds after a warm-up; ratios to "
            f"forward+backward (gradient x input) from adjacent calls; targets: time <= "
            f"{TIME_TARGET} else {TIME_TARGET_MODIFIED}, memory <= {MEMORY_TARGET}, zennit >= "
            f"{ZENNIT_TARGET}x; transformers: time <= {TRANSFORMER_TIME_TARGET}",
            flush=True,
        )
    names = args.models.split(",")
    if args.phase == "all" and any(name in TRANSFORMERS for name in names):
        _check_vit_baselines()  # equal work: the baselines give our maps
    models = {k: v for k, v in _models().items() if k in names}
    with contextlib.ExitStack() as stack:
        runs = {
            name: _setup(name, *model_shape, args, stack) for name, model_shape in models.items()
        }
        if args.phase == "memory":
            print(json.dumps({name: _memory(groups, args) for name, groups in runs.items()}))
            return
        times = {name: _time(groups, args) for name, groups in runs.items()}
        if args.phase == "times":
            print(json.dumps(times))
            return
    # with both: the table and the summary's rows are those of the kept allocator, and
    # rows_system those of glibc's own thresholds (measured above, in this process)
    system = times if args.allocator == "both" else None
    times = _times_in_child() if system is not None else times
    memory = _memory_in_child(args)
    for name, (_, shape) in models.items():
        for label, t in [("", times[name]), (", system allocator", (system or {}).get(name))]:
            if t is not None:
                lines = _table(name, t, memory[name])
                print(f"\n== {name} {tuple(shape)}{label} ==", *lines, sep="\n", flush=True)
    floor_flops = {
        name: _floor_flop_ratio(model, shape, args)
        for name, (model, shape) in models.items()
        if isinstance(model, ViT) and "abslrp" in _presets(args, name)
    }
    for name, ratio in floor_flops.items():
        print(f"{name}: absLRP's products alone, FLOPs x f+b: {ratio:.2f}", flush=True)
    if args.summary is not None:
        figures = {
            "device": args.device,
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "per_call": args.per_call,
            "allocator": args.allocator,
            "zennit": version("zennit"),
            **({"lxt": version("lxt")} if any(n in TRANSFORMERS for n in models) else {}),
            "models": {
                name: {
                    "shape": list(shape),
                    "rows": _summary_rows(times[name], memory[name]),
                    **({"floor_flop_ratio": floor_flops[name]} if name in floor_flops else {}),
                    **(
                        {"rows_system": _summary_rows(system[name], memory[name])}
                        if system is not None
                        else {}
                    ),
                }
                for name, (_, shape) in models.items()
            },
        }
        command = command_line("benchmarks/lrp_speed.py", _without(sys.argv[1:], "--run"))  # a name
        write_run(args.summary, "lrp_speed", args.run or _run_name(args), command, figures)


def _floor_flop_ratio(model: ViT, shape: tuple[int, ...], args) -> float:
    """FLOPs of absLRP's products alone over forward+backward's, on a batch of ``shape``
    (``ProductFloor.flop_ratio``: the floor in arithmetic, the same on every machine)."""
    x = torch.randn(args.batch, *shape, device=args.device)
    model = model.to(args.device).eval()
    with torch.no_grad():
        target = model(x).argmax(1)
    return ProductFloor(model, x).flop_ratio(target)


def _without(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` or ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            out.append(arg)
    return out


if __name__ == "__main__":
    main()
