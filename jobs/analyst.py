"""Analyst access: Spark SQL over the lake where every table is addressable as `layer.table`.

Spark's session catalog has no `gold` database, so a query's `layer.table` references to existing lake
tables are rewritten to temporary views (`layer__table`) registered from the lake API; nothing else in
the statement changes.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame

from jobs.common.errors import InputError
from jobs.common.lake import Lake

_REFERENCE = re.compile(r"(?<![\w.`])`?([a-z_][a-z0-9_]*)`?\.`?([a-z_][a-z0-9_]*)`?(?![\w`(])", re.IGNORECASE)


def bind_tables(lake: Lake, statement: str) -> str:
    """Register the lake tables the statement names as temp views; returns the rewritten statement."""
    known = set(lake.tables())

    def replace(match: re.Match[str]) -> str:
        name = f"{match.group(1).lower()}.{match.group(2).lower()}"
        if name not in known:
            return match.group(0)
        view = name.replace(".", "__")
        lake.read(name).createOrReplaceTempView(view)
        return view

    return _REFERENCE.sub(replace, statement)


def query(lake: Lake, statement: str) -> DataFrame:
    try:
        return lake.spark.sql(bind_tables(lake, statement))
    except Exception as exc:  # Spark's AnalysisException/ParseException: one clear line for the analyst
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"SQL error: {first_line}",
                         hint="tables are named layer.table; `crm-pipeline tables` lists them") from None


def write_result(frame: DataFrame, out: Path) -> Path:
    """Write a query result to one CSV or Parquet file, through Spark (no collect to the driver)."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(f"--out {out}: the file must end in .csv or .parquet")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as scratch:
        writer = frame.coalesce(1).write.mode("overwrite")
        target = str(Path(scratch) / "result")
        if suffix == ".csv":
            writer.option("header", True).csv(target)
        else:
            writer.parquet(target)
        part = next(p for p in Path(target).iterdir() if p.name.startswith("part-"))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(part), out)
    return out


def table_catalogue(lake: Lake) -> list[dict[str, object]]:
    """Every table with its current version, rows (from file statistics) and last commit time."""
    rows = []
    for name in lake.tables():
        last = lake.history(name, 1)[0]
        committed = datetime.fromtimestamp(last["timestamp"] / 1000, tz=UTC)
        rows.append({"table": name, "version": lake.version(name), "rows": lake.row_count(name),
                     "last_commit_utc": committed.strftime("%Y-%m-%d %H:%M:%S")})
    return rows
