"""Typed settings: defaults (the article's configuration), then ``hedgeflow.toml``,
then environment variables. Settings are built once and passed down.

Environment variables: ``HEDGEFLOW_HOME``, ``HEDGEFLOW_SOURCE``, ``HEDGEFLOW_INTERVAL``,
``HEDGEFLOW_LOOKBACK_DAYS``, ``HEDGEFLOW_SEED``, and any nested key as
``HEDGEFLOW_<SECTION>__<KEY>`` (e.g. ``HEDGEFLOW_NETWORK__REST_TIMEOUT=30``,
``HEDGEFLOW_AGENTS__STOCKS__PARAMS__FAST=10``). Values from the environment are
parsed as TOML scalars (``30``, ``1.5``, ``true``) and otherwise taken as strings.
A wrong value raises ConfigError naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from hedgeflow.errors import ConfigError, InvalidInputError
from hedgeflow.exchange_calendar import EXCHANGE_CALENDARS, validate_calendar
from hedgeflow.fsutil import directory_problem, file_kind
from hedgeflow.market import AssetClass, asset_class_of, normalize_symbol

SourceName = Literal["synthetic", "eodhd", "simulator"]
Allocation = Literal["equal", "inverse_vol", "risk_parity"]
Rebalance = Literal["bar", "daily", "weekly"]

ENV_PREFIX = "HEDGEFLOW_"
CONFIG_FILE_NAME = "hedgeflow.toml"
TOKEN_ENV = "EODHD_API_TOKEN"


@dataclass(frozen=True)
class RiskSettings:
    risk_per_trade: float = 0.01
    max_leverage: float = 1.0
    stop_pct: float = 0.01
    take_profit_pct: float = 0.02
    use_trailing_atr: bool = False
    atr_period: int = 14
    atr_mult: float = 3.0
    allow_short: bool = False

    def __post_init__(self) -> None:
        _positive("risk_per_trade", self.risk_per_trade, upper=1.0)
        _positive("max_leverage", self.max_leverage, upper=100.0)
        _positive("stop_pct", self.stop_pct, upper=1.0, upper_open=True)
        _positive("take_profit_pct", self.take_profit_pct, upper=100.0)
        _positive("atr_period", self.atr_period, upper=10_000)
        _positive("atr_mult", self.atr_mult, upper=100.0)


@dataclass(frozen=True)
class CostSettings:
    """Fees and slippage in basis points of notional."""

    fee_bps: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fee_bps", "slippage_bps"):
            value = getattr(self, name)
            if not 0.0 <= value < 10_000.0:
                raise InvalidInputError(f"{name} must be in [0, 10000) bps, got {value}")


@dataclass(frozen=True)
class OrderMinimums:
    """The venue's order minimums: quantities are whole multiples of ``qty_step``
    (0: any quantity) and an entry's notional (qty x fill) is at least
    ``min_notional`` (in the quote currency; 0: none). An entry below either is
    skipped and counted with its reason."""

    qty_step: float = 0.0
    min_notional: float = 0.0

    def __post_init__(self) -> None:
        for name in ("qty_step", "min_notional"):
            value = getattr(self, name)
            if not 0.0 <= value < 1e12:
                raise InvalidInputError(f"{name} must be in [0, 1e12), got {value}")


@dataclass(frozen=True)
class AgentSettings:
    name: str
    symbol: str
    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)
    risk: RiskSettings = field(default_factory=RiskSettings)
    costs: CostSettings | None = None  # None: the asset class default
    # None: the asset class default (DEFAULT_MINIMUMS); settings files resolve it
    minimums: OrderMinimums | None = None

    @property
    def asset_class(self) -> AssetClass:
        return asset_class_of(self.symbol)


@dataclass(frozen=True)
class PortfolioSettings:
    initial_equity: float = 100_000.0
    allocation: Allocation = "equal"
    rebalance: Rebalance = "daily"
    fee_bps: float = 0.0
    vol_lookback_bars: int = 288

    def __post_init__(self) -> None:
        _positive("initial_equity", self.initial_equity, upper=1e15)
        _positive("vol_lookback_bars", self.vol_lookback_bars, upper=10_000_000)


@dataclass(frozen=True)
class NetworkSettings:
    rest_timeout: float = 20.0
    max_retries: int = 3
    retry_backoff_sec: float = 1.5
    max_backoff_sec: float = 30.0
    base_url: str = "https://eodhd.com/api"
    ws_url: str = "wss://ws.eodhistoricaldata.com/ws"
    token_secret_block: str = "eodhd-api-token"

    def __post_init__(self) -> None:
        _positive("rest_timeout", self.rest_timeout, upper=3600)
        if not 0 <= self.max_retries <= 50:
            raise InvalidInputError(f"max_retries must be in [0, 50], got {self.max_retries}")
        if self.retry_backoff_sec < 0:
            raise InvalidInputError(f"retry_backoff_sec must be >= 0, got {self.retry_backoff_sec}")
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise InvalidInputError(f"ws_url must be a ws(s) URL, got {self.ws_url!r}")


@dataclass(frozen=True)
class LiveSettings:
    """The live flow's feed-health and warehouse-backlog limits (``[live]``)."""

    # wall seconds without a tick after which a live run stops degraded (failed when it
    # got no tick at all); 0: no limit (e.g. a stocks-only run through the night)
    max_silence: float = 60.0
    # connection attempts in a row that deliver no tick before the run stops as failed
    max_idle_connections: int = 3
    # how long the end of a run waits for a locked warehouse to store the journal's
    # backlog; past it the run stops with the backlog kept for the next start
    drain_limit: float = 600.0
    # US stocks: pre-market and after-hours trades (EODHD's ``ms`` field) go into bars
    # too; by default they are kept out of the regular-session bars (convention 8)
    extended_hours: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.extended_hours, bool):
            raise InvalidInputError(
                f"extended_hours must be true or false, got {self.extended_hours!r}"
            )
        if not 0 <= self.max_silence <= 10_000_000:
            raise InvalidInputError(
                f"max_silence must be in [0, 10000000] s (0: no limit), got {self.max_silence}"
            )
        if not 1 <= self.max_idle_connections <= 1000:
            raise InvalidInputError(
                f"max_idle_connections must be in [1, 1000], got {self.max_idle_connections}"
            )
        _positive("drain_limit", self.drain_limit, upper=10_000_000)


