"""Stage `clean`: bronze batch D -> silver, quarantine, ops.batch_audit, ops.dq_results.

Sources run in reference order (customers and products before the tables pointing at them), so the
orphan rules check against the silver state as of D; sources whose references are clean run side by
side. Idempotent per D:
* append tables (transactions, campaign_responses, app_events): silver partition batch_date = D is
  replaced; duplicates are judged against silver batches before D only, so a rerun sees the same input.
* current-state tables: the state is merged from the silver state left by the last run of a date
  before D (Delta time travel, found by the `batch_date` each commit carries) and batch D's valid rows,
  never from the current version, which may already hold D's earlier contribution.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date
from typing import TypeVar

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.clean.audit import BATCH_AUDIT, BatchAudit
from jobs.clean.audit import SCHEMA as AUDIT_SCHEMA
from jobs.clean.parse import RAW, assemble_reasons, keep_raw, parse_fields, text_valued_fields
from jobs.clean.pii import hash_key, pii_only, without_pii
from jobs.clean.quality import DQ_RESULTS_SCHEMA, Validator, dq_rows, load_suite, write_results
from jobs.clean.rules import cluster_by_key, flag_duplicates, flag_orphans, latest_per_key
from jobs.clean.settings import CleanSettings
from jobs.common.context import RunContext
from jobs.common.contract import SourceSpec, load_contract
from jobs.common.errors import DataQualityError, InputError
from jobs.common.lake import Lake
from jobs.common.paths import PROJECT_ROOT
from jobs.common.spark import empty_frame

log = logging.getLogger("crm.clean")

DQ_RESULTS = "ops.dq_results"
PII_SOURCE = "customers"
PII_TABLE = "silver.customer_pii"
OUTCOME = "_outcome"
Result = TypeVar("Result")


def referenced_sources(contract: dict[str, SourceSpec]) -> dict[str, set[str]]:
    """source -> the other sources its fields reference."""
    return {name: {f.references.split(".")[0] for f in spec.fields if f.references} - {name}
            for name, spec in contract.items()}


def processing_order(contract: dict[str, SourceSpec]) -> list[SourceSpec]:
    """Referenced sources first (stable by name among equals)."""
    needs = referenced_sources(contract)
    order: list[str] = []
    while len(order) < len(contract):
        ready = sorted(n for n in contract if n not in order and needs[n] <= set(order))
        if not ready:
            raise ValueError(f"circular references between sources: {sorted(set(contract) - set(order))}")
        order.extend(ready)
    return [contract[name] for name in order]


def _string_schema(names: list[str]) -> T.StructType:
    return T.StructType([T.StructField(n, T.StringType()) for n in names])


def read_bronze(lake: Lake, spec: SourceSpec, batch_date: date) -> DataFrame:
    table = f"bronze.{spec.source}"
    if lake.exists(table):
        return lake.read(table, partition_filters=[("batch_date", "=", batch_date)])
    log.warning("%s does not exist: %s is cleaned as an empty batch", table, spec.source)
    schema = _string_schema(spec.field_names).add("batch_date", T.DateType()).add("source_file", "string")
    return empty_frame(lake.spark, schema)


def bronze_rows(lake: Lake, sources: list[str], batch_date: date) -> dict[str, int]:
    """source -> rows of its bronze batch D (from the Delta log's file statistics)."""
    return {name: lake.row_count(f"bronze.{name}", partition_filters=[("batch_date", "=", batch_date)])
            for name in sources if lake.exists(f"bronze.{name}")}


def reference_keys(lake: Lake, spec: SourceSpec, text_fields: list[str], conf: CleanSettings
                   ) -> dict[str, tuple[DataFrame, str]]:
    references = {}
    for field in spec.fields:
        if not field.references:
            continue
        if field.name not in text_fields:
            raise InputError(f"schemas/{spec.source}.yaml: {field.name} references {field.references} but "
                             "is not a plain text field (a code, phone or e-mail is rewritten by clean)")
        source_name, key = field.references.split(".")
        table = f"silver.{source_name}"
        keys = (lake.read(table).select(F.col(key).alias("key")) if lake.exists(table)
                else empty_frame(lake.spark, _string_schema(["key"])))
        references[field.name] = (keys, conf.reference_reasons[source_name])
    return references


def earlier_keys(lake: Lake, spec: SourceSpec, batch_date: date) -> DataFrame:
    table = f"silver.{spec.source}"
    if lake.exists(table):
        return lake.read(table, partition_filters=[("batch_date", "<", batch_date)]).select(*spec.key)
    return empty_frame(lake.spark, spec.spark_schema).select(*spec.key)


def check_batch(ctx: RunContext, conf: CleanSettings, spec: SourceSpec, bronze: DataFrame) -> DataFrame:
    """Every bronze row with its typed values, `reason`/`reasons` and where it goes (`_outcome`)."""
    text_fields = text_valued_fields(spec, conf)
    checked = (bronze.transform(keep_raw(spec))
               .transform(flag_orphans(reference_keys(ctx.lake, spec, text_fields, conf))))
    if spec.kind == "append":
        checked = checked.transform(cluster_by_key(spec, text_fields))
    checked = checked.transform(parse_fields(spec, conf, ctx.settings.bank.timezone, ctx.business_date))
    if spec.kind == "append":
        checked = checked.transform(flag_duplicates(spec, earlier_keys(ctx.lake, spec, ctx.business_date)))
    checked = checked.transform(assemble_reasons(conf.reason_precedence))
    drop_duplicates = conf.duplicates.get(spec.source) == "drop"
    return checked.withColumn(OUTCOME, F.when(F.col("reason").isNull(), "silver")
                              .when((F.col("reason") == "duplicate_key") & F.lit(drop_duplicates), "dropped")
                              .otherwise("quarantine"))


def base_state(lake: Lake, table: str, batch_date: date) -> DataFrame | None:
    """The table as the last run of a date before D left it (None: D is the first batch)."""
    if not lake.exists(table):
        return None
    for commit in lake.history(table):
        committed = commit.get("batch_date")
        if committed is None:
            continue  # maintenance commits (compaction) carry no batch
        if date.fromisoformat(committed) > batch_date:
            log.warning("%s already holds batch %s; rerunning %s means rerunning the later dates in "
                        "order too", table, committed, batch_date)
        if date.fromisoformat(committed) < batch_date:
            return lake.read(table, version=commit["version"])
    return None


def write_state(lake: Lake, spec: SourceSpec, table: str, batch_rows: DataFrame, batch_date: date,
                run_id: str) -> int:
    base = base_state(lake, table, batch_date)
    state = batch_rows if base is None else batch_rows.unionByName(base)
    result = lake.overwrite(state.transform(latest_per_key(spec)), table,
                            metadata={"batch_date": batch_date.isoformat(), "run_id": run_id})
    return result.rows_added


def clean_source(ctx: RunContext, conf: CleanSettings, spec: SourceSpec, key: bytes, rows_in: int
                 ) -> tuple[BatchAudit, dict[str, int]]:
    """`rows_in`: the rows of the source's bronze batch D (`bronze_rows`)."""
    lake, day, run_id = ctx.lake, ctx.business_date, ctx.run_id
    bronze = read_bronze(lake, spec, day)
    checked = check_batch(ctx, conf, spec, bronze)
    if spec.kind == "append":
        # Only quarantine reads an append source's raw values and file afterwards; the cache below
        # holds every row, and without them building it took 5 s instead of 29 s for 10 M transactions.
        quarantined_only = F.col(OUTCOME) == "quarantine"
        checked = checked.withColumns({RAW: F.when(quarantined_only, F.col(RAW)),
                                       "source_file": F.when(quarantined_only, F.col("source_file"))})
    checked = checked.persist()
    try:
        # batch_date as a literal: the lake's check that every row is inside the replaced partition
        # then folds away instead of scanning the batch again.
        quarantine = (checked.where(F.col(OUTCOME) == "quarantine")
                      .select(f"{RAW}.*", F.lit(day).alias("batch_date"), "source_file", "reason", "reasons",
                              F.lit(run_id).alias("run_id")))
        quarantined = lake.replace_partitions(quarantine, f"quarantine.{spec.source}",
                                              [("batch_date", "=", day)], partition_by=["batch_date"],
                                              metadata={"run_id": run_id}).rows_added
        counts = {row[OUTCOME]: row["count"] for row in checked.groupBy(OUTCOME).count().collect()}
        accepted = (checked.where(F.col(OUTCOME) == "silver")
                    .select(*spec.field_names, F.lit(day).alias("batch_date"), F.lit(run_id).alias("run_id")))
        written = {f"quarantine.{spec.source}": quarantined}
        if spec.kind == "append":
            to_silver = lake.replace_partitions(accepted, f"silver.{spec.source}", [("batch_date", "=", day)],
                                                partition_by=["batch_date"],
                                                metadata={"run_id": run_id}).rows_added
            written[f"silver.{spec.source}"] = to_silver
        else:
            to_silver = counts.get("silver", 0)
            # Ties inside the batch are broken on source file and raw values, so pick the batch's
            # winners while those are at hand, then merge them with the earlier state per table.
            winners = (checked.where(F.col(OUTCOME) == "silver")
                       .select(RAW, "source_file", *spec.field_names, "batch_date")
                       .transform(latest_per_key(spec))
                       .select(*spec.field_names, "batch_date", F.lit(run_id).alias("run_id")))
            outputs = {f"silver.{spec.source}": winners}
            if spec.source == PII_SOURCE:
                outputs = {f"silver.{spec.source}": winners.transform(
                               without_pii(spec, conf.id_number_field.split(".")[1], key)),
                           PII_TABLE: winners.transform(pii_only(["batch_date", "run_id"]))}
            for table, rows in outputs.items():
                written[table] = write_state(lake, spec, table, rows, day, run_id)
        audit = BatchAudit(spec.source, day, rows_in, to_silver, quarantined, counts.get("dropped", 0))
    finally:
        checked.unpersist()
    return audit, written


class SilverChecks:
    """The silver tables' Great Expectations suites, run one after another on a thread of their own.

    Each table is validated as soon as its source has written it, while other sources are still
    cleaned. Importing Great Expectations (about 10 s of Python, holding the interpreter's lock) happens
    there too, at the first check: begun at the start of the run, it slowed the first sources, whose
    time is mostly Python on the driver, by 3 to 5 s. `record` waits for every check, stores the results
    in ops.dq_results and stops on critical failures.
    """

    def __init__(self, ctx: RunContext, conf: CleanSettings):
        self.ctx, self.conf = ctx, conf
        self.folder = f"{ctx.settings.lake.root.rstrip('/')}/{conf.dq_dir}/{ctx.business_date.isoformat()}"
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dq")
        self._validator: Validator | None = None  # only the dq thread creates and uses it
        self._checks: list[Future] = []

    def __enter__(self) -> SilverChecks:
        return self

    def __exit__(self, *exc_info) -> None:
        self._thread.shutdown(cancel_futures=True)

    def submit(self, table: str, spec: SourceSpec) -> None:
        self._checks.append(self._thread.submit(self._check, table, spec))

    def _check(self, table: str, spec: SourceSpec) -> tuple[str, list[tuple], list[str]]:
        lake, day = self.ctx.lake, self.ctx.business_date
        self.ctx.spark.sparkContext.setJobDescription(f"validate {table}")
        suite = load_suite(PROJECT_ROOT / self.conf.expectations_dir, table)
        frame = (lake.read(table, partition_filters=[("batch_date", "=", day)]) if spec.kind == "append"
                 else lake.read(table))
        started = time.monotonic()
        if self._validator is None:
            self._validator = Validator()
        document, outcomes = self._validator.validate(frame, suite)
        log.info("%s validated in %.1fs", suite.name, time.monotonic() - started)
        path = write_results(self.folder, table, document)
        failures = []
        for outcome in (o for o in outcomes if not o.success):
            if outcome.severity == "critical":
                failures.append(outcome.describe())
            else:
                log.warning("data quality warning: %s", outcome.describe())
        return table, dq_rows(outcomes, suite, day, path, self.ctx.run_id), failures

    def record(self) -> int:
        lake, day = self.ctx.lake, self.ctx.business_date
        checks = sorted(check.result() for check in self._checks)
        frame = lake.spark.createDataFrame([row for _, rows, _ in checks for row in rows], DQ_RESULTS_SCHEMA)
        written = lake.replace_partitions(frame, DQ_RESULTS, [("batch_date", "=", day)],
                                          partition_by=["batch_date"], metadata={"run_id": self.ctx.run_id})
        failures = [failure for _, _, table_failures in checks for failure in table_failures]
        if failures:
            raise DataQualityError(f"clean {day}: critical expectations failed: " + "; ".join(failures),
                                   hint=f"details in {DQ_RESULTS} and {self.folder}/")
        return written.rows_added


def critical_paths(order: list[str], needs: dict[str, set[str]], sizes: dict[str, int]) -> dict[str, int]:
    """name -> its size plus the largest critical path of the names that need it: the work that
    cannot start before it has finished. `order` lists needed names first."""
    paths: dict[str, int] = {}
    for name in reversed(order):
        paths[name] = sizes.get(name, 0) + max((paths[d] for d in paths if name in needs[d]), default=0)
    return paths


def in_reference_order(order: list[str], needs: dict[str, set[str]], work: Callable[[str], Result],
                       workers: int, sizes: dict[str, int] | None = None) -> list[Result]:
    """`work(name)` for every name of `order`, each started once the work on the names it needs has
    finished, up to `workers` at once. Of the names ready to start, the one with the longest critical
    path (`sizes`: each name's amount of work) goes first, then the first in `order`, which lists needed
    names first. Results in `order`; the first failure in that order is raised once everything that
    could run has run (a name whose need failed fails with it, without running).
    """
    for position, name in enumerate(order):
        if needs[name] - set(order[:position]):
            raise ValueError(f"{name} is listed before {sorted(needs[name] - set(order[:position]))}")
    paths = critical_paths(order, needs, sizes or {})
    rank = {name: (-paths[name], position) for position, name in enumerate(order)}
    done: dict[str, Future] = {}
    waiting = list(order)
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="clean") as pool:
        while waiting or running:
            for name in sorted((n for n in waiting if needs[n] <= done.keys()), key=rank.__getitem__):
                if len(running) == workers:
                    break
                waiting.remove(name)
                failed_need = next((done[n] for n in order if n in needs[name] and done[n].exception()), None)
                if failed_need is not None:
                    done[name] = failed_need
                else:
                    running[pool.submit(work, name)] = name
            if running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    done[running.pop(future)] = future
    return [done[name].result() for name in order]


