"""Results page section on the explanations' faithfulness: feature removal, pixel flipping,
AOPC and GAE per attribution method, for the CNNs, the MLP and the Vision Transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from page_text import (
    Run,
    Summaries,
    bold,
    command_text,
    count,
    mean,
    num,
    runs_named,
    sources,
    spell,
    stat,
    table,
    words,
)
from results_common import seed_text

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
    runs = runs_named(summaries, "explanations")
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
        f"the top, seeds {seed_text(seeds, ' / ')}; first {count(fig['images'])} test images, "
        f"GAE on "
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
