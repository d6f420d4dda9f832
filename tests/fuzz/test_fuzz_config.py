"""Fuzzed config parsing: unknown keys and sections, wrong types and out-of-range values
(NaN and inf included) are a ConfigError naming the key; nothing else escapes."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curatorch.experiments.jest_compare import CompareSection, parse_compare_config
from curatorch.experiments.scaling import ScalingSection, scaling_config_from_dict
from curatorch.train import (
    ConfigError,
    OptimConfig,
    StrategyConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)
from curatorch.train.config import _SECTIONS, parse_override_value
from curatorch.train.multimodal import PARETO_SCHEMA, load_pareto_config, pareto_config_from_dict

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

FIELDS = [
    (section, f.name, typing.get_type_hints(cls)[f.name])
    for section, cls in _SECTIONS.items()
    for f in dataclasses.fields(cls)
]
PARETO_FIELDS = [  # the schema's sections are default instances ([optim], [train])
    (section, f.name, typing.get_type_hints(type(default))[f.name])
    for section, default in PARETO_SCHEMA.sections.items()
    for f in dataclasses.fields(default)
]

values = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 0.0, 1e308, -0.0]),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.one_of(st.integers(-3, 20), st.text(max_size=3), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.none(),
)


def _builds_or_names(build, raw: dict, key: str) -> object | None:
    try:
        return build(raw)
    except ConfigError as exc:
        # "section.key", or the bare key where a rule ties several fields together
        # ("data noise fractions (misaligned=1.0, ...) must sum to <= 1")
        bare = key.rsplit(".", 1)[-1]
        assert key in str(exc) or f"{bare}=" in str(exc), f"{key!r} not named in: {exc}"
        return None


def _check_field(build, section: str, key: str, value: object) -> None:
    cfg = _builds_or_names(build, {section: {key: value}}, f"{section}.{key}")
    if cfg is None:
        return
    got = getattr(getattr(cfg, section), key)
    # accepted: the value kept its meaning, and no float field is NaN or infinite
    if isinstance(got, float):
        assert math.isfinite(got), f"{section}.{key} accepted {value!r}"
        assert got == float(value)  # type: ignore[arg-type]  # ints widen to floats
    elif isinstance(got, tuple):
        assert list(got) == list(value)  # type: ignore[call-overload]
    else:
        assert got == value and type(got) is type(value)


@FAST
@given(field=st.sampled_from(FIELDS), value=values)
def test_any_value_builds_or_is_named(field, value) -> None:
    section, key, _tp = field
    _check_field(config_from_dict, section, key, value)


@FAST
@given(field=st.sampled_from(PARETO_FIELDS), value=values)
def test_any_pareto_value_builds_or_is_named(field, value) -> None:
    section, key, _tp = field
    _check_field(pareto_config_from_dict, section, key, value)


@pytest.mark.parametrize(("section", "key", "tp"), [f for f in FIELDS if f[2] is float])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_named(section: str, key: str, tp: type, bad: float) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        config_from_dict({section: {key: bad}})


@pytest.mark.parametrize(("section", "key", "tp"), [f for f in PARETO_FIELDS if f[2] is float])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_pareto_floats_are_named(section: str, key: str, tp: type, bad: float) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        pareto_config_from_dict({section: {key: bad}})


identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)


@FAST
@given(section=st.sampled_from(sorted(_SECTIONS)), key=identifiers, value=values)
def test_unknown_keys_are_named(section: str, key: str, value: object) -> None:
    known = {f.name for f in dataclasses.fields(_SECTIONS[section])}
    if key in known:
        return
    with pytest.raises(ConfigError, match=rf"{section}\.{key}\b"):
        config_from_dict({section: {key: value}})


@FAST
@given(section=identifiers, table=st.one_of(values, st.just({})))
def test_unknown_sections_and_non_tables_are_named(section: str, table: object) -> None:
    raw = {section: table}
    if section in _SECTIONS:
        if isinstance(table, dict) and not table:
            config_from_dict(raw)
            return
        with pytest.raises(ConfigError, match=section):
            config_from_dict(raw)
        return
    with pytest.raises(ConfigError, match=rf"\[{section}\]"):
        config_from_dict(raw)


override_text = st.text(
    alphabet=st.sampled_from(list("abcdefghijklmnoprstuvwxyz_.=[]{}\"'0123456789-+e ,#\n")),
    max_size=30,
)


@FAST
@given(
    item=st.one_of(
        override_text,
        st.builds(lambda f, v: f"{f[0]}.{f[1]}={v}", st.sampled_from(FIELDS), override_text),
    )
)
def test_overrides_build_or_are_named(item: str) -> None:
    try:
        raw = apply_overrides({}, [item])
    except ConfigError as exc:
        assert repr(item) in str(exc) or item.split("=", 1)[0].strip() in str(exc), str(exc)
        return
    section, key = item.split("=", 1)[0].strip().split(".")
    _builds_or_names(config_from_dict, raw, f"{section}.{key}")


@FAST
@given(text=st.text(max_size=20))
def test_parse_override_value_never_raises(text: str) -> None:
    value = parse_override_value(text)
    assert value is not None


@FAST
@given(data=st.binary(max_size=60))
def test_config_files_load_or_are_named(tmp_path_factory, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / "c.toml"
    path.write_bytes(data)
    try:
        load_config(path)
        load_pareto_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


# ------------------------------------------------------- the experiments' schemas ([scaling],
# [compare] and its strategies' sections) go through the same machinery

SCALING_FIELDS = [
    ("scaling", f.name, typing.get_type_hints(ScalingSection)[f.name])
    for f in dataclasses.fields(ScalingSection)
]
# [compare] keys other than the strategies (their entries' sections are fuzzed below)
COMPARE_FIELDS = [
    ("compare", f.name, typing.get_type_hints(CompareSection)[f.name])
    for f in dataclasses.fields(CompareSection)
    if f.name != "strategies"
]
ENTRY_FIELDS = [
    (section, f.name)
    for section, cls in (("strategy", StrategyConfig), ("optim", OptimConfig))
    for f in dataclasses.fields(cls)
]
IID_ENTRY = {"name": "iid", "strategy": {"name": "iid"}}


def _compare_with(raw: dict) -> object:
    """A small comparison (IID and JEST) with ``raw``'s ``[compare]`` keys."""
    jest = {"name": "jest", "strategy": {"name": "jest", "chunks": 4}}
    table = {"strategies": [IID_ENTRY, jest], **raw["compare"]}
    return parse_compare_config({"train": {"batch_size": 16}, "compare": table})


