"""``python -m hedgeflow``: the ``hedgeflow`` command."""

from __future__ import annotations

import sys

from hedgeflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
