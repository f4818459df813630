"""A durable local journal of the live steps not yet stored in the warehouse.

The live flow appends every step's rows here (flushed and fsynced) *before* it asks
the warehouse to store them, so a warehouse that stays locked (a slow ``hedgeflow
sql`` holds the DuckDB file) or a process killed with a backlog loses nothing: the
journal is the backlog. Entries are stored in order; once stored they are marked
done, and when the writer has caught up the journal is emptied.

Files (``path`` is e.g. ``HOME/journal/live-<run_id>.journal``):

- ``path``: records ``MAGIC | length (u32) | crc32 (u32) | payload``, the payload a
  pickled ``(seq, item)``; ``seq`` counts up from 1 across truncations;
- ``path`` + ``.done``: the highest ``seq`` stored (text, replaced atomically).

A crash mid-append leaves a torn last record (short, or a bad checksum): it is
ignored, and cut off before the next append. A replay of entries that were stored but
not yet marked done (a kill between the two) stores the same rows again, which the
live tables' natural keys make harmless (a bar's rows replace themselves).
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DONE_SUFFIX", "Journal", "JournalEntry"]

MAGIC = b"HFJ1"
_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
DONE_SUFFIX = ".done"
MAX_RECORD_BYTES = 256 * 1024 * 1024  # a longer length field is garbage, not a record

JournalEntry = tuple[int, Any]  # (seq, item)


class Journal:
    """An append-only, fsynced journal of items with a "stored up to seq" mark (see the
    module doc). Thread-safe: one thread appends while another marks entries done."""

    def __init__(self, path: Path | str, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.done_path = self.path.with_name(self.path.name + DONE_SUFFIX)
        self._fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries, good_end = self._scan()
        self.done_seq = self._read_done()
        self.last_seq = max([self.done_seq, *(seq for seq, _ in entries)])
        self.torn_bytes = 0
        # cut a torn tail off, so the next record starts on a record boundary
        if self.path.exists() and self.path.stat().st_size > good_end:
            self.torn_bytes = self.path.stat().st_size - good_end
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)
                self._sync(fh)
        self._fh = self.path.open("ab")

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, last={self.last_seq}, done={self.done_seq})"

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def peek(cls, path: Path | str) -> list[JournalEntry]:
        """The unstored entries of the journal at ``path``, read without opening it for
        writing (the journal of another, running or dead, process is left as it is)."""
        path = Path(path)
        done = _read_done(path.with_name(path.name + DONE_SUFFIX))
        return [(seq, item) for seq, item in _scan(path)[0] if seq > done]

    def _read_done(self) -> int:
        return _read_done(self.done_path)

    def _scan(self) -> tuple[list[JournalEntry], int]:
        return _scan(self.path)

    def pending(self) -> list[JournalEntry]:
        """The entries not yet stored, in order (a torn last record is left out)."""
        with self._lock:
            self._fh.flush()
            entries, _ = self._scan()
            return [(seq, item) for seq, item in entries if seq > self.done_seq]

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.pending())

    @property
    def backlog(self) -> int:
        """How many appended entries are not marked done."""
        return self.last_seq - self.done_seq

    # -- writing ---------------------------------------------------------------------------

    def _sync(self, fh: Any) -> None:
        fh.flush()
        if self._fsync:
            os.fsync(fh.fileno())

    def append(self, item: Any) -> int:
        """Write ``item`` durably (flushed and fsynced before returning); its seq."""
        return self.append_many([item])[0]

    def append_many(self, items: list[Any]) -> list[int]:
        """Write ``items`` durably, in order, with one fsync; their seqs."""
        with self._lock:
            seqs: list[int] = []
            chunks = []
            for item in items:
                seq = self.last_seq + 1 + len(seqs)
                payload = pickle.dumps((seq, item), protocol=pickle.HIGHEST_PROTOCOL)
                chunks.append(_HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)
                seqs.append(seq)
            self._fh.write(b"".join(chunks))
            self._sync(self._fh)
            if seqs:
                self.last_seq = seqs[-1]
            return seqs

    def mark_done(self, seq: int) -> None:
        """Entries up to ``seq`` are stored. When that is all of them, empty the journal."""
        with self._lock:
            if seq <= self.done_seq:
                return
            self.done_seq = seq
            tmp = self.done_path.with_name(self.done_path.name + ".tmp")
            tmp.write_text(str(seq))
            os.replace(tmp, self.done_path)
            if self.done_seq >= self.last_seq:
                self._fh.truncate(0)  # caught up: nothing left to replay
                self._sync(self._fh)

    def close(self, *, remove_when_empty: bool = False) -> None:
        """Close the file; with ``remove_when_empty`` delete both files when every
        entry is stored."""
        with self._lock:
            if not self._fh.closed:
                self._fh.close()
            if remove_when_empty and self.done_seq >= self.last_seq:
                for p in (self.path, self.done_path):
                    p.unlink(missing_ok=True)


def _read_done(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _scan(path: Path) -> tuple[list[JournalEntry], int]:
    """Every whole record of ``path``, and the offset where the good records end."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[JournalEntry] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if magic != MAGIC or length > MAX_RECORD_BYTES or start + length > len(data):
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        try:
            seq, item = pickle.loads(payload)
        except Exception:
            break
        entries.append((int(seq), item))
        pos = start + length
    return entries, pos
