"""Results page section on few-shot pruning of the Vision Transformer: every LRP composite, the
tuned one (``tune.py``) included, paired seed by seed with every baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from page_text import (
    Run,
    Summaries,
    count,
    num,
    runs_named,
    sources,
    spell,
    stat,
    table,
    words,
)
from results_common import metric_of, seed_text

#: the row of a composite searched by ``tune.py`` (``benchmarks/summaries/tuning.json``)
TUNED = "tuned,pruner=lrp_conserved"
#: absLRP without its contrastive construction: the target's map alone
ABS_TARGET = "lrp.contrastive=False,lrp=abslrp,pruner=lrp_conserved"
#: the ViT criteria in the order of the page, by the sweep's override of them
VIT_ROWS = {
    "pruner=lrp_conserved": "LRP, AttnLRP (`lrp_conserved`)",
    "lrp=cp_lrp,pruner=lrp_conserved": "LRP, CP-LRP",
    "lrp=abslrp,pruner=lrp_conserved": "LRP, absLRP",
    ABS_TARGET: "LRP, absLRP, target map only (`lrp.contrastive=false`)",
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
    auc = metric_of(group, "prune/auc_pruned") or {}
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
        listed = seed_text(seeds, " / ")
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


def _abslrp_text(runs: Mapping[str, Run]) -> str:
    """absLRP's contrastive map against its target map alone, as criteria, where both ran."""
    rows = {
        "contrastive": "lrp=abslrp,pruner=lrp_conserved",
        "target map only": ABS_TARGET,
        "AttnLRP": VIT_LRP,
        "random": "pruner=random",
    }
    found = []
    for name, run in runs.items():
        aucs = {k: metric_of(_vit_group(run, o) or {}, "prune/auc_pruned") for k, o in rows.items()}
        if all(aucs.values()):
            found.append((VIT_RUNS.get(name, name), {k: a["mean"] for k, a in aucs.items()}))
    if not found:
        return ""

    def share(n: int) -> str:
        return (
            f"all {spell(len(found))}"
            if n == len(found)
            else f"{spell(n)} of the {spell(len(found))}"
        )

    below = sum(a["contrastive"] < a["random"] for _, a in found)
    above = sum(a["target map only"] > a["random"] for _, a in found)
    listed_runs = "; ".join(
        f"{label}: " + ", ".join(f"{num(auc, 3)} {k}" for k, auc in aucs.items())
        for label, aucs in found
    )
    return (
        "**absLRP's contrastive map as a criterion.** absLRP's map is by default the target's "
        "map minus the map of all other classes, each rescaled to unit L1 norm in every layer. "
        "Summed per unit as `|net R|` over the reference images, the contrastive map ranks "
        f"below random in {share(below)} settings; the target's map alone, with the same "
        f"propagation and rescaling, ranks above random in {share(above)} (mean AUC; "
        f"{listed_runs}). The likely reason: a unit that carries evidence for every class "
        "takes nearly the same share of both maps, so its contrastive relevance cancels and it "
        "goes early, although the model needs it for every decision. The contrastive map "
        "answers which units speak for the target rather than the other classes, a question "
        "for explaining, not for pruning; to prune with absLRP take the target's map "
        "(`lrp=abslrp lrp.contrastive=false`)."
    )


def vit_fewshot(summaries: Summaries) -> str | None:
    runs = runs_named(summaries, "fewshot_vit")
    if not runs:
        return None
    searches = runs_named(summaries, "tuning")
    parts = ["## Few-shot pruning without fine-tuning, Vision Transformer"]
    for name, run in runs.items():
        run = _with_tuned(run, searches.get(name))
        paired, verdict = _vit_paired(run)
        rows = []
        for overrides, label in VIT_ROWS.items():
            group = _vit_group(run, overrides)
            if group is not None:
                seeds = group.get("seeds") or []
                auc = metric_of(group, "prune/auc_pruned")
                text = stat(auc) if len(seeds) > 1 else num(auc["mean"], 3)
                rows.append([label, text, str(len(seeds)), paired.get(overrides, "")])
        if not rows:
            continue
        figures = run["figures"]
        widest = max(figures["groups"].values(), key=lambda g: len(g.get("seeds") or []))
        dense = stat(metric_of(widest, "test/acc_dense"), 2, 100)
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
    parts.append(_abslrp_text(runs))
    items = [("fewshot_vit", n, r, VIT_RUNS.get(n)) for n, r in runs.items()]
    items += [("tuning", n, r, f"{VIT_RUNS.get(n, n)}, tuned") for n, r in searches.items()]
    parts.append(sources(items))
    return "\n\n".join(p for p in parts if p)
