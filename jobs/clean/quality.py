"""Great Expectations 1.x suites on the silver tables: load, validate, summarise.

One versioned suite per silver table in conf/expectations/<table>.yaml. Each expectation is `critical`
(the run stops) or `warning` (recorded, the run goes on). Results are asked for without sample values
(`partial_unexpected_count: 0`), so neither the JSON under the lake nor ops.dq_results can carry PII.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from jobs.common.errors import InputError

log = logging.getLogger("crm.clean")

SEVERITIES = ("critical", "warning")
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}

DQ_RESULTS_SCHEMA = T.StructType([
    T.StructField("batch_date", T.DateType()),
    T.StructField("table_name", T.StringType()),
    T.StructField("suite", T.StringType()),
    T.StructField("suite_version", T.IntegerType()),
    T.StructField("expectation", T.StringType()),
    T.StructField("column_name", T.StringType()),
    T.StructField("kwargs", T.StringType()),
    T.StructField("severity", T.StringType()),
    T.StructField("success", T.BooleanType()),
    T.StructField("element_count", T.LongType()),
    T.StructField("unexpected_count", T.LongType()),
    T.StructField("observed_value", T.StringType()),
    T.StructField("results_path", T.StringType()),
    T.StructField("run_id", T.StringType()),
])


@dataclass(frozen=True)
class Suite:
    table: str
    version: int
    expectations: tuple[dict[str, Any], ...]

    @property
    def name(self) -> str:
        return f"{self.table}.v{self.version}"


def load_suite(folder: Path, table: str) -> Suite:
    path = folder / f"{table}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no expectation suite for {table}") from None
    if raw.get("table") != table or not isinstance(raw.get("version"), int):
        raise InputError(f"{path}: expected `table: {table}` and an integer `version`")
    for item in raw.get("expectations") or []:
        if item.get("severity") not in SEVERITIES or not str(item.get("type", "")).startswith("expect_"):
            raise InputError(f"{path}: every expectation needs `type: expect_...` and a severity of "
                             f"{', '.join(SEVERITIES)}; got {item}")
    return Suite(table, raw["version"], tuple(raw.get("expectations") or ()))


@dataclass(frozen=True)
class Outcome:
    """One expectation's result, flattened for ops.dq_results and the error message."""
    table: str
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    severity: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: str | None

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        if self.unexpected_count is not None:
            found = f"{self.unexpected_count} unexpected of {self.element_count} rows"
        else:
            found = f"observed {self.observed_value}"
        return f"{self.table}: {self.expectation}({args}) failed, {found}"


class Validator:
    """One ephemeral GX context per run; a Spark data source with one asset per silver table.

    Great Expectations is imported here, not with the module: the import takes about 10 s, which the
    clean job spends on a thread of its own while the first sources are cleaned.
    """

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        # The frames handed in are already read from the lake; GX must not cache them again.
        self.source = self.context.data_sources.add_spark(name="silver", persist=False)

    def validate(self, frame: DataFrame, suite: Suite) -> tuple[dict[str, Any], list[Outcome]]:
        import great_expectations as gx  # imported once, by __init__
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        asset = self.source.add_dataframe_asset(name=suite.table)
        batch = asset.add_batch_definition_whole_dataframe(f"{suite.table}-batch")
        gx_suite = gx.ExpectationSuite(name=suite.name, meta={"version": suite.version})
        for item in suite.expectations:
            gx_suite.add_expectation_configuration(ExpectationConfiguration(
                type=item["type"], kwargs=dict(item.get("kwargs") or {}), severity=item["severity"]))
        gx_suite = self.context.suites.add(gx_suite)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)
        document = result.to_json_dict()
        return document, [_outcome(suite.table, item) for item in document["results"]]


def _outcome(table: str, item: dict[str, Any]) -> Outcome:
    config = item["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
    result = item.get("result") or {}
    observed = result.get("observed_value")
    if item.get("exception_info", {}).get("raised_exception"):
        observed = f"error: {item['exception_info'].get('exception_message')}"
    return Outcome(table=table, expectation=config["type"], column=kwargs.get("column"), kwargs=kwargs,
                   severity=str(config.get("severity", "critical")), success=bool(item["success"]),
                   element_count=result.get("element_count"),
                   unexpected_count=result.get("unexpected_count"),
                   observed_value=None if observed is None else str(observed))


def write_results(folder: str, table: str, document: dict[str, Any]) -> str:
    """The GX result JSON under the lake root, local or remote (pyarrow's file systems, as the lake)."""
    uri = folder if "://" in folder else Path(folder).resolve().as_uri()
    fs, path = pafs.FileSystem.from_uri(uri)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{table}.json") as out:
        out.write(json.dumps(document, indent=1, sort_keys=True, default=str).encode("utf-8"))
    return f"{uri}/{table}.json"


def dq_rows(outcomes: list[Outcome], suite: Suite, batch_date: date, results_path: str,
            run_id: str) -> list[tuple]:
    return [(batch_date, o.table, suite.name, suite.version, o.expectation, o.column,
             json.dumps(o.kwargs, sort_keys=True, default=str), o.severity, o.success, o.element_count,
             o.unexpected_count, o.observed_value, results_path, run_id) for o in outcomes]
