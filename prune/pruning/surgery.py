"""Surgery: make a model physically smaller according to a PruningPlan."""

from __future__ import annotations

from torch import Tensor, nn

from prune.pruning.groups import build_graph, example_input_for, find_groups, prune_group
from prune.pruning.inputs import input_route, prune_inputs
from prune.pruning.plan import PruningPlan
from prune.pruning.transformer import KINDS, cut_units, kind_of

APPLIED = "pruning_plan"


def applied_plan(model: nn.Module) -> PruningPlan | None:
    """The plan the model was last cut to by :func:`apply_plan` (None for a dense model)."""
    plan = getattr(model, APPLIED, None)
    return plan if isinstance(plan, PruningPlan) else None


def check_input_pruning(model: nn.Module, example_input: Tensor | None = None) -> str:
    """Return "select" or "crop", or raise a ValueError naming the model if neither applies."""
    return input_route(model, example_input_for(model, example_input)).mode


def apply_plan(
    model: nn.Module, plan: PruningPlan, example_input: Tensor | None = None
) -> nn.Module:
    """Cut ``model`` in place to ``plan`` (indices relative to the dense model) and return it.

    Works on a freshly built dense model (replay before loading a pruned checkpoint: the
    parameter shapes then match that checkpoint's state dict exactly) and on a model already
    cut by an earlier, coarser plan (iterative pruning): the step from the plan recorded on
    the model to ``plan`` is applied. Entries that name an attention module or a transformer
    MLP keep its heads or hidden neurons (:mod:`prune.pruning.transformer`). Other output units
    are removed group by group through Torch-Pruning's dependency graph, so coupled layers
    (BatchNorm, the next layer's inputs, flatten index maps, residual adds) follow; input
    pruning runs afterwards (see :func:`prune.pruning.inputs.prune_inputs`). Module names are
    unchanged; an input front is added as submodule ``input_front``. Parameters are new
    tensors: build a new optimizer afterwards.

    Args:
        model: network to cut (its mode is preserved).
        plan: kept indices relative to the dense architecture.
        example_input: one dense input sample ``(1, *in_shape)``; built from
            ``model.in_shape`` when None.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: if the plan names producers the model does not have, splits a coupled
            group, or asks to regrow units removed earlier.
    """
    example_input = example_input_for(model, example_input)
    before = applied_plan(model)
    step = plan if before is None else plan.relative_to(before)
    held = {name: kind for name in step.keep if (kind := _kind_at(model, name)) is not None}
    for name, kind in held.items():  # checked before anything is cut
        width = KINDS[kind].width(model.get_submodule(name))
        if step.keep[name][-1] >= width:
            raise ValueError(
                f"plan keeps {kind[:-1]} {step.keep[name][-1]} of {name}, which has {width} {kind}"
            )
    for name in held:  # heads and MLP neurons: their own cut, no dependency graph
        cut_units(model, name, step.keep[name])
    units = {name: kept for name, kept in step.keep.items() if name not in held}
    if units:
        graph = build_graph(model, example_input)
        groups = find_groups(model, example_input, graph)
        known = {p for g in groups for p in g.producers}
        unknown = sorted(set(units) - known)
        if unknown:
            raise ValueError(
                f"plan keeps units of {unknown}, which are not prunable producers of "
                f"{type(model).__name__}; prunable: {sorted(known)}"
            )
        for group in groups:
            lists = {p: units[p] for p in group.producers if p in units}
            if not lists:
                continue
            keep = next(iter(lists.values()))
            if any(v != keep for v in lists.values()):
                raise ValueError(
                    f"plan keeps different units for coupled producers {sorted(lists)}"
                )
            if keep[-1] >= group.width:
                raise ValueError(
                    f"plan keeps unit {keep[-1]} of {group.name}, which has {group.width} units"
                )
            prune_group(model, graph, group, keep)
    if step.input_keep is not None and (before is None or before.input_keep != plan.input_keep):
        prune_inputs(model, plan.input_keep, plan.input_shape, example_input)
    setattr(model, APPLIED, plan)
    return model


def _kind_at(model: nn.Module, name: str) -> str | None:
    """The transformer unit kind held by the module ``name`` (None: no such module, or none)."""
    try:
        return kind_of(model.get_submodule(name))
    except AttributeError:
        return None
