"""Performance page sections on the CPU: the overview, LRP against the gradient, the
transformer presets, peak memory and where the time goes.
"""

from __future__ import annotations

from page_text import (
    Run,
    Summaries,
    bold,
    command_text,
    count,
    listed,
    middle,
    num,
    pct,
    runs_named,
    seconds,
    sources,
    span,
    spell,
    table,
    values,
    when,
    words,
)
from performance_common import (
    MEMORY_TARGET,
    PRESETS,
    SHORT_MODELS,
    TIME_TARGETS,
    ZENNIT_TARGET,
    command_list,
    model_label,
    row_of,
)

CPU_INTRO = """\
The scripts are in `benchmarks/`; ratios are measured within one run, and each script records
its run in `benchmarks/summaries/` when given `--summary`. The CPU is a shared virtual machine:
timings move by 10-20% from run to run, so ranges are given where several runs were taken.
`/path/to/data` is the folder that holds `MNIST/` (as `LRP_PRUNE_DATA`)."""


def _train_rows(summaries: Summaries) -> list[list[str]]:
    runs = runs_named(summaries, "train_speed")
    mlp, lenet = runs.get("mlp"), runs.get("lenet5")
    if mlp is None:
        return []
    fig = mlp["figures"]
    ratios = values(fig["ratio"])
    several = (
        f"; {spell(len(ratios))} runs: {listed(ratios, 2, 'x', last=', ')}"
        if len(ratios) > 1
        else ""
    )
    measured = (
        f"MLP **{num(middle(fig['ratio']), 2)}x** ({seconds(fig['lightning_s'])} s vs "
        f"{seconds(fig['plain_s'])} s{several})"
    )
    both = [mlp]
    if lenet is not None:
        measured += f"; LeNet-5 {num(middle(lenet['figures']['ratio']), 2)}x"
        both.append(lenet)
    rows = [
        [
            "training loop vs plain PyTorch loop, one MNIST epoch, batch 128",
            command_list(both),
            measured,
            "<= 1.2x",
            when(both),
        ]
    ]
    if "bare_ratio" in fig:
        gap = values(fig["ours_minus_bare_ms_per_step"])
        faster = max(gap) < 0
        size = span([abs(g) for g in gap], 2)
        rows.append(
            [
                "the same, a bare LightningModule (no logging, no metrics)",
                "same run",
                f"MLP {span(fig['bare_ratio'], 2, 'x')}: our module is {size} ms/step "
                f"{'faster' if faster else 'slower'} than Lightning's bare floor",
                "",
                when([mlp]),
            ]
        )
    return rows


def _explain_measure(run: Run) -> str:
    fig = run["figures"]
    extra = ""
    if "ratio_range" in fig:
        over = f"over {fig['repeats']} repeats" if "repeats" in fig else "over several runs"
        extra = f"; {span(fig['ratio_range'], 2, 'x')} {over}"
    return (
        f"{num(fig['ratio'], 2)}x ({seconds(fig['explain_s'])} s vs {seconds(fig['floor_s'])} s"
        f"{extra})"
    )


def _explain_rows(summaries: Summaries) -> list[list[str]]:
    runs = runs_named(summaries, "explain_speed")
    cpu = [(n, r) for n, r in runs.items() if r["figures"].get("device", "cpu") == "cpu"]
    if not cpu:
        return []
    parts = []
    for i, (_, run) in enumerate(cpu):
        fig = run["figures"]
        label = SHORT_MODELS.get(fig["model"], fig["model"])
        if fig.get("composite", "epsilon") != "epsilon":
            label += f" {fig['composite']}"
        text = _explain_measure(run)
        parts.append(
            f"{label} "
            + (bold(text.split(" ", 1)[0]) + " " + text.split(" ", 1)[1] if i == 0 else text)
        )
    return [
        [
            "explain pass over 60k MNIST images vs forward+backward",
            command_list([r for _, r in cpu]),
            "; ".join(parts),
            "<= 1.5x",
            when([r for _, r in cpu]),
        ]
    ]


