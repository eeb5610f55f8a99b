"""Few-shot pruning variants, simulated: how an LRP output relevance or aggregation would score.

A fast stand-in for ``python train.py +experiment=mnist_fewshot`` (LeNet-5, 10 reference images
per class, 10% more units removed per step, re-explained after each step, no fine-tuning): a
removed unit's weights and bias are set to zero instead of cutting it out, which leaves a ReLU
network's outputs exactly as surgery would. Selection is the pipeline's own (per-layer L1
normalisation, global ranking, at least one unit per layer, seeded ties), so the plain criteria
reproduce the pipeline's accuracies. Areas are on the pipeline's scale (trapezoid over removed
ratios 0 to 0.9, as ``prune/auc_pruned``).

    python benchmarks/fewshot_variants.py fashion_mnist 12345,1,2 \\
        taylor lrp@margin:epsilon_plus:signed

Needs the dense checkpoints of ``benchmarks/fewshot_seeds.sh`` (``--logs``) and the data
(``--data-root``). A variant is ``taylor``, ``gradient``, ``magnitude``, ``random`` or
``lrp@<output>:<composite>:<aggregation>``:

- output: ``logit`` (the label's logit), ``one`` (1 at the label), ``margin`` (the logit minus
  the strongest other), ``softmargin`` (minus a softmax-weighted mix of the others), ``wmargin``
  (the margin times ``1 - p_t``), ``margin1`` (the margin divided by itself), ``lossz``
  (``z_k (delta_kt - p_k)``, the linearised log-probability), ``contrast`` (the logit minus the
  mean of the others), ``cmargin`` / ``cwmargin`` (``margin`` / ``wmargin`` on the correctly
  classified references only), ``sqmargin`` (the margin times ``sqrt(1 - p_t)``);
- composite: any registered LRP preset;
- aggregation per unit over the reference images: ``signed`` (sum of R), ``abs`` (sum of
  ``|R|`` after summing R over positions, as Taylor does), ``posabs`` (``|R|`` summed over
  positions, as ``pruner=lrp``), ``classmax`` (largest per-class sum of ``abs``), ``samplenorm``
  (``abs`` divided by each image's layer total);
- optional fourth field: the per-layer normalisation before global ranking, ``l1`` (default, the
  pipeline's), ``l2`` or ``none``; a composite may carry its epsilon as ``epsilon_plus~0.25``
  and per-layer rule overrides as ``epsilon_plus+classifier.0=zplus+classifier.2=gamma0.5``
  (``zplus``, ``gamma<g>``, ``eps<e>``, ``ab<alpha>``); a baseline takes the normalisation as
  ``taylor:::none``.

``lrp@lossz:epsilon_plus:abs:none`` is what ``pruner=lrp_conserved`` with
``relevance.output=log_probability`` computes (the few-shot experiments' default).

With ``--summary`` each variant is recorded in ``benchmarks/summaries/fewshot_variants.json`` as
the run ``<dataset>:<seeds>:<variant>`` for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from summary import add_summary_option, command_line, write_run
from torch import Tensor, nn

from prune import data as datamodules
from prune import lrp
from prune.data.base import to_unit_range
from prune.lrp.composites import Composite, NameMap
from prune.lrp.rules import AlphaBeta, Epsilon, Gamma, Rule, ZPlus
from prune.models import LeNet5
from prune.pruning.criteria._backprop import accumulate_units, per_unit
from prune.pruning.criteria.base import normalize_layer
from prune.pruning.selection import select_global
from prune.run.checkpoint import load_checkpoint

NAMES = ["features.0", "features.3", "classifier.0"]


def _outputs(y: Tensor, k: int) -> dict[str, Callable[[Tensor], Tensor]]:
    onehot = F.one_hot(y, k)
    margin = partial(lrp.logit_margin, labels=y)

    def softmargin(z: Tensor) -> Tensor:
        q = z.masked_fill(onehot.bool(), float("-inf")).softmax(1)
        return z * (onehot - q)

    def weighted(z: Tensor) -> Tensor:
        return (1 - z.softmax(1).gather(1, y[:, None])) * margin(z)

    def normalised(z: Tensor) -> Tensor:
        r = margin(z)
        return r / r.sum(1, keepdim=True).abs().clamp_min(1e-6)

    return {
        "logit": lambda z: onehot * z,
        "one": lambda z: onehot.to(z),
        "margin": margin,
        "softmargin": softmargin,
        "wmargin": weighted,
        "margin1": normalised,
        "lossz": partial(lrp.log_probability, labels=y),
        "contrast": lambda z: z * (onehot - (1 - onehot) / (k - 1)),
        "cmargin": lambda z: margin(z) * (z.argmax(1) == y)[:, None].to(z),
        "cwmargin": lambda z: weighted(z) * (z.argmax(1) == y)[:, None].to(z),
        "sqmargin": lambda z: margin(z) * (1 - z.softmax(1).gather(1, y[:, None])).sqrt(),
    }


#: what each output, aggregation and normalisation of a variant is, for the docs
OUTPUT_TEXT = {
    "logit": "the label's logit",
    "one": "relevance 1 at the label",
    "margin": "the margin (the label's logit minus the strongest other)",
    "softmargin": "the logit minus a softmax-weighted mix of the others",
    "wmargin": "the margin times 1 - p_t",
    "margin1": "the margin divided by its own sum per image",
    "lossz": "the log-probability, linearised at the logits",
    "contrast": "the logit minus the mean of the others",
    "cmargin": "the margin of the correctly classified references only",
    "cwmargin": "the margin times 1 - p_t, of the correctly classified references only",
    "sqmargin": "the margin times sqrt(1 - p_t)",
}
AGGREGATION_TEXT = {
    "signed": "the signed sum of R",
    "abs": "|net R| per image",
    "posabs": "|R| summed over positions",
    "classmax": "the largest per-class sum of |net R|",
    "samplenorm": "|net R| over each image's layer total",
}
NORMALISATION_TEXT = {
    "l1": "",
    "l2": ", layers L2-normalised",
    "none": ", no per-layer normalisation",
}


def describe(variant: str) -> str:
    """The variant in words, e.g. ``lrp@margin:epsilon:signed`` -> "the margin (...), composite
    `epsilon`, the signed sum of R"."""
    fields = variant.split(":")
    normalisation = NORMALISATION_TEXT[fields[3] if len(fields) > 3 and fields[3] else "l1"]
    if "@" not in fields[0] and fields[0] != "lrp":
        return f"{fields[0].capitalize()}{normalisation}"
    output = fields[0].split("@")[1] if "@" in fields[0] else "logit"
    return (
        f"{OUTPUT_TEXT[output]}, composite `{fields[1]}`, {AGGREGATION_TEXT[fields[2]]}"
        f"{normalisation}"
    )


