from __future__ import annotations

import json

import pytest

from prune.pruning.plan import PruningPlan


@pytest.fixture
def plan() -> PruningPlan:
    return PruningPlan(
        keep={"features.0": [3, 0, 5], "classifier.0": [1, 2]},
        input_keep=[7, 2, 9, 11],
        input_shape=(1, 4, 4),
        dense_widths={"features.0": 6, "classifier.0": 4},
    )


def test_plan_sorts_indices(plan: PruningPlan) -> None:
    assert plan.keep["features.0"] == [0, 3, 5]
    assert plan.input_keep == [2, 7, 9, 11]


def test_plan_json_round_trip(plan: PruningPlan) -> None:
    restored = PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored == plan
    assert restored.input_shape == (1, 4, 4)


def test_plan_compose_maps_later_positions_to_dense_indices(plan: PruningPlan) -> None:
    later = PruningPlan(
        keep={"features.0": [0, 2], "features.3": [1]}, input_keep=[1, 3], input_shape=(1, 4, 4)
    )
    total = plan.compose(later)
    assert total.keep == {"features.0": [0, 5], "classifier.0": [1, 2], "features.3": [1]}
    assert total.input_keep == [7, 11]
    assert total.dense_widths["features.0"] == 6


def test_plan_relative_to_inverts_compose(plan: PruningPlan) -> None:
    later = PruningPlan(
        keep={"features.0": [1], "classifier.0": [0, 1]}, input_keep=[0, 2], input_shape=(1, 4, 4)
    )
    total = plan.compose(later)
    assert plan.compose(total.relative_to(plan)) == total
    assert total.relative_to(plan).keep == later.keep


def test_plan_compose_rejects_positions_beyond_kept(plan: PruningPlan) -> None:
    with pytest.raises(ValueError, match=r"features\.0"):
        plan.compose(PruningPlan(keep={"features.0": [3]}))


def test_plan_relative_to_rejects_regrowth(plan: PruningPlan) -> None:
    with pytest.raises(ValueError, match="regrow"):
        PruningPlan(keep={"features.0": [1], "classifier.0": [1]}).relative_to(plan)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep": {"a": [1, 1]}}, "distinct"),
        ({"keep": {"a": []}}, "empty"),
        ({"input_keep": [1]}, "input_shape"),
        ({"input_keep": [16], "input_shape": (1, 4, 4)}, "out of range"),
        ({"keep": {"a": [4]}, "dense_widths": {"a": 4}}, "dense width"),
    ],
)
def test_plan_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PruningPlan(**kwargs)


def test_plan_summary_counts(plan: PruningPlan) -> None:
    s = plan.summary()
    assert s["units_kept"] == 5
    assert s["units_dense"] == 10
    assert s["inputs_kept"] == 4
    assert s["inputs_dense"] == 16
