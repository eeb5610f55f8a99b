"""Components declare their own config checks (``config_checks``, ``check_config``); the run
applies them by the config's ``_target_``, naming the full key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from prune.checks import (
    Check,
    ExistingPath,
    check_arguments,
    declared_checks,
    fraction,
    int_at_least,
    int_list,
)
from prune.errors import ConfigError
from prune.run.validation import validate_config
from tests.conftest import FAST, compose_cfg

CALLS: list[str] = []


class Base:
    config_checks: ClassVar[dict[str, Check]] = {"size": int_at_least(1), "share": fraction()}

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        CALLS.append(f"Base<{cls.__name__}>")


class Child(Base):
    config_checks: ClassVar[dict[str, Check]] = {"size": int_at_least(4), "widths": int_list(1)}

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        CALLS.append("Child")
        if values.get("size", 2) > 2 * len(values.get("widths", [1])):
            raise ConfigError(f"{prefix}size must be at most twice the widths")


class Grandchild(Child):
    """Declares nothing: inherits every check."""


def test_checks_merge_along_the_bases_and_a_subclass_entry_wins():
    checks = declared_checks(Grandchild)
    assert set(checks) == {"size", "share", "widths"}
    with pytest.raises(ConfigError, match=r"^net\.size must be an integer >= 4, got 3$"):
        check_arguments(Grandchild, {"size": 3}, "net.")
    with pytest.raises(ConfigError, match=r"^net\.share must be in \[0, 1\], got 1\.5$"):
        check_arguments(Grandchild, {"share": 1.5}, "net.")


def test_each_class_cross_check_runs_once_bases_first_without_super():
    CALLS.clear()
    check_arguments(Grandchild, {"size": 4, "widths": [8, 8]}, "net.")
    assert CALLS == ["Base<Grandchild>", "Child"]
    with pytest.raises(ConfigError, match="net.size must be at most twice the widths"):
        check_arguments(Grandchild, {"size": 6, "widths": [8]}, "net.")


def test_absent_arguments_are_not_checked_and_null_only_where_allowed():
    check_arguments(Child, {})  # the constructor's defaults apply
    with pytest.raises(ConfigError, match="size must be an integer >= 4, got None"):
        check_arguments(Child, {"size": None})
    int_at_least(1, nullable=True)("k", None)


@pytest.mark.parametrize(
    ("check", "bad", "text"),
    [
        (fraction(closed="left", note="fraction removed"), 1.0, "in [0, 1) (fraction removed)"),
        (fraction(closed="right"), 0, "in (0, 1]"),
        (fraction(closed="neither"), float("nan"), "in (0, 1)"),
        (int_list(1, length=2), [3], "a non-empty list of 2 integers >= 1"),
        (int_at_least(0), True, "an integer >= 0"),  # a bool is not an integer
    ],
)
def test_checks_say_what_is_allowed(check, bad, text):
    with pytest.raises(ConfigError) as err:
        check("key", bad)
    assert str(err.value) == f"key must be {text}, got {bad!r}"


def test_existing_path_names_the_kind(tmp_path):
    need_file = ExistingPath("file", "an .npz file")
    need_file("data.path", __file__)  # an existing file passes
    with pytest.raises(ConfigError, match="is a directory; need an .npz file"):
        need_file("data.path", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"data.path='.*nope' does not exist"):
        need_file("data.path", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="data.path must name an .npz file"):
        need_file("data.path", "")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.num_classes=null"], "data.num_classes must be an integer >= 2, got None"),
        (["data.block=[0,0,4]"], "data.block must be a non-empty list of 4 integers >= 0"),
        (["model=lenet5", "model.net.channels=[20]"], "model.net.channels must be a non-empty"),
        (["model=resnet_small", "model.net.blocks=0"], "model.net.blocks must be an integer >= 1"),
        (["model=vgg_small", "model.net.cfg=[M,0]"], "model.net.cfg must be a non-empty list"),
        (["lrp=abslrp", "lrp.contrastive=maybe"], "lrp.contrastive must be true or false"),
        (["pruner=magnitude", "pruner.criterion.p=3"], "pruner.criterion.p must be one of [1, 2]"),
        (["pruner=taylor", "pruner.criterion.normalize=l3"], "pruner.criterion.normalize must"),
        (["+relevance.input_relevance=1"], "relevance.input_relevance must be true or false"),
        (["measure.latency_batches=[]"], "measure.latency_batches must be a non-empty list"),
        (["data.mean=[0.1,0.2]", "data.std=[1,2,3]"], "data.mean has 2 entries but data.std"),
    ],
)
def test_component_checks_apply_by_target_and_name_the_full_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate_config(compose_cfg("train", [*FAST, *overrides]))
    assert str(err.value).startswith(message), str(err.value)


def test_explanations_settings_are_checked_by_their_class():
    base = [*FAST, "+experiment=mnist_removal", "data=synthetic"]
    validate_config(compose_cfg("train", base))
    for bad, message in [
        ("explanations.methods=[nope]", "explanations.methods must be a non-empty list of"),
        ("explanations.fraction=1.0", "explanations.fraction must be in (0, 1), got 1.0"),
        ("explanations.roar={ks:[0],epochs:1,train_images:10}", "explanations.roar must be"),
    ]:
        with pytest.raises(ConfigError) as err:
            validate_config(compose_cfg("train", [*base, bad]))
        assert str(err.value).startswith(message), str(err.value)


def test_a_component_without_target_is_refused():
    cfg = compose_cfg("train", [*FAST, "~measure._target_"])
    with pytest.raises(ConfigError, match=r"measure._target_ is not set"):
        validate_config(cfg)
