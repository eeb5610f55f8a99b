"""Results page section on few-shot pruning of the CNNs: LRP variants against the baselines,
per dataset and seed, and the ablations of the criterion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from page_text import (
    Run,
    Summaries,
    bold,
    command_text,
    mean,
    num,
    pct,
    runs_named,
    sources,
    spell,
    stat,
    table,
    words,
)
from results_common import group_of, metric_of, round_of, seed_text

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
    return group_of(run, data=data, **overrides)


def _auc(group: Mapping[str, Any] | None) -> float | None:
    s = metric_of(group, "prune/auc_pruned")
    return None if s is None else mean(s)


def _dense_line(run: Run, seeds: Sequence[Any]) -> str:
    parts = []
    for data, name in DATASETS.items():
        group = _fewshot_group(run, data, {"pruner": "lrp_conserved"})
        dense = metric_of(group, "test/acc_dense")
        if dense and "values" in dense:
            by_seed = dict(zip(group["seeds"], dense["values"], strict=True))
            parts.append(f"{name} " + " / ".join(pct(by_seed[s]) for s in seeds) + "%")
    return ", ".join(parts)


def fewshot(summaries: Summaries) -> str | None:
    runs = runs_named(summaries, "fewshot")
    run = runs.get("seeds_3")
    if run is None:
        return None
    seeds = next(iter(run["figures"]["groups"].values()))["seeds"]
    intro = (
        f"Mean ± std over seeds {seed_text(seeds)}; one dense model per dataset and seed, every "
        f"criterion from that checkpoint. Reproduce with {command_text(run)}; each cell is "
        "`python train.py +experiment=mnist_fewshot data=<data> pruner=<criterion> seed=<s> "
        "ckpt_path=logs/fewshot/<data>/dense_s<s>/checkpoints/round_0/last.ckpt`, the margin and "
        "logit rows adding `relevance.output=margin` or `logit`, the absLRP row `lrp=abslrp "
        "pruner=lrp pruner.criterion.normalize=l2 relevance.output=logit`. "
        + FEWSHOT_METHOD.replace("\n", " ")
        + f" Dense LeNet-5 (6 epochs): {_dense_line(run, seeds)} (seeds {seed_text(seeds, ' / ')})."
    )
    parts = ["## Few-shot pruning without fine-tuning, LeNet-5", intro, _fewshot_table(run)]
    parts.append(_fewshot_target(run, seeds))
    if "seeds_5" in runs:
        parts.append(_fewshot_five(runs["seeds_5"], seeds))
    items = [("fewshot", name, runs[name], None) for name in ("seeds_3", "seeds_5") if name in runs]
    parts.append(sources(items))
    variants = runs_named(summaries, "fewshot_variants")
    if variants:
        parts += [_fewshot_why(variants), _fewshot_variants(variants)]
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
            "acc9": max(mean(round_of(g, 9, "test/acc")) for _, g in groups),
            "flops": min(
                mean(metric_of(g, "prune/flops_ratio")) for o, g in groups if not _is_random(o)
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
            accs = [pct(mean(round_of(g, r, "test/acc")), 1) for r in (7, 8, 9)]
            acc9 = mean(round_of(g, 9, "test/acc"))
            accs[-1] = bold(accs[-1], acc9 == best[data]["acc9"])
            flops = mean(metric_of(g, "prune/flops_ratio"))
            row += [
                bold(stat(metric_of(g, "prune/auc_pruned")), _auc(g) == best[data]["auc"]),
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
    found = [metric_of(g, "prune/auc_pruned") for g in groups if g is not None]
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
            metric_of(g, "prune/auc_pruned").get("std") or 0
        )
        against = " and ".join(f"{BASELINES[b]} {num(a, 3)}" for b, a in ranked[:2])
        text = f"{name}: {num(_auc(g), 3)} against {against}."
        ours = metric_of(g, "prune/auc_pruned").get("values")
        best = _best_per_seed(run, data)
        if ours and best:
            text += (
                f" Per seed ({seed_text(seeds, ' / ')}) it is "
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
            label: mean(round_of(og, 9, "test/acc"))
            for o, label in FEWSHOT_ROWS
            if (og := _fewshot_group(run, data, o)) is not None and og is not g
        }
        taylor = acc9.get("Taylor")
        next_best = max(acc9.values())
        text = f"{pct(mean(round_of(g, 9, 'test/acc')), 1)}% on {name} ("
        text += f"next best {pct(next_best, 1)}%" if next_best != taylor else ""
        if taylor is not None:
            text += (", " if next_best != taylor else "") + f"Taylor {pct(taylor, 1)}%"
        deep.append(text + ")")
    flops = [pct(mean(metric_of(default[d], "prune/flops_ratio")), 0) for d in DATASETS]
    fewest = all(
        mean(metric_of(default[d], "prune/flops_ratio"))
        <= min(
            mean(metric_of(og, "prune/flops_ratio"))
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
            acc9 = round_of(g, 9, "test/acc")
            flops = metric_of(g, "prune/flops_ratio")
            row += [
                "-" if g is None else stat(metric_of(g, "prune/auc_pruned")),
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
        f"baselines, over all {len(seeds)} seeds ({seed_text(seeds)}); reproduce with "
        f"{command_text(run)}. Dense models of the new seeds: {dense}."
    )
    return "\n\n".join([text, table(header, "lrrrrrr", rows), _paired(run, seeds)])


def _paired(run: Run, seeds: Sequence[Any]) -> str:
    """Seed by seed against Taylor: from the groups' per-seed values, else as stored."""
    stored = run["figures"].get("auc_difference_vs_taylor") or {}
    wins = run["figures"].get("wins_vs_taylor") or {}
    diffs: dict[str, dict[str, Any]] = {}
    for data in DATASETS:
        ours = metric_of(_fewshot_group(run, data, {"pruner": "lrp_conserved"}), "prune/auc_pruned")
        taylor = metric_of(_fewshot_group(run, data, {"pruner": "taylor"}), "prune/auc_pruned")
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
        paired = seed_text(d["seeds"], " / ")
        text += f" The paired differences on {name} are {listed} (seeds {paired})."
    return text


