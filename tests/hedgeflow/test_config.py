from pathlib import Path

import pytest

from hedgeflow.config import load_settings
from hedgeflow.errors import ConfigError


def test_defaults_are_the_articles_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.symbols == ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")
    assert s.interval == "5m" and s.lookback_days == 30 and s.source == "synthetic"
    by_name = {a.name: a for a in s.agents}
    assert by_name["stocks"].strategy == "sma_cross"
    assert dict(by_name["stocks"].params) == {"fast": 20, "slow": 50, "confirm_above_fast": True}
    assert dict(by_name["forex"].params) == {"period": 14, "entry_rsi": 30.0, "exit_rsi": 50.0}
    assert dict(by_name["crypto"].params) == {"window": 20, "exit_rule": "midline"}
    assert by_name["crypto"].asset_class == "crypto"
    risk = by_name["stocks"].risk
    assert (risk.risk_per_trade, risk.max_leverage, risk.stop_pct, risk.take_profit_pct) == (
        0.01,
        1.0,
        0.01,
        0.02,
    )
    assert s.portfolio.initial_equity == 100_000.0 and s.portfolio.allocation == "equal"
    assert (s.network.rest_timeout, s.network.max_retries, s.network.retry_backoff_sec) == (
        20.0,
        3,
        1.5,
    )
    assert s.home == Path("data")


