"""The landing zone on disk: complete batches, their data files and their formats (no Spark here)."""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from jobs.common.errors import InputError

# Longest suffix first, so "x.csv.gz" is CSV.gz and not an unknown ".gz".
FORMATS = ("csv.gz", "jsonl.gz", "parquet", "jsonl", "csv")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    name: str  # relative to the landing root, e.g. "transactions/dt=2026-10-31/part-1.csv.gz"
    format: str

    @property
    def location(self) -> str:
        """For Spark's readers: a plain path (a file: URI would escape the "=" of "dt=")."""
        return str(self.path.resolve())


def batch_folder(landing_root: Path, source_name: str, batch_date: date) -> Path:
    return landing_root / source_name / f"dt={batch_date.isoformat()}"


def is_complete(folder: Path, ready_marker: str) -> bool:
    return (folder / ready_marker).is_file()


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in FORMATS:
        if name.endswith("." + suffix):
            return suffix
    return None


def batch_files(folder: Path, landing_root: Path) -> list[LandingFile]:
    """The data files of a complete batch, in name order; markers ("_*", ".*") are skipped.

    Anything else that is not a contract format stops the source: a file we cannot read must not be
    dropped silently.
    """
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        fmt = file_format(path)
        name = path.relative_to(landing_root).as_posix()
        if fmt is None or not path.is_file():
            raise InputError(f"{name}: not a landing file format (expected one of "
                             f"{', '.join('.' + f for f in FORMATS)})")
        files.append(LandingFile(path, name, fmt))
    return files


def csv_header(file: LandingFile) -> list[str]:
    """The header row of a CSV or CSV.gz file, read with the same RFC 4180 rules as the data."""
    opener = gzip.open if file.format == "csv.gz" else open
    try:
        with opener(file.path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            header = next(csv.reader(text), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{file.name}: cannot read the CSV header: {exc}") from None
    if not header:
        raise InputError(f"{file.name}: empty file, a CSV file needs a header row with the field names")
    return header
