"""Typed flow parameters: Prefect turns them into forms in the UI and checks them
before a run is created; hedgeflow's settings loader checks every value again.

Prefect builds a deployment's run form from the JSON schema of the flow's signature
(``prefect.utilities.callables.parameter_schema``). A parameter typed ``X | None = None``
shows there as "(Optional)" with a type toggle on None and nothing else, so every flow
parameter carries a :class:`Doc`: a one-line description (with the choices of an
enum), and, where None means "from the settings" (or another rule), what leaving it
empty does, as the description and as the title of the form's None choice. The Python
types, defaults and validation stay as they are: a :class:`Doc` only writes schema.

A ``Field(description=...)`` in ``Annotated`` does not reach the form: Prefect wraps
each parameter in a ``Field`` of its own whose description (from the docstring's
``Args:`` section, else None) replaces it; a schema hook on the type does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from hedgeflow.config import DEFAULTS, ENV_PREFIX, Allocation, Rebalance, Settings, SourceName
from hedgeflow.flows.runners import DASK_WORKERS
from hedgeflow.strategies import strategy_names

__all__ = [
    "AGENTS_DOC",
    "ALLOW_SHORT_DOC",
    "DASK_ADDRESS_DOC",
    "DAYS_DOC",
    "END_DOC",
    "INTERVAL_DOC",
    "SOURCE_DOC",
    "SYMBOLS_DOC",
    "TASK_RUNNER_DOC",
    "AgentParam",
    "Allocation",
    "Doc",
    "IntervalName",
    "Rebalance",
    "RiskParam",
    "SourceName",
    "StrategyName",
    "agents_mapping",
]

IntervalName = Literal["1m", "5m", "1h"]
CONFIG_FILE = "hedgeflow.toml"


def builtin_setting(key: str) -> Any:
    """The built-in value of a setting (``lookback_days``, ``portfolio.allocation``):
    hedgeflow's defaults, else the settings' own field default."""
    parts = key.split(".")
    node: Any = DEFAULTS
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return node
    value: Any = Settings()
    for part in parts:
        value = getattr(value, part)
    return value


def setting_env(key: str) -> str:
    """The environment variable of a setting: HEDGEFLOW_PORTFOLIO__ALLOCATION."""
    return ENV_PREFIX + "__".join(part.upper() for part in key.split("."))


def _shown(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _enum_values(schema: JsonSchemaValue) -> list[Any]:
    """The enum values of a schema or of its (non-null) anyOf choices."""
    values = list(schema.get("enum", []))
    for choice in schema.get("anyOf", []):
        values.extend(v for v in choice.get("enum", []) if v not in values)
    return values


@dataclass(frozen=True)
class Doc:
    """The run-form text of a flow parameter: ``Annotated[int | None, Doc(...)] = None``.

    ``text``: one line (an enum's choices are appended, or replace ``{choices}``);
    ``setting``: None means this setting, named with its built-in value, and the
    form's None choice says where it is set; ``empty``: what None means otherwise,
    ``detail`` more of it for the None choice; ``empty_title``: that choice's label."""

    text: str
    setting: str | None = None
    empty: str | None = None
    detail: str | None = None
    empty_title: str = "configured"

    def empty_text(self) -> tuple[str, str | None] | None:
        """(what None means, the None choice's detail), or None when None is no choice."""
        if self.setting is not None:
            value = _shown(builtin_setting(self.setting))
            where = f"Set by {setting_env(self.setting)} or in {CONFIG_FILE} (the variable wins)."
            return f"the {self.setting} setting (built-in: {value})", where
        if self.empty is not None:
            return self.empty, self.detail
        return None

    def describe(self, schema: JsonSchemaValue) -> str:
        choices = ", ".join(str(c) for c in _enum_values(schema))
        text = self.text
        if "{choices}" in text:
            text = text.replace("{choices}", choices)
        elif choices:
            text += f" ({choices})"
        empty = self.empty_text()
        if empty is not None:
            text += f"; empty: {empty[0]}"
        return text + "."

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["description"] = self.describe(schema)
        empty = self.empty_text()
        for choice in schema.get("anyOf", []):
            if empty is not None and choice.get("type") == "null":
                choice["title"] = self.empty_title
                if empty[1]:
                    choice["description"] = empty[1]
        return schema


REFERENCE_FORMS = "package.module:Name or path/to/file.py:Name"


class _StrategySchema:
    """A strategy's schema: the registry's names as an enum (the form's ``registered``
    choice, a list to pick from), or a reference to a user's strategy (its checks are
    the plain string's, as before: the names guide, they do not restrict)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        reference = handler(core_schema)
        return {
            "anyOf": [
                {"type": "string", "enum": list(strategy_names()), "title": "registered"},
                {**reference, "title": "reference", "description": REFERENCE_FORMS},
            ]
        }


# The registry is the one source of the names; a user's strategy is named by reference.
StrategyName = Annotated[str, Field(min_length=1, max_length=500), _StrategySchema()]


class RiskParam(BaseModel):
    """Risk overrides of one agent; a field left out takes the [risk] settings."""

    model_config = ConfigDict(extra="forbid", title="overrides")  # the form's label

    risk_per_trade: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of equity risked per trade"
    )
    stop_pct: float | None = Field(
        default=None, gt=0, lt=1, description="Stop-loss distance, a fraction of the entry"
    )
    take_profit_pct: float | None = Field(
        default=None, gt=0, description="Take-profit distance, a fraction of the entry"
    )
    max_leverage: float | None = Field(
        default=None, gt=0, le=100, description="Largest position as a multiple of equity"
    )
    use_trailing_atr: bool | None = Field(default=None, description="Trail the stop by ATR")
    allow_short: bool | None = Field(
        default=None, description="Trade the strategy's short signals (sell short, buy to cover)"
    )


class AgentParam(BaseModel):
    """One agent of a run: a market, a strategy and its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        examples=["stocks"],
        description="Agent name: letters, digits, - and _",
    )
    symbol: str = Field(
        examples=["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"],
        description="EODHD symbol, e.g. AAPL.US, EURUSD.FOREX, BTC-USD.CC",
    )
    strategy: Annotated[StrategyName, Doc("Strategy: {choices}, or " + REFERENCE_FORMS)]
    params: dict[str, float | int | bool | str] = Field(
        default_factory=dict,
        examples=[{"fast": 20, "slow": 50}],
        description="Strategy parameters, e.g. {fast: 20, slow: 50}; omitted: its defaults",
    )
    risk: Annotated[
        RiskParam | None,
        Doc("Risk overrides", empty="the [risk] settings", empty_title="[risk] settings"),
    ] = Field(default=None, title="Risk")


