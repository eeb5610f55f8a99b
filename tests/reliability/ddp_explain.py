"""Explain a saved model with DDP on CPU (gloo): ``python ddp_explain.py STATE OUT DEVICES``.

Run by test_ddp.py in a subprocess: Lightning's DDP launcher re-runs this script for rank 1.
Rank 0 writes the reduced RelevanceStats and the resulting plan to OUT.
"""

from __future__ import annotations

import sys

import torch


def main(state_path: str, out_path: str, devices: int) -> None:
    from hydra.utils import instantiate

    from prune.pipeline import build_datamodule, build_module, explain
    from tests.conftest import compose_cfg
    from tests.reliability.helpers import DDP_OVERRIDES

    overrides = [*DDP_OVERRIDES]
    if devices > 1:
        overrides += ["trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={devices}"]
    cfg = compose_cfg("train", overrides)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    module.load_state_dict(torch.load(state_path, weights_only=True))
    pruner = instantiate(cfg.pruner)
    record = pruner.record_names(module.net)
    stats = explain(cfg, module, dm, instantiate(cfg.lrp), record)
    if int(__import__("os").environ.get("LOCAL_RANK", 0)) == 0:
        plan = pruner.plan(module.net, stats=stats)
        fields = {k: v for k, v in vars(stats).items() if k != "num_classes"}
        torch.save({"stats": fields, "plan": plan.to_dict()}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
