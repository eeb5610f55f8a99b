"""The results page (``docs/results.md``): its prose, with the figures of the summaries filled in.

Each section reads one or two summary files and is left out where they are missing. Groups of
a sweep summary (``summarize_sweeps.py --summary``) are found by their overrides, e.g.
``{"data": "mnist", "pruner": "taylor"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from page_text import (
    Run,
    bold,
    command_text,
    count,
    mean,
    num,
    pct,
    plus_minus,
    sources,
    span,
    spell,
    stat,
    table,
    values,
    words,
)

Summaries = Mapping[str, Mapping[str, Any]]

INTRO = """\
# Results

All figures are test accuracy on the official 10,000-image test set of full MNIST (of
Fashion-MNIST where the table says so), FLOPs as defined in
[Getting started](getting-started.md#outputs) (2 × MACs of convolutions and matrix products).
They come from the `results.json` files written by the commands shown, summarised into
`benchmarks/summaries/` (`python benchmarks/summarize_sweeps.py ... --summary`); every table
says which commands reproduce it, on which machine and when it was measured. Mean ± std over
seeds where more than one seed was run; a single number is one seed (`n` says how many)."""


def _runs(summaries: Summaries, name: str) -> Mapping[str, Run]:
    return (summaries.get(name) or {}).get("runs") or {}


def _overrides(key: str) -> dict[str, str]:
    """A job key ``a=1,b=2`` (Hydra's override_dirname) as ``{"a": "1", "b": "2"}``."""
    return dict(item.split("=", 1) for item in key.split(",") if "=" in item)


def _group(run: Run, **overrides: str) -> dict[str, Any] | None:
    """The sweep group whose overrides are exactly ``overrides`` (``.`` written as ``__``)."""
    want = {k.replace("__", "."): str(v) for k, v in overrides.items()}
    for key, group in (run.get("figures", {}).get("groups") or {}).items():
        if _overrides(key) == want:
            return group
    return None


def _metric(group: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    return None if group is None else (group.get("metrics") or {}).get(name)


def _round(group: Mapping[str, Any] | None, k: int, name: str) -> dict[str, Any] | None:
    if group is None:
        return None
    return ((group.get("rounds") or {}).get(str(k)) or {}).get(name)


def _seeds(seeds: Sequence[Any], sep: str = ", ") -> str:
    return sep.join(str(s) for s in seeds)


# ---------------------------------------------------------------------------- dense models


def dense_models(summaries: Summaries) -> str | None:
    runs = _runs(summaries, "dense_models")
    if not runs:
        return None
    rows = [
        [
            run.get("label", name),
            str(run["figures"]["epochs"]),
            _accuracy(run["figures"]["test/acc"]),
            count(run["figures"]["cost/flops"]),
            count(run["figures"]["cost/params"]),
            _wall(run["figures"].get("wall_s")),
        ]
        for name, run in runs.items()
    ]
    header = ["model", "epochs", "test acc %", "FLOPs", "params", "wall time (s) per run"]
    return "\n\n".join(
        [
            "## Dense models",
            "One seed, or the mean ± standard deviation over the seeds listed (the per-seed "
            "accuracies in brackets); wall time of one training run on the machine named below.",
            table(header, "lrrrrr", rows),
            sources([("dense_models", name, run, run.get("label")) for name, run in runs.items()]),
        ]
    )


def _accuracy(v: float | list[float]) -> str:
    """One accuracy, or mean ± std of several (sample std) with each in brackets, in %."""
    accs = values(v)
    if len(accs) == 1:
        return pct(accs[0])
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5
    return f"{pct(mean)} ± {pct(std)} ({', '.join(pct(a) for a in accs)})"


def _wall(v: float | list[float] | None) -> str:
    """Wall seconds of a run, or the range over several; "-" where not recorded."""
    return "-" if v is None else span(v, 0)


# ---------------------------------------------------------------------------- input pruning

INPUT_CRITERIA = {"lrp": "LRP (epsilon)", "variance": "pixel variance", "random": "random"}
#: the issue's targets: loss at k = 196 (points), accuracy at k = 100 and k = 50 (%)
INPUT_TARGETS = {"max_loss_196": 0.5, "acc_100": 96.0, "acc_50": 92.0}
#: the best published unsupervised pixel selectors at k = 50 (on a smaller protocol), %
PUBLISHED_50 = 90.6


def input_pruning(summaries: Summaries) -> str | None:
    runs = _runs(summaries, "input_pruning")
    sweep = runs.get("sweeps")
    if sweep is None:
        return None
    groups = sweep["figures"]["groups"]
    ks = sorted({int(g["keep"]) for g in groups.values() if g.get("keep") is not None})
    seeds = next(iter(groups.values()))["seeds"]
    dense = _metric(next(iter(groups.values())), "test/acc_dense")
    dense_flops = (_runs(summaries, "dense_models").get("mlp") or {}).get("figures", {})
    flops_head = "FLOPs" + (
        f" (dense {count(dense_flops['cost/flops'])})" if "cost/flops" in dense_flops else ""
    )
    cmd = command_text(sweep)
    wall = sweep["figures"].get("wall_minutes")
    took = f" (about {wall} minutes on the {sweep['machine']['description']})" if wall else ""
    dense_values = ", ".join(pct(v) for v in dense.get("values", []))
    intro = (
        "Keep k pixels; 5 geometric rounds of explain, cut, fine-tune 3 epochs with the learning "
        "rate decayed 0.6x per epoch, e.g. 784 → 520 → 345 → 229 → 151 → 100; mean ± std over "
        f"seeds {_seeds(seeds)}; in each seed every criterion starts from the same dense "
        f"checkpoint. Reproduce the whole table with {cmd}{took}; each cell is `python train.py "
        "+experiment=mnist_prune pruner=<criterion> pruner.keep=<k> seed=<s> "
        "ckpt_path=logs/input_pruning/dense_s<s>/checkpoints/round_0/last.ckpt`, the dense models "
        "being `python train.py model=mlp trainer.max_epochs=8 seed=<s>`. The dense checkpoints "
        f"that are pruned score **{plus_minus(dense)}%**"
        + (f" ({dense_values})." if dense_values else ".")
    )
    header, rows, lrp_best = _input_rows(summaries, sweep, ks, flops_head)
    parts = [
        "## Input pruning, MLP 784-300-100-10",
        intro,
        table(header, "r" * len(header), rows),
    ]
    parts.append(_input_verdict(sweep, ks, lrp_best))
    parts.append(_input_ablations(runs))
    items = [("input_pruning", "sweeps", sweep, None)]
    for name, label in (
        ("rounds", "rounds, seed 1"),
        ("rounds_3", "3 rounds, every seed"),
        ("constant_lr", "constant learning rate"),
    ):
        if name in runs:
            items.append(("input_pruning", name, runs[name], label))
    parts.append(sources(items))
    return "\n\n".join(p for p in parts if p)


def _input_rows(
    summaries: Summaries, sweep: Run, ks: Sequence[int], flops_head: str
) -> tuple[list[str], list[list[str]], bool]:
    """The input pruning table's header and rows, and whether LRP is best at every k."""
    rows, lrp_best = [], True
    for k in ks:
        by = {c: _group(sweep, pruner=c, pruner__keep=k) for c in INPUT_CRITERIA}
        accs = {c: mean(_metric(g, "test/acc")) for c, g in by.items() if g is not None}
        best = max(accs.values())
        lrp_best &= accs.get("lrp") == best and list(accs.values()).count(best) == 1
        any_group = next(g for g in by.values() if g is not None)
        drop = _metric(by.get("lrp"), "acc_drop")
        rows.append(
            [str(k), count(mean(_metric(any_group, "cost/flops")))]
            + [
                "-" if g is None else bold(plus_minus(_metric(g, "test/acc")), accs[c] == best)
                for c, g in by.items()
            ]
            + ["-" if drop is None else plus_minus(drop), str(any_group["n"])]
        )
    header = ["kept pixels k", flops_head, *INPUT_CRITERIA.values()]
    header += ["LRP loss vs dense (points)", "n"]
    return header, rows, lrp_best


def headline(summaries: Summaries) -> str | None:
    """The README's headline table: input pruning of the MLP, from the same summary."""
    sweep = _runs(summaries, "input_pruning").get("sweeps")
    if sweep is None:
        return None
    groups = sweep["figures"]["groups"]
    ks = sorted({int(g["keep"]) for g in groups.values() if g.get("keep") is not None})
    seeds = next(iter(groups.values()))["seeds"]
    header, rows, _ = _input_rows(summaries, sweep, ks, "FLOPs")
    return "\n\n".join(
        [
            f"**Input pruning, MLP 784-300-100-10 on MNIST** (keep k pixels in 5 rounds of "
            f"explain, cut and fine-tune; test accuracy in %, mean ± std over seeds "
            f"{_seeds(seeds)}; measured {sweep['date']} on the {sweep['machine']['description']}; "
            "commands and the other tables: [Results](docs/results.md)):",
            table(header, "r" * len(header), rows),
        ]
    )


def _input_verdict(sweep: Run, ks: Sequence[int], lrp_best: bool) -> str:
    text = "LRP beats both baselines at every k." if lrp_best else ""
    lrp = {k: _group(sweep, pruner="lrp", pruner__keep=k) for k in ks}
    claims = []
    if lrp.get(196) is not None and _metric(lrp[196], "acc_drop") is not None:
        claims.append(
            f"keeping 196 pixels ({round(100 * (1 - 196 / 784))}% removed) costs "
            f"{plus_minus(_metric(lrp[196], 'acc_drop'))} points (target: at most "
            f"{INPUT_TARGETS['max_loss_196']})"
        )
    if lrp.get(100) is not None:
        acc = _metric(lrp[100], "test/acc")
        per_seed = f"; seeds: {', '.join(pct(v) for v in acc['values'])}" if "values" in acc else ""
        claims.append(
            f"100 pixels keep {pct(mean(acc))}% (target {INPUT_TARGETS['acc_100']:.1f}%{per_seed})"
        )
    if lrp.get(50) is not None:
        claims.append(
            f"50 pixels keep {pct(mean(_metric(lrp[50], 'test/acc')))}% (target "
            f"{INPUT_TARGETS['acc_50']:g}%; published unsupervised selectors reach "
            f"{PUBLISHED_50}% on a smaller protocol)"
        )
    if claims:
        first = claims[0][0].upper() + claims[0][1:]
        text += (" " if text else "") + "; ".join([first, *claims[1:]]) + "."
    return text


def _input_ablations(runs: Mapping[str, Run]) -> str:
    parts = []
    if "rounds" in runs:
        fig = runs["rounds"]["figures"]
        by = sorted(fig["test/acc_by_rounds"].items(), key=lambda kv: int(kv[0]))
        listed = ", ".join(
            f"{'one round' if r == '1' else f'{r} rounds'} {pct(acc)}%" for r, acc in by
        )
        parts.append(
            f"The number of rounds matters most at k = {fig['keep']}: on seed {fig['seed']} "
            f"({command_text(runs['rounds'])}) {listed}"
        )
    if "rounds_3" in runs:
        fig = runs["rounds_3"]["figures"]
        parts.append(
            f"with {fig['rounds']} rounds the {spell(len(fig['seeds']))} seeds give "
            f"{plus_minus(fig['test/acc'])}% ({command_text(runs['rounds_3'])})"
        )
    text = "; ".join(parts) + "." if parts else ""
    if "constant_lr" in runs:
        fig = runs["constant_lr"]["figures"]
        text += (" " if text else "") + (
            "With a constant fine-tuning learning rate instead (`retrain.scheduler=null`, seed "
            f"{fig['seed']}, {fig['rounds']} rounds) k = {fig['keep']} loses "
            f"{pct(fig['acc_drop'])} points ({command_text(runs['constant_lr'])})."
        )
    return text


# ---------------------------------------------------------------------------- LeNet-5 channels

CHANNEL_CRITERIA = {
    "lrp": "LRP, \\|R\\| (`lrp`)",
    "lrp_signed": "LRP, signed (`lrp_signed`)",
    "magnitude": "weight magnitude",
    "taylor": "Taylor",
    "gradient": "gradient",
    "random": "random",
}
LENET_LAYERS = {"features.0": "conv1", "features.3": "conv2", "classifier.0": "fc1"}
#: accuracy a pruned LeNet-5 may lose against the dense one, points
CHANNEL_BUDGET = 0.3


def lenet_channels(summaries: Summaries) -> str | None:
    run = _runs(summaries, "lenet_channels").get("sweep")
    if run is None:
        return None
    groups = {c: g for c in CHANNEL_CRITERIA if (g := _group(run, data="mnist", pruner=c))}
    if not groups:
        return None
    first = next(iter(groups.values()))
    last = max(int(r) for r in first["rounds"])
    widths = [first.get("dense_widths") or {}] + [
        (first["rounds"].get(str(r)) or {}).get("widths") or {} for r in range(1, last + 1)
    ]
    flops0 = mean(_round(first, 0, "cost/flops")) if _round(first, 0, "cost/flops") else None
    flops = mean(_metric(first, "cost/flops"))
    removed = 100 * (1 - flops / flops0) if flops0 else None
    layers = " / ".join(LENET_LAYERS.get(n, n) for n in widths[0])
    steps = " → ".join(" / ".join(str(v) for v in w.values()) for w in widths if w)
    dense = mean(_metric(first, "test/acc_dense"))
    intro = (
        f"Reproduce with {command_text(run)}; each line is `python train.py "
        "+experiment=mnist_channels pruner=<criterion> seed=12345 "
        "ckpt_path=logs/lenet_pruning/dense/checkpoints/round_0/last.ckpt`: `epsilon_plus` "
        "composite for the LRP criteria, 100 reference images per class, per-layer ranking, "
        f"{last} geometric rounds with 3 epochs of fine-tuning each. Ranking per layer cuts every "
        "layer to the same width whatever the criterion, so all criteria are compared at equal "
        f"FLOPs: {layers} go {steps}"
        + (
            f", FLOPs {count(flops0)} → {count(flops)} (**{removed:.1f}% removed**)"
            if removed
            else ""
        )
        + f". Dense: {pct(dense)}%."
    )
    final = {c: mean(_metric(g, "test/acc")) for c, g in groups.items()}
    cut = {c: mean(_metric(g, "test/acc_pruned")) for c, g in groups.items()}
    rows = []
    for c, g in groups.items():
        per_round = [pct(mean(_round(g, r, "test/acc"))) for r in range(1, last + 1)]
        per_round[-1] = bold(per_round[-1], final[c] == max(final.values()))
        rows.append(
            [
                CHANNEL_CRITERIA[c],
                " / ".join(per_round),
                pct(mean(_metric(g, "acc_drop"))),
                bold(pct(cut[c]), cut[c] == max(cut.values())),
            ]
        )
    rounds = " / ".join(str(r) for r in range(1, last + 1))
    header = [
        "criterion",
        f"acc % after round {rounds} (fine-tuned)",
        "loss vs dense (points)",
        "acc % just after the last cut, before fine-tuning",
    ]
    over = [c for c, g in groups.items() if 100 * mean(_metric(g, "acc_drop")) > CHANNEL_BUDGET]
    names = [CHANNEL_CRITERIA[c] for c in over]
    within = (
        "Every criterion" + (f" but {words(names)}" if names else "")
        if len(over) < len(groups)
        else "No criterion"
    )
    best_cut = CHANNEL_CRITERIA[max(cut, key=cut.get)]
    verdict = (
        f"{within} removes {removed:.0f}% of the FLOPs within the {CHANNEL_BUDGET}-point budget. "
        if removed
        else ""
    ) + (
        f"With three epochs of fine-tuning per round LeNet-5 recovers from almost any cut (random "
        "included), so this setting does not separate the criteria; the accuracy right after the "
        f"cut does, and there {best_cut} leads. `acc_vs_flops.png` in "
        f"`logs/lenet_pruning/channels/` plots all {len(groups)} curves."
    )
    return "\n\n".join(
        [
            "## Channel and neuron pruning, LeNet-5",
            intro,
            table(header, "llrr", rows),
            verdict,
            sources([("lenet_channels", "sweep", run, None)]),
        ]
    )


# ---------------------------------------------------------------------------- fine-tuned pruning

#: criteria of the fine-tuned pruning tables, by their ``pruner=`` override, in page order
FINETUNED_CRITERIA = {
    "lrp": "LRP (`lrp`)",
    "lrp_conserved": "LRP (`lrp_conserved`)",
    "magnitude": "weight magnitude",
    "taylor": "Taylor",
    "gradient": "gradient",
    "random": "random",
}


class Finetuned:
    """One fine-tuned pruning section: its summary file, title, setting and targets."""

    def __init__(self, file: str, title: str, setting: str, flops_removed: float) -> None:
        self.file, self.title, self.setting = file, title, setting
        self.flops_removed = flops_removed  # the share of the FLOPs the issue asks removed


#: accuracy a fine-tuned pruned model may lose against its dense model, points
FINETUNED_BUDGET = 0.5

FINETUNED = [
    Finetuned(
        "vit_prune",
        "Heads and MLP neurons with fine-tuning, Vision Transformer on MNIST",
        "`mnist_vit_prune`: AttnLRP for the LRP criterion, 100 reference images per class, 3 "
        "geometric rounds to 55% of every attention module's heads and every MLP's hidden "
        "neurons (`pruner.target=heads_and_neurons`, the same share of every module, so every "
        "criterion ends at the same FLOPs), 3 epochs of fine-tuning (cosine from lr 1e-3) "
        "after each round; every criterion from the same dense `mnist_vit` checkpoint per seed",
        0.5,
    ),
    Finetuned(
        "resnet18_channels",
        "Channel pruning with fine-tuning, torchvision ResNet-18 on Fashion-MNIST",
        "`fashion_mnist_resnet18_channels`: torchvision's `resnet18` with its stock stem, 4 "
        "dense epochs of SGD, `epsilon_plus` for the LRP criterion with 100 reference images "
        "per class, 30% of every coupled channel group cut at once behind Torch-Pruning's "
        "dependency graph (the same share of every group, so every criterion ends at the same "
        "FLOPs), 2 epochs of fine-tuning; the baselines start from the LRP run's dense "
        "checkpoint of the same seed",
        0.5,
    ),
]


def _finetuned_run(spec: Finetuned, run: Run) -> list[str]:
    groups = {
        c: g
        for key, g in (run["figures"].get("groups") or {}).items()
        if (c := _overrides(key).get("pruner") or g.get("criterion")) in FINETUNED_CRITERIA
    }
    groups = {c: groups[c] for c in FINETUNED_CRITERIA if c in groups}
    if not groups:
        return []
    rows, met = [], []
    for c, g in groups.items():
        removed = 1 - mean(_metric(g, "prune/flops_ratio"))
        drop = _metric(g, "acc_drop")
        per_seed = " / ".join(num(100 * v, 2) for v in drop.get("values") or [])
        ok = removed >= spec.flops_removed and 100 * mean(drop) <= FINETUNED_BUDGET
        if ok:
            met.append(FINETUNED_CRITERIA[c])
        rows.append(
            [
                FINETUNED_CRITERIA[c],
                str(len(g.get("seeds") or [])),
                f"{count(mean(_metric(g, 'cost/flops')))} ({pct(removed, 1)}%)",
                stat(_metric(g, "test/acc_dense"), 2, 100),
                stat(_metric(g, "test/acc"), 2, 100),
                bold(f"{stat(drop, 2, 100)} ({per_seed})", ok),
                stat(_metric(g, "test/acc_pruned"), 2, 100),
            ]
        )
    header = [
        "criterion",
        "seeds",
        "FLOPs (removed)",
        "dense acc %",
        "acc % after fine-tuning",
        "loss vs dense, points (per seed)",
        "acc % right after the last cut",
    ]
    final = {c: mean(_metric(g, "test/acc")) for c, g in groups.items()}
    best = FINETUNED_CRITERIA[max(final, key=final.get)]
    target = (
        f"at least {pct(spec.flops_removed, 0)}% of the FLOPs removed with at most "
        f"{FINETUNED_BUDGET} points lost (mean over seeds)"
    )
    verdict = (
        f"Meets the target, {target}: {words(met)}. " if met else f"No criterion meets {target}. "
    ) + f"Highest accuracy after fine-tuning at equal FLOPs: {best}."
    if "random" in groups and FINETUNED_CRITERIA["random"] in met:
        cut = {c: mean(_metric(g, "test/acc_pruned")) for c, g in groups.items()}
        top = max(cut, key=cut.get)
        verdict += (
            " Fine-tuning recovers even the random cut, so the final accuracy does not separate "
            "the criteria; the accuracy right after the last cut does: "
            f"{FINETUNED_CRITERIA[top]} {pct(cut[top])}% against random's {pct(cut['random'])}%."
        )
    walls = [(c, g["wall_s"]) for c, g in groups.items() if g.get("wall_s")]
    if walls:
        verdict += (
            " Wall time per job: "
            + ("; ".join(f"{FINETUNED_CRITERIA[c]} {span(w['values'], 0, ' s')}" for c, w in walls))
            + "."
        )
    return [
        f"**{spec.title}** ({spec.setting}):",
        table(header, "lrrrrrr", rows),
        verdict,
    ]


def finetuned_pruning(summaries: Summaries) -> str | None:
    parts, items = [], []
    for spec in FINETUNED:
        for name, run in _runs(summaries, spec.file).items():
            text = _finetuned_run(spec, run)
            if text:
                parts += text
                items.append((spec.file, name, run, spec.title))
    if not parts:
        return None
    return "\n\n".join(["## Pruning with fine-tuning at equal FLOPs", *parts, sources(items)])


# ---------------------------------------------------------------------------- few-shot

#: rows of the few-shot table: (overrides besides data, label)
FEWSHOT_ROWS: list[tuple[dict[str, str], str]] = [
    (
        {"pruner": "lrp_conserved"},
        "LRP, log-probability, \\|net R\\|, unnormalised (`lrp_conserved`, default)",
    ),
    ({"pruner": "lrp_signed", "relevance__output": "margin"}, "LRP, signed, margin (`lrp_signed`)"),
    ({"pruner": "lrp", "relevance__output": "margin"}, "LRP, \\|R\\|, margin (`lrp`)"),
    ({"pruner": "lrp_signed", "relevance__output": "logit"}, "LRP, signed, logit"),
    ({"pruner": "lrp", "relevance__output": "logit"}, "LRP, \\|R\\|, logit (Yeom et al.)"),
    (
        {
            "lrp": "abslrp",
            "pruner": "lrp",
            "pruner__criterion__normalize": "l2",
            "relevance__output": "logit",
        },
        "absLRP, \\|R\\|, L2-normalised",
    ),
    ({"pruner": "gradient"}, "gradient"),
    ({"pruner": "taylor"}, "Taylor"),
    ({"pruner": "magnitude"}, "weight magnitude"),
    ({"pruner": "random"}, "random"),
]
BASELINES = {
    "taylor": "Taylor",
    "gradient": "gradient",
    "magnitude": "magnitude",
    "random": "random",
}
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
SHORT = {"mnist": "MNIST", "fashion_mnist": "Fashion"}

FEWSHOT_METHOD = """\
10 reference images per class, global ranking, 10% more units removed per step and
re-explained after each step; area under test accuracy vs ratio 0 to 0.9; accuracy at 70 / 80 /
90% removed (means); "FLOPs left" is the share of the dense FLOPs at 90% of the units removed
(equal unit counts are not equal FLOPs). The experiment's LRP criterion (`pruner=lrp_conserved`,
`relevance.output=log_probability`) explains each reference image's log-probability of its
label, linearised at the logits (`R_k = z_k (delta_kt - p_k)`), sums the size of each unit's net
relevance per image, and ranks the units of all layers as they are: LRP conserves relevance from
layer to layer, so no per-layer normalisation is needed. Every other row normalises each layer's
scores by their L1 norm first. The margin rows explain the label's logit against the strongest
other one; the logit rows the label's logit alone, as Yeom et al. do."""


def _fewshot_group(run: Run, data: str, overrides: Mapping[str, str]) -> dict[str, Any] | None:
    return _group(run, data=data, **overrides)


def _auc(group: Mapping[str, Any] | None) -> float | None:
    s = _metric(group, "prune/auc_pruned")
    return None if s is None else mean(s)


def _dense_line(run: Run, seeds: Sequence[Any]) -> str:
    parts = []
    for data, name in DATASETS.items():
        group = _fewshot_group(run, data, {"pruner": "lrp_conserved"})
        dense = _metric(group, "test/acc_dense")
        if dense and "values" in dense:
            by_seed = dict(zip(group["seeds"], dense["values"], strict=True))
            parts.append(f"{name} " + " / ".join(pct(by_seed[s]) for s in seeds) + "%")
    return ", ".join(parts)


def fewshot(summaries: Summaries) -> str | None:
    runs = _runs(summaries, "fewshot")
    run = runs.get("seeds_3")
    if run is None:
        return None
    seeds = next(iter(run["figures"]["groups"].values()))["seeds"]
    intro = (
        f"Mean ± std over seeds {_seeds(seeds)}; one dense model per dataset and seed, every "
        f"criterion from that checkpoint. Reproduce with {command_text(run)}; each cell is "
        "`python train.py +experiment=mnist_fewshot data=<data> pruner=<criterion> seed=<s> "
        "ckpt_path=logs/fewshot/<data>/dense_s<s>/checkpoints/round_0/last.ckpt`, the margin and "
        "logit rows adding `relevance.output=margin` or `logit`, the absLRP row `lrp=abslrp "
        "pruner=lrp pruner.criterion.normalize=l2 relevance.output=logit`. "
        + FEWSHOT_METHOD.replace("\n", " ")
        + f" Dense LeNet-5 (6 epochs): {_dense_line(run, seeds)} (seeds {_seeds(seeds, ' / ')})."
    )
    parts = ["## Few-shot pruning without fine-tuning, LeNet-5", intro, _fewshot_table(run)]
    parts.append(_fewshot_target(run, seeds))
    if "seeds_5" in runs:
        parts.append(_fewshot_five(runs["seeds_5"], seeds))
    items = [("fewshot", name, runs[name], None) for name in ("seeds_3", "seeds_5") if name in runs]
    parts.append(sources(items))
    variants = _runs(summaries, "fewshot_variants")
    if variants:
        parts += [_fewshot_why(run, variants), _fewshot_variants(run, variants)]
    return "\n\n".join(p for p in parts if p)


def _is_random(overrides: Mapping[str, str]) -> bool:
    return overrides.get("pruner") == "random"


def _fewshot_table(run: Run) -> str:
    present = [
        (o, label) for o, label in FEWSHOT_ROWS if any(_fewshot_group(run, d, o) for d in DATASETS)
    ]
    best: dict[str, dict[str, float]] = {}
    for data in DATASETS:
        found = [(o, _fewshot_group(run, data, o)) for o, _ in present]
        groups = [(o, g) for o, g in found if g is not None]
        best[data] = {
            "auc": max(_auc(g) for _, g in groups),
            "acc9": max(mean(_round(g, 9, "test/acc")) for _, g in groups),
            "flops": min(
                mean(_metric(g, "prune/flops_ratio")) for o, g in groups if not _is_random(o)
            ),
        }
    rows = []
    for overrides, label in present:
        row = [label]
        for data in DATASETS:
            g = _fewshot_group(run, data, overrides)
            if g is None:
                row += ["-", "-", "-"]
                continue
            accs = [pct(mean(_round(g, r, "test/acc")), 1) for r in (7, 8, 9)]
            acc9 = mean(_round(g, 9, "test/acc"))
            accs[-1] = bold(accs[-1], acc9 == best[data]["acc9"])
            flops = mean(_metric(g, "prune/flops_ratio"))
            row += [
                bold(stat(_metric(g, "prune/auc_pruned")), _auc(g) == best[data]["auc"]),
                " / ".join(accs),
                bold(
                    f"{pct(flops, 0)}%",
                    not _is_random(overrides) and flops == best[data]["flops"],
                ),
            ]
        rows.append(row)
    header = ["criterion"]
    for data in DATASETS:
        header += [f"{SHORT[data]} AUC", f"{SHORT[data]} acc 70 / 80 / 90%", "FLOPs left"]
    return table(header, "lrlrrlr", rows)


def _best_per_seed(run: Run, data: str) -> list[float] | None:
    """The best baseline's area on each seed: from the groups' per-seed values, else as stored."""
    groups = [_fewshot_group(run, data, {"pruner": b}) for b in BASELINES]
    found = [_metric(g, "prune/auc_pruned") for g in groups if g is not None]
    if found and all("values" in s for s in found):
        return [max(col) for col in zip(*(s["values"] for s in found), strict=True)]
    return (run["figures"].get("best_baseline_auc_per_seed") or {}).get(data)


def _fewshot_target(run: Run, seeds: Sequence[Any]) -> str:
    default: dict[str, Any] = {}
    met = True
    bullets, behind = [], []
    leads_within_std = True
    for data, name in DATASETS.items():
        g = _fewshot_group(run, data, {"pruner": "lrp_conserved"})
        if g is None:
            return ""
        default[data] = g
        base = {
            b: _auc(bg)
            for b in BASELINES
            if (bg := _fewshot_group(run, data, {"pruner": b})) is not None
        }
        ranked = sorted(base.items(), key=lambda kv: -kv[1])
        met &= all(_auc(g) > a for a in base.values())
        leads_within_std &= _auc(g) - ranked[0][1] <= (
            _metric(g, "prune/auc_pruned").get("std") or 0
        )
        against = " and ".join(f"{BASELINES[b]} {num(a, 3)}" for b, a in ranked[:2])
        text = f"{name}: {num(_auc(g), 3)} against {against}."
        ours = _metric(g, "prune/auc_pruned").get("values")
        best = _best_per_seed(run, data)
        if ours and best:
            text += (
                f" Per seed ({_seeds(seeds, ' / ')}) it is "
                + " / ".join(num(v, 3) for v in ours)
                + ", against the best baseline's "
                + " / ".join(num(v, 3) for v in best)
                + "."
            )
            for seed, a, b in zip(seeds, ours, best, strict=True):
                if round(b, 3) >= round(a, 3):
                    gap = round(b - a, 3)
                    how = f"ahead by {num(gap, 3)}" if gap > 0 else "level at three digits"
                    behind.append(f"on {name} seed {seed} the best baseline is {how}")
        bullets.append(text)
    spread = (
        "within one standard deviation"
        if leads_within_std
        else "larger than one standard deviation"
    )
    closing = f"The leads are {spread}" + (f"; {words(behind)}." if behind else ".")
    bullets.append(closing)
    deep = []
    for data, name in DATASETS.items():
        g = default[data]
        acc9 = {
            label: mean(_round(og, 9, "test/acc"))
            for o, label in FEWSHOT_ROWS
            if (og := _fewshot_group(run, data, o)) is not None and og is not g
        }
        taylor = acc9.get("Taylor")
        next_best = max(acc9.values())
        text = f"{pct(mean(_round(g, 9, 'test/acc')), 1)}% on {name} ("
        text += f"next best {pct(next_best, 1)}%" if next_best != taylor else ""
        if taylor is not None:
            text += (", " if next_best != taylor else "") + f"Taylor {pct(taylor, 1)}%"
        deep.append(text + ")")
    flops = [pct(mean(_metric(default[d], "prune/flops_ratio")), 0) for d in DATASETS]
    fewest = all(
        mean(_metric(default[d], "prune/flops_ratio"))
        <= min(
            mean(_metric(og, "prune/flops_ratio"))
            for o, _ in FEWSHOT_ROWS
            if (og := _fewshot_group(run, d, o)) is not None and not _is_random(o)
        )
        for d in DATASETS
    )
    where = (
        f"{flops[0]}% on both"
        if len(set(flops)) == 1
        else words([f"{f}% on {n}" for f, n in zip(flops, DATASETS.values(), strict=True)])
    )
    bullets.append(
        "What stands out more is the deep end: at 90% of the units removed it keeps "
        + " and ".join(deep)
        + (
            f", with the fewest FLOPs left ({where})."
            if fewest
            else f", with {where} of the FLOPs left."
        )
    )
    head = (
        "The target (LRP's area above every baseline on both datasets) is "
        + ("met" if met else "not met")
        + " by the default, `lrp_conserved`:"
    )
    return head + "\n\n" + "\n".join(f"- {b}" for b in bullets)


def _fewshot_five(run: Run, first_seeds: Sequence[Any]) -> str:
    groups = run["figures"]["groups"]
    seeds = next(iter(groups.values()))["seeds"]
    extra = [s for s in seeds if s not in first_seeds]
    rows = []
    for crit, label in [("lrp_conserved", "`lrp_conserved`"), *BASELINES.items()]:
        row = [label]
        for data in DATASETS:
            g = _fewshot_group(run, data, {"pruner": crit})
            acc9 = _round(g, 9, "test/acc")
            flops = _metric(g, "prune/flops_ratio")
            row += [
                "-" if g is None else stat(_metric(g, "prune/auc_pruned")),
                "-" if acc9 is None else pct(mean(acc9), 1),
                "-" if flops is None else f"{pct(mean(flops), 0)}%",
            ]
        rows.append(row)
    header = ["criterion"]
    for data in DATASETS:
        header += [f"{SHORT[data]} AUC", f"{SHORT[data]} acc 90%", "FLOPs left"]
    dense = _dense_line(run, extra)
    text = (
        f"{spell(len(extra)).capitalize()} more seeds, {words([str(s) for s in extra])}, for the "
        "default and the "
        f"baselines, over all {len(seeds)} seeds ({_seeds(seeds)}); reproduce with "
        f"{command_text(run)}. Dense models of the new seeds: {dense}."
    )
    return "\n\n".join([text, table(header, "lrrrrrr", rows), _paired(run, seeds)])


def _paired(run: Run, seeds: Sequence[Any]) -> str:
    """Seed by seed against Taylor: from the groups' per-seed values, else as stored."""
    stored = run["figures"].get("auc_difference_vs_taylor") or {}
    wins = run["figures"].get("wins_vs_taylor") or {}
    diffs: dict[str, dict[str, Any]] = {}
    for data in DATASETS:
        ours = _metric(_fewshot_group(run, data, {"pruner": "lrp_conserved"}), "prune/auc_pruned")
        taylor = _metric(_fewshot_group(run, data, {"pruner": "taylor"}), "prune/auc_pruned")
        if ours and taylor and "values" in ours and "values" in taylor:
            diffs[data] = {
                "seeds": list(seeds),
                "values": [a - b for a, b in zip(ours["values"], taylor["values"], strict=True)],
                "lrp_conserved": dict(zip(map(str, seeds), ours["values"], strict=True)),
                "taylor": dict(zip(map(str, seeds), taylor["values"], strict=True)),
            }
        elif data in stored:
            diffs[data] = stored[data]
    score = []
    for data, name in DATASETS.items():
        if data in diffs:
            won = sum(d > 0 for d in diffs[data]["values"])
            score.append(f"{won} of {len(diffs[data]['values'])} on {name}")
        elif data in wins:
            score.append(f"{wins[data][0]} of {wins[data][1]} on {name}")
    if not score:
        return ""
    text = f"Against Taylor, seed by seed, it wins {words(score)}."
    for data, name in DATASETS.items():
        if data not in diffs:
            continue
        d = diffs[data]
        losses = [
            (s, d["lrp_conserved"].get(str(s)), d["taylor"].get(str(s)))
            for s, v in zip(d["seeds"], d["values"], strict=True)
            if v <= 0
        ]
        for seed, ours, theirs in losses:
            if ours is not None and theirs is not None:
                text += f" On {name} it loses seed {seed}, {num(ours, 4)} against {num(theirs, 4)}."
        listed = ", ".join(f"{v:+g}" for v in d["values"][:-1]) + f" and {d['values'][-1]:+g}"
        text += (
            f" The paired differences on {name} are {listed} (seeds {_seeds(d['seeds'], ' / ')})."
        )
    return text


def _variant(variants: Mapping[str, Run], name: str) -> Run | None:
    return variants.get(name)


def _taylor_on(run: Run, data: str, seeds: Sequence[Any] | None) -> str | None:
    """Taylor's area on ``seeds`` from the few-shot sweep (mean, or one value per seed)."""
    g = _fewshot_group(run, data, {"pruner": "taylor"})
    s = _metric(g, "prune/auc_pruned")
    if s is None or seeds is None:
        return None
    if list(seeds) == list(g["seeds"]):
        return num(mean(s), 3)
    if "values" not in s:
        return None
    by_seed = dict(zip(g["seeds"], s["values"], strict=True))
    if not all(x in by_seed for x in seeds):
        return None
    return " / ".join(num(by_seed[x], 3) for x in seeds)


WHY: list[tuple[str, Callable[[str, str], str]]] = [
    (
        "fashion_mnist:12345,1,2:lrp@lossz:epsilon_plus:abs",
        lambda area, cmd: (
            "With LRP-0 or epsilon in the dense layers, a unit's LRP relevance of the "
            "log-probability is signed activation x gradient of the loss. Summed as `|net R|` per "
            "image it is Taylor's score in the dense layers "
            f"({cmd} gives {area}, Taylor {{taylor}})."
        ),
    ),
    (
        "",
        lambda area, cmd: (
            "The gain comes from ranking without per-layer normalisation, which only LRP can do. "
            "Its relevance is conserved, so every layer's scores are on the output's scale."
        ),
    ),
    (
        "fashion_mnist:?:taylor:::none",
        lambda area, cmd: (
            f"Taylor ranked the same way collapses: `taylor:::none` gives {area} on Fashion-MNIST "
            f"({cmd}), cutting whole layers to one unit. Its scores are not conserved between "
            "layers."
        ),
    ),
    (
        "fashion_mnist:12345:posabs",
        lambda area, cmd: (
            f"Summing |R| over positions instead (`posabs`) gives {area} on Fashion-MNIST (seed "
            f"12345; {cmd}): a channel's positions of opposite sign have to cancel first."
        ),
    ),
]


def _fewshot_why(run: Run, variants: Mapping[str, Run]) -> str:
    bullets = []
    for name, template in WHY:
        if not name:
            bullets.append(template("", ""))
            continue
        v = _variant(variants, name)
        if v is None:
            continue
        fig = v["figures"]
        text = template(stat(fig["area"]), command_text(v))
        taylor = _taylor_on(run, fig["dataset"], fig.get("seeds"))
        bullets.append(text.replace("{taylor}", taylor or "not run on these seeds"))
    return "Why this criterion:\n\n" + "\n".join(f"- {b}" for b in bullets)


def _fewshot_variants(run: Run, variants: Mapping[str, Run]) -> str:
    used = {name for name, _ in WHY}
    bullets = []
    for name, v in variants.items():
        if name in used:
            continue
        fig = v["figures"]
        what = fig.get("what") or fig.get("variant") or name
        data = DATASETS.get(fig["dataset"], fig["dataset"])
        seeds = fig.get("seeds")
        on = f"{data}, seed{'s' if seeds and len(seeds) > 1 else ''} " + (
            _seeds(seeds, " / ") if seeds else "not recorded"
        )
        taylor = _taylor_on(run, fig["dataset"], seeds)
        text = f"{what[0].upper()}{what[1:]} ({on}): **{stat(fig['area'])}**"
        text += f" (Taylor {taylor})" if taylor else ""
        notes = []
        if "first_conv_kept" in fig:
            kept = fig["first_conv_kept"]
            notes.append(
                f"it cuts the first convolution to {kept[0]}-{kept[-1]} of "
                f"{fig['first_conv_dense']} channels"
            )
        if "mnist_area" in fig:
            notes.append(f"{num(fig['mnist_area'], 3)} on MNIST")
        text += ("; " + "; ".join(notes) if notes else "") + "; "
        text += (
            command_text(v)
            if fig.get("variant")
            else (command_text(v) + " (the exact variant was not recorded)")
        )
        bullets.append(text + ".")
    dates = sorted({v.get("date", "undated") for v in variants.values()})
    machines = sorted({v["machine"]["description"] for v in variants.values()})
    head = (
        "Other variants. `benchmarks/fewshot_variants.py` runs the same pruning with removed "
        "units' weights zeroed instead of cut out, which reproduces the pipeline's accuracies; "
        "areas are on the table's scale, beside Taylor's area on the same seeds. Measured "
        f"{words(dates)} on {words(machines)} (`benchmarks/summaries/fewshot_variants.json`)."
    )
    return head + "\n\n" + "\n".join(f"- {b}" for b in bullets)


# ---------------------------------------------------------------------------- explanations

METHOD_LABELS = {
    "gradient": "gradient",
    "gradient_x_input": "gradient x input",
    "integrated_gradients": "integrated gradients",
    "smoothgrad": "SmoothGrad",
    "abslrp": "absLRP",
    "abslrp_target": "absLRP, target map only (`abslrp_target`)",
    "lrp_attnlrp": "AttnLRP",
    "lrp_cp_lrp": "CP-LRP",
    "attention_rollout": "attention rollout",
    "cls_attention": "class-token attention, last block",
    "random": "random",
}
EXPLANATION_COLUMNS = {
    "removal/acc_kept": "acc, least removed",
    "removal/acc_removed": "acc, most removed",
    "flip/aopc_morf": "AOPC MoRF",
    "gae/faithfulness": "GAE faithfulness",
    "gae/gae": "GAE",
}


def _method_labels(names: Sequence[str]) -> str:
    """``gradient x input = LRP epsilon, epsilon_plus`` for methods with equal figures."""
    parts: list[str] = []
    lrp: list[str] = []
    for name in names:
        if name.startswith("lrp_") and name not in METHOD_LABELS:
            lrp.append(name[4:])
            continue
        if lrp:
            parts.append("LRP " + ", ".join(lrp))
            lrp = []
        parts.append(METHOD_LABELS.get(name, name))
    if lrp:
        parts.append("LRP " + ", ".join(lrp))
    return " = ".join(parts)


def _explanation_table(methods: Mapping[str, Mapping[str, float]]) -> str:
    merged: dict[tuple, list[str]] = {}
    for name, row in methods.items():
        merged.setdefault(tuple(sorted(row.items())), []).append(name)
    columns = [c for c in EXPLANATION_COLUMNS if any(c in row for row in methods.values())]
    rows = [
        [_method_labels(names)] + [num(dict(key)[c], 3) if c in dict(key) else "-" for c in columns]
        for key, names in merged.items()
    ]
    header = ["method"] + [EXPLANATION_COLUMNS[c] for c in columns]
    return table(header, "l" + "r" * len(columns), rows)


def _checks(methods: Mapping[str, Mapping[str, float]]) -> tuple[list[str], list[str]]:
    """Methods that hurt no more than random with the most relevant removed, and those that
    hurt more than random with the least relevant removed."""
    rand = methods["random"]
    most = [
        m
        for m, r in methods.items()
        if m != "random" and r["removal/acc_removed"] >= rand["removal/acc_removed"]
    ]
    least = [
        m
        for m, r in methods.items()
        if m != "random" and r["removal/acc_kept"] < rand["removal/acc_kept"]
    ]
    return most, least


def explanations(summaries: Summaries) -> str | None:
    runs = _runs(summaries, "explanations")
    if not runs:
        return None
    parts = ["## Which explanation to trust"]
    items = []
    mlp = runs.get("mlp")
    if mlp is not None:
        fig = mlp["figures"]
        parts.append(
            f"**MLP** ({command_text(mlp)}, first {count(fig['images'])} test images, pixels "
            f"removed by setting them to black; {fig['wall_s']:g} s wall). Accuracy after removing "
            "the 15% least relevant pixels (higher is better) and the 15% most relevant (lower is "
            "better), AOPC of most-relevant-first pixel flipping, GAE:"
        )
        parts.append(_explanation_table(fig["methods"]))
        parts.append(_mlp_verdict(fig))
        items.append(("explanations", "mlp", mlp, "MLP"))
    lenet = runs.get("lenet5")
    extra = runs.get("lenet5_abslrp_target")
    if lenet is not None:
        fig = lenet["figures"]
        methods = dict(fig["methods"])
        if extra is not None:
            methods.update(
                {m: r for m, r in extra["figures"]["methods"].items() if m not in methods}
            )
            methods = {m: methods[m] for m in [*[m for m in methods if m != "random"], "random"]}
        note = f"; {lenet['notes']}" if lenet.get("notes") else ""
        parts.append(
            f"**The same for LeNet-5** ({command_text(lenet)}, the dense LeNet-5 above; "
            f"{fig['wall_s']:g} s wall{note}):"
        )
        parts.append(_explanation_table(methods))
        parts.append(_lenet_verdict(methods, extra))
        items.append(("explanations", "lenet5", lenet, "LeNet-5"))
        if extra is not None:
            items.append(
                ("explanations", "lenet5_abslrp_target", extra, "LeNet-5, `abslrp_target` row")
            )
    for name, data in VIT_EXPLANATIONS.items():
        if name in runs:
            parts += _vit_explanations(runs[name], data)
            items.append(("explanations", name, runs[name], f"ViT, {data}"))
    parts.append(sources(items))
    return "\n\n".join(p for p in parts if p)


#: the ViT explanation runs, by their name in the summary
VIT_EXPLANATIONS = {"vit_mnist": "MNIST", "vit_fashion_mnist": "Fashion-MNIST"}
VIT_EXPLANATION_COLUMNS = {
    "removal/acc_kept": "acc, least removed",
    "removal/acc_removed": "acc, most removed",
    "flip/aopc_morf": "AOPC MoRF",
    "gae/faithfulness": "GAE faithfulness",
    "gae/robustness": "GAE robustness",
    "gae/contrastiveness": "GAE contrastiveness",
    "gae/gae": "GAE",
}


def _vit_explanations(run: Run, data: str) -> list[str]:
    fig = run["figures"]
    methods = fig["methods"]
    columns = [c for c in VIT_EXPLANATION_COLUMNS if any(c in r for r in methods.values())]
    means = {m: {k: mean(v) for k, v in r.items()} for m, r in methods.items()}
    gae = {m: r["gae/gae"] for m, r in means.items() if "gae/gae" in r}
    rows = [
        [_method_labels([m])]
        + [
            bold(stat(r[c], 3), c == "gae/gae" and gae.get(m) == max(gae.values()))
            if c in r
            else "-"
            for c in columns
        ]
        for m, r in methods.items()
    ]
    header = ["method"] + [VIT_EXPLANATION_COLUMNS[c] for c in columns]
    seeds = fig.get("seeds") or []
    parts = [
        f"**Vision Transformer, {data}** ({command_text(run)}; the dense ViTs of the table at "
        f"the top, seeds {_seeds(seeds, ' / ')}; first {count(fig['images'])} test images, GAE on "
        f"the first {count(fig['gae_samples'])}; original accuracy "
        f"{stat(fig['acc_original'], 3)}):",
        table(header, "l" + "r" * len(columns), rows),
    ]
    if "abslrp" in gae and len(gae) > 1:
        ahead = [m for m in gae if gae[m] > gae["abslrp"]]
        per_seed = [
            max(gae, key=lambda m, i=i: methods[m]["gae/gae"]["values"][i])
            for i in range(len(seeds))
        ]
        won = sum(m == "abslrp" for m in per_seed)
        lead = (
            "absLRP has the highest GAE"
            if not ahead
            else f"absLRP's GAE is below that of {words([_method_labels([m]) for m in ahead])}"
        )
        verdict = "reproduced" if won == len(seeds) else "not reproduced"
        text = (
            f"On {data} {lead} (the highest in {won} of {len(seeds)} seeds); the paper's claim "
            f"that absLRP leads on GAE is {verdict} here."
        )
        components = ("gae/faithfulness", "gae/contrastiveness")
        best = {
            c: max(means, key=lambda m, c=c: means[m].get(c, float("-inf"))) for c in components
        }
        if best["gae/contrastiveness"] == "abslrp" and best["gae/faithfulness"] != "abslrp":
            text += (
                " Its lead comes from contrastiveness; its faithfulness is below "
                f"{_method_labels([best['gae/faithfulness']])}'s."
            )
        least = _checks(means)[1] if "random" in means else []
        if "abslrp" in least:
            text += (
                " On feature removal it hurts more than random when the least relevant 15% go "
                f"({num(means['abslrp']['removal/acc_kept'], 3)} against "
                f"{num(means['random']['removal/acc_kept'], 3)}): as on LeNet-5, half of its "
                "contrastive map is negative, and its most negative pixels are those that "
                "support other classes more than the target."
            )
        parts.append(text)
    return parts


def _lenet_verdict(methods: Mapping[str, Mapping[str, float]], extra: Run | None) -> str:
    most, least = _checks(methods)
    rand = methods["random"]
    text = (
        "On LeNet-5 every method hurts far more than random when the most relevant 15% go."
        if not most
        else f"On LeNet-5 {words([_method_labels([m]) for m in most])} hurt no more than random "
        "when the most relevant 15% go."
    )
    failing = [
        f"`{m}` ({num(methods[m]['removal/acc_kept'], 3)} against random's "
        f"{num(rand['removal/acc_kept'], 3)})"
        for m in least
    ]
    if failing:
        text += (
            f" When the least relevant 15% go, {spell(len(failing))} method"
            f'{"s fail" if len(failing) > 1 else " fails"} the "hurts less than random" check: '
            f"{words(failing)}."
        )
    target = methods.get("abslrp_target")
    if "abslrp" in least and target is not None:
        passes = (
            "abslrp_target" not in least
            and target["removal/acc_removed"] < rand["removal/acc_removed"]
        )
        text += (
            " absLRP's map is contrastive by definition: the target's map minus the map of all "
            "other classes, each scaled to unit L1 norm, so half its mass is negative and its most "
            "negative pixels are strokes that support the other classes more than the target. "
            'Removing those as "least relevant" removes part of the digit. The target\'s map '
            f"alone (`abslrp_target`, nonnegative) {'passes' if passes else 'does not pass'} both "
            f"checks ({num(target['removal/acc_kept'], 3)} and "
            f"{num(target['removal/acc_removed'], 3)}"
            + (f"; {command_text(extra)}: {extra['notes']}" if extra and extra.get("notes") else "")
            + ")"
            + (
                ", so the failure is the contrastive construction, not the propagation; the maps "
                "also match the method's closed form on ReLU networks (tested)."
                if passes
                else "."
            )
        )
    return text


def _mlp_verdict(fig: Mapping[str, Any]) -> str:
    most, least = _checks(fig["methods"])
    failing = sorted(set(most) | set(least), key=list(fig["methods"]).index)
    text = (
        f"Original accuracy on the MLP's images is {num(fig['acc_original'], 3)}. "
        if "acc_original" in fig
        else ""
    )
    names = words([_method_labels([m]) for m in failing])
    text += (
        f"Every method {f'except {names} ' if failing else ''}hurts more than random when the most "
        "relevant pixels go and less when the least relevant go."
    )
    if any(m.endswith("_flat") for m in most):
        text += (
            " The flat rule spreads relevance evenly over the inputs of an MLP, so those maps "
            "carry no pixel ranking: this is expected, and it is why input pruning must not use a "
            "flat first layer."
        )
    return text


# ---------------------------------------------------------------------------- ViT few-shot

#: the row of a composite searched by ``tune.py`` (``benchmarks/summaries/tuning.json``)
TUNED = "tuned,pruner=lrp_conserved"
#: the ViT criteria in the order of the page, by the sweep's override of them
VIT_ROWS = {
    "pruner=lrp_conserved": "LRP, AttnLRP (`lrp_conserved`)",
    "lrp=cp_lrp,pruner=lrp_conserved": "LRP, CP-LRP",
    "lrp=abslrp,pruner=lrp_conserved": "LRP, absLRP",
    TUNED: "LRP, tuned composite (`tune.py`)",
    "pruner=taylor": "Taylor",
    "pruner=gradient": "gradient",
    "pruner=attention": "attention confidence",
    "pruner=magnitude": "magnitude",
    "pruner=random": "random",
}


#: the runs of the ViT few-shot summary: what each prunes
VIT_RUNS = {
    "mnist_heads": "MNIST, attention heads",
    "mnist_neurons": "MNIST, MLP hidden neurons",
    "fashion_mnist_heads": "Fashion-MNIST, attention heads",
    "fashion_mnist_neurons": "Fashion-MNIST, MLP hidden neurons",
}


#: overrides that do not tell the rows of a ViT few-shot run apart
VIT_ASIDE = ("threads=", "pruner.target=")


def _vit_group(run: Run, overrides: str) -> Mapping[str, Any] | None:
    """The group whose job overrides are ``overrides`` (the threads and the target, which a
    run holds one of, aside)."""
    for name, group in run["figures"]["groups"].items():
        keys = ",".join(k for k in name.split(",") if not k.startswith(VIT_ASIDE))
        if keys == overrides:
            return group
    return None


#: the dense model each ViT few-shot run starts from, by the run's dataset
VIT_DENSE = {
    "mnist": "`mnist_vit` (12 epochs)",
    "fashion_mnist": "`fashion_mnist_vit_fewshot` (20 epochs)",
}
#: the LRP row the baselines are paired with
VIT_LRP = "pruner=lrp_conserved"


def _by_seed(group: Mapping[str, Any] | None) -> dict[str, float]:
    """``{seed: AUC}`` of a group."""
    if group is None:
        return {}
    auc = _metric(group, "prune/auc_pruned") or {}
    return dict(zip(map(str, group.get("seeds") or []), auc.get("values") or [], strict=False))


def _is_lrp_row(overrides: str) -> bool:
    return overrides.endswith("pruner=lrp_conserved")  # the tuned row (TUNED) included


def _vit_against(run: Run, lrp: str) -> tuple[dict[str, str], list[str], list[str]]:
    """The LRP row ``lrp`` against every baseline, seed by seed: the differences per baseline
    row, the losses, and the seeds compared."""
    ours = _by_seed(_vit_group(run, lrp))
    cells: dict[str, str] = {}
    losses: list[str] = []
    for overrides, label in VIT_ROWS.items():
        if _is_lrp_row(overrides):
            continue
        theirs = _by_seed(_vit_group(run, overrides))
        seeds = [s for s in ours if s in theirs]
        if len(seeds) < 2:
            continue
        diffs = [ours[s] - theirs[s] for s in seeds]
        cells[overrides] = " / ".join(f"{d:+.3f}" for d in diffs)
        lost = [s for s, d in zip(seeds, diffs, strict=True) if d <= 0]
        if lost:
            losses.append(f"{label} in seed{'s' if len(lost) > 1 else ''} {words(lost)}")
    return cells, losses, list(ours)


def _vit_paired(run: Run) -> tuple[dict[str, str], str]:
    """Per baseline row, LRP's (AttnLRP's) AUC minus its AUC seed by seed; and the verdict for
    each LRP row run on the same seeds."""
    against = {o: _vit_against(run, o) for o in VIT_ROWS if _is_lrp_row(o)}
    cells = against[VIT_LRP][0]
    if not cells:
        return cells, ""
    verdicts = []
    for overrides, (row_cells, losses, seeds) in against.items():
        if not row_cells:
            continue
        name = VIT_ROWS[overrides].split(" (")[0]
        listed = _seeds(seeds, " / ")
        if not losses:
            verdicts.append(f"{name}: above every baseline in every seed ({listed}).")
        else:
            verdicts.append(f"{name}: not above {words(losses)} (seeds {listed}).")
    return cells, " ".join(verdicts)


def _with_tuned(run: Run, tuned: Run | None) -> Run:
    """``run`` with the tuned composite's test AUCs as the group :data:`TUNED` (same dense
    checkpoints, reference images and steps: its default composite's AUC is the AttnLRP row's)."""
    if tuned is None:
        return run
    fig = tuned["figures"]
    group = {"seeds": fig["seeds"], "metrics": {"prune/auc_pruned": fig["best"]["test/auc_pruned"]}}
    groups = {**run["figures"]["groups"], TUNED: group}
    return {**run, "figures": {**run["figures"], "groups": groups}}


def _rules(params: Mapping[str, Any]) -> str:
    """A searched composite's rules: ``attention gamma 0.42, mlp z+, ..., aggregate abs``."""
    names = {"zplus": "z+", "alpha2beta1": "alpha2-beta1"}
    parts = []
    for key, rule in params.items():
        if key.endswith(".rule"):
            group = key[: -len(".rule")]
            value = params.get(f"{group}.{rule}")
            value = "" if value is None else f" {value:.2g}"
            parts.append(f"{group} {names.get(rule, rule)}{value}")
    if "aggregate" in params:
        parts.append(f"aggregate {params['aggregate']}")
    return ", ".join(parts)


def _tuned_text(tuned: Run) -> str:
    """What the search was and how the tuned composite compares with the default one."""
    fig = tuned["figures"]
    searches = fig["searches"]
    trials = sorted({s["trials"] for s in searches})
    diff = fig["best_minus_default"]
    per_seed = "; ".join(f"seed {s['seed']}: {_rules(s['best_params'])}" for s in searches)
    return (
        f"The tuned row: `tune.py` searched, per seed, the rule of the attention projections, "
        f"the MLP layers and the head, and the criterion's aggregate, with Optuna's TPE over "
        f"{'/'.join(map(str, trials))} trials, each scored by its AUC on "
        f"{count(fig['val_images'])} validation images; the best composite was then measured "
        f"once on the {count(fig['test_images'])} test images. Test AUC of the default composite "
        f"{stat(fig['default']['test/auc_pruned'])}, of the tuned one "
        f"{stat(fig['best']['test/auc_pruned'])}: tuned minus default "
        f"{' / '.join(f'{d:+.3f}' for d in diff['values'])} per seed. The chosen rules: "
        f"{per_seed}."
    )


def vit_fewshot(summaries: Summaries) -> str | None:
    runs = _runs(summaries, "fewshot_vit")
    if not runs:
        return None
    searches = _runs(summaries, "tuning")
    parts = ["## Few-shot pruning without fine-tuning, Vision Transformer"]
    for name, run in runs.items():
        run = _with_tuned(run, searches.get(name))
        paired, verdict = _vit_paired(run)
        rows = []
        for overrides, label in VIT_ROWS.items():
            group = _vit_group(run, overrides)
            if group is not None:
                seeds = group.get("seeds") or []
                auc = _metric(group, "prune/auc_pruned")
                text = stat(auc) if len(seeds) > 1 else num(auc["mean"], 3)
                rows.append([label, text, str(len(seeds)), paired.get(overrides, "")])
        if not rows:
            continue
        figures = run["figures"]
        widest = max(figures["groups"].values(), key=lambda g: len(g.get("seeds") or []))
        dense = stat(_metric(widest, "test/acc_dense"), 2, 100)
        model = VIT_DENSE["fashion_mnist" if name.startswith("fashion") else "mnist"]
        parts += [
            f"**{VIT_RUNS.get(name, name)}**: area under accuracy against the share of "
            "heads (or MLP neurons) removed, 0 to 95% in 5% steps, no fine-tuning, 10 reference "
            "images per class, re-explained after each step; every criterion from the same "
            f"dense {model} checkpoint per seed (test accuracy {dense}%). The last column pairs "
            "the seeds: LRP's AUC minus the row's.",
            table(["criterion", "AUC", "seeds", "LRP minus it, per seed"], "lrrr", rows),
            verdict,
            _tuned_text(searches[name]) if name in searches else "",
        ]
    items = [("fewshot_vit", n, r, VIT_RUNS.get(n)) for n, r in runs.items()]
    items += [("tuning", n, r, f"{VIT_RUNS.get(n, n)}, tuned") for n, r in searches.items()]
    parts.append(sources(items))
    return "\n\n".join(p for p in parts if p)


SECTIONS = [
    dense_models,
    input_pruning,
    lenet_channels,
    finetuned_pruning,
    fewshot,
    vit_fewshot,
    explanations,
]


def render(summaries: Summaries) -> str:
    """The whole page: the intro, then every section whose summaries are there."""
    parts = [INTRO] + [text for section in SECTIONS if (text := section(summaries))]
    return "\n\n".join(parts) + "\n"
