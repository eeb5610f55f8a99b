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

The config must be the one of the interrupted run (only ``resume``, ``ckpt_path`` and
``paths`` may differ); otherwise resuming stops with an error naming the first differing key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prune.checkpoint import check_checkpoint_fits, load_checkpoint
from prune.pruning.plan import PruningPlan

#: top-level keys that may differ between the interrupted run and its resumption
IGNORED = ("resume", "ckpt_path", "paths")


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
        """``checkpoints/round_<k>/last.ckpt`` of an unfinished round ``k``, to continue ``fit``."""
        if not self.active or self.done(k):
            return None
        path = self.out / "checkpoints" / f"round_{k}" / "last.ckpt"
        return str(path) if path.is_file() else None

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
        check_checkpoint_fits(ckpt_path, module, key=f"round {k - 1} checkpoint", checkpoint=ckpt)
        module.load_state_dict(ckpt["state_dict"])
        self._restored = True

    def pending_plan(self, k: int) -> tuple[PruningPlan, float] | None:
        """Plan and post-cut accuracy of round ``k`` if it was chosen before the interruption."""
        if not self.active or self.pending is None or int(self.pending.get("round", -1)) != k:
            return None
        return PruningPlan.from_dict(self.pending["plan"]), float(self.pending["test/acc_pruned"])