def _lrp_overview_rows(summaries: Summaries) -> list[list[str]]:
    run = runs_named(summaries, "lrp_speed").get("cpu-b128")
    if run is None:
        return []
    targets = " / ".join(f"{t:g}x" for t in TIME_TARGETS.values())
    return [
        [
            "LRP vs forward+backward, batch 128",
            f"{command_list([run])} (ours: an `Explainer` built once; "
            "Zennit: hooks registered once)",
            "see the tables below",
            targets,
            when([run]),
        ],
        [
            f"the same against Zennit {run['figures'].get('zennit', '')}'s equivalent composite",
            "same runs",
            "see the tables below",
            f">= {ZENNIT_TARGET:g}x",
            when([run]),
        ],
    ]


def _evaluation_rows(summaries: Summaries) -> list[list[str]]:
    run = runs_named(summaries, "evaluation_speed").get("lenet5")
    if run is None:
        return []
    fig = run["figures"]
    return [
        [
            f"evaluation of {count(fig['images'])} test images, all {fig['methods']} methods, "
            "LeNet-5",
            command_list([run]),
            f"{fig['total_s']:.0f} s",
            "< 300 s",
            when([run]),
        ]
    ]


def _flagship_rows(summaries: Summaries) -> list[list[str]]:
    run = runs_named(summaries, "flagship").get("cpu")
    if run is None:
        return []
    fig = run["figures"]
    several = " over several runs" if len(values(fig["wall_s"])) > 1 else ""
    return [
        [
            "flagship",
            command_list([run]),
            f"{span(fig['wall_s'], 0, ' s')} wall{several} ({fig['rounds']} rounds), "
            f"{pct(fig['test/acc'])}% at k = {fig['keep']} (dense {pct(fig['test/acc_dense'])}%), "
            f"peak RSS {span(fig['peak_rss_gb'], 1, ' GB')}",
            "< 3 min",
            when([run]),
        ]
    ]


def cpu_overview(summaries: Summaries) -> str | None:
    rows = []
    for part in (_train_rows, _explain_rows, _lrp_overview_rows, _evaluation_rows, _flagship_rows):
        rows += part(summaries)
    if not rows:
        return None
    header = ["benchmark", "command", "measured", "target", "measured on"]
    return "\n\n".join(["## Benchmarks on a CPU", CPU_INTRO, table(header, "lllll", rows)])


# ---------------------------------------------------------------------------- LRP vs gradient


def _preset_table(run: Run, key: str, with_target: bool) -> str:
    models = run["figures"].get("models") or {}
    rows = []
    if with_target:
        rows.append(["target"] + [f"{TIME_TARGETS[p]:g}x" for p in PRESETS])
    for name, model in models.items():
        cells = []
        for p in PRESETS:
            v = row_of(run, name, f"ours {p}").get(key)
            cells.append("-" if v is None else span(v, 2, "x"))
        rows.append([model_label(name, model), *cells])
    return table(["model", *PRESETS], "lrrrr", rows)


