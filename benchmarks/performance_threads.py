"""Performance page section on intra-op threads: speed against threads, quiet and next to a
busy process.
"""

from __future__ import annotations

from page_text import (
    Summaries,
    bold,
    command_text,
    count,
    listed,
    machine,
    middle,
    num,
    runs_named,
    sources,
    span,
    spell,
    table,
)

THREADS_HOW = """\
`threads` (in `conf/train.yaml` and `conf/evaluate.yaml`) sets torch's intra-op thread count
at the start of `train.py` and `evaluate.py`: an integer >= 1, or `auto` (the default). Torch's
own default is one thread per core, and its threads meet at a barrier after every parallel
operator. Next to another busy process one of them is often descheduled and the others wait for
it at every barrier, so a run on all the cores slows down far more than the lost core explains.
`auto` (`prune/run/threads.py`) therefore takes the cores this process may run on
(`os.sched_getaffinity`: taskset, cgroup cpusets, Slurm; capped at torch's default, the physical
cores, and at `OMP_NUM_THREADS` where that is set), less the cores other processes keep busy,
measured from `/proc/stat` over 0.2 s at the start (steal time of a virtual machine counted as
busy; the one-minute load average where `/proc/stat` is missing), rounded to whole cores, at
least 1. On a quiet machine it is torch's default (or fewer, under taskset or a cpuset); a
line `threads=auto: 1 intra-op threads (torch had 2)` in the log says when it is not. The count
is chosen once, at the start: a process that starts later is not seen. Set `threads=N` to fix
it: for timings to compare across runs, and for reruns identical to the last digit (another
thread count adds floats in another order). A resumed run reuses the count of the run it
continues (`threads` in `results.json`). Latency (`measure.latency_threads: null`) is
timed on at most this count."""

THREAD_RATIOS = {
    "busy / quiet, auto": "<= 1.5x",
    "quiet auto / quiet default": "<= 1.15x (at most 15% slower)",
    "busy / quiet, default": "for comparison",
}
THREAD_SIDES = {"quiet": "quiet", "busy": "next to one busy process"}


def threads(summaries: Summaries) -> str | None:
    runs = runs_named(summaries, "threads")
    run = runs.get("benchmark")
    parts = ["## Threads", THREADS_HOW]
    items = []
    if run is not None:
        fig = run["figures"]
        sides = fig["sides"]
        wall = fig.get("wall_s")
        minutes = (
            ""
            if wall is None
            else f", about {round(wall)} s in all"
            if wall < 90
            else f", about {round(wall / 60)} minutes in all"
        )
        parts.append(
            f"{command_text(run)} measures it: {fig['epochs']} epoch"
            f"{'s' if fig['epochs'] != 1 else ''} of training steps of the MLP "
            f"784-300-100-10 (batch 128, Adam) on {count(fig['samples'])} random images of MNIST's "
            "size, then an LRP-epsilon pass over them (`Explainer`, batch 1000), in one process, "
            'quiet and next to one busy process (`python -c "while True: pass"`, started and '
            "killed by the benchmark), with torch's default and with `auto` resolved after the "
            f"busy process has started; {spell(fig['repeats'])} repetition"
            f"{'s' if fig['repeats'] != 1 else ''} of the four sides in "
            f"alternating order{minutes}. Measured on {machine(run)}:"
        )
        rows = [
            [
                THREAD_SIDES[load],
                name,
                ",".join(str(t) for t in sorted(set(sides[f"{load} {name}"]["threads"]))),
                f"{num(sides[f'{load} {name}']['median_s'], 2)} s",
            ]
            for load in THREAD_SIDES
            for name in ("default", "auto")
        ]
        parts.append(
            table(
                ["load", "threads", "count", f"wall time (median of {fig['repeats']})"],
                "llll",
                rows,
            )
        )
        med = {k: v["median_s"] for k, v in sides.items()}
        of_medians = {
            "busy / quiet, auto": med["busy auto"] / med["quiet auto"],
            "quiet auto / quiet default": med["quiet auto"] / med["quiet default"],
            "busy / quiet, default": med["busy default"] / med["quiet default"],
        }
        ratio_rows = []
        for label, target in THREAD_RATIOS.items():
            each = fig["ratios"][label]
            headline = f"{num(of_medians[label], 2)}x"
            ratio_rows.append(
                [
                    label.replace("auto", "`auto`") if label != "busy / quiet, default" else label,
                    bold(headline, label != "busy / quiet, default"),
                    f"{listed(each, 2, last=', ')} ({num(middle(each), 2)}x)",
                    target,
                ]
            )
        parts.append(
            table(
                ["ratio", "of the medians", "per repetition (median)", "target"], "llll", ratio_rows
            )
        )
        default = sorted(set(sides["quiet default"]["threads"]))[0]
        auto_quiet = sorted(set(sides["quiet auto"]["threads"]))
        busy_auto = sorted(set(sides["busy auto"]["threads"]))[0]
        same = auto_quiet == [default]
        noise = (
            f"Quiet, `auto` is torch's default ({default} threads), so the second ratio is the "
            "VM's noise"
            + (
                f" (quiet sides ranged {span(fig['quiet_wall_s_range'], 1, ' s')} in this run)"
                if "quiet_wall_s_range" in fig
                else ""
            )
            + ". "
            if same
            else ""
        )
        parts.append(
            noise + f"Next to a busy process {default} threads take "
            f"{num(of_medians['busy / quiet, default'], 1)}x their quiet time, {busy_auto} thread"
            f"{'s' if busy_auto > 1 else ''} {num(of_medians['busy / quiet, auto'], 1)}x: what is "
            "left of the slowdown is the second core itself."
        )
        items.append(("threads", "benchmark", run, "the benchmark"))
    whole = runs.get("whole_run")
    if whole is not None:
        fig = whole["figures"]
        w = fig["wall_s"]
        parts.append(
            f"A whole run shows the same: {command_text(whole)}, {spell(fig['repeats'])} "
            f"repetitions each, took {span(w['quiet auto'], 1, ' s')} quiet with `auto` "
            f"({span(w['quiet 2'], 1, ' s')} with `threads=2`), and next to one busy process "
            f"{span(w['busy auto'], 1, ' s')} with `auto` ({fig['busy_auto_threads']} thread) "
            f"against {span(w['busy 2'], 1, ' s')} with `threads=2`."
        )
        items.append(("threads", "whole_run", whole, "a whole run"))
    if items:
        parts.append(sources(items))
    return "\n\n".join(parts)