@dataclass(frozen=True)
class NotifySettings:
    """Where live orders and fills are announced (``[notify]``; see ``hedgeflow.live.notify``).

    The URLs are secrets (they carry tokens): they are registered for redaction when the
    settings load, never shown in reprs, errors or files (see ``hedgeflow.live.channels``)."""

    webhooks: tuple[str, ...] = field(default=(), repr=False)  # POST one JSON object per event
    apprise: tuple[str, ...] = field(default=(), repr=False)  # chat and mail services
    timeout: float = 5.0  # seconds one delivery attempt may take
    max_attempts: int = 8  # attempts per event and channel before it is marked dead
    backoff_initial: float = 0.5  # seconds before the 2nd attempt, doubling after (jitter)
    backoff_max: float = 60.0
    drain_seconds: float = 10.0  # how long a normal end waits for pending deliveries

    def __post_init__(self) -> None:
        from hedgeflow.live.channels import check_urls  # local: keeps apprise lazy

        object.__setattr__(self, "webhooks", check_urls("webhooks", self.webhooks, "http"))
        object.__setattr__(self, "apprise", check_urls("apprise", self.apprise, "apprise"))
        _positive("timeout", self.timeout, upper=600)
        if not 1 <= self.max_attempts <= 1000:
            raise InvalidInputError(f"max_attempts must be in [1, 1000], got {self.max_attempts}")
        _positive("backoff_initial", self.backoff_initial, upper=3600)
        _positive("backoff_max", self.backoff_max, upper=86_400)
        if not 0 <= self.drain_seconds <= 3600:
            raise InvalidInputError(f"drain_seconds must be in [0, 3600], got {self.drain_seconds}")

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks or self.apprise)