def lrp_speed(summaries: Summaries) -> str | None:
    runs = runs_named(summaries, "lrp_speed")
    run = runs.get("cpu-b128")
    if run is None:
        return None
    fig = run["figures"]
    notes = f", {run['notes'].split(';')[0]}" if run.get("notes") else ""
    parts = [
        "### LRP against the gradient and against Zennit",
        f"{command_text(run)}, batch {fig['batch']}{notes}. Time of one LRP pass relative to one "
        "forward+backward pass of the same model (the gradient's own cost; lower is better):",
        _preset_table(run, "time_ratio", with_target=True),
    ]
    items = [("lrp_speed", "cpu-b128", run, None)]
    alone = runs.get("cpu-b128-mlp-epsilon")
    if alone is not None:
        ratios = row_of(alone, "mlp", "ours epsilon").get("time_ratio")
        parts.append(f"MLP epsilon alone ({command_text(alone)}): {listed(ratios, 2)}x.")
        items.append(("lrp_speed", "cpu-b128-mlp-epsilon", alone, "MLP epsilon alone"))
    leads = [
        v
        for name in fig["models"]
        for p in PRESETS
        if (v := row_of(run, name, f"ours {p}").get("vs_zennit")) is not None
    ]
    missed = sum(min(values(v)) < ZENNIT_TARGET for v in leads)
    verdict = "met in every cell" if not missed else f"missed in {missed} cells"
    parts.append(
        f"How many times faster than Zennit {fig.get('zennit', '')}'s equivalent composite, in the "
        f"same runs (higher is better; target >= {ZENNIT_TARGET:g}x, {verdict}):"
    )
    parts.append(_preset_table(run, "vs_zennit", with_target=False))
    per_call = runs.get("cpu-b128-per-call")
    if per_call is not None:
        for name in per_call["figures"].get("models") or {}:
            leads = [row_of(per_call, name, f"ours {p}").get("vs_zennit") for p in PRESETS]
            parts.append(
                f"With `--per-call` (a one-shot `attribute` against `with Gradient(...)` per call; "
                f"{command_text(per_call)}) {SHORT_MODELS.get(name, name)} gave "
                f"{words([span(v, 2, 'x') for v in leads if v is not None])}."
            )
        items.append(("lrp_speed", "cpu-b128-per-call", per_call, "`--per-call`"))
    zennit = [
        x
        for name in ("vgg11", "lenet5")
        for x in values(row_of(run, name, "zennit epsilon").get("time_ratio") or [])
    ]
    if zennit:
        parts.append(
            "Where ours sits at the gradient's own cost (epsilon, about 1.0x), a 2x lead on Zennit "
            "needs Zennit to cost 2.1x the gradient; with its hooks registered once it costs "
            f"{span(zennit, 2, 'x')} on VGG11 and LeNet-5. z+ needs three products per layer where "
            "the gradient needs two (the real output, the `W+` output, the transposed `W+` "
            "product), which bounds epsilon_plus_flat near 1.25x, and Zennit does the same three."
        )
    by_hand = row_of(run, "mlp", "epsilon by hand").get("time_ratio")
    if by_hand is not None:
        fb = row_of(run, "mlp", "forward+backward").get("ms")
        hide = (
            f" a {span(fb, 1, ' ms')} forward+backward"
            if fb is not None
            else " the forward+backward"
        )
        parts.append(
            "On the MLP, the benchmark also times the epsilon pass written out by hand (`epsilon "
            "by hand`: native layers, the engine's fused epsilon ReLU, the seed's rescale; "
            f"bit-identical relevance): {span(by_hand, 2, 'x')}. The math meets the "
            f"{TIME_TARGETS['epsilon']:g}x target; the engine's own per-call work is what{hide} "
            "cannot hide."
        )
    parts.append(sources(items))
    return "\n\n".join(parts)


#: the transformer presets, their targets (time over forward+backward), and their baselines
TRANSFORMER_TARGETS = {"attnlrp": 1.3, "cp_lrp": 1.15, "abslrp": 2.5}
BASELINE_NAMES = {"lxt": "LXT {lxt} (explicit rules)", "hooks": "absLRP by hooks"}


#: the ViT runs of ``lrp_speed.json``: the default thread count, then one thread
VIT_RUNS = ("cpu-b128-vit", "cpu-b128-vit-1-thread")
#: timm's ViT at the same sizes
TIMM_RUN = "cpu-b128-timm_vit"


def transformers(summaries: Summaries) -> str | None:
    speed = runs_named(summaries, "lrp_speed")
    runs = [(name, speed[name]) for name in VIT_RUNS if name in speed]
    if not runs:
        return None
    fig = runs[0][1]["figures"]
    parts = [
        "### LRP on a Vision Transformer",
        f"`benchmarks/lrp_speed.py --models vit`, batch {fig['batch']}: `prune.models.ViT` at "
        "the sizes of `conf/model/vit.yaml` on 1x28x28 inputs. Time and peak memory of one LRP "
        "pass relative to forward+backward (gradient x input) in the same run, and how many times "
        "faster than another implementation of the same relevance: AttnLRP and CP-LRP "
        "written with LXT's explicit functional rules, absLRP as the authors' code does it "
        "(a twin forward per layer through hooks, an autograd call per layer; "
        "`benchmarks/abslrp_hooks.py`). A tiny float64 ViT checks before timing that each "
        "gives our map. For absLRP also its floor, the forward and the matrix products of its "
        "two backward passes alone, with no elementwise work (`benchmarks/abslrp_floor.py`): "
        "each pass applies every layer's transposed weight twice, `W` and `|W|`, where the "
        "gradient applies it once.",
    ]
    for _, run in runs:
        parts += _vit_table(run)
    timm = speed.get(TIMM_RUN)
    if timm is not None:
        parts += _timm_table(timm, runs[0][1])
        runs.append((TIMM_RUN, timm))
    parts.append(sources([("lrp_speed", name, run, None) for name, run in runs]))
    return "\n\n".join(parts)


