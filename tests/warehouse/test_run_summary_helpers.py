"""The runs row's fingerprint of a run's bars and its ``reason``, shared by every flow."""

from __future__ import annotations

import hashlib

from hedgeflow.warehouse import combined_fingerprint, failures_reason


def test_the_fingerprint_is_order_free_keeps_repeats_and_is_none_when_empty() -> None:
    pairs = [("B.US", "sha256:2"), ("A.US", "sha256:1"), ("A.US", "sha256:1")]
    expected = "sha256:" + hashlib.sha256(b"A.US=sha256:1,A.US=sha256:1,B.US=sha256:2").hexdigest()
    assert combined_fingerprint(pairs) == expected
    assert combined_fingerprint(reversed(pairs)) == expected
    assert combined_fingerprint(pairs[:2]) != expected  # two agents on one symbol count twice
    assert combined_fingerprint([]) is None


def test_the_reason_names_each_failure_in_order() -> None:
    assert failures_reason({"stocks": "ingest failed: HTTP 500", "fx": "no bars"}) == (
        "stocks: ingest failed: HTTP 500; fx: no bars"
    )
    assert failures_reason({}) is None