@dataclass(frozen=True)
class ReconcileSettings:
    """``hedgeflow reconcile`` (``[reconcile]``): how many unexplained live-vs-engine
    differences a reconciliation tolerates before it asks to be notified
    (``hedgeflow.tasks.reconcile.on_reconciled``)."""

    max_unexplained: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.max_unexplained <= 1_000_000:
            raise InvalidInputError(
                f"max_unexplained must be in [0, 1000000], got {self.max_unexplained}"
            )


DEFAULT_COSTS: dict[str, CostSettings] = {
    "stock": CostSettings(fee_bps=0.5, slippage_bps=1.0),
    "forex": CostSettings(fee_bps=0.2, slippage_bps=0.5),
    "crypto": CostSettings(fee_bps=5.0, slippage_bps=2.0),
}


# stocks trade whole shares; forex in 1,000-unit micro lots; crypto in 1e-5 steps with
# a 10-unit (quote currency) minimum order, as the large spot venues
DEFAULT_MINIMUMS: dict[str, OrderMinimums] = {
    "stock": OrderMinimums(qty_step=1.0, min_notional=0.0),
    "forex": OrderMinimums(qty_step=1000.0, min_notional=0.0),
    "crypto": OrderMinimums(qty_step=1e-5, min_notional=10.0),
}


@dataclass(frozen=True)
class Settings:
    home: Path = Path("data")
    source: SourceName = "synthetic"
    interval: Literal["1m", "5m", "1h"] = "5m"
    lookback_days: int = 30
    seed: int = 7
    agents: tuple[AgentSettings, ...] = ()
    costs: Mapping[str, CostSettings] = field(default_factory=lambda: dict(DEFAULT_COSTS))
    minimums: Mapping[str, OrderMinimums] = field(default_factory=lambda: dict(DEFAULT_MINIMUMS))
    portfolio: PortfolioSettings = field(default_factory=PortfolioSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    # Where the compute stages (nightly backtests, sweeps) run: Prefect's thread
    # pool, or Dask (a LocalCluster of 2 workers, or the scheduler at dask_address).
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    # Seconds a flow's write waits for the DuckDB file while another process (a
    # reader's notebook, another flow) holds it, saying so every 10 s, before it fails.
    lock_timeout: float = 3600.0
    # "resident": with no PREFECT_API_URL, flows report to one local Prefect server that
    # hedgeflow starts on first use and reuses (hedgeflow/prefect_server.py);
    # "ephemeral": Prefect's own temporary server for every command.
    prefect_server: Literal["resident", "ephemeral"] = "resident"
    # Backtests, nightly, sweeps and the live warm-up read bars adjusted for the stock
    # splits after them (the bars_adjusted view); false: the vendor's raw bars.
    adjust_splits: bool = True
    # The session calendar of each stock exchange suffix (exchange-calendars names):
    # the live session filter and the nightly's trading-day check use it.
    calendars: Mapping[str, str] = field(default_factory=lambda: dict(EXCHANGE_CALENDARS))

    def __post_init__(self) -> None:
        if not 1 <= self.lookback_days <= 20_000:
            raise InvalidInputError(
                f"lookback_days must be in [1, 20000], got {self.lookback_days}"
            )
        if not 1 <= self.lock_timeout <= 86_400:
            raise InvalidInputError(
                f"lock_timeout must be in [1, 86400] seconds, got {self.lock_timeout}"
            )
        checked = dict(EXCHANGE_CALENDARS)
        for exchange, name in dict(self.calendars).items():
            if not isinstance(exchange, str) or not exchange.isalnum():
                raise InvalidInputError(f"calendars is invalid: exchange suffix {exchange!r}")
            if EXCHANGE_CALENDARS.get(exchange.upper()) == name:
                continue  # the default: no need to load the library (~1 s) to check it
            try:
                checked[exchange.upper()] = validate_calendar(name)
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"calendars.{exchange} must name a known calendar: {exc}"
                ) from None
        object.__setattr__(self, "calendars", checked)
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"agent names must be unique, got {names}")

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.symbol for a in self.agents))

    def costs_for(self, agent: AgentSettings) -> CostSettings:
        return agent.costs or self.costs.get(agent.asset_class, CostSettings())

    def minimums_for(self, agent: AgentSettings) -> OrderMinimums:
        """The agent's order minimums: its own keys over its asset class's."""
        return agent.minimums or self.minimums.get(agent.asset_class, OrderMinimums())

    def without_secrets(self) -> Settings:
        """These settings without the notification URLs: what may be handed to a
        subflow or task, whose parameters Prefect stores."""
        if not self.notify.enabled:
            return self
        return dataclasses.replace(
            self, notify=dataclasses.replace(self.notify, webhooks=(), apprise=())
        )