def _timm_table(run: Run, ours: Run) -> list[str]:
    """timm's ViT at the same sizes: its lead-in and its table."""
    fb = row_of(run, "timm_vit", "forward+backward")
    lead = (
        f"**timm's `VisionTransformer`** at the same sizes, with its default fused attention "
        f"({command_text(run)}; no other implementation runs beside it; forward+backward "
        f"{num(fb['ms'], 1)} ms). The engine writes the fused attention out, each product with "
        "its rule. The ratios are to this model's own forward+backward, whose attention "
        "backward is the fused op's, not the explicit products of `prune.models.ViT`: the two "
        "tables measure the same engine against different gradients."
    )
    rows = []
    for preset, goal in TRANSFORMER_TARGETS.items():
        row = row_of(run, "timm_vit", f"ours {preset}")
        if row:
            memory = row.get("memory_ratio")
            rows.append(
                [
                    preset,
                    span(row["time_ratio"], 2, "x"),
                    f"{goal:g}x",
                    "-" if memory is None else span(memory, 2, "x"),
                ]
            )
    return [lead, table(["preset", "time x f+b", "target", "memory x f+b"], "lrrr", rows)]


def _vit_table(run: Run) -> list[str]:
    """The transformer presets of one ``lrp_speed`` run: its lead-in and its table."""
    fig = run["figures"]
    both = fig.get("allocator") == "both"
    rows = []
    for preset, goal in TRANSFORMER_TARGETS.items():
        ours = row_of(run, "vit", f"ours {preset}")
        if not ours:
            continue
        other = next(((k, v) for k, v in ours.items() if k in ("vs_lxt", "vs_hooks")), None)
        against = (
            f"{span(other[1], 2, 'x')} ({BASELINE_NAMES[other[0][3:]].format(**fig)})"
            if other
            else "-"
        )
        memory_ratio = ours.get("memory_ratio")
        floor = row_of(run, "vit", f"floor {preset}")
        row = [preset, span(ours["time_ratio"], 2, "x"), f"{goal:g}x"]
        row.append(span(floor["time_ratio"], 2, "x") if floor else "-")
        if both:
            system = fig["models"]["vit"]["rows_system"][f"ours {preset}"]
            row += [span(system["time_ratio"], 2, "x"), _faults(system), _faults(ours)]
        row += ["-" if memory_ratio is None else span(memory_ratio, 2, "x"), against]
        rows.append(row)
    header = ["preset", "time x f+b", "target", "products alone"]
    if both:
        header += ["glibc's own thresholds", "page faults, own", "page faults, kept"]
    header += ["memory x f+b", "faster than"]
    threads = fig["threads"]
    lead = f"**{count(threads)} thread{'s' * (threads != 1)}** ({command_text(run)})."
    flops = fig["models"]["vit"].get("floor_flop_ratio")
    if flops is not None:
        lead += (
            f" absLRP's products alone count {num(flops, 2)}x the FLOPs of forward+backward "
            "(torch's FLOP formulas, the same on every machine): its time ratio can come down "
            "to that only if its elementwise work, next to its matrix products, costs no more "
            "than forward+backward's does next to its own."
        )
    if both:
        lead += (
            " Times with freed memory kept in the process (`keep_freed_memory`, as `train.py`, "
            "`evaluate.py` and `tune.py` run), and, in a process of their own in the same run, "
            "with glibc's own moving thresholds: the ratio, and the page faults per call of our "
            f"pass (forward+backward: {_faults(_fb(fig, 'rows_system'))} and "
            f'{_faults(_fb(fig, "rows"))}); see "Freed memory kept" below.'
        )
    return [lead, table(header, "lrrr" + "rrr" * both + "rl", rows)]


