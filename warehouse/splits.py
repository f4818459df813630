"""The lake's splits: ``lake/splits/symbol=<s>/splits.parquet``, one file per stock.

Written by the ingest (the vendor's answer merged into what is stored: a split the
vendor reports again replaces the stored one for its ex-date, and nothing stored is
dropped because an answer left it out), read by every split-adjusted bars read. The
file is replaced atomically under the symbol's lake lock, like its bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hedgeflow.market import normalize_symbol
from hedgeflow.schemas.splits import SPLIT_COLUMNS, Splits
from hedgeflow.splits import Split
from hedgeflow.warehouse import lake
from hedgeflow.warehouse.paths import WarehousePaths


def read_splits(paths: WarehousePaths, symbol: str) -> list[Split]:
    """The stored splits of ``symbol``, oldest first (none when nothing is stored)."""
    path = paths.splits_file(symbol)
    if not path.is_file():
        return []
    table = pq.read_table(path, columns=["ex_date", "new_shares", "old_shares"])
    rows = table.to_pydict()
    return sorted(
        Split(d, float(n), float(o))
        for d, n, o in zip(rows["ex_date"], rows["new_shares"], rows["old_shares"], strict=True)
    )


def splits_frame(symbol: str, splits: Sequence[Split], source: str) -> pd.DataFrame:
    """``splits`` as validated ``splits`` table rows."""
    now = pd.Timestamp(datetime.now(UTC)).as_unit("us")
    frame = pd.DataFrame(
        {
            "symbol": [symbol] * len(splits),
            "ex_date": [s.ex_date for s in splits],
            "new_shares": [float(s.new) for s in splits],
            "old_shares": [float(s.old) for s in splits],
            "ratio": [s.ratio for s in splits],
            "source": [source] * len(splits),
            "ingested_at": pd.Series([now] * len(splits), dtype="datetime64[us, UTC]"),
        },
        columns=list(SPLIT_COLUMNS),
    )
    return Splits.validate(frame)


def write_splits(
    paths: WarehousePaths,
    symbol: str,
    splits: Sequence[Split],
    source: str,
    *,
    lock_timeout: float = 30.0,
) -> int:
    """Merge ``splits`` into the stored ones of ``symbol``; the number of splits stored
    that were not stored before (or changed)."""
    symbol = normalize_symbol(symbol)
    with lake.file_lock(paths.symbol_lock(symbol), lock_timeout):
        stored = {s.ex_date: s for s in read_splits(paths, symbol)}
        changed = [s for s in splits if stored.get(s.ex_date) != s]
        if not changed:
            return 0
        merged: dict[date, Split] = {**stored, **{s.ex_date: s for s in splits}}
        frame = splits_frame(symbol, sorted(merged.values()), source)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = paths.splits_file(symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        lake.replace_durably(path, lambda fh: pq.write_table(table, fh, write_page_checksum=True))
    return len(changed)
