"""The outbox: outbox/<D>/<channel>/<campaign_id>.csv, manifest.json and _SUCCESS, published atomically.

The day is assembled in a hidden sibling folder (`.<D>.incoming-<run id>`) and renamed into place; an
earlier outbox/<D> is first renamed aside and deleted afterwards. A reader therefore sees the complete
old day, the complete new day, or (for the instant between the two renames) no day, never half a day.
Readers take a day only when its _SUCCESS exists; _SUCCESS is the last file written.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
REASON_SEPARATOR = "|"


def file_columns(contact_field: str | None) -> list[str]:
    """The columns of a channel's file: the channel's one contact field, nothing else of the customer."""
    contact = [contact_field] if contact_field else []
    return ["push_id", "customer_id", *contact, "product_id", "product_name", "product_type", "offer_rank",
            "score", "reason_codes", "expiry_date"]


def _text(value: Any, score_decimals: int, column: str) -> str:
    if value is None:
        return ""
    if column == "score":
        return f"{value:.{score_decimals}f}"
    if column == "reason_codes":
        return REASON_SEPARATOR.join(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def render_csv(rows: Iterable[Mapping[str, Any]], contact_field: str | None, score_decimals: int) -> bytes:
    """UTF-8 CSV with a header, RFC 4180 quoting, `\\n` line ends; rows in the order given.

    Each row maps the columns of `file_columns` (the contact under `contact`) to values.
    """
    columns = file_columns(contact_field)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(row["contact"] if column == contact_field else row[column], score_decimals, column)
                         for column in columns])
    return buffer.getvalue().encode("utf-8")


@dataclass(frozen=True)
class OutboxFile:
    channel: str
    campaign_id: str
    rows: int
    content: bytes

    @property
    def path(self) -> str:
        return f"{self.channel}/{self.campaign_id}.csv"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "channel": self.channel, "campaign_id": self.campaign_id,
                "rows": self.rows, "bytes": len(self.content), "sha256": self.sha256}


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_outbox(root: Path, as_of: date, files: list[OutboxFile], manifest: Mapping[str, Any],
                   run_id: str) -> Path:
    """Write the day's files, manifest.json and _SUCCESS (last) beside the day, then swap it in."""
    root.mkdir(parents=True, exist_ok=True)
    day = root / as_of.isoformat()
    for leftover in root.glob(f".{as_of.isoformat()}.*"):  # from a run that died before its swap
        shutil.rmtree(leftover)
    incoming = root / f".{as_of.isoformat()}.incoming-{run_id}"
    incoming.mkdir()
    for item in files:
        _write(incoming / item.path, item.content)
    _write(incoming / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    _write(incoming / SUCCESS, b"")
    for folder in {(incoming / item.path).parent for item in files} | {incoming}:
        _sync_dir(folder)
    replaced = None
    if day.exists():
        replaced = root / f".{as_of.isoformat()}.replaced-{run_id}"
        os.replace(day, replaced)
    os.replace(incoming, day)
    _sync_dir(root)
    if replaced is not None:
        shutil.rmtree(replaced)
    return day