def _freed_memory(runs: list[Run]) -> str:
    """The "Freed memory kept" bullet, with the figures of the ViT runs that timed both."""
    text = (
        "**Freed memory kept.** glibc unmaps a large freed block and gives the top of its heap "
        "back to the system past moving thresholds; a pass that allocates and frees tensors of "
        "many sizes keeps crossing them, and pays for the system calls and for every page it "
        "then touches afresh (a page fault, zeroed by the kernel). `train.py`, `evaluate.py` "
        "and `tune.py` therefore fix the thresholds at start (`prune/run/allocator.py`, "
        "`keep_freed_memory: true`; off with `keep_freed_memory=false`; glibc's own "
        "`MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` win where set): blocks up to "
        "32 MiB come from the heap and freed memory stays for the next pass, so the resident set "
        "stays near its peak. A script that uses the engine on its own calls "
        "`prune.run.allocator.keep_freed_memory()`."
    )
    measured, gains = [], []
    for run in runs:
        fig = run["figures"]
        if fig.get("allocator") != "both":
            continue
        vit = fig["models"]["vit"]
        presets = [p for p in TRANSFORMER_TARGETS if f"ours {p}" in vit["rows"]]
        own = {p: vit["rows_system"][f"ours {p}"] for p in presets}
        kept = {p: vit["rows"][f"ours {p}"] for p in presets}
        pairs = [
            f"{p} {num(own[p]['time_ratio'], 2)}x -> {num(kept[p]['time_ratio'], 2)}x "
            f"({_faults(own[p])} -> {_faults(kept[p])} page faults a call)"
            for p in presets
        ]
        gains += [own[p]["time_ratio"] / kept[p]["time_ratio"] - 1 for p in presets]
        threads = fig["threads"]
        measured.append(f"With {count(threads)} thread{'s' * (threads != 1)}: {'; '.join(pairs)}.")
    if not measured:
        return text
    return (
        f"{text} On the ViT at batch 128 (the tables above; own thresholds -> kept, each over "
        f"its own forward+backward). {' '.join(measured)} Kept, no call of ours faults more "
        f"than a few pages, and the most a call gains from it is {max(gains):.0%} of its time."
    )


def _fb(fig: dict, rows: str) -> dict:
    return fig["models"]["vit"][rows]["forward+backward"]


def _faults(row: dict) -> str:
    faults = row.get("faults")
    return "-" if faults is None else f"{faults:,.0f}"


# ---------------------------------------------------------------------------- memory

MEMORY_HOW = """\
How the engine keeps it there: the convolutions under z+, gamma and alpha-beta keep neither
their input nor a copy of their modified weights (rebuilt in the backward); a ReLU after the
first layer keeps its rule's scale only where it passes; the last backward pass multiplies into
that scale; alpha-beta's first layer rebuilds its two scales from the pixels in the backward
instead of keeping them (one more product of the cheapest layer), and does that rebuild and its
transposed product in eighths of the batch."""


def memory(summaries: Summaries) -> str | None:
    run = runs_named(summaries, "lrp_speed").get("cpu-b128")
    if run is None:
        return None
    rows = []
    for name, model in run["figures"]["models"].items():
        cells = [row_of(run, name, f"ours {p}").get("memory_ratio") for p in PRESETS]
        if any(c is not None for c in cells):
            rows.append(
                [model_label(name, model)] + ["-" if c is None else span(c, 2, "x") for c in cells]
            )
    parts = [
        "### Memory",
        "Peak memory of the LRP benchmark against forward+backward, in the same runs (measured in "
        "a child process in which every freed block leaves the resident set at once; target "
        f"{MEMORY_TARGET:g}x; left out for the MLP, whose forward+backward peak is too small for "
        "the resident set size):",
        table(["model", *PRESETS], "lrrrr", rows),
    ]
    how = MEMORY_HOW
    ab = runs_named(summaries, "lrp_engine").get("alpha_beta_memory")
    if ab is not None:
        fig = ab["figures"]
        trace = fig["trace_mb"]
        how += (
            " Without the eighths LeNet-5 alpha-beta peaks at "
            f"{num(fig['memory_ratio_whole_batch'], 2)}x: "
            "the convolution library's scratch space grows with the batch, and the stacked first "
            "layer has twice the layer's channels (a per-operation trace of the resident set "
            f"showed {trace['rebuild']} MB of transient growth in the rebuild and "
            f"{trace['transposed product']} MB in the transposed product, against "
            f"{trace['gradient first layer']} MB at the gradient's own first layer; with oneDNN "
            f"switched off the same pass peaked at {num(fig['memory_ratio_onednn_off'], 2)}x)."
        )
    parts.append(how.replace("\n", " "))
    items = [("lrp_speed", "cpu-b128", run, None)]
    if ab is not None:
        items.append(("lrp_engine", "alpha_beta_memory", ab, "without the eighths"))
    parts.append(sources(items))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------- where the time goes