# The article's configuration (EUR.FOREX there is a typo for EURUSD.FOREX).
DEFAULTS: dict[str, Any] = {
    "home": "data",
    "source": "synthetic",
    "interval": "5m",
    "lookback_days": 30,
    "seed": 7,
    "risk": {},
    "costs": {k: dataclasses.asdict(v) for k, v in DEFAULT_COSTS.items()},
    "minimums": {k: dataclasses.asdict(v) for k, v in DEFAULT_MINIMUMS.items()},
    "portfolio": {},
    "network": {},
    "live": {},
    "notify": {},
    "reconcile": {},
    "agents": {
        "stocks": {
            "symbol": "AAPL.US",
            "strategy": "sma_cross",
            "params": {"fast": 20, "slow": 50, "confirm_above_fast": True},
        },
        "forex": {
            "symbol": "EURUSD.FOREX",
            "strategy": "rsi_mean_revert",
            "params": {"period": 14, "entry_rsi": 30.0, "exit_rsi": 50.0},
        },
        "crypto": {
            "symbol": "BTC-USD.CC",
            "strategy": "donchian_breakout",
            "params": {"window": 20, "exit_rule": "midline"},
        },
    },
}


def load_settings(
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    agents: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the TOML file (``config_file`` or ``./hedgeflow.toml`` if present,
    or ``$HEDGEFLOW_CONFIG``), then the environment, then ``overrides`` (merged), then
    ``agents`` (replacing the configured agents: a run with other agents)."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = copy.deepcopy(DEFAULTS)
    path = Path(config_file) if config_file else None
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is None and os.path.lexists(CONFIG_FILE_NAME):
        path = Path(CONFIG_FILE_NAME)  # read only if it is a regular file (_read_toml)
    if path is not None:
        _deep_merge(merged, _read_toml(path))
    _deep_merge(merged, _from_env(env))
    if overrides:
        _deep_merge(merged, copy.deepcopy(dict(overrides)))
    if agents is not None:
        merged["agents"] = copy.deepcopy(dict(agents))
    settings = settings_from_mapping(merged)
    check_home(settings.home)
    return settings


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    data = dict(data)
    known = {f.name for f in dataclasses.fields(Settings)} | {"risk"}
    for key in data:
        if key not in known:
            raise ConfigError(key, f"unknown setting (known: {', '.join(sorted(known))})")
    base_risk = _as_mapping("risk", data.pop("risk", {}))
    _build(RiskSettings, base_risk, "risk")  # a bad [risk] value is named as the user wrote it
    agents_raw = _as_mapping("agents", data.pop("agents", {}))
    costs_raw = _as_mapping("costs", data.pop("costs", {}))
    costs = dict(DEFAULT_COSTS)
    for cls, value in costs_raw.items():
        if cls not in DEFAULT_COSTS:
            raise ConfigError(f"costs.{cls}", "expected one of stock, forex, crypto")
        costs[cls] = _build(CostSettings, _as_mapping(f"costs.{cls}", value), f"costs.{cls}")
    minimums = dict(DEFAULT_MINIMUMS)
    for cls, value in _as_mapping("minimums", data.pop("minimums", {})).items():
        if cls not in DEFAULT_MINIMUMS:
            raise ConfigError(f"minimums.{cls}", "expected one of stock, forex, crypto")
        raw_mins = {**dataclasses.asdict(DEFAULT_MINIMUMS[cls])}
        raw_mins.update(_as_mapping(f"minimums.{cls}", value))
        minimums[cls] = _build(OrderMinimums, raw_mins, f"minimums.{cls}")
    agents = []
    for name, raw in agents_raw.items():
        if raw is None or raw is False:
            continue  # an agent can be switched off with `agents.NAME = false`
        agents.append(
            _build_agent(str(name), _as_mapping(f"agents.{name}", raw), base_risk, minimums)
        )
    kwargs: dict[str, Any] = {"agents": tuple(agents), "costs": costs, "minimums": minimums}
    for f in dataclasses.fields(Settings):
        if f.name in data and f.name not in kwargs:
            kwargs[f.name] = _coerce(f"{f.name}", data[f.name], _field_type(Settings, f.name))
    try:
        return Settings(**kwargs)
    except InvalidInputError as exc:
        raise ConfigError(_key_in(str(exc)), str(exc)) from None


def _build_agent(
    name: str,
    raw: Mapping[str, Any],
    base_risk: Mapping[str, Any],
    minimums: Mapping[str, OrderMinimums] = DEFAULT_MINIMUMS,
) -> AgentSettings:
    from hedgeflow.strategies import parse_params, resolve_strategy  # local: import cycle

    prefix = f"agents.{name}"
    allowed = {"symbol", "strategy", "params", "risk", "costs", "minimums"}
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"{prefix}.{key}", f"unknown setting (known: {', '.join(sorted(allowed))})"
            )
    for key in ("symbol", "strategy"):
        if key not in raw:
            raise ConfigError(f"{prefix}.{key}", "is required")
    if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 40:
        raise ConfigError(prefix, "agent names use letters, digits, '-' and '_' only")
    try:
        symbol = normalize_symbol(raw["symbol"])
    except InvalidInputError as exc:
        raise ConfigError(f"{prefix}.symbol", str(exc)) from None
    strategy = raw["strategy"]
    try:
        spec = resolve_strategy(strategy)
    except InvalidInputError as exc:
        raise ConfigError(f"{prefix}.strategy", str(exc)) from None
    try:
        params = parse_params(strategy, _as_mapping(f"{prefix}.params", raw.get("params", {})))
    except InvalidInputError as exc:
        raise ConfigError(f"{prefix}.params", str(exc)) from None
    risk_raw = {**base_risk, **_as_mapping(f"{prefix}.risk", raw.get("risk", {}))}
    risk = _build(RiskSettings, risk_raw, f"{prefix}.risk")
    try:
        spec.check_shorts(risk.allow_short)  # [risk] allow_short is every agent's default
    except InvalidInputError as exc:
        raise ConfigError(f"{prefix}.risk.allow_short", str(exc)) from None
    costs = None
    if raw.get("costs") is not None:
        costs = _build(
            CostSettings, _as_mapping(f"{prefix}.costs", raw["costs"]), f"{prefix}.costs"
        )
    # its own keys over its asset class's: resolved here, so that every run of the
    # agent (nightly, live, reconcile from runs.params) reads the same minimums
    raw_mins = dataclasses.asdict(minimums.get(asset_class_of(symbol), OrderMinimums()))
    raw_mins.update(_as_mapping(f"{prefix}.minimums", raw.get("minimums") or {}))
    agent_minimums = _build(OrderMinimums, raw_mins, f"{prefix}.minimums")
    return AgentSettings(
        name=name,
        symbol=symbol,
        strategy=strategy,
        params=dataclasses.asdict(params),
        risk=risk,
        costs=costs,
        minimums=agent_minimums,
    )