def _aggregate(r: Tensor, how: str, y: Tensor, k: int) -> Tensor:
    summed = r.flatten(2).sum(2) if r.dim() > 2 else r  # (B, C)
    if how == "signed":
        return summed.sum(0)
    if how == "abs":
        return summed.abs().sum(0)
    if how == "posabs":
        return (r.abs().flatten(2).sum(2) if r.dim() > 2 else r.abs()).sum(0)
    if how == "classmax":
        return (F.one_hot(y, k).T.to(summed) @ summed.abs()).max(0).values
    if how == "samplenorm":
        a = summed.abs()
        return (a / a.sum(1, keepdim=True).clamp_min(1e-12)).sum(0)
    raise ValueError(f"aggregation {how!r}: choose signed, abs, posabs, classmax, samplenorm")


def scores(variant: str, net: nn.Module, x: Tensor, y: Tensor, k: int) -> dict[str, Tensor]:
    """One score per unit of each layer in NAMES (higher: keep)."""
    batches = [(x, y)]
    baseline = variant.split(":")[0]  # a baseline may carry a normalisation: taylor:::none
    if baseline == "taylor":
        return accumulate_units(net, NAMES, batches, lambda a, g: per_unit(a * g).abs())
    if baseline == "gradient":
        return accumulate_units(net, NAMES, batches, lambda _a, g: per_unit(g.abs()))
    if baseline == "magnitude":
        return {n: net.get_submodule(n).weight.detach().flatten(1).abs().sum(1) for n in NAMES}
    kind, composite, how = variant.split(":")[:3]
    output = kind.split("@")[1] if "@" in kind else "logit"
    outputs = _outputs(y, k)
    if output not in outputs:
        raise ValueError(f"output {output!r}: choose from {sorted(outputs)}")
    composite = _composite(composite)
    res = lrp.Explainer(net, composite, NAMES)(x, outputs[output])
    return {n: _aggregate(res.output[n], how, y, k) for n in NAMES}


def _rule(spec: str) -> Rule:
    """``zplus``, ``gamma<g>``, ``eps<e>`` or ``ab<alpha>`` (beta = alpha - 1)."""
    match = re.fullmatch(r"(zplus|gamma|eps|ab)([0-9.]*)", spec)
    if match is None:
        raise ValueError(f"rule {spec!r}: choose zplus, gamma<g>, eps<e>, ab<alpha>")
    kind, arg = match.groups()
    value = float(arg) if arg else {"gamma": 0.25, "eps": 1e-6, "ab": 2.0}.get(kind)
    if kind == "zplus":
        return ZPlus()
    if kind == "gamma":
        return Gamma(value)
    if kind == "eps":
        return Epsilon(value)
    return AlphaBeta(value, value - 1)


