"""BENCHMARKS.md writer that only ever rewrites one section at a time.

Every benchmark owns the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``. Writing a section replaces that block (or appends it when
it is new) and leaves everything else in the file byte for byte, so benchmarks
added later (by other modules, other commands, other people) coexist. Writes are
atomic (temp file + rename) and serialised by a lock file in the temp directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

HEADER = """# hedgeflow benchmarks

Every number here is produced by a benchmark command in this repository (`python -m
benchmarks ...`, see each section's "Reproduce" line) and measured against the named
peers **in the same run**. The machines are shared and noisy, so read the ratios; the
absolute times drift from run to run. Compile (JIT) time is never inside a timing and
is reported on its own. Each section is rewritten only by its own benchmark, between
its `<!-- bench:NAME -->` markers.
"""

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _markers(name: str) -> tuple[str, str]:
    if not _NAME_RE.match(name):
        raise ValueError(f"bad section name {name!r}")
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def _block_re(name: str) -> re.Pattern[str]:
    start, end = _markers(name)
    return re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)


def sections(text: str) -> dict[str, str]:
    """Section name -> body (without the markers) of every marked block in ``text``."""
    found = re.finditer(
        r"<!-- bench:([A-Za-z0-9_.-]+) -->\n(.*?)\n?<!-- /bench:\1 -->", text, re.DOTALL
    )
    return {m.group(1): m.group(2) for m in found}


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the block of ``name`` set to ``body`` (appended if missing)."""
    start, end = _markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = _block_re(name)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    if not text.strip():
        text = HEADER
    return text.rstrip("\n") + "\n\n" + block + "\n"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"hedgeflow-benchmarks-{key}.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_section(path: Path | str, name: str, body: str) -> None:
    """Rewrite section ``name`` of the markdown file at ``path`` (created if missing)."""
    path = Path(path)
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        new = replace_section(text, name, body)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(new)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