def test_toml_then_environment_override(tmp_path: Path) -> None:
    cfg = tmp_path / "hedgeflow.toml"
    cfg.write_text(
        """
lookback_days = 10
[network]
rest_timeout = 5
[agents.stocks]
params = { fast = 10, slow = 30 }
[agents.extra]
symbol = "msft.us"
strategy = "sma_cross"
risk = { stop_pct = 0.02 }
"""
    )
    env = {
        "HEDGEFLOW_LOOKBACK_DAYS": "12",
        "HEDGEFLOW_NETWORK__MAX_RETRIES": "5",
        "HEDGEFLOW_HOME": "/tmp/x y",
    }
    s = load_settings(cfg, env=env)
    assert s.lookback_days == 12  # env beats file
    assert s.network.rest_timeout == 5.0 and s.network.max_retries == 5
    assert s.home == Path("/tmp/x y")
    agents = {a.name: a for a in s.agents}
    assert (
        agents["stocks"].params["fast"] == 10
        and agents["stocks"].params["confirm_above_fast"] is True
    )
    assert agents["extra"].symbol == "MSFT.US" and agents["extra"].risk.stop_pct == 0.02
    assert len(s.agents) == 4


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"HEDGEFLOW_LOOKBACK_DAYS": "thirty"}, "lookback_days"),
        ({"HEDGEFLOW_INTERVAL": "7m"}, "interval"),
        ({"HEDGEFLOW_SOURCE": "yahoo"}, "source"),
        ({"HEDGEFLOW_NETWORK__REST_TIMEOUT": "-1"}, "network.rest_timeout"),
        ({"HEDGEFLOW_NETWORK__BOGUS": "1"}, "network.bogus"),
        ({"HEDGEFLOW_RISK__STOP_PCT": "2"}, "stop_pct"),
        ({"HEDGEFLOW_AGENTS__STOCKS__SYMBOL": "../x"}, "agents.stocks.symbol"),
        ({"HEDGEFLOW_AGENTS__STOCKS__PARAMS__FAST": "abc"}, "agents.stocks.params"),
        ({"HEDGEFLOW_AGENTS__STOCKS__PARAMS__SLOWER": "3"}, "agents.stocks.params"),
        ({"HEDGEFLOW_PORTFOLIO__ALLOCATION": "kelly"}, "portfolio.allocation"),
        ({"HEDGEFLOW_COLOUR": "blue"}, "colour"),
    ],
)
def test_wrong_value_names_the_key(
    env: dict[str, str], key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert key in str(info.value)


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "hedgeflow.toml"
    cfg.write_text("lookback_days = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_agent_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={"HEDGEFLOW_AGENTS__FOREX": "false"})
    assert [a.name for a in s.agents] == ["stocks", "crypto"]


def test_a_strategy_typo_is_reported_under_strategy(tmp_path: Path) -> None:
    path = tmp_path / "hedgeflow.toml"
    path.write_text('[agents.stocks]\nsymbol = "AAPL.US"\nstrategy = "sma_crosss"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=path, env={})
    assert str(err.value).startswith("setting 'agents.stocks.strategy': unknown strategy")
    missing = tmp_path / "other.toml"
    missing.write_text('[agents.bands]\nsymbol = "EURUSD.FOREX"\nstrategy = "nope.py:X"\n')
    with pytest.raises(ConfigError, match=r"agents\.bands\.strategy.*no such file nope\.py"):
        load_settings(config_file=missing, env={})


def test_allow_short_default_per_agent_and_against_the_strategy(tmp_path: Path) -> None:
    from tests.user_strategy import write_example

    path = tmp_path / "hedgeflow.toml"
    path.write_text(
        "[risk]\nallow_short = true\n"
        '[agents.stocks]\nsymbol = "AAPL.US"\nstrategy = "sma_cross"\n'
        '[agents.fx]\nsymbol = "EURUSD.FOREX"\nstrategy = "rsi_mean_revert"\n'
        "[agents.fx.risk]\nallow_short = false\n"
    )
    s = load_settings(config_file=path, env={})
    got = {a.name: a.risk.allow_short for a in s.agents}  # the built-in agents stay too
    assert got == {"stocks": True, "forex": True, "crypto": True, "fx": False}
    assert not load_settings(env={}, config_file=None).agents[0].risk.allow_short
    env = {"HEDGEFLOW_RISK__ALLOW_SHORT": "true"}
    assert all(a.risk.allow_short for a in load_settings(config_file=None, env=env).agents)
    # a strategy that cannot produce a short signal: one error naming the setting
    ref = write_example(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[agents.bands]\nsymbol = "EURUSD.FOREX"\nstrategy = "{tmp_path / ref}"\n'
        "[agents.bands.risk]\nallow_short = true\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=bad, env={})
    message = str(err.value)
    assert message.startswith("setting 'agents.bands.risk.allow_short': allow_short is on")
    assert "cannot produce a short signal" in message and "\n" not in message


def test_order_minimums_per_asset_class_and_per_agent(tmp_path: Path) -> None:
    from hedgeflow.config import DEFAULT_MINIMUMS, OrderMinimums

    s = load_settings(env={}, config_file=None)
    got = {a.name: a.minimums for a in s.agents}
    assert got == {
        "stocks": OrderMinimums(qty_step=1.0, min_notional=0.0),
        "forex": OrderMinimums(qty_step=1000.0, min_notional=0.0),
        "crypto": OrderMinimums(qty_step=1e-5, min_notional=10.0),
    }
    assert dict(s.minimums) == DEFAULT_MINIMUMS
    path = tmp_path / "hedgeflow.toml"
    path.write_text(
        "[minimums.crypto]\nmin_notional = 5\n"  # the class's step stays 1e-5
        '[agents.eth]\nsymbol = "ETH-USD.CC"\nstrategy = "donchian_breakout"\n'
        "[agents.eth.minimums]\nqty_step = 0.001\n"  # its own step, the class's minimum
    )
    s = load_settings(config_file=path, env={})
    mins = {a.name: s.minimums_for(a) for a in s.agents}
    assert mins["crypto"] == OrderMinimums(qty_step=1e-5, min_notional=5.0)
    assert mins["eth"] == OrderMinimums(qty_step=0.001, min_notional=5.0)
    assert mins["forex"] == OrderMinimums(qty_step=1000.0, min_notional=0.0)
    env = {"HEDGEFLOW_AGENTS__FOREX__MINIMUMS__QTY_STEP": "1"}
    forex = load_settings(config_file=None, env=env).agents[1]
    assert forex.minimums == OrderMinimums(qty_step=1.0, min_notional=0.0)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[minimums.crypto]\nmin_notional = -1\n", "minimums.crypto"),
        ("[minimums.bonds]\nqty_step = 1\n", "minimums.bonds"),
        ("[minimums.forex]\nlot = 1\n", "minimums.forex.lot"),
        ("[agents.forex.minimums]\nqty_step = -5\n", "agents.forex.minimums"),
        ('[agents.forex.minimums]\nqty_step = "big"\n', "agents.forex.minimums.qty_step"),
    ],
)
def test_bad_order_minimums_name_the_key(text: str, key: str, tmp_path: Path) -> None:
    path = tmp_path / "hedgeflow.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=path, env={})
    message = str(err.value)
    assert message.startswith(f"setting '{key}") and "\n" not in message, message


# --------------------------------------------------------------------------- bounded reads


def test_config_fifo_is_refused_without_opening(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "hedgeflow.toml"
    os.mkfifo(fifo)  # opening it for reading would block with no writer
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=fifo, env={})
    assert str(info.value) == (
        f"setting 'config': config file {str(fifo)!r} is a FIFO (named pipe), not a regular file"
    )


def test_config_devices_and_oversized_files_are_refused(tmp_path: Path) -> None:
    from hedgeflow.config import MAX_CONFIG_BYTES

    with pytest.raises(ConfigError, match="'/dev/zero' is a character device"):
        load_settings(config_file="/dev/zero", env={})
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES + b"\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=big, env={})
    assert "larger than the 1 MiB limit" in str(info.value)
    ok = tmp_path / "ok.toml"
    ok.write_bytes(b"seed = 3\n# " + b"x" * (MAX_CONFIG_BYTES - 20) + b"\n")
    assert ok.stat().st_size <= MAX_CONFIG_BYTES
    assert load_settings(config_file=ok, env={}).seed == 3  # just under the limit: read


def test_config_nested_too_deeply(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(config_file=deep, env={})


@pytest.mark.parametrize(
    ("home", "problem"),
    [
        ("/dev/null", "/dev/null is a character device, not a directory"),
        ("/dev/null/x", "/dev/null/x is not usable: Not a directory"),
    ],
)
def test_home_must_be_a_directory(home: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"HEDGEFLOW_HOME": home})
    assert str(info.value) == f"setting 'home': {problem} (HEDGEFLOW_HOME or --home)"


def test_home_for_writing(tmp_path: Path) -> None:
    from hedgeflow.config import check_home

    assert check_home(tmp_path / "new", writable=True) == tmp_path / "new"
    assert load_settings(env={"HEDGEFLOW_HOME": "/proc/self"}).home == Path("/proc/self")
    with pytest.raises(ConfigError, match="/proc/self is not writable"):
        check_home(Path("/proc/self"), writable=True)


def test_switching_a_default_agents_strategy_drops_the_old_params(tmp_path: Path) -> None:
    """`[agents.stocks] strategy = "rsi_mean_revert"` alone: the default sma_cross's
    fast/slow are not merged into the new strategy's params (they were, and failed)."""
    path = tmp_path / "hedgeflow.toml"
    path.write_text('[agents.stocks]\nstrategy = "rsi_mean_revert"\n', encoding="utf-8")
    stocks = next(a for a in load_settings(path, env={}).agents if a.name == "stocks")
    assert stocks.strategy == "rsi_mean_revert"
    assert stocks.params == {"period": 14, "entry_rsi": 30.0, "exit_rsi": 50.0}
    path.write_text(
        '[agents.stocks]\nstrategy = "rsi_mean_revert"\nparams = { period = 7 }\n', encoding="utf-8"
    )
    stocks = next(a for a in load_settings(path, env={}).agents if a.name == "stocks")
    assert stocks.params["period"] == 7
    # the environment layer too
    env = {"HEDGEFLOW_AGENTS__STOCKS__STRATEGY": "donchian_breakout"}
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    stocks = next(
        a for a in load_settings(tmp_path / "none.toml", env=env).agents if a.name == "stocks"
    )
    assert stocks.strategy == "donchian_breakout" and set(stocks.params) == {"window", "exit_rule"}
    # changing only the params of the default strategy still merges with its defaults
    path.write_text("[agents.stocks.params]\nfast = 5\n", encoding="utf-8")
    stocks = next(a for a in load_settings(path, env={}).agents if a.name == "stocks")
    assert stocks.strategy == "sma_cross" and stocks.params["fast"] == 5


def test_errors_name_the_key_the_user_wrote(tmp_path: Path) -> None:
    path = tmp_path / "hedgeflow.toml"
    path.write_text("[risk]\nstop_pct = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^setting 'risk\.stop_pct': stop_pct must be in"):
        load_settings(path, env={})
    path.write_text('[agents.stocks]\nstrategy = "sma_crosss"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^setting 'agents\.stocks\.strategy': unknown strategy"):
        load_settings(path, env={})
    path.write_text("[agents.stocks.risk]\nstop_pct = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^setting 'agents\.stocks\.risk\.stop_pct'"):
        load_settings(path, env={})