@FAST
@given(field=st.sampled_from(SCALING_FIELDS), value=values)
def test_any_scaling_value_builds_or_is_named(field, value) -> None:
    section, key, _tp = field
    _check_field(scaling_config_from_dict, section, key, value)


@FAST
@given(field=st.sampled_from(COMPARE_FIELDS), value=values)
def test_any_compare_value_builds_or_is_named(field, value) -> None:
    section, key, _tp = field
    _check_field(_compare_with, section, key, value)


@FAST
@given(field=st.sampled_from(ENTRY_FIELDS), value=values)
def test_any_compare_strategy_value_builds_or_is_named(field, value) -> None:
    """``compare.strategies[1].<section>.<key>``: the run's section has it, or it is named."""
    section, key = field
    entry: dict = {"name": "jest", "strategy": {"name": "jest", "chunks": 4}}
    entry.setdefault(section, {})[key] = value
    raw = {"train": {"batch_size": 16}, "compare": {"strategies": [IID_ENTRY, entry]}}
    cc = _builds_or_names(parse_compare_config, raw, f"{section}.{key}")
    if cc is None:
        return
    got = getattr(getattr(cc.runs["jest"][0], section), key)  # type: ignore[attr-defined]
    if isinstance(got, float):
        assert math.isfinite(got) and got == float(value)  # type: ignore[arg-type]
    else:
        assert got == value and type(got) is type(value)


@FAST
@given(section=st.sampled_from(["scaling", "compare"]), key=identifiers, value=values)
def test_unknown_scaling_and_compare_keys_are_named(section: str, key: str, value) -> None:
    cls = ScalingSection if section == "scaling" else CompareSection
    if key in {f.name for f in dataclasses.fields(cls)}:
        return
    with pytest.raises(ConfigError, match=rf"{section}\.{key}\b"):
        if section == "scaling":
            scaling_config_from_dict({"scaling": {key: value}})
        else:
            _compare_with({"compare": {key: value}})
    with pytest.raises(ConfigError, match=rf"unknown config key {section}\.{key}\b"):
        apply_overrides({}, [f"{section}.{key}=1"], {section: cls})


@pytest.mark.parametrize(("section", "key", "tp"), [f for f in SCALING_FIELDS if f[2] is float])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scaling_floats_are_named(section: str, key: str, tp: type, bad: float) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        scaling_config_from_dict({section: {key: bad}})
