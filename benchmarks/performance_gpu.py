"""Performance page section on the GPU: the LRP pass, training and the explain pass on CUDA,
against the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

from page_text import (
    Run,
    Summaries,
    bold,
    command_text,
    commands,
    count,
    num,
    pct,
    runs_named,
    sources,
    span,
    table,
    values,
)
from performance_common import PRESETS, SHORT_MODELS, row_of


def gpu(summaries: Summaries) -> str | None:
    g = runs_named(summaries, "gpu")
    lrp = runs_named(summaries, "lrp_speed")
    explain = {
        n: r
        for n, r in runs_named(summaries, "explain_speed").items()
        if r["figures"].get("device") == "gpu"
    }
    flag = runs_named(summaries, "flagship")
    checks = g.get("checks")
    if checks is None:
        return None
    suite = g.get("suite")
    passed = f"{checks['figures']['cuda_tests_passed']} passed: " if checks else ""
    whole = (
        f" The whole suite ({command_text(suite)}) also passes there with the GPU visible: "
        f"{suite['figures']['passed']} passed."
        if suite is not None
        else ""
    )
    intro = (
        "`tests/lrp/test_cuda.py` (skipped without a GPU) and one script cover the GPU:\n\n"
        f"```bash\n{commands(checks)[0]}   # logs in logs/gpu\n```\n\n"
        f"It runs the CUDA tests ({passed}every preset on every model kind in float64 against the "
        "CPU to 1e-9, a float32 `Explainer` with TF32 off against float64, float32 relevance "
        "under fp16 and bf16 autocast, the relevance accumulator on a GPU Trainer against a CPU "
        "one, pruning surgery on the GPU, latency on the GPU), the LRP benchmark at batch 128 and "
        f"1024, the explain pass, and the flagship in float32 and bf16-mixed.{whole}"
    )
    rows: list[list[str]] = []
    used: list[tuple[str, str, Run, str | None]] = [("gpu", "checks", checks, None)]
    if suite is not None:
        used.append(("gpu", "suite", suite, "the whole suite"))
    f32, bf16 = flag.get("gpu-32-true"), flag.get("gpu-bf16-mixed")
    if f32 is not None:
        fig = f32["figures"]
        cpu = flag.get("cpu")
        same = " (as on the CPU)" if cpu and cpu["figures"]["test/acc"] == fig["test/acc"] else ""
        text = (
            f"{fig['wall_s']:g} s wall ({fig['job_s']:g} s in the job), dense "
            f"{pct(fig['test/acc_dense'])}%, k = {fig['keep']} **{pct(fig['test/acc'])}%**{same}"
        )
        used.append(("flagship", "gpu-32-true", f32, "flagship"))
        if bf16 is not None:
            b = bf16["figures"]
            text += (
                f"; bf16-mixed ({command_text(bf16)}): {b['wall_s']:g} s, "
                f"{pct(b['test/acc_dense'])}% and {pct(b['test/acc'])}%"
            )
            used.append(("flagship", "gpu-bf16-mixed", bf16, "flagship, bf16-mixed"))
        rows.append([f"flagship {command_text(f32)}", text])
    big = lrp.get("cuda-b1024")
    if big is not None:
        for name in big["figures"]["models"]:
            cells = []
            for p in PRESETS:
                r = row_of(big, name, f"ours {p}")
                if "time_ratio" in r:
                    cells.append(
                        bold(f"{span(r['time_ratio'], 2, 'x')} / {span(r['vs_zennit'], 2, 'x')}")
                    )
                    cells[-1] = f"{p} {cells[-1]}"
            mem = _ratio_range(big, name, "memory_ratio")
            rows.append(
                [
                    f"{SHORT_MODELS.get(name, name)} at batch {big['figures']['batch']}, ratio "
                    "to forward+backward / lead over Zennit",
                    ", ".join(cells) + (f"; peak memory {span(mem, 2, 'x')}" if mem else ""),
                ]
            )
        used.append(("lrp_speed", "cuda-b1024", big, f"batch {big['figures']['batch']}"))
    small = lrp.get("cuda-b128")
    if small is not None:
        models = small["figures"]["models"]
        fb = ", ".join(
            f"{span(row_of(small, n, 'forward+backward')['ms'], 1, ' ms')} {SHORT_MODELS.get(n, n)}"
            for n in models
            if "ms" in row_of(small, n, "forward+backward")
        )
        eps = ", ".join(
            f"{span(row_of(small, n, 'ours epsilon')['time_ratio'], 2, 'x')} / "
            f"{span(row_of(small, n, 'ours epsilon')['vs_zennit'], 2, 'x')}"
            for n in models
        )
        others_t = _ratio_range(small, None, "time_ratio", skip="epsilon")
        others_z = _ratio_range(small, None, "vs_zennit", skip="epsilon")
        rows.append(
            [
                f"batch {small['figures']['batch']} (forward+backward {fb})",
                f"epsilon {eps}; the other presets {span(others_t, 1, 'x')} / "
                f"{span(others_z, 2, 'x')}",
            ]
        )
        captum = row_of(small, "vgg11", "captum LRP (epsilon)")
        if captum:
            rows.append(
                [
                    f"Captum's LRP (epsilon), VGG11, batch {small['figures']['batch']}",
                    f"{num(captum['time_ratio'], 2)}x forward+backward, "
                    f"{num(captum['memory_ratio'], 2)}x its memory (it does not run on a model "
                    "with `nn.Flatten`: no rule)",
                ]
            )
        used.append(("lrp_speed", "cuda-b128", small, "batch 128"))
    if explain:
        parts = []
        for name, run in explain.items():
            fig = run["figures"]
            label = SHORT_MODELS.get(fig["model"], fig["model"])
            if fig.get("composite", "epsilon") != "epsilon":
                label += f" {fig['composite']}"
            parts.append(
                f"{label} {num(fig['explain_s'], 2)} s against {num(fig['floor_s'], 2)} s"
                + (" for a plain forward+backward loop" if not parts else "")
                + f" ({num(fig['ratio'], 2)}x)"
            )
            used.append(("explain_speed", name, run, f"explain pass, {label}"))
        first = next(iter(explain.values()))["figures"]
        rows.append(
            [
                f"explain pass over {count(first.get('images', 60000) / 1000)}k MNIST images, "
                f"batch {first.get('batch', 1000)}",
                "; ".join(parts),
            ]
        )
    parts = [
        "## On a GPU",
        intro,
        table(["what", "measured"], "ll", rows),
        _gpu_notes(g, flag),
    ]
    for name, label in (("profile", "the profile"), ("slices", "the slice size")):
        if name in g:
            used.append(("gpu", name, g[name], label))
    parts.append(sources(used))
    return "\n\n".join(p for p in parts if p)


def _ratio_range(run: Run, model: str | None, key: str, skip: str | None = None) -> list[float]:
    """The range of ``key`` over our presets (all models when ``model`` is None), or the stored
    ``other_presets`` range where the run kept only that."""
    found: list[float] = []
    models = run["figures"]["models"]
    for name in [model] if model else list(models):
        rows = models[name].get("rows", {})
        found += [
            x
            for row, r in rows.items()
            if row.startswith("ours ") and row[5:] != skip and key in r
            for x in values(r[key])
        ]
        if not found:
            found += values((models[name].get("other_presets") or {}).get(key) or [])
    return found


def _gpu_notes(g: Mapping[str, Run], flag: Mapping[str, Run]) -> str:
    text = ""
    prof = g.get("profile")
    if prof is not None:
        fig = prof["figures"]
        lrp, grad = fig["lrp_epsilon"], fig["gradient"]
        text += (
            f"At batch {fig['batch']} the GPU waits for the CPU: the profiler counted "
            f"{lrp['kernels']} kernels and {lrp['gpu_ms']} ms of GPU work in LeNet-5's epsilon "
            f"pass, which takes {lrp['wall_ms']} ms, against {grad['kernels']} kernels and "
            f"{grad['gpu_ms']} ms for the gradient, which takes {grad['wall_ms']} ms. What costs "
            "there is the Python work per layer, as in the explain pass, where Lightning's loop "
            "adds its own per batch; from batch 1024 on VGG11 meets every CPU target. "
        )
    slices = g.get("slices")
    if slices is not None:
        fig = slices["figures"]
        ab = fig["lenet5_b128_alpha_beta_ms"]
        sweep = "; ".join(
            f"{size} MiB {r['vgg11'][0]:g}x / {r['vgg11'][1]:g} (VGG11) and "
            f"{r['lenet5'][0]:g}x / {r['lenet5'][1]:g} (LeNet-5)"
            for size, r in fig["sweep_b1024"].items()
        )
        text += (
            "A first layer that alpha-beta rebuilds in the backward is rebuilt in one slice up to "
            "16 MiB on a GPU (eight slices on the CPU): on LeNet-5 at batch 128 the pass takes "
            f"{span(ab['one slice'], 1, ' ms')} that way, against {span(ab['eighths'], 1, ' ms')} "
            "in eighths. The slice size (`GPU_SLICE_BYTES` in `prune/lrp/fast/modified.py`) comes "
            "from a sweep at batch 1024 with alpha-beta, time / peak memory against "
            "forward+backward: "
            f"{sweep}. "
        )
    f32 = flag.get("gpu-32-true")
    if f32 is not None and "cost/latency_ms_b1_cuda" in f32["figures"]:
        fig = f32["figures"]
        dense = fig.get("cost/latency_ms_b1_cuda_dense")
        same = (
            "and as much for its pruned version"
            if dense == fig["cost/latency_ms_b1_cuda"]
            else f"and {fig['cost/latency_ms_b1_cuda']} ms for its pruned version"
        )
        text += (
            "Latency is measured on the GPU too when the run trains on one "
            f"(`cost/latency_ms_b1_cuda`): {dense} ms for LeNet-300-100, {same} (kernel "
            "launches, not arithmetic)."
        )
    return text.strip()
