"""Exception types shared by the core, the warehouse and the flows.

Every error raised on bad input names the problem (the key, the symbol, the
file, the HTTP status) and never carries a secret.
"""

from __future__ import annotations


class HedgeflowError(Exception):
    """Base class: an error hedgeflow explains to its user."""


class ConfigError(HedgeflowError, ValueError):
    """A setting has a wrong value; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"setting {key!r}: {problem}")


class InvalidInputError(HedgeflowError, ValueError):
    """A user-supplied symbol, date, interval, parameter or file is not acceptable."""


class SourceError(HedgeflowError):
    """A market data source failed."""


class TransientSourceError(SourceError):
    """Worth retrying: timeout, connection reset, HTTP 5xx, 429, malformed body from a proxy."""


class PermanentSourceError(SourceError):
    """Never retried: bad token (401/403), unknown ticker (404), bad request."""


class DataFormatError(SourceError):
    """The vendor answered with something that is not the documented format."""


class DataValidationError(HedgeflowError, ValueError):
    """A frame does not satisfy its schema (and cannot be quarantined row by row)."""
