"""The run forms of the deployments (issue 14): Prefect's UI draws a deployment's
"Custom run" form from the parameter schema ``prefect deploy`` stores, built here the
same way (the flow loaded from the prefect.yaml entrypoint, then ``parameter_schema``).
Every parameter shows a one-line description and either a real default or a titled
None choice saying what leaving it empty does; enums come from the Literal types and
the strategy registry; the server's schema check still refuses wrong types. No server:
fast (the real UI is checked by the slow tests/flows/test_deployment.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError, validate

from hedgeflow.config import DEFAULTS, Allocation, Rebalance, SourceName, settings_from_mapping
from hedgeflow.flows.live import LiveMode, LiveSource
from hedgeflow.flows.params import AgentParam, IntervalName, RiskParam
from hedgeflow.flows.runners import TaskRunnerName
from hedgeflow.strategies import strategy_names
from hedgeflow.sweep import RankMetric
from tests.flows.run_form import enum_of, form_problems, null_choice

REPO = Path(__file__).resolve().parents[2]


def deployments() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in config["deployments"]}


_SCHEMAS: dict[str, dict[str, Any]] = {}


def schema_of(deployment: str) -> dict[str, Any]:
    """The deployment's parameter schema as ``prefect deploy`` builds and stores it."""
    if deployment not in _SCHEMAS:
        entrypoint = deployments()[deployment]["entrypoint"]
        path, name = entrypoint.split(":")
        flow = load_flow_from_entrypoint(f"{REPO / path}:{name}")
        _SCHEMAS[deployment] = parameter_schema(flow).model_dump_for_openapi()
    return _SCHEMAS[deployment]


@pytest.mark.parametrize("deployment", ["nightly-backtest", "backfill", "parameter-sweep",
                                        "walk-forward", "live-signals"])  # fmt: skip
def test_no_parameter_shows_bare(deployment: str) -> None:
    schema = schema_of(deployment)
    assert schema["properties"], deployment
    assert form_problems(schema) == []
    # the prefilled deployment parameters are valid values of the form
    validate(deployments()[deployment]["parameters"], schema, raise_on_error=True)


def test_the_checker_finds_a_bare_optional() -> None:
    """form_problems fails the parameters the issue describes (and Prefect's default)."""

    def bare(days: int | None = None, source: str | None = None) -> None:
        """Nothing."""

    assert form_problems(parameter_schema(bare).model_dump_for_openapi()) == [
        "days: no description",
        "days: its None choice is not named",
        "days: the description does not say what empty does",
        "source: no description",
        "source: its None choice is not named",
        "source: the description does not say what empty does",
    ]


def test_enums_come_from_the_types_and_the_registry() -> None:
    nightly = schema_of("nightly-backtest")["properties"]
    expected = {
        "source": SourceName,
        "interval": IntervalName,
        "allocation": Allocation,
        "rebalance": Rebalance,
        "task_runner": TaskRunnerName,
    }
    for name, literal in expected.items():
        assert enum_of(nightly[name]) == list(get_args(literal)), name
        # the choices are in the description, visible before the type is switched
        assert ", ".join(get_args(literal)) in nightly[name]["description"], name
    live = schema_of("live-signals")["properties"]
    assert enum_of(live["mode"]) == list(get_args(LiveMode)) == ["ws", "poll"]
    assert enum_of(live["source"]) == list(get_args(LiveSource))
    assert (live["mode"]["default"], live["source"]["default"]) == ("ws", "simulator")
    sweep = schema_of("parameter-sweep")
    props = sweep["properties"]
    assert enum_of(props["metric"]) == list(get_args(RankMetric))
    assert props["metric"]["default"] == "sharpe"
    # the strategy: the registry's names to pick from, or a reference to a user's one
    names = list(strategy_names())
    assert set(names) >= {"sma_cross", "rsi_mean_revert", "donchian_breakout"}
    assert enum_of(props["strategy"]) == names
    assert props["strategy"]["default"] == "sma_cross"
    assert [c["title"] for c in props["strategy"]["anyOf"]] == ["registered", "reference"]
    assert ", ".join(names) in props["strategy"]["description"]
    agent = sweep_agent = schema_of("nightly-backtest")["definitions"]["AgentParam"]
    assert enum_of(sweep_agent["properties"]["strategy"]) == names
    assert agent["required"] == ["name", "symbol", "strategy"]


def test_agents_documents_its_shape() -> None:
    for deployment in ("nightly-backtest", "live-signals"):
        schema = schema_of(deployment)
        agents = schema["properties"]["agents"]
        assert "a list of {name, symbol, strategy, params, risk}" in agents["description"]
        assert list(AgentParam.model_fields) == ["name", "symbol", "strategy", "params", "risk"]
        (array,) = [c for c in agents["anyOf"] if c.get("type") == "array"]
        assert array["items"] == {"$ref": "#/definitions/AgentParam"}
        # every field of an agent and of its risk overrides says what it is
        for model in (AgentParam, RiskParam):
            fields = schema["definitions"][model.__name__]["properties"]
            assert set(fields) == set(model.model_fields)
            for name, prop in fields.items():
                assert prop.get("description"), f"{model.__name__}.{name}"
        # the None choice names the configured agents, as the settings build them
        choice = null_choice(agents)
        assert choice is not None and choice["title"] == "configured"
        builtin = settings_from_mapping(DEFAULTS).agents
        assert len(builtin) == 3
        for agent in builtin:
            assert f"{agent.name} ({agent.symbol}, {agent.strategy})" in choice["description"]