def where_time_goes(summaries: Summaries) -> str | None:
    runs = runs_named(summaries, "lrp_engine")
    bullets = []
    program = runs.get("program")
    if program is not None:
        t = program["figures"]["time_ratio"]
        timed = (
            " Timed call by call in one process (batch 128, relevance bit-identical), the MLP's "
            f"epsilon pass costs {span(t['installed wrappers'], 2, 'x')} with installed wrappers, "
            f"{span(t['program'], 2, 'x')} as a program, and "
            f"{span(t['program, in-place product'], 2, 'x')} once the input's product with the "
            "gradient is taken in place."
        )
    else:
        timed = ""
    bullets.append(
        "**A traced program.** A reused `Explainer` runs the model as a `torch.fx` program traced "
        "on its first call (`prune/lrp/fast/program.py`): the same rule wrappers, called in graph "
        "order, with no wrappers to install and remove, no `nn.Module.__call__` per layer, and the "
        "engine's functional `TorchFunctionMode` only where the graph has functional ops; without "
        "the mode, epsilon and LRP-0 layers, fused ReLUs and data-movement layers also skip the "
        f"rules' general dispatch.{timed} Inputs of the forward besides the batch take their "
        "defaults (timm's ViT: its attention mask and causal flag). A module that a canonizer "
        "replaces is traced through its replacement (torchvision's `nn.MultiheadAttention` "
        "through its explicit attention, timm's `LayerScale`), and a check of the model's own "
        "formats its message from the values of the failing pass. Hooks on the model, a "
        "forward `torch.fx` cannot trace and a recorded container fall back to the installed "
        "wrappers (tests check the program and "
        "the wrappers agree bit for bit on every preset and model; absLRP up to float rounding, "
        "see its rescales below)."
    )
    conv = runs.get("first_conv")
    measured = ""
    if conv is not None:
        ms = conv["figures"]["ms"]
        measured = (
            f" (`prune/lrp/fast/fold.py`; at batch {conv['figures']['batch']}, LeNet-5's 1 -> 20 "
            f"channels take {span(ms['lenet5']['fold'], 1, ' ms')} against "
            f"{span(ms['lenet5']['onednn'], 1, ' ms')}, VGG's 3 -> 64 at 32x32 "
            f"{span(ms['vgg11']['fold'], 1, ' ms')} against "
            f"{span(ms['vgg11']['onednn'], 1, ' ms')})"
        )
    saving = (
        f", so there the first layer saves {pct(conv['figures']['vgg11_saving'], 0)}%"
        if conv is not None
        else ""
    )
    bullets.append(
        "**The first convolution.** The transposed product of a first convolution (one to three "
        "input channels, at least 16 output channels per input channel, on the CPU) is one matrix "
        "product per output position scattered back by `F.fold` instead of oneDNN's "
        "input-gradient kernel, which is slow for that shape"
        f"{measured or ' (`prune/lrp/fast/fold.py`)'}. "
        "Both the rules' transposed products and the native fast path (a `FoldConv` node) use it, "
        "with the same relevance up to float rounding. VGG11 at 32x32 spends most of its time in "
        "the classifier's two 4096-wide matrix products, the same in every method"
        f"{saving}."
    )
    seed = runs.get("seed")
    seed_fig = (
        f": bit-identical relevance on every preset, about {seed['figures']['saving_us']} µs less "
        f"per call, {num(seed['figures']['saving_vs_mlp_forward_backward'], 2)}x of the MLP's "
        "forward+backward"
        if seed is not None
        else ": bit-identical relevance on every preset"
    )
    bullets.append(
        "**The seed.** The seed of a class-index target is built from the target column alone "
        "(gather its logit, take the ratio the logits owe, scatter it into zeros) instead of "
        f"full-width one-hot arithmetic, and the explained output is that logit{seed_fig}."
    )
    pool = runs.get("pool")
    pool_fig = (
        f", {pool['figures']['ms']['broadcast copy']:g} ms instead of "
        f"{pool['figures']['ms']['native pool']:g} ms forward+backward at batch "
        f"{pool['figures']['batch']}"
        if pool is not None
        else ""
    )
    bullets.append(
        "**A pool of single-element windows.** An adaptive average pool whose every window holds "
        "one element (torchvision VGG's 7x7 pool of the 1x1 map it gets at 32x32) runs in the "
        "rules as a broadcast copy, whose gradient is a sum over the copies "
        f"(`prune/lrp/fast/pooling.py`): the same values and relevance{pool_fig}. The native pool "
        "loops over windows of one element, and the gradient it is compared with still pays that. "
        "The classifier's products are untouched (folding the copies into the first linear layer "
        "would cut them 49-fold, but only for this one input size)."
    )
    step = runs.get("training_step")
    cost = (
        f" costs about {step['figures']['lightning_automatic_optimisation_ms_per_step']} ms a step"
        if step is not None
        else " costs time every step"
    )
    bullets.append(
        "**The training loop.** Lightning's automatic optimisation (closure, zero-grad and "
        f"clipping hooks){cost}, so `ClassifierModule` writes the step out (manual optimisation; "
        "it falls back to the automatic loop when the Trainer asks for gradient clipping or "
        "accumulation, with identical weights either way). The loaders slice one index tensor per "
        "epoch (`IndexBatchSampler`) instead of building each batch one Python int at a time."
    )
    bullets.append(
        "**The explain pass.** The accumulator keeps one `Explainer` per pass over the data, so "
        "the layers are mapped to rules once, not per batch."
    )
    bullets.append(
        "**Rescales in the backward.** The epsilon rule's rescale of a layer's output, the "
        "uniform rule's of a product and LayerNorm's at constant sigma keep their tensor and "
        "compute ``g z / stab(n z)`` in the backward pass from it, as one fused `addcdiv` after "
        "``|z| + eps / n`` (`scaled_grad` in `prune/lrp/fast/flow.py`): the forward computes "
        "nothing for them, three elementwise ops in all instead of four, and a rescale on a "
        "branch the backward never reaches (the attention scores under CP-LRP) costs nothing. "
        "A tensor read by several consumers is rescaled once, where their gradients have added "
        "up, and GELU's pass rule takes its scale ``gelu(x) / x`` as that division instead of "
        "evaluating the normal CDF again. A tensor about to change in place first has its scale "
        "computed (an in-place change nobody announced is an error, not a wrong map)."
    )
    bullets.append(
        "**absLRP's rescales.** Every absLRP node rescales the relevance of its inputs to unit "
        "L1 per sample. Where the traced graph reads an input once and it comes from another "
        "absLRP node, directly or through reshapes, that node's own rescales undo any factor "
        "per sample, so the program skips the rescale (`prune/lrp/fast/reads.py`): on the ViT "
        "the inputs of every linear layer, of GELU and of the softmax, the attention weights "
        "and each block's branch. The residual stream, which two ops read, q, k and v, which "
        "meet again in `qkv`, and recorded outputs keep theirs. The attention weights are "
        "nonnegative, so `A @ v` takes one product per factor instead of two. q, k and v, "
        "strided views of one `qkv` output, are copied once in the forward and kept, so no "
        "batched product of either backward pass copies them again. Each elementwise node "
        "builds its slope in its forward and keeps it for both passes. GELU's slope "
        "`(f'(x) + sign(x) f'(|x|)) sign(y)` is `2 gelu'(x) sign(y) + [y < 0]` (as "
        "`gelu(x) - gelu(-x) = x`): one derivative, not two. LayerNorm's statistics of `|x|` go "
        "through the CPU kernel with a weight, about twice as fast as the one without. Signs are "
        "kept in the output's dtype: on the CPU a product with an int8 tensor casts it to a "
        "temporary copy first. The two backward passes run side by side, one intra-op thread "
        "each (`prune/lrp/passes.py`), so that the small operations and Python work of one "
        "overlap the other's. The rest of the gap to the products-alone column of the table "
        "above is the rule's elementwise work (each node's slope and output sign, the remaining "
        "rescales, autograd's copies where q, k and v meet in `qkv`, twice over for the "
        "contrastive pair) and the fixed cost of each of its many ops, which a batch of 128 "
        "does not hide."
    )
    speed = runs_named(summaries, "lrp_speed")
    bullets.append(_freed_memory([speed[name] for name in VIT_RUNS if name in speed]))
    labels = {
        "program": "the traced program",
        "first_conv": "the first convolution",
        "seed": "the seed",
        "pool": "the pool",
        "training_step": "the training loop",
    }
    items = [
        ("lrp_engine", name, runs[name], label) for name, label in labels.items() if name in runs
    ]
    parts = ["### Where the time goes", "\n".join(f"- {b}" for b in bullets)]
    if items:
        parts.append(sources(items))
    return "\n\n".join(parts)