def agent_shape() -> str:
    """``{name, symbol, strategy, params, risk}``: an agent's fields, for descriptions."""
    return "{" + ", ".join(AgentParam.model_fields) + "}"


# The parameters several flows share, described once.
_AGENTS = DEFAULTS["agents"]
AGENTS_DOC = Doc(
    "Agents of this run, replacing the configured ones: a list of " + agent_shape(),
    empty="the configured agents",
    detail=f"The agents of {CONFIG_FILE}; built-in: "
    + ", ".join(f"{name} ({a['symbol']}, {a['strategy']})" for name, a in _AGENTS.items())
    + ".",
)
SYMBOLS_DOC = Doc(
    "Symbols, e.g. AAPL.US, EURUSD.FOREX, BTC-USD.CC",
    empty="the configured agents' symbols",
    detail="Built-in: " + ", ".join(a["symbol"] for a in _AGENTS.values()) + ".",
)
DAYS_DOC = Doc("Days of bars before end", "lookback_days")
SOURCE_DOC = Doc("Where the bars come from", "source")
END_DOC = Doc(
    "End of the window (UTC)",
    empty="the last completed bar (now, floored to the interval)",
    detail="The run stores the window it used, so it can be repeated with this end.",
    empty_title="now",
)
INTERVAL_DOC = Doc("Bar interval", "interval")
ALLOW_SHORT_DOC = Doc(
    "Short selling for every agent of the run: the strategies' -1 signals sell short",
    empty="the [risk] allow_short setting (built-in: false), per agent its own risk",
    detail="Set by HEDGEFLOW_RISK__ALLOW_SHORT or allow_short under [risk] / an agent's risk "
    f"in {CONFIG_FILE}.",
    empty_title="configured",
)
TRADING_DAYS_DOC = Doc(
    "Without an end: do nothing (completed, with a message) when today in New York is "
    "not an XNYS trading day (the scheduled nightly sets it)",
    empty="no: run whatever the day",
    empty_title="no",
)
TASK_RUNNER_DOC = Doc("Where the backtests run: Prefect's thread pool or Dask", "task_runner")
DASK_ADDRESS_DOC = Doc(
    "A Dask scheduler (tcp://host:port) to run the backtests on",
    empty="the dask_address setting, else $DASK_SCHEDULER_ADDRESS",
    detail=f"Neither set: task_runner dask starts a local cluster of {DASK_WORKERS} workers.",
)


def agents_mapping(agents: list[AgentParam] | None) -> dict[str, Any] | None:
    """The ``agents`` table of the settings for ``load_settings(agents=...)``."""
    if agents is None:
        return None
    out: dict[str, Any] = {}
    for agent in agents:
        entry: dict[str, Any] = {
            "symbol": agent.symbol,
            "strategy": agent.strategy,
            "params": dict(agent.params),
        }
        if agent.risk is not None:
            entry["risk"] = agent.risk.model_dump(exclude_none=True)
        out[agent.name] = entry
    return out
