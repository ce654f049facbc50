"""Benchmark: building gold.customer_features against a floor, in the same run and Spark session.

Floor = one Spark aggregation of the same silver.transactions by customer (count, sum, latest time),
the least any feature build must do. The build = `build_features` for the last date, fully computed.
Both results go to Spark's `noop` sink, so neither pays for writing. Prints both times and the ratio
(goal: at most 4x).

--bounds also times three parts of the build alone, against the same floor: the deposit accounts'
transactions of the balance history shuffled and sorted in booking order (the order a daily closing
balance needs); one aggregation by customer over the other transaction columns the build reads; and the
driver's work before the first row (the tables' snapshots read, the query built and planned).

The silver tables are synthesised with Spark (seeded, realistic shapes: 1-4 accounts per customer,
running balances, holdings, loans, app events, campaign responses) under --root and reused by later runs
with the same sizes.

    .venv/bin/python benchmarks/features.py                       # 100k customers, ~10M transactions
    .venv/bin/python benchmarks/features.py --customers 5000 --transactions 500000   # quick
    .venv/bin/python benchmarks/features.py --bounds              # also three parts against the floor
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common.config import load_settings
from jobs.common.contract import source
from jobs.common.lake import Lake
from jobs.common.spark import get_spark
from jobs.features.build import (
    AsOf,
    Inputs,
    assemble_features,
    balance_opening_day,
    build_features,
    read_inputs,
)
from jobs.features.settings import FeatureSettings

AS_OF = date(2026, 6, 30)
SEED = 7
ACCOUNT_TYPES = ["current", "savings", "time_deposit", "wealth"]
TXN_TYPES = {"credit": ["deposit", "transfer_in", "transfer_in", "interest", "product_redemption"],
             "debit": ["withdrawal", "transfer_out", "payment", "card_purchase", "card_purchase", "fee"]}
CHANNELS = ["branch", "atm", "mobile", "online", "pos", "other"]


def _pick(values: list[str], u: F.Column) -> F.Column:
    """values[floor(u * len)] for u uniform in [0, 1)."""
    return F.element_at(F.array(*[F.lit(v) for v in values]), (F.floor(u * len(values)) + 1).cast("int"))


def _u(salt: int, *columns: str | F.Column) -> F.Column:
    """A reproducible uniform [0, 1) from the row's key columns (no dependency on partitioning)."""
    return (F.abs(F.xxhash64(F.lit(salt), *columns)) % 1_000_003) / F.lit(1_000_003.0)


def _with_lineage(frame: DataFrame, name: str) -> DataFrame:
    fields = [f for f in source(name).fields if not f.pii]
    columns = [F.col(f.name).cast(f.spark_type) if f.name in frame.columns
               else F.lit(None).cast(f.spark_type).alias(f.name) for f in fields]
    if name == "customers":
        columns.append(F.sha2(F.col("customer_id"), 256).alias("id_number_hash"))
    return frame.select(*columns, F.lit(AS_OF).alias("batch_date"), F.lit("benchmark").alias("run_id"))