T = typing.TypeVar("T")


def _build(cls: type[T], raw: Mapping[str, Any], prefix: str) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(
                f"{prefix}.{key}", f"unknown setting (known: {', '.join(sorted(names))})"
            )
        kwargs[key] = _coerce(f"{prefix}.{key}", value, _field_type(cls, key))
    try:
        return cls(**kwargs)
    except InvalidInputError as exc:
        raise ConfigError(f"{prefix}.{_key_in(str(exc))}", str(exc)) from None


def _key_in(message: str) -> str:
    return message.split(" ", 1)[0]


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check and convert one value to the declared type; ConfigError names the key."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(key, f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, _as_mapping(key, value), key)
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(key, f"expected a path, got {value!r}")
        return Path(value)
    return value


def _as_mapping(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table of settings, got {value!r}")
    return dict(value)


# A settings file is a few kilobytes; anything larger is not one (``/dev/zero``, a log).
MAX_CONFIG_BYTES = 1 << 20


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path``, read only when it is a regular file of at most
    MAX_CONFIG_BYTES: a FIFO, a device or a directory is refused before it is opened
    (a FIFO would block, ``/dev/zero`` never ends), and the read is bounded too (the
    file may grow between the check and the read)."""
    shown = repr(str(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("config", f"config file {shown} does not exist") from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            "config", f"config file {shown} is {file_kind(info.st_mode)}, not a regular file"
        )
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError("config", f"config file {shown} is {_too_big(f'{info.st_size:,}')}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped since the stat
                raise ConfigError("config", f"config file {shown} is not a regular file")
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {shown}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("config", f"config file {shown} is {_too_big('more than that')}")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{shown} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level: [[[[...]]]]
        raise ConfigError("config", f"{shown} is not valid TOML: nested too deeply") from None
    except UnicodeDecodeError:
        raise ConfigError("config", f"{shown} is not valid TOML: not UTF-8 text") from None


def _too_big(size: str) -> str:
    return f"larger than the {MAX_CONFIG_BYTES >> 20} MiB limit for a settings file ({size} bytes)"


def check_home(home: Path, *, writable: bool = False) -> Path:
    """Refuse a home (HEDGEFLOW_HOME, ``--home``, ``home =``) that is not a usable
    directory, before any work: it must be a directory or not exist yet under a
    directory; with ``writable``, hedgeflow must be able to write there and its file
    system must have space left (else OutOfSpaceError). Returns ``home``."""
    problem = directory_problem(home, writable=writable)
    if problem is not None:
        raise ConfigError("home", f"{home} {problem} (HEDGEFLOW_HOME or --home)")
    return home


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, "conflicts with another environment variable")
        value: Any = text if path == ["home"] else _parse_env_value(text)
        if path == ["symbols"]:
            continue  # symbols are chosen per command, not globally
        node[path[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    agents = base.get("agents")
    if isinstance(agents, dict) and isinstance(extra.get("agents"), Mapping):
        _drop_params_of_replaced_strategies(base["agents"], extra["agents"])


def _drop_params_of_replaced_strategies(merged: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """An agent whose strategy a later layer changes keeps only that layer's params: the
    earlier strategy's (``fast``/``slow`` of the default sma_cross, say) mean nothing to
    the new one."""
    for name, raw in extra.items():
        agent = merged.get(name)
        if not isinstance(raw, Mapping) or not isinstance(agent, dict) or "strategy" not in raw:
            continue
        agent["params"] = copy.deepcopy(dict(raw.get("params") or {}))


def _positive(name: str, value: float, upper: float, upper_open: bool = False) -> None:
    too_big = value >= upper if upper_open else value > upper
    if not value > 0 or too_big:
        bracket = ")" if upper_open else "]"
        raise InvalidInputError(f"{name} must be in (0, {upper}{bracket}, got {value}")
