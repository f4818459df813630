from __future__ import annotations

import logging

import pytest

from hedgeflow.errors import ConfigError
from hedgeflow.secrets import (
    RedactingFilter,
    install_redaction,
    load_eodhd_token,
    redact,
    register_secret,
    registered_secrets,
)


def test_redact_given_encoded_and_query_tokens() -> None:
    assert redact("token abc/+= here", "abc/+=") == "token *** here"
    assert redact("url ?q=abc%2F%2B%3D&x=1", "abc/+=") == "url ?q=***&x=1"
    assert (
        redact("GET /x?api_token=zzz&fmt=json HTTP/1.1") == "GET /x?api_token=***&fmt=json HTTP/1.1"
    )
    assert redact("nothing secret", "", None) == "nothing secret"


def test_registered_secrets_are_redacted_everywhere() -> None:
    register_secret("reg-secret-1")
    register_secret("")
    assert "reg-secret-1" in registered_secrets() and "" not in registered_secrets()
    assert redact("a reg-secret-1 b") == "a *** b"


def test_filter_scrubs_message_args_and_traceback() -> None:
    register_secret("flt-secret-2")
    flt = RedactingFilter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("?k=flt-secret-2",), None)
    assert flt.filter(record)
    assert record.getMessage() == "url ?k=***"
    try:
        raise ValueError("boom flt-secret-2")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, exc_info)
    flt.filter(record)
    assert record.exc_info is None and record.exc_text is not None
    assert "flt-secret-2" not in record.exc_text and "boom ***" in record.exc_text
    text = logging.Formatter().format(record)
    assert "flt-secret-2" not in text


def test_install_redaction_is_idempotent_and_reaches_library_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_secret("lib-secret-3")
    flt = install_redaction()
    install_redaction()
    lib = logging.getLogger("urllib3.connectionpool")
    assert lib.filters.count(flt) == 1
    for handler in logging.getLogger().handlers:
        assert handler.filters.count(flt) == 1
    caplog.set_level(logging.DEBUG)
    lib.debug('"GET /api?api_token=%s HTTP/1.1" 200', "lib-secret-3")
    assert "lib-secret-3" not in caplog.text and "api_token=***" in caplog.text


def test_load_eodhd_token() -> None:
    with pytest.raises(ConfigError, match="EODHD_API_TOKEN") as info:
        load_eodhd_token({})
    assert "is not set" in str(info.value)
    with pytest.raises(ConfigError, match="EODHD_API_TOKEN"):
        load_eodhd_token({"EODHD_API_TOKEN": "   "})
    assert load_eodhd_token({"EODHD_API_TOKEN": " tok-env-4 \n"}) == "tok-env-4"
    assert "tok-env-4" in registered_secrets()