def synthesise(spark: SparkSession, lake: Lake, customers: int, transactions: int) -> None:
    """Silver tables of `customers` customers and about `transactions` transactions in the last year."""
    day0 = AS_OF - timedelta(days=364)
    cust = (spark.range(customers).withColumn("n", F.col("id"))
            .withColumn("customer_id", F.format_string("C%07d", "n"))
            .withColumn("n_accounts", (F.floor(_u(1, "n") * 4) + 1).cast("int")))
    lake.overwrite(_with_lineage(cust.select(
        "customer_id",
        _pick(["m", "f", "u"], _u(2, "n")).alias("gender"),
        F.date_sub(F.lit(AS_OF), (F.floor(_u(3, "n") * 60 * 365) + 18 * 365).cast("int")).alias("birth_date"),
        F.format_string("region_%02d", F.floor(_u(4, "n") * 30).cast("int")).alias("region"),
        F.exp(F.lit(11.5) + _u(5, "n")).alias("annual_income"),
        (F.floor(_u(6, "n") * 5) + 1).alias("risk_tolerance"),
        F.when(_u(7, "n") < 0.03, "closed").otherwise("active").alias("status"),
        F.lit("2026-01-01 00:00:00").cast("timestamp").alias("updated_at")), "customers"), "silver.customers")

    accounts = (cust.select("n", "customer_id", F.explode(F.sequence(F.lit(0), F.col("n_accounts") - 1))
                            .alias("slot"))
                .withColumn("account_id", F.format_string("A%07d%d", "n", "slot")))
    lake.overwrite(_with_lineage(accounts.select(
        "account_id", "customer_id",
        F.element_at(F.array(*[F.lit(t) for t in ACCOUNT_TYPES]), F.col("slot") + 1).alias("account_type"),
        F.date_sub(F.lit(AS_OF), F.floor(_u(8, "account_id") * 3650).cast("int")).alias("open_date"),
        F.when(_u(9, "account_id") < 0.03, F.date_sub(F.lit(AS_OF), 20)).alias("close_date"),
        F.lit("open").alias("status"), F.lit("CNY").alias("currency"),
        F.lit("2026-06-30 00:00:00").cast("timestamp").alias("updated_at")), "accounts"), "silver.accounts")

    credit = _u(12, "id") < 0.45
    txns = (spark.range(transactions)
            .withColumn("n", F.floor(_u(10, "id") * customers).cast("long"))
            .withColumn("n_accounts", (F.floor(_u(1, "n") * 4) + 1).cast("int"))
            .withColumn("account_id", F.format_string("A%07d%d", "n", F.floor(_u(11, "id") * F.col("n_accounts"))
                                                      .cast("int")))
            .withColumn("direction", F.when(credit, "credit").otherwise("debit"))
            .withColumn("txn_type", F.when(credit, _pick(TXN_TYPES["credit"], _u(13, "id")))
                        .otherwise(_pick(TXN_TYPES["debit"], _u(13, "id"))))
            .withColumn("amount", F.round(F.exp(F.lit(4.0) + 3 * _u(14, "id")), 2))
            .withColumn("txn_ts", F.timestamp_seconds(F.unix_timestamp(F.lit(day0).cast("timestamp"))
                                                      + F.floor(_u(15, "id") * 365 * 86400)))
            .withColumn("signed", F.when(credit, F.col("amount")).otherwise(-F.col("amount"))))
    running = Window.partitionBy("account_id").orderBy("txn_ts", "id")
    txns = txns.select(
        F.format_string("T%010d", "id").alias("txn_id"), "account_id",
        F.format_string("C%07d", "n").alias("customer_id"), "txn_ts", "amount", "direction",
        F.lit("CNY").alias("currency"), _pick(CHANNELS, _u(16, "id")).alias("channel"), "txn_type",
        F.when(F.col("txn_type") == "transfer_in",
               F.format_string("EMPLOYER %03d", F.floor(_u(17, "n") * 400).cast("int"))).alias("counterparty"),
        (F.lit(20000.0) + F.sum("signed").over(running)).alias("balance_after"))
    lake.append(_with_lineage(txns, "transactions"), "silver.transactions", partition_by=["batch_date"])

    products = spark.createDataFrame(
        [(f"P{i:02d}", f"Product {i}", t, 1 + i % 5, True) for i, t in enumerate(
            ["structured_deposit", "time_deposit", "wealth_management", "fund", "insurance", "credit_card",
             "personal_loan", "mortgage", "other"] * 2)],
        "product_id string, product_name string, product_type string, risk_level int, active boolean")
    lake.overwrite(_with_lineage(products, "products"), "silver.products")

    holdings = (spark.range(customers * 2)
                .select(F.format_string("H%08d", "id").alias("holding_id"),
                        F.format_string("C%07d", F.floor(_u(20, "id") * customers).cast("long")).alias("customer_id"),
                        F.format_string("P%02d", F.floor(_u(21, "id") * 18).cast("int")).alias("product_id"),
                        F.date_sub(F.lit(AS_OF), F.floor(_u(22, "id") * 1500).cast("int")).alias("start_date"),
                        F.when(_u(23, "id") < 0.3, F.date_sub(F.lit(AS_OF), F.floor(_u(24, "id") * 200)
                                                              .cast("int"))).alias("end_date"),
                        F.round(F.exp(F.lit(9.0) + 3 * _u(25, "id")), 2).alias("amount"),
                        F.lit("2026-06-30 00:00:00").cast("timestamp").alias("updated_at")))
    lake.overwrite(_with_lineage(holdings, "holdings"), "silver.holdings")

    loans = (spark.range(customers // 5)
             .select(F.format_string("L%07d", "id").alias("loan_id"),
                     F.format_string("C%07d", F.floor(_u(30, "id") * customers).cast("long")).alias("customer_id"),
                     F.lit(100000.0).alias("principal"), F.round(_u(31, "id") * 100000, 2).alias("outstanding"),
                     F.lit(date(2024, 1, 1)).alias("start_date"),
                     F.when(_u(32, "id") < 0.1, F.floor(_u(33, "id") * 120)).otherwise(0).alias("days_past_due"),
                     F.lit("current").alias("status"), F.lit(AS_OF).alias("snapshot_date")))
    lake.overwrite(_with_lineage(loans, "loans"), "silver.loans")

    events = (spark.range(customers * 20)
              .select(F.format_string("C%07d", F.floor(_u(40, "id") * customers).cast("long")).alias("customer_id"),
                      F.timestamp_seconds(F.unix_timestamp(F.lit(day0).cast("timestamp"))
                                          + F.floor(_u(41, "id") * 365 * 86400)).alias("event_ts"),
                      _pick(["login", "page_view", "page_view", "click", "search"], _u(42, "id")).alias("event_type"),
                      _pick(["home", "accounts", "wealth/product_list", "wealth/product_detail", "cards"],
                            _u(43, "id")).alias("page")))
    lake.append(_with_lineage(events, "app_events"), "silver.app_events", partition_by=["batch_date"])

    responses = (spark.range(customers * 3)
                 .select(F.format_string("push%08d", F.floor(F.col("id") / 2)).alias("push_id"),
                         F.format_string("C%07d", F.floor(_u(50, F.floor(F.col("id") / 2)) * customers)
                                         .cast("long")).alias("customer_id"),
                         F.lit("cross_sell").alias("campaign_id"), F.lit("sms").alias("channel"),
                         F.when(F.col("id") % 2 == 0, "delivered")
                         .otherwise(_pick(["opened", "clicked", "converted"], _u(51, "id"))).alias("event"),
                         F.timestamp_seconds(F.unix_timestamp(F.lit(day0).cast("timestamp"))
                                             + F.floor(_u(52, "id") * 365 * 86400)).alias("event_ts")))
    lake.append(_with_lineage(responses, "campaign_responses"), "silver.campaign_responses",
                partition_by=["batch_date"])


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--root", default="./bench_features", help="lake of the synthesised silver tables")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each side; the best counts")
    parser.add_argument("--bounds", action="store_true",
                        help="also time three parts of the build alone (one sort, one pass, planning) against the floor")
    args = parser.parse_args()

    root = Path(args.root)
    settings = load_settings(env={**os.environ, "CRM_LAKE__ROOT": str(root / "lake")})
    spark = get_spark(settings, app_name="bench-features")
    lake = Lake.from_settings(spark, settings)
    sizes = {"customers": args.customers, "transactions": args.transactions}
    marker = root / "sizes.json"
    if not marker.exists() or json.loads(marker.read_text()) != sizes:
        print(f"synthesising silver tables for {sizes} under {root} ...", flush=True)
        shutil.rmtree(root / "lake", ignore_errors=True)
        took = _timed(lambda: synthesise(spark, lake, args.customers, args.transactions))
        marker.write_text(json.dumps(sizes))
        print(f"  done in {took:.0f}s", flush=True)
    rows = lake.row_count("silver.transactions")
    print(f"silver.transactions: {rows:,} rows; customers: {lake.row_count('silver.customers'):,}", flush=True)

    def floor() -> None:
        (lake.read("silver.transactions").groupBy("customer_id")
         .agg(F.count("*"), F.sum("amount"), F.max("txn_ts"))
         .write.format("noop").mode("overwrite").save())

    def build() -> None:
        build_features(spark, lake, AS_OF, settings).write.format("noop").mode("overwrite").save()

    floor_s = min(_timed(floor) for _ in range(args.repeat))
    build_s = min(_timed(build) for _ in range(args.repeat))
    print(f"floor (one aggregation of the transactions by customer): {floor_s:8.1f}s")
    print(f"build_features:                                          {build_s:8.1f}s")
    print(f"ratio build / floor: {build_s / floor_s:.2f}x (goal <= 4x)")
    if args.bounds:
        conf = settings.job("features")
        as_of = AsOf(AS_OF, settings.bank.timezone)
        # Read once, outside the sort's timing: reading the snapshots is the planning part's.
        inputs = read_inputs(spark, lake, as_of)
        parts = {"the balance history in booking order": lambda: booking_order(inputs, as_of, conf),
                 "one pass over the other columns the build reads": lambda: one_pass(lake),
                 "the build's query read and planned (driver, no rows)": lambda: planned(spark, lake, as_of, conf)}
        total = 0.0
        for name, part in parts.items():
            part_s = min(_timed(part) for _ in range(args.repeat))
            total += part_s / floor_s
            print(f"{name + ':':56s} {part_s:8.1f}s = {part_s / floor_s:.2f} floors")
        print(f"the three parts alone: {total:.2f} floors")
    spark.stop()


