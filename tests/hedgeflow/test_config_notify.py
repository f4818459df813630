"""``[notify]`` settings: read from hedgeflow.toml and the environment, checked at load
(one error naming the entry, never the URL), URLs registered as secrets and hidden from
reprs, and stripped from what flows hand to subflows and tasks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hedgeflow.config import NotifySettings, load_settings
from hedgeflow.errors import ConfigError
from hedgeflow.secrets import redact

TOKEN = "s3cr3t-token-cfg-91"


def test_toml_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "hedgeflow.toml"
    cfg.write_text(
        "[notify]\n"
        f'webhooks = ["https://hooks.example.com/h/{TOKEN}"]\n'
        f'apprise = ["json://127.0.0.1:9/{TOKEN}"]\n'
        "max_attempts = 3\ndrain_seconds = 2.5\n"
    )
    s = load_settings(cfg, env={})
    assert s.notify.webhooks == (f"https://hooks.example.com/h/{TOKEN}",)
    assert s.notify.apprise == (f"json://127.0.0.1:9/{TOKEN}",)
    assert (s.notify.max_attempts, s.notify.drain_seconds, s.notify.enabled) == (3, 2.5, True)
    assert TOKEN not in repr(s) and TOKEN not in repr(s.notify)
    # registered: scrubbed from any text, and the token alone too (its path segment)
    assert TOKEN not in redact(f"failed POST https://hooks.example.com/h/{TOKEN} and {TOKEN}")
    hidden = s.without_secrets()
    assert hidden.notify.webhooks == () and hidden.notify.max_attempts == 3
    assert TOKEN not in json.dumps(hidden.notify.__dict__, default=str)
    env = {"HEDGEFLOW_NOTIFY__WEBHOOKS": json.dumps([f"http://127.0.0.1:1/{TOKEN}"])}
    assert load_settings(env=env).notify.webhooks == (f"http://127.0.0.1:1/{TOKEN}",)
    assert not load_settings(env={}).notify.enabled


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"webhooks": f"https://h/{TOKEN}"}, "notify.webhooks", "expected a list of URLs"),
        ({"webhooks": ["https://ok/x", f"ws://h/{TOKEN}"]}, "notify.webhooks[1]",
         "not an http(s) URL"),
        ({"webhooks": [f"https:///{TOKEN}"]}, "notify.webhooks[0]", "needs a host"),
        ({"webhooks": [f"https://h/{TOKEN}", f"https://h/{TOKEN}"]}, "notify.webhooks[1]", "twice"),
        ({"webhooks": [3]}, "notify.webhooks[0]", "expected a URL string"),
        ({"apprise": [f"{TOKEN}"]}, "notify.apprise[0]", "not an Apprise URL"),
        ({"apprise": [f"bogus://{TOKEN}"]}, "notify.apprise[0]", "does not know the scheme"),
        ({"apprise": [f"tgram://{TOKEN}"]}, "notify.apprise[0]", "does not know"),
        ({"max_attempts": 0}, "notify.max_attempts", "max_attempts must be in [1, 1000]"),
        ({"timeout": -1}, "notify.timeout", "timeout must be in"),
    ],
)  # fmt: skip
def test_bad_values_name_the_entry_never_the_url(
    raw: dict, key: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, overrides={"notify": raw})
    message = str(err.value)
    assert message.startswith(f"setting {key!r}: ") and problem in message, message
    assert "\n" not in message
    assert TOKEN not in message
    assert TOKEN not in caplog.text  # Apprise logs the URLs it rejects: muted


def test_a_default_notify_settings_has_no_channel() -> None:
    n = NotifySettings()
    assert n.webhooks == () and n.apprise == () and not n.enabled
