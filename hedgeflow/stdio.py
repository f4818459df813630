"""Process-wide output settings shared by every command-line entry point."""

from __future__ import annotations

import contextlib
import sys


def line_buffered() -> None:
    """Flush stdout and stderr at every newline, also when they are pipes.

    Python block-buffers a piped stdout unless ``PYTHONUNBUFFERED`` is set, so a
    caller that reads a command's output line by line (a test, ``| tee``, a
    supervisor waiting for the simulator's address) would otherwise see nothing
    until the buffer fills or the process exits.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(line_buffering=True)
