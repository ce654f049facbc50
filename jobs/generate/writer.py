"""Writes landing files `<root>/<source>/dt=<date>/<file>` in the configured formats, reproducibly.

Bytes depend only on the rows: gzip members carry mtime 0 and no file name, Parquet files no creation
time. Files are appended block by block by one background thread (formatting and compression release
the GIL, so they overlap with generating the next block; a single thread keeps every file's rows in
order). At most `max_pending_blocks` blocks wait for writing, which bounds memory. `close()` adds
header-only files for required sources that got no rows in a batch and the `_READY` markers.
"""
from __future__ import annotations

import gzip
import io
import json
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobs.common.contract import load_contract
from jobs.generate.tables import BATCH

EXTENSIONS = {"csv": ".csv", "csv.gz": ".csv.gz", "jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz",
              "parquet": ".parquet"}


def _csv_bytes(table: pa.Table, header: bool) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=header, quoting_style="none"))
    return sink.getvalue()


def _json_value(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """JSON text of each value: quoted and escaped strings, bare numbers and booleans, null."""
    if pa.types.is_string(column.type):
        escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    else:
        text = pc.cast(column, pa.string())
    return pc.fill_null(text, "null")


def _jsonl_bytes(table: pa.Table) -> bytes:
    """One JSON object per line, built column-wise by Arrow kernels (no per-row Python)."""
    if table.num_rows == 0:
        return b""
    members = [pc.binary_join_element_wise(json.dumps(name) + ":", _json_value(table.column(name)), "")
               for name in table.column_names]
    lines = pc.binary_join_element_wise("{", pc.binary_join_element_wise(*members, ","), "}\n", "")
    return b"".join(_string_bytes(chunk) for chunk in lines.chunks)


def _string_bytes(strings: pa.StringArray) -> memoryview:
    """The concatenated UTF-8 of a string array without nulls, straight from its data buffer."""
    _, offsets, data = strings.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[strings.offset:strings.offset + len(strings) + 1]
    return memoryview(data)[bounds[0]:bounds[-1]] if len(strings) else memoryview(b"")


def _as_text(table: pa.Table) -> pa.Table:
    """Parquet files carry every field as text, the way the source systems export them."""
    return pa.Table.from_arrays([col.cast(pa.string()) for col in table.columns], names=table.column_names)


class _File:
    def __init__(self, path: Path, fmt: str, gzip_level: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fmt, self.rows = path, fmt, 0
        self.raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.stream = (gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=gzip_level, mtime=0)
                       if fmt.endswith(".gz") else self.raw)
        self.parquet: pq.ParquetWriter | None = None
        self.columns: list[str] | None = None
        self.header_written = False

    def write(self, table: pa.Table) -> None:
        if self.columns is None:
            self.columns = table.column_names
        elif table.column_names != self.columns:
            raise AssertionError(f"{self.path}: columns changed between blocks")
        if self.fmt == "parquet":
            text = _as_text(table)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.raw, text.schema, compression="snappy")
            if text.num_rows:
                self.parquet.write_table(text)
        elif self.fmt.startswith("csv"):
            self.stream.write(_csv_bytes(table, header=not self.header_written))
            self.header_written = True
        else:
            self.stream.write(_jsonl_bytes(table))
        self.rows += table.num_rows

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


class LandingWriter:
    def __init__(self, root: Path, formats: dict[str, str], gzip_level: int, batch_dates: list[date],
                 extra_columns: dict[tuple[str, int, str], str]):
        self.root, self.formats, self.gzip_level = root, formats, gzip_level
        self.batch_dates = batch_dates
        self.extra_columns = extra_columns
        self.extra_written: dict[str, list[str]] = {}
        self.files: dict[tuple[str, int, str], _File] = {}
        self.schemas: dict[str, pa.Schema] = {}
        self.rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer")
        self.block: list[Future] = []
        self.pending: deque[list[Future]] = deque()

    def folder(self, source: str, batch: int) -> Path:
        return self.root / source / f"dt={self.batch_dates[batch].isoformat()}"

    def write(self, source: str, table: pa.Table, part: str = "part-00000", close: bool = False) -> None:
        """Route the rows of `table` to their batches by its `__batch` column (sorted ascending)."""
        batch = table.column(BATCH).to_numpy()
        if np.any(np.diff(batch) < 0):
            raise AssertionError(f"{source}: rows must be ordered by batch")
        data = table.drop_columns([BATCH])
        self.schemas.setdefault(source, data.schema)
        bounds = np.searchsorted(batch, np.arange(len(self.batch_dates) + 1))
        for b in range(len(self.batch_dates)):
            if bounds[b + 1] > bounds[b]:
                rows = data.slice(bounds[b], bounds[b + 1] - bounds[b])
                self.block.append(self.worker.submit(self._append, source, b, part, rows, close))

    def end_block(self, max_pending_blocks: int = 1) -> None:
        """Mark the end of a block's writes; wait while more than `max_pending_blocks` blocks are queued."""
        self.pending.append(self.block)
        self.block = []
        while len(self.pending) > max_pending_blocks:
            for future in self.pending.popleft():
                future.result()

    def _append(self, source: str, batch: int, part: str, rows: pa.Table, close: bool) -> None:
        key = (source, batch, part)
        extra = self.extra_columns.get(key)
        if extra:
            codes = np.array([f"BR{k:03d}" for k in range(1, 10)], dtype=object)
            rows = rows.append_column(extra, pa.array(codes[np.arange(rows.num_rows) % len(codes)], pa.string()))
            self.extra_written[source] = [extra]
        handle = self.files.get(key)
        if handle is None:
            fmt = self.formats[source]
            handle = self.files[key] = _File(self.folder(source, batch) / f"{source}-{part}{EXTENSIONS[fmt]}",
                                             fmt, self.gzip_level)
        handle.write(rows)
        self.rows[source][self.batch_dates[batch].isoformat()] += rows.num_rows
        if close:
            handle.close()
            self.files[key] = _Closed(handle)

    def close(self) -> dict[str, dict[str, int]]:
        self.end_block(max_pending_blocks=0)
        self.worker.shutdown()
        for handle in self.files.values():
            handle.close()
        contract = load_contract()
        for source, spec in contract.items():
            for batch, day in enumerate(self.batch_dates):
                folder = self.folder(source, batch)
                if not folder.is_dir() and not spec.optional:
                    empty = _File(folder / f"{source}-part-00000{EXTENSIONS[self.formats[source]]}",
                                  self.formats[source], self.gzip_level)
                    schema = self.schemas.get(source) or pa.schema([(f, pa.string()) for f in spec.field_names])
                    empty.write(schema.empty_table())
                    empty.close()
                    self.rows[source][day.isoformat()] += 0
                if folder.is_dir():
                    (folder / "_READY").write_bytes(b"")
        return {src: dict(sorted(per.items())) for src, per in sorted(self.rows.items())}


class _Closed:
    """A file already finished (one-shot chunk)."""

    def __init__(self, handle: _File):
        self.path = handle.path

    def close(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        raise AssertionError(f"{self.path} is already complete")
