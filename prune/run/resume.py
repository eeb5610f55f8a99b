"""Resume a run that was interrupted: ``python train.py <same overrides> resume=true
hydra.run.dir=<the run's folder>``.

What a run leaves behind makes this possible: ``results.json`` is rewritten atomically after
every round and holds each finished round's row (with the checkpoint its weights came from),
and, while a round retrains, a ``pending`` entry with that round's plan and its accuracy right
after the cut. Lightning's ``ModelCheckpoint`` writes ``checkpoints/round_<k>/last.ckpt`` after
every epoch. On resume:

- finished rounds are not repeated (their rows are kept as they are);
- round 0 interrupted: ``fit`` continues from ``checkpoints/round_0/last.ckpt``;
- round k interrupted: the weights of round k-1 are loaded from the checkpoint its row names;
  if the plan of round k was already chosen (``pending``) it is re-applied as it was and
  ``fit`` continues from ``checkpoints/round_<k>/last.ckpt``, so the run finishes with the same
  plan; otherwise round k starts again from its explain pass;
- a run whose ``status`` is ``complete`` is returned as it is, nothing is rewritten.

Random states are replayed too, so the resumed run ends with the plan and accuracies of an
uninterrupted one: every checkpoint carries the state its epoch ended with, and the run saves
the state each round starts with (``rng/round_<k>_start.pt``) and the one its retraining starts
with (``rng/round_<k>_fit.pt``). A ``last.ckpt`` that cannot be read (a file damaged outside the
run: the pipeline writes checkpoints atomically) is moved aside with its round's folder, and the
round's retraining starts again from the round's saved start.

The interrupted run's intra-op thread count (``results.json``'s ``threads``) is used again.

The config must be the one of the interrupted run (only ``resume``, ``overwrite``,
``ckpt_path``, ``paths``, ``threads`` and the locations inside the run folder may differ, so a
run folder that was moved or copied resumes); otherwise resuming stops with an error naming the
first differing key.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from prune import rng
from prune.pruning.plan import PruningPlan
from prune.run.checkpoint import (
    TRAINING_KEYS,
    check_checkpoint_fits,
    load_checkpoint,
    save_atomic,
)

log = logging.getLogger(__name__)

#: top-level keys that may differ between the interrupted run and its resumption
IGNORED = ("resume", "overwrite", "ckpt_path", "paths", "threads")


def _relocate(node: Any, old: str, new: str) -> Any:
    """``node`` with every string under the folder ``old`` moved under ``new``."""
    if isinstance(node, dict):
        return {_relocate(k, old, new): _relocate(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_relocate(v, old, new) for v in node]
    if isinstance(node, str) and old and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new + node[len(old.rstrip("/")) :]
    return node


def _diff(old: Any, new: Any, prefix: str = "") -> str | None:
    """Dotted key of the first difference between two plain configs, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if not prefix and key in IGNORED:
                continue
            if key == "default_root_dir":
                continue
            found = _diff(old.get(key), new.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if old == new else prefix.rstrip(".")


class Resume:
    """What the interrupted run in ``cfg.paths.output_dir`` did (inactive unless ``resume``)."""

    def __init__(self, cfg: DictConfig, out: Path) -> None:
        self.out = Path(out)
        self.active = bool(cfg.get("resume", False))
        self.previous: dict[str, Any] | None = None
        self.rows: dict[int, dict[str, Any]] = {}
        self.pending: dict[str, Any] | None = None
        self._restored = False
        self.moved_from = ""  # the run's folder when it was interrupted, if it moved since
        if not self.active:
            return
        path = self.out / "results.json"
        try:
            previous = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"resume=true but {str(path)!r} does not exist; point hydra.run.dir at the "
                "folder of the run to resume"
            ) from None
        except (OSError, ValueError) as err:
            raise ValueError(f"resume=true but {str(path)!r} is not readable JSON: {err}") from err
        now = OmegaConf.to_container(cfg, resolve=True)
        # where the run lived when it was interrupted: its paths inside it now point here
        old_out = str((previous.get("config", {}).get("paths") or {}).get("output_dir") or "")
        self.moved_from = old_out if old_out != str(self.out) else ""
        previous = _relocate(previous, old_out, str(self.out))
        key = _diff(previous.get("config", {}), now)
        if key is not None:
            old = OmegaConf.select(OmegaConf.create(previous.get("config", {})), key)
            new = OmegaConf.select(cfg, key)
            raise ValueError(
                f"resume=true: the run in {str(self.out)!r} was made with {key}={old!r}, this "
                f"config has {key}={new!r}; resume with the interrupted run's config"
            )
        self.previous = previous
        self.rows = {int(r["round"]): r for r in previous.get("rounds", [])}
        self.pending = previous.get("pending")

    @property
    def complete(self) -> bool:
        """The interrupted run had in fact finished."""
        return self.previous is not None and self.previous.get("status") == "complete"

    def done(self, k: int) -> bool:
        """Round ``k`` finished in the interrupted run (its row is kept)."""
        return k in self.rows

    def last_ckpt(self, k: int) -> str | None:
        """``checkpoints/round_<k>/last.ckpt`` of an unfinished round ``k``, to continue ``fit``.

        One that cannot be loaded safely, or lacks the training state, is moved aside with its
        round's checkpoint folder (so no old file mixes with the new ones); the round's fit then
        starts again from the state saved when it first started (:meth:`replay`).
        """
        if not self.active or self.done(k):
            return None
        folder = self.out / "checkpoints" / f"round_{k}"
        path = folder / "last.ckpt"
        if path.is_file():
            try:
                ckpt = load_checkpoint(path, key=f"round {k} last.ckpt")
                if isinstance(ckpt, dict) and all(key in ckpt for key in TRAINING_KEYS):
                    if self.moved_from and rank_zero_only.rank == 0:
                        # the run folder moved: Lightning's ModelCheckpoint state names files
                        # by path and forgets the best model when its folder changed
                        save_atomic(_relocate(ckpt, self.moved_from, str(self.out)), path)
                    return str(path)
                reason = "it lacks the training state"
            except ValueError as err:
                reason = str(err)
            log.warning("resume: %s; round %d's fit starts again from its beginning", reason, k)
        if folder.is_dir() and any(folder.iterdir()) and rank_zero_only.rank == 0:
            aside = folder.with_name(f"{folder.name}.unreadable")
            n = 1
            while aside.exists():
                aside, n = folder.with_name(f"{folder.name}.unreadable-{n}"), n + 1
            folder.rename(aside)
            log.warning("resume: moved %s to %s", folder, aside)
        return None

    def replay(self, k: int, phase: str) -> None:
        """Random states at ``phase`` (``start`` or ``fit``) of round ``k``: restored from
        ``rng/round_<k>_<phase>.pt`` when this resumed run reaches a point the interrupted run
        reached, saved there otherwise."""
        path = self.out / "rng" / f"round_{k}_{phase}_rank{rank_zero_only.rank}.pt"
        if self.active and path.is_file():
            rng.restore(load_checkpoint(path, key=f"random state of round {k}"))
        else:
            save_atomic(rng.collect(), path)

    def restore(self, module: Any, k: int) -> None:
        """Before unfinished round ``k``: load round ``k - 1``'s weights (and plan) once."""
        if not self.active or self.done(k) or not self.done(k - 1) or self._restored:
            return
        ckpt_path = self.rows[k - 1].get("checkpoint")
        if not ckpt_path or not Path(ckpt_path).is_file():
            raise FileNotFoundError(
                f"resume=true: round {k - 1} finished but its checkpoint {ckpt_path!r} is gone; "
                f"cannot continue round {k} (callbacks.model_checkpoint must be on)"
            )
        ckpt = load_checkpoint(ckpt_path)
        stored = ckpt.get("pruning_plan") if isinstance(ckpt, dict) else None
        if stored is not None and module.plan is None:
            module.apply_plan(PruningPlan.from_dict(stored))
        check_checkpoint_fits(
            ckpt_path, module, key=f"round {k - 1} checkpoint", checkpoint=ckpt, foreign=False
        )
        module.load_state_dict(ckpt["state_dict"])
        self._restored = True

    def pending_plan(self, k: int) -> tuple[PruningPlan, float] | None:
        """Plan and post-cut accuracy of round ``k`` if it was chosen before the interruption."""
        if not self.active or self.pending is None or int(self.pending.get("round", -1)) != k:
            return None
        return PruningPlan.from_dict(self.pending["plan"]), float(self.pending["test/acc_pruned"])
