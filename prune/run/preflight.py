"""Before any work: the checks of a train or evaluate run that need no data read."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from prune.errors import ConfigError
from prune.run.checkpoint import check_finite, checked_checkpoint
from prune.run.run_folder import claim
from prune.run.validation import validate_config


def check_train(cfg: DictConfig) -> None:
    """One-line errors naming key, value and allowed set; the run folder is free (or resumed)."""
    validate_config(cfg)
    claim(cfg.paths.output_dir, "train", bool(cfg.get("resume")), bool(cfg.get("overwrite")))


def check_evaluate(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """The config to rebuild the checkpoint's model with, and the checkpoint, both checked.

    The checkpoint's stored ``data`` and ``model`` replace the command line's (unless
    ``use_checkpoint_config=false``) only after :func:`prune.run.stored_config.check_stored_config`
    and the same value checks as the command line's; where the data lives (``data.root``,
    ``data.download``) stays this machine's.
    """
    validate_config(cfg)  # a missing ckpt_path or a bad value stops here, before any work
    path = str(cfg.ckpt_path)
    ckpt = checked_checkpoint(path)
    stored = ckpt.get("run_config")
    run_cfg = cfg
    if cfg.get("use_checkpoint_config", True) and stored:
        missing = [k for k in ("data", "model") if not isinstance(stored.get(k), dict)]
        if missing:
            raise ConfigError(
                f"ckpt_path={path!r}: its run_config lacks {missing}; evaluate it with "
                "use_checkpoint_config=false model=... data=..."
            )
        run_cfg = cfg.copy()
        with open_dict(run_cfg):  # replace, not merge: the stored model may have other keys
            run_cfg.data, run_cfg.model = OmegaConf.create(stored["data"]), stored["model"]
            for key in ("root", "download"):
                if key in run_cfg.data and key in cfg.data:
                    run_cfg.data[key] = cfg.data[key]
        validate_config(run_cfg)
    check_finite(ckpt["state_dict"], "ckpt_path", path)
    claim(cfg.paths.output_dir, "evaluate", overwrite=bool(cfg.get("overwrite")))
    return run_cfg, dict(ckpt)


def preflight(cfg: DictConfig) -> None:
    """The checks of ``cfg.task_name`` (``train`` or ``evaluate``) that need no data read."""
    {"train": check_train, "evaluate": check_evaluate}[cfg.task_name](cfg)