def test_empty_means_the_setting_and_says_its_builtin_value() -> None:
    """Left empty, a parameter still means "from the settings"; the form names the
    setting, its variable and the value it has when nothing sets it."""
    builtin = settings_from_mapping(DEFAULTS)
    nightly = schema_of("nightly-backtest")["properties"]
    cases = {
        "days": ("lookback_days", "HEDGEFLOW_LOOKBACK_DAYS", str(builtin.lookback_days)),
        "source": ("source", "HEDGEFLOW_SOURCE", builtin.source),
        "interval": ("interval", "HEDGEFLOW_INTERVAL", builtin.interval),
        "allocation": (
            "portfolio.allocation", "HEDGEFLOW_PORTFOLIO__ALLOCATION",
            builtin.portfolio.allocation,
        ),
        "rebalance": (
            "portfolio.rebalance", "HEDGEFLOW_PORTFOLIO__REBALANCE",
            builtin.portfolio.rebalance,
        ),
        "initial_equity": (
            "portfolio.initial_equity", "HEDGEFLOW_PORTFOLIO__INITIAL_EQUITY",
            f"{builtin.portfolio.initial_equity:g}",
        ),
        "task_runner": ("task_runner", "HEDGEFLOW_TASK_RUNNER", builtin.task_runner),
    }  # fmt: skip
    for name, (key, env, value) in cases.items():
        prop = nightly[name]
        assert prop["default"] is None, name  # the flow's default is unchanged
        assert prop["description"].endswith(f"; empty: the {key} setting (built-in: {value})."), (
            name,
            prop["description"],
        )
        choice = null_choice(prop)
        assert choice is not None and choice["title"] == "configured"
        assert env in choice["description"] and "hedgeflow.toml" in choice["description"]
    assert null_choice(nightly["end"])["title"] == "now"  # type: ignore[index]
    live = schema_of("live-signals")["properties"]
    assert null_choice(live["duration"])["title"] == "forever"  # type: ignore[index]
    assert "HEDGEFLOW_LIVE__MAX_SILENCE" in null_choice(live["max_silence"])["description"]  # type: ignore[index]


def test_the_schema_still_refuses_wrong_types() -> None:
    """What the server checks before it creates a run (enforce_parameter_schema)."""
    nightly = schema_of("nightly-backtest")
    good: list[dict[str, Any]] = [
        {},
        # what the form sends with every parameter left on its None choice
        {name: None for name in nightly["properties"]},
        {
            "days": 2,
            "end": "2026-11-20T00:00:00Z",
            "source": "simulator",
            "allocation": "inverse_vol",
            "agents": [
                {
                    "name": "msft",
                    "symbol": "MSFT.US",
                    "strategy": "sma_cross",
                    "params": {"fast": 5, "slow": 20},
                    "risk": {"stop_pct": 0.02},
                },
                {"name": "mine", "symbol": "ETH-USD.CC", "strategy": "my_pkg.strategies:Mine"},
            ],
        },
    ]
    for params in good:
        validate(params, nightly, raise_on_error=True)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"days": "ten"}, "days"),
        ({"days": 2.5}, "days"),
        ({"source": "yahoo"}, "source"),
        ({"allocation": "magic"}, "allocation"),
        ({"interval": 5}, "interval"),
        ({"agents": {"name": "x"}}, "agents"),
        ({"agents": [{"name": "x", "symbol": "AAPL.US"}]}, "agents"),
        ({"agents": [{"name": "x", "symbol": "AAPL.US", "strategy": 5}]}, "agents"),
        ({"agents": [{"name": "x", "symbol": "AAPL.US", "strategy": ""}]}, "agents"),
        ({"agents": [{"name": "a b", "symbol": "AAPL.US", "strategy": "sma_cross"}]}, "agents"),
        ({"agents": [{"name": "x", "symbol": "A", "strategy": "sma_cross", "extra": 1}]}, "agents"),
        ({"agents": [{"name": "x", "symbol": "A", "strategy": "sma_cross",
                      "risk": {"stop_pct": 2}}]}, "agents"),
        ({"task_runner": "ray"}, "task_runner"),
    ]  # fmt: skip
    for params, field in bad:
        with pytest.raises(ValidationError, match=field):
            validate(params, nightly, raise_on_error=True)
    sweep = schema_of("parameter-sweep")
    validate({"strategy": "path/to/file.py:Mine", "metric": "calmar"}, sweep, raise_on_error=True)
    for params, field in [({"metric": "luck"}, "metric"), ({"strategy": 3}, "strategy"),
                          ({"grid": {"fast": 5}}, "grid")]:  # fmt: skip
        with pytest.raises(ValidationError, match=field):
            validate(params, sweep, raise_on_error=True)
    live = schema_of("live-signals")
    for params, field in [({"mode": "rest"}, "mode"), ({"speed": "fast"}, "speed"),
                          ({"fresh": "yes"}, "fresh")]:  # fmt: skip
        with pytest.raises(ValidationError, match=field):
            validate(params, live, raise_on_error=True)


def test_the_flow_still_refuses_wrong_types() -> None:
    """Prefect's own check of a call (the CLI path, and a run's start): the Doc
    annotations change the schema only, not the types."""
    from prefect.exceptions import ParameterTypeError

    from hedgeflow.flows.nightly import nightly
    from hedgeflow.flows.sweep import sweep

    checked = nightly.validate_parameters({"days": "3", "source": None, "agents": None})
    assert checked["days"] == 3  # coerced as before
    # (a bad date-time is the flow's to refuse: the server checks no formats)
    bad = ({"days": "ten"}, {"source": "yahoo"}, {"agents": [{"name": "x"}]}, {"end": "tomorrow"})
    for params in bad:
        with pytest.raises(ParameterTypeError):
            nightly.validate_parameters(params)
    assert sweep.validate_parameters({"strategy": "pkg.mod:Name"})["strategy"] == "pkg.mod:Name"
    with pytest.raises(ParameterTypeError):
        sweep.validate_parameters({"strategy": ""})