def one_pass(lake: Lake) -> None:
    """One aggregation by customer that reads the transaction columns the build uses besides the balance
    history's (which `booking_order` reads)."""
    transactions = lake.read("silver.transactions")
    (transactions.groupBy("customer_id")
     .agg(*[F.count(c) for c in ("direction", "channel", "txn_type", "counterparty")], F.sum("amount"),
          F.max("txn_ts"))
     .write.format("noop").mode("overwrite").save())


def planned(spark: SparkSession, lake: Lake, as_of: AsOf, conf: FeatureSettings) -> None:
    """What the driver does before the build's first row: snapshots read, query built and planned."""
    assembled = assemble_features(read_inputs(spark, lake, as_of), as_of, conf)
    assembled._jdf.queryExecution().executedPlan()  # no public API plans without running or printing


def booking_order(inputs: Inputs, as_of: AsOf, conf: FeatureSettings) -> None:
    """The deposit accounts' transactions of the balance history, by account in booking order."""
    deposit_accounts = inputs.accounts.where(F.col("account_type").isin(conf.deposit_account_types))
    (inputs.transactions
     .where(F.col("balance_after").isNotNull() & (F.col("txn_date") > F.lit(balance_opening_day(as_of, conf))))
     .join(F.broadcast(deposit_accounts.select("account_id")), "account_id")
     .select("account_id", "txn_ts", "txn_id", "balance_after")
     .repartition("account_id").sortWithinPartitions("account_id", "txn_ts", "txn_id")
     .write.format("noop").mode("overwrite").save())


if __name__ == "__main__":
    main()