def _composite(spec: str) -> Composite:
    """``preset[~epsilon][+layer=rule...]``, e.g. ``epsilon_plus+classifier.2=gamma0.5``."""
    base, *overrides = spec.split("+")
    name, _, eps = base.partition("~")
    composite = lrp.get_composite(name, **({"epsilon": float(eps)} if eps else {}))
    if not overrides:
        return composite
    rules = {layer: _rule(rule) for layer, rule in (o.split("=") for o in overrides)}
    return NameMap(rules, fallback=composite)


def run(variant: str, net: nn.Module, ref, test, steps: int = 9) -> tuple[float, list[float], int]:
    """Area and accuracies over removed ratios 0, 0.1, ..., 0.9, and the units of the first
    layer kept at the end."""
    (x, y), (xt, yt) = ref, test
    k = int(yt.max()) + 1

    def accuracy() -> float:
        with torch.no_grad():
            return (net(xt).argmax(1) == yt).double().mean().item()

    kept = {n: list(range(net.get_submodule(n).weight.shape[0])) for n in NAMES}
    total = sum(len(v) for v in kept.values())
    gen = torch.Generator().manual_seed(0)
    accs = [accuracy()]
    for step in range(1, steps + 1):
        if variant == "random":
            s = {n: torch.rand(len(kept[n]), generator=gen, dtype=torch.float64) for n in NAMES}
        else:
            full = scores(variant, net, x, y, k)
            norm = variant.split(":")[3] if variant.count(":") == 3 else "l1"
            s = {n: normalize_layer(full[n].double()[kept[n]], norm) for n in NAMES}
        chosen = select_global(s, round(total * (1 - step / 10)), dict.fromkeys(NAMES, 1), gen)
        kept = {n: [kept[n][i] for i in chosen[n]] for n in NAMES}
        with torch.no_grad():
            for n in NAMES:
                layer = net.get_submodule(n)
                cut = torch.ones(layer.weight.shape[0], dtype=torch.bool)
                cut[kept[n]] = False
                layer.weight[cut] = 0
                layer.bias[cut] = 0
        accs.append(accuracy())
    area = sum(0.1 * (a + b) / 2 for a, b in itertools.pairwise(accs))
    return area, accs, len(kept[NAMES[0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["mnist", "fashion_mnist"])
    parser.add_argument("seeds", help="comma-separated, e.g. 12345,1,2")
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--logs", default="logs/fewshot")
    add_summary_option(parser, "fewshot_variants")
    args = parser.parse_args()
    cls = datamodules.MNISTDataModule
    if args.dataset == "fashion_mnist":
        cls = datamodules.FashionMNISTDataModule
    dm = cls(
        root=args.data_root,
        download=False,
        allow_fallback=False,
        relevance_per_class=10,
        mean=[0.0],
        std=[1.0],
    )
    dm.setup("fit")
    dm.setup("test")
    x, y = next(iter(dm.relevance_dataloader()))
    test = [torch.cat(t) for t in zip(*dm.test_dataloader(), strict=True)]
    ref, test = (to_unit_range(x), y), (to_unit_range(test[0]), test[1])
    for variant in args.variants:
        areas, curves, first = [], [], []
        for seed in args.seeds.split(","):
            path = f"{args.logs}/{args.dataset}/dense_s{seed}/checkpoints/round_0/last.ckpt"
            state = load_checkpoint(path, "--logs")["state_dict"]
            net = LeNet5(dm.in_shape, dm.num_classes)
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            area, accs, kept = run(variant, net.eval(), ref, test)
            areas.append(area)
            curves.append(accs)
            first.append(kept)
            tail = " / ".join(f"{100 * a:.1f}" for a in accs[-3:])
            print(f"{args.dataset} seed {seed} {variant}: area {area:.4f}, acc 70/80/90% {tail}")
        mean = sum(areas) / len(areas)
        print(f"== {args.dataset} {variant}: mean area {mean:.4f} over {len(areas)} seeds")
        if args.summary is not None:
            seeds = [int(s) for s in args.seeds.split(",")]
            options = [
                a for a in sys.argv[1:] if a not in (args.dataset, args.seeds, *args.variants)
            ]
            write_run(
                args.summary,
                "fewshot_variants",
                f"{args.dataset}:{args.seeds}:{variant}",
                command_line(
                    "benchmarks/fewshot_variants.py",
                    [args.dataset, args.seeds, variant, *options],
                ),
                {
                    "dataset": args.dataset,
                    "variant": variant,
                    "what": describe(variant),
                    "seeds": seeds,
                    "area": {"mean": mean, "values": areas},
                    "acc": [sum(col) / len(col) for col in zip(*curves, strict=True)],
                    "removed": [step / 10 for step in range(len(curves[0]))],
                    "first_conv_kept": sorted(first),
                    "first_conv_dense": net.get_submodule(NAMES[0]).weight.shape[0],
                },
            )


if __name__ == "__main__":
    main()
