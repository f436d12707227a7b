"""Ingestion engine: a source streamed into a content-addressed Parquet object (no DB access).

Memory stays bounded by the batch size: batches are cast and written one at a time with
``pyarrow.parquet.ParquetWriter``. Bad rows go to a rejects CSV with the reason per row, or
reject the whole file when the resource's policy says so.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from yuanjian.resources import store
from yuanjian.resources.readers import BadRow, IngestError, ReadResult, Source, read_batches

BAD_ROW_POLICIES = ("quarantine", "reject")


@dataclass
class StagedIngest:
    """A published Parquet object and what was learned while writing it."""

    content_hash: str
    object_path: Path
    rows: int
    bytes: int
    bad_rows: int
    rejects_path: Path | None
    encoding: str | None
    delimiter: str | None
    first_bad: list[BadRow] = field(default_factory=list)


def ingest_to_object(
    source: Source,
    *,
    data_dir: Path,
    bad_row_policy: str = "quarantine",
    max_bad_ratio: float = 0.01,
    max_bytes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> StagedIngest:
    """Read the source and publish it as a Parquet object; raise IngestError on bad input."""
    if bad_row_policy not in BAD_ROW_POLICIES:
        raise ValueError(f"bad_row_policy must be one of {BAD_ROW_POLICIES}")
    if source.path is not None and source.path.is_file() and max_bytes is not None:
        size = source.path.stat().st_size
        if size > max_bytes:
            raise IngestError(
                f"the file has {size} bytes, over the limit of {max_bytes}", file=source.name
            )
    store.clean_stale_partials(data_dir)
    result = ReadResult()
    rows = 0
    with store.staging(data_dir, ".parquet") as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for batch in read_batches(source, result, progress):
                if writer is None:
                    writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
                writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))
                rows += batch.num_rows
            if writer is None:
                if result.schema is None or (rows == 0 and result.bad_row_count == 0):
                    if result.schema is not None and len(result.schema):
                        raise IngestError(
                            "the file has a header but no data rows", file=source.name
                        )
                    raise IngestError("the file has no data", file=source.name)
                writer = pq.ParquetWriter(tmp, result.schema, compression="zstd")
        finally:
            if writer is not None:
                writer.close()
        total = rows + result.bad_row_count
        if result.bad_row_count:
            first = result.bad_rows[0]
            ratio = result.bad_row_count / total if total else 1.0
            if bad_row_policy == "reject" or ratio > max_bad_ratio:
                why = (
                    "the resource's policy rejects files with bad rows"
                    if bad_row_policy == "reject"
                    else f"{ratio:.2%} of rows are bad, over the limit of {max_bad_ratio:.2%}"
                )
                raise IngestError(
                    f"{first.reason} ({result.bad_row_count} bad row(s) of {total}; {why})",
                    file=source.name,
                    row=first.row,
                    column=first.column,
                )
        if rows == 0:
            raise IngestError("no valid data rows", file=source.name)
        digest, final = store.publish(data_dir, tmp, ".parquet")
    rejects = None
    if result.bad_row_count:
        with store.staging(data_dir, ".csv") as rtmp:
            with rtmp.open("w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["row", "column", "reason", "raw"])
                for b in result.bad_rows:
                    w.writerow([b.row, b.column or "", b.reason, b.raw])
                if result.bad_row_count > len(result.bad_rows):
                    w.writerow(
                        [
                            "",
                            "",
                            f"... {result.bad_row_count - len(result.bad_rows)} "
                            "more bad rows not listed",
                            "",
                        ]
                    )
            _, rejects = store.publish(data_dir, rtmp, ".rejects.csv")
    return StagedIngest(
        content_hash=digest,
        object_path=final,
        rows=rows,
        bytes=final.stat().st_size,
        bad_rows=result.bad_row_count,
        rejects_path=rejects,
        encoding=result.encoding,
        delimiter=result.delimiter,
        first_bad=result.bad_rows[:20],
    )


def sample_table(path: Path, max_rows: int = 100_000) -> pa.Table:
    """An evenly spread sample of a Parquet object, for detection."""
    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    if n <= max_rows:
        return pf.read()
    # Whole row groups spread evenly over the file: bounded memory, deterministic.
    groups = pf.metadata.num_row_groups
    per_group = max(n / groups, 1)
    stride = max(1, int(groups / max(1, max_rows / per_group)))
    tables, taken = [], 0
    for g in range(0, groups, stride):
        t = pf.read_row_group(g)
        tables.append(t)
        taken += t.num_rows
        if taken >= max_rows:
            break
    return pa.concat_tables(tables).slice(0, max_rows)