def run(ctx: RunContext) -> dict[str, int]:
    conf: CleanSettings = ctx.settings.job("clean")
    key = hash_key(conf.pii_key)
    contract = load_contract()
    needs = referenced_sources(contract)
    referenced = set().union(*needs.values())
    order = [spec.source for spec in processing_order(contract)]
    # Each batch's rows, from the Delta log: the audit's rows in, and the sizes the order goes by.
    rows_in = bronze_rows(ctx.lake, order, ctx.business_date)
    with SilverChecks(ctx, conf) as checks:
        def clean_one(name: str) -> tuple[BatchAudit, dict[str, int]]:
            # A pool thread cleans one source after another: set (or clear) the pool for each, and
            # name the source in its Spark jobs (UI, event log).
            ctx.spark.sparkContext.setLocalProperty(
                "spark.scheduler.pool", conf.reference_pool if name in referenced else None)
            ctx.spark.sparkContext.setJobDescription(f"clean {name}")
            started = time.monotonic()
            audit, tables = clean_source(ctx, conf, contract[name], key, rows_in.get(name, 0))
            log.info("%s (%.1fs)", audit.describe(), time.monotonic() - started)
            for table in tables:
                if table.startswith("silver."):
                    checks.submit(table, contract[name])
            return audit, tables

        # Sources run side by side where their references allow: a small source's driver time
        # (planning, commits) is time the cores would otherwise idle.
        audits, written = [], {}
        for audit, tables in in_reference_order(order, needs, clean_one, conf.parallel_sources, rows_in):
            audits.append(audit)
            written.update(tables)
        frame = ctx.lake.spark.createDataFrame([a.row(ctx.run_id) for a in audits], AUDIT_SCHEMA)
        written[BATCH_AUDIT] = ctx.lake.replace_partitions(
            frame, BATCH_AUDIT, [("batch_date", "=", ctx.business_date)], partition_by=["batch_date"],
            metadata={"run_id": ctx.run_id}).rows_added
        unbalanced = [a.describe() for a in audits if not a.balanced]
        if unbalanced:
            raise DataQualityError(f"clean {ctx.business_date}: rows do not reconcile: " + "; ".join(unbalanced),
                                   hint=f"see {BATCH_AUDIT}; nothing may disappear between bronze and silver")
        written[DQ_RESULTS] = checks.record()
    return written
