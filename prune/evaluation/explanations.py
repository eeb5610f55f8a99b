"""Evaluate attribution methods on one model: feature removal, pixel flipping/AOPC, GAE."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prune.evaluation.figures import flip_curve_figure, heatmap_figure, select_per_class
from prune.evaluation.gae import gae_reference, gae_scores
from prune.evaluation.masking import removal_fill
from prune.evaluation.methods.base import AttributionMethod
from prune.evaluation.methods.random_baseline import RandomAttribution
from prune.evaluation.pixel_flipping import FlipCurves, flip_curve, flip_fractions
from prune.evaluation.removal import RemovalOutcome, feature_removal
from prune.evaluation.report import markdown_table

#: columns of the markdown table, in order
COLUMNS = (
    "removal/acc_kept",
    "removal/acc_removed",
    "removal/conf_kept",
    "removal/conf_removed",
    "flip/aopc_morf",
    "flip/aopc_lerf",
    "flip/abpc",
    "gae/faithfulness",
    "gae/robustness",
    "gae/local_consistency",
    "gae/contrastiveness",
    "gae/gae",
    "time_s",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_copy(model: nn.Module, enabled: bool) -> nn.Module:
    """A channels-last copy of ``model`` for plain forward passes (oneDNN's faster layout for
    small CNNs on CPU), or ``model`` itself; the caller's model is never converted."""
    if not enabled or not any(p.dim() == 4 for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(memory_format=torch.channels_last).eval()


def evaluate_explanations(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    methods: Mapping[str, AttributionMethod],
    fraction: float = 0.15,
    removal: str | float = "zero",
    background: float | Sequence[float] | Tensor = 0.0,
    mean: float | Sequence[float] | Tensor | None = None,
    flip_steps: int | Sequence[float] = 10,
    flip_output: str = "probability",
    gae: bool = True,
    gae_steps: int = 10,
    gae_samples: int | None = 128,
    batch_size: int = 256,
    add_random: bool = True,
    seed: int = 0,
    figures: bool = True,
    examples_per_class: int = 1,
    channels_last: bool = True,
) -> dict[str, Any]:
    """Run every explanation metric for every method, batched over samples.

    The explained class is the model's prediction. For each batch the attribution of
    each method is computed once and shared by feature removal
    (:func:`~prune.evaluation.removal.feature_removal`), pixel flipping
    (:func:`~prune.evaluation.pixel_flipping.flip_curve`, MoRF and LeRF, AOPC of Samek et
    al. 2017) and GAE (:mod:`prune.evaluation.gae`, Vukadin et al. 2024). The
    method-independent parts of GAE are computed once per batch for all methods.

    Args:
        model: classifier; evaluated in eval mode, its mode restored afterwards.
        x: test images ``(N, C, H, W)`` in the model's normalised space, on its device.
        y: labels ``(N,)``.
        methods: name -> attribution method (e.g. ``prune.evaluation.methods.get_methods``).
        fraction: fraction of pixels removed in the feature-removal experiment.
        removal: ``"zero"`` (a black pixel: ``background``), ``"mean"``, ``"blur"`` or a
            number; see :func:`~prune.evaluation.masking.removal_fill`.
        background: normalised value of a black pixel, ``-mu / sigma`` per channel.
        mean: dataset mean per channel (normalised) for ``removal="mean"``; default the
            mean of ``x``.
        flip_steps: number of equal flip steps, or explicit fractions.
        flip_output: ``"probability"`` or ``"logit"`` of the explained class.
        gae: compute GAE (the most expensive part: ``2 * gae_steps - 1`` extra
            attributions per image and method).
        gae_steps: masking steps of GAE.
        gae_samples: score GAE on the first ``gae_samples`` images only (``None``: all);
            GAE costs ``2 * gae_steps - 1`` attributions per image and method, about 20x
            the rest of the evaluation, so it runs on a subset by default.
        batch_size: images per batch (GAE mosaics are built within a batch).
        add_random: add the random baseline as ``"random"`` when absent.
        seed: seed of the random baseline, tie-breaking and mosaic layout.
        figures: add ``"figures"`` (matplotlib figures, not JSON) to the result.
        examples_per_class: images per class in the heatmap figure.
        channels_last: run the plain forward passes (removal, flipping, GAE masking) on a
            channels-last copy of the model; attributions always use ``model`` itself.

    Returns:
        ``{"config": {...}, "original": {"acc", "conf"}, "table": {method: {metric: v}},
        "curves": {method: {"fractions", "morf", "lerf"}}, "markdown": str,
        "figures": {"flip_curves": Figure, "heatmaps": Figure}}``. Everything but
        ``"figures"`` is plain JSON. Metric keys: ``removal/acc_{original,kept,removed}``,
        ``removal/conf_...`` (mean softmax of the original prediction), ``flip/aopc_morf``,
        ``flip/aopc_lerf``, ``flip/abpc``, ``gae/{faithfulness, robustness,
        local_consistency, contrastiveness, gae}``, ``time_s``.
    """
    methods = dict(methods)
    if add_random and "random" not in methods:
        methods["random"] = RandomAttribution(seed=seed)
    if x.dim() != 4:
        raise ValueError(f"evaluate_explanations needs images (N, C, H, W), got {tuple(x.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fractions = flip_fractions(flip_steps)
    if removal == "mean" and mean is None:
        mean = x.transpose(0, 1).flatten(1).mean(1)
    n_gae = x.shape[0] if gae_samples is None else min(gae_samples, x.shape[0])

    was_training = model.training
    model.eval()
    fast = _forward_copy(model, channels_last)
    try:
        batches = []  # (x, y, logits, pred, fill, gae reference or None)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                logits = model(xb)
                fill = removal_fill(xb, removal, background, mean)
                batches.append([xb, yb, logits, logits.argmax(1), fill, None, start])
        t0 = time.perf_counter()
        if gae:
            for b in batches:
                xb, yb, _, pred, fill, _, start = b
                m = max(0, min(xb.shape[0], n_gae - start))
                if m:
                    fill_m = fill[:m] if fill.dim() == xb.dim() else fill
                    b[5] = gae_reference(
                        fast, xb[:m], pred[:m], yb[:m], fill_m, gae_steps, generator
                    )
        _sync(x.device)
        reference_time = time.perf_counter() - t0

        removal_out: dict[str, RemovalOutcome] = {}
        curves: dict[str, FlipCurves] = {}
        gae_out: dict[str, dict[str, Tensor]] = {}
        times: dict[str, float] = {}
        for name, method in methods.items():
            t0 = time.perf_counter()
            rem, flips, scores = [], [], []
            for xb, yb, logits, pred, fill, ref, _ in batches:
                a = method(model, xb, pred)
                with torch.no_grad():
                    rem.append(feature_removal(fast, xb, yb, a, fill, fraction, logits))
                    morf, lerf = (
                        flip_curve(
                            fast, xb, a, pred, fractions, fill, o, flip_output, batch_size * 8
                        )
                        for o in ("morf", "lerf")
                    )
                flips.append(FlipCurves(fractions, morf, lerf))
                if ref is not None:
                    m = ref.x.shape[0]
                    scores.append(gae_scores(method, model, ref, a[:m], batch_size))
            _sync(x.device)
            times[name] = time.perf_counter() - t0
            removal_out[name] = RemovalOutcome.cat(rem)
            curves[name] = FlipCurves.cat(flips)
            if scores:
                gae_out[name] = {k: torch.cat([s[k] for s in scores]) for k in scores[0]}
    finally:
        model.train(was_training)

    table: dict[str, dict[str, float]] = {}
    for name in methods:
        row = removal_out[name].summary()
        row.update(curves[name].summary())
        if name in gae_out:
            row.update({f"gae/{k}": v.mean().item() for k, v in gae_out[name].items()})
        row["time_s"] = times[name]
        table[name] = row
    first = next(iter(removal_out.values()))
    original = {
        "acc": first.correct_original.float().mean().item(),
        "conf": first.confidence_original.mean().item(),
    }
    columns = [c for c in COLUMNS if any(c in r for r in table.values())]
    result: dict[str, Any] = {
        "config": {
            "num_samples": int(x.shape[0]),
            "fraction": fraction,
            "removal": removal if isinstance(removal, str) else float(removal),
            "flip_fractions": fractions,
            "flip_output": flip_output,
            "gae_steps": gae_steps if gae else None,
            "gae_samples": n_gae if gae else 0,
            "gae_reference_time_s": reference_time,
            "seed": seed,
        },
        "original": original,
        "table": table,
        "curves": {name: c.mean_curves() for name, c in curves.items()},
        "markdown": (
            f"original: acc {original['acc']:.3f}, conf {original['conf']:.3f}\n\n"
            + markdown_table(table, columns)
        ),
    }
    if figures:
        result["figures"] = explanation_figures(
            model, x, y, methods, result["curves"], fraction, examples_per_class
        )
    return result


def explanation_figures(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    methods: Mapping[str, AttributionMethod],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    fraction: float = 0.15,
    per_class: int = 1,
) -> dict[str, Any]:
    """Pixel-flipping curves and example heatmaps (``per_class`` images of each class)."""
    idx = select_per_class(y.cpu(), per_class).to(x.device)
    xs = x[idx]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            pred = model(xs).argmax(1)
        maps = {name: m(model, xs, pred) for name, m in methods.items()}
    finally:
        model.train(was_training)
    titles = [f"y={int(a)} pred={int(b)}" for a, b in zip(y[idx], pred, strict=True)]
    return {
        "flip_curves": flip_curve_figure(curves),
        "heatmaps": heatmap_figure(xs, maps, fraction, titles),
    }