def _variant(variants: Mapping[str, Run], name: str) -> Run | None:
    return variants.get(name)


def _taylor_on(variants: Mapping[str, Run], data: str, seeds: Sequence[Any]) -> str | None:
    """Taylor's area from ``benchmarks/fewshot_variants.py`` on the same dense models (its
    ``taylor`` run on ``seeds``), or None where it was not run."""
    taylor = variants.get(f"{data}:{','.join(str(s) for s in seeds)}:taylor")
    return None if taylor is None else num(taylor["figures"]["area"]["mean"], 3)


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
        "fashion_mnist:12345,1,2:lrp@lossz:epsilon_plus:abs:none",
        lambda area, cmd: (
            f"Ranked without per-layer normalisation, as `pruner=lrp_conserved` ranks, the same "
            f"scores give {area} ({cmd}, Taylor {{taylor}}). Only LRP can rank so: its relevance "
            "is conserved, so every layer's scores are on the output's scale."
        ),
    ),
    (
        "fashion_mnist:12345,1,2:taylor:::none",
        lambda area, cmd: (
            f"Taylor ranked the same way collapses: `taylor:::none` gives {area} on Fashion-MNIST "
            f"({cmd}), cutting whole layers to one unit. Its scores are not conserved between "
            "layers."
        ),
    ),
    (
        "fashion_mnist:12345,1,2:lrp@lossz:epsilon_plus:posabs",
        lambda area, cmd: (
            f"Summing |R| over a channel's positions instead of |net R| (`posabs`, as "
            f"`pruner=lrp` does) gives {area} on Fashion-MNIST ({cmd}, Taylor {{taylor}})."
        ),
    ),
]


def _fewshot_why(variants: Mapping[str, Run]) -> str:
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
        taylor = _taylor_on(variants, fig["dataset"], fig["seeds"])
        bullets.append(text.replace("{taylor}", taylor or "not run on these seeds"))
    return "Why this criterion:\n\n" + "\n".join(f"- {b}" for b in bullets)


def _fewshot_variants(variants: Mapping[str, Run]) -> str:
    taylors = {name: v for name, v in variants.items() if v["figures"]["variant"] == "taylor"}
    used = {name for name, _ in WHY} | set(taylors)
    bullets = []
    for name, v in variants.items():
        if name in used:
            continue
        fig = v["figures"]
        what = fig.get("what") or fig.get("variant") or name
        data = DATASETS.get(fig["dataset"], fig["dataset"])
        seeds = fig["seeds"]
        on = f"{data}, seed{'s' * (len(seeds) > 1)} {seed_text(seeds, ' / ')}"
        taylor = _taylor_on(variants, fig["dataset"], seeds)
        text = f"{what[0].upper()}{what[1:]} ({on}): **{stat(fig['area'])}**"
        text += f" (Taylor {taylor})" if taylor else ""
        notes = []
        kept = fig.get("first_conv_kept")
        if kept and 2 * kept[-1] <= fig["first_conv_dense"]:  # the first layer cut hardest
            cut = f"{kept[0]}-{kept[-1]}" if kept[0] != kept[-1] else str(kept[0])
            notes.append(
                f"it cuts the first convolution to {cut} of {fig['first_conv_dense']} channels"
            )
        text += ("; " + "; ".join(notes) if notes else "") + "; " + command_text(v)
        bullets.append(text + ".")
    dates = sorted({v.get("date", "undated") for v in variants.values()})
    machines = sorted({v["machine"]["description"] for v in variants.values()})
    taylor = [
        f"{stat(v['figures']['area'])} on {DATASETS.get(d := v['figures']['dataset'], d)}, seeds "
        f"{seed_text(v['figures']['seeds'], ' / ')} ({command_text(v)})"
        for v in taylors.values()
    ]
    head = (
        "Other variants. `benchmarks/fewshot_variants.py` runs the same pruning with removed "
        "units' weights zeroed instead of cut out, which reproduces the pipeline's accuracies; "
        "areas are on the table's scale, beside Taylor's area from the same script on the same "
        "dense models (trained by `benchmarks/fewshot_seeds.sh`"
        + (f"; Taylor: {'; '.join(taylor)}" if taylor else "")
        + f"). Measured {words(dates)} on {words(machines)} "
        "(`benchmarks/summaries/fewshot_variants.json`)."
    )
    return head + "\n\n" + "\n".join(f"- {b}" for b in bullets)
