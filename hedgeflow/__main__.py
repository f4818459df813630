"""``python -m hedgeflow``: the ``hedgeflow`` command."""

from __future__ import annotations

from hedgeflow.cli import run

if __name__ == "__main__":
    run()
