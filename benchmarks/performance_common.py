"""What the performance page's sections share: the models, presets and targets of the LRP
speed benchmark, and finding a run's rows (a summary's runs: :func:`page_text.runs_named`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from page_text import Run, code, commands

MODELS = {"mlp": "MLP 784-300-100-10", "lenet5": "LeNet-5", "vgg11": "VGG11"}
SHORT_MODELS = {"mlp": "MLP", "lenet5": "LeNet-5", "vgg11": "VGG11"}
PRESETS = ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"]
#: the speed issue's targets: LRP time over forward+backward per preset, memory, lead on Zennit
TIME_TARGETS = {
    "epsilon": 1.15,
    "epsilon_plus_flat": 1.6,
    "epsilon_gamma_box": 1.9,
    "epsilon_alpha2_beta1": 1.9,
}
MEMORY_TARGET, ZENNIT_TARGET = 1.5, 2.0


def model_label(name: str, model: Mapping[str, Any]) -> str:
    label = MODELS.get(name, name)
    shape = model.get("shape")
    if name == "vgg11" and shape:
        label += f" ({'x'.join(str(s) for s in shape)})"
    return label


def row_of(run: Run, model: str, row: str) -> Mapping[str, Any]:
    return ((run["figures"].get("models") or {}).get(model) or {}).get("rows", {}).get(row) or {}


def command_list(runs: Sequence[Run]) -> str:
    return "; ".join(code(c) for run in runs for c in commands(run))
