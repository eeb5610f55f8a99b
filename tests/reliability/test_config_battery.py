"""A generated battery of malformed config values: each stops with exit status 2 and one line
naming the key, before anything is written."""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf, open_dict

from prune.run.entry import run
from prune.run.rounds import train
from tests.conftest import compose_cfg, with_output
from tests.reliability.helpers import TINY_PRUNE
from tests.reliability.test_bad_inputs import snapshot

#: integer keys and their lowest allowed value
INTS = {
    "data.batch_size": 1,
    "data.eval_batch_size": 1,
    "data.num_workers": 0,
    "trainer.max_epochs": 0,
    "trainer.log_every_n_steps": 1,
    "pruner.rounds": 1,
    "pruner.min_width": 1,
    "measure.latency_repeats": 1,
    "measure.latency_threads": 1,
    "retrain.max_epochs": 0,
}
#: keys that take one of a few names
CHOICES = {
    "pruner.schedule": ("constant", "geometric"),
    "pruner.target": ("units", "inputs"),
    "relevance.target": ("label", "prediction"),
    "relevance.output": ("logit", "one", "softmax", "margin", "log_probability"),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "data.relevance_set": ("train", "val"),
}
#: keys that take true or false
BOOLS = ("resume", "overwrite", "pruner.global_ranking")

#: values of no number type: wrong for every numeric key
_not_numbers = st.one_of(
    st.text(min_size=1, max_size=12).filter(lambda s: "${" not in s and s.strip() != ""),
    st.lists(st.integers(), max_size=3),
)
#: ... and fractional floats: wrong for integer and boolean keys (not for a fraction)
_junk = st.one_of(
    _not_numbers,
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not float(f).is_integer()),
)


def _bad_int(low: int) -> st.SearchStrategy:
    return st.one_of(st.integers(max_value=low - 1), st.booleans(), _junk)


def _bad_choice(allowed: tuple[str, ...]) -> st.SearchStrategy:
    return st.one_of(st.text(max_size=12).filter(lambda s: s not in allowed), st.integers())


_bad_values = st.one_of(
    *(st.tuples(st.just(k), _bad_int(low)) for k, low in INTS.items()),
    *(st.tuples(st.just(k), _bad_choice(a)) for k, a in CHOICES.items()),
    *(st.tuples(st.just(k), st.one_of(st.integers(), _junk)) for k in BOOLS),
    st.tuples(
        st.just("pruner.ratio"),
        st.one_of(
            st.floats(min_value=1.0), st.floats(max_value=-1e-9), st.just(math.nan), _not_numbers
        ),
    ),
    st.tuples(
        st.just("data.relevance_fraction"),
        st.one_of(st.floats(min_value=1.0 + 1e-9), st.floats(max_value=0.0), st.just(math.nan)),
    ),
    st.tuples(
        st.just("model.optimizer.lr"), st.one_of(st.floats(max_value=0.0), st.just(math.inf))
    ),
)


@functools.cache
def _base() -> DictConfig:
    return compose_cfg("train", TINY_PRUNE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=_bad_values)
def test_battery_of_malformed_config_values(tmp_path_factory, bad):
    key, value = bad
    out = tmp_path_factory.mktemp("run")
    (out / "notes.txt").write_text("earlier output")
    before = snapshot(out)
    cfg = with_output(_base(), out)
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(SystemExit) as exc:
        run(train, cfg)
    assert exc.value.code == 2, (key, value)
    assert snapshot(out) == before, (key, value)


def test_battery_lines_name_the_key(capsys, tmp_path):
    cases = [("pruner.rounds", 0), ("relevance.output", "logits"), ("overwrite", "yes")]
    for key, value in cases:
        cfg = with_output(_base(), tmp_path / key)
        with open_dict(cfg):
            OmegaConf.update(cfg, key, value)
        capsys.readouterr()
        with pytest.raises(SystemExit):
            run(train, cfg)
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: {key}") and repr(value) in line, line
