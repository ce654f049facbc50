"""Churn labels on constructed histories, and features at a cut-off blind to what came after it.

Cut-off T = 2026-03-31, horizon 90 days: the label window is 04-01..06-29 (local bank dates), the
activity window before T is 2026-01-01..03-31. Defaults of conf/churn.yaml: active = an open account and
(>= 3 customer-initiated transactions in the 90 days to T or deposit balance >= 1,000 at T); churned =
no open account at 06-29, or < 3 customer-initiated transactions after T with the deposit balance at
06-29 below 1,000 or below 10 % of the balance at T. Timestamps below are local bank time (UTC+8).
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from jobs.churn.job import labelled_features, training_cutoffs
from jobs.churn.labels import churn_labels, with_local_day
from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.contract import source
from jobs.common.lake import Lake
from jobs.features.build import build_features

CUTOFF = date(2026, 3, 31)
BANK_TZ = ZoneInfo("Asia/Shanghai")


def silver_schema(name: str) -> T.StructType:
    """Contract fields and types + lineage; customers without raw PII, with id_number_hash (as clean)."""
    spec = source(name)
    fields = [f for f in spec.spark_schema.fields if not (name == "customers" and spec.field(f.name).pii)]
    if name == "customers":
        fields.append(T.StructField("id_number_hash", T.StringType()))
    return T.StructType([*fields, T.StructField("batch_date", T.DateType()), T.StructField("run_id", T.StringType())])


def _typed(value, data_type: T.DataType):
    if value is None:
        return None
    if isinstance(data_type, T.DecimalType):
        return Decimal(str(value))
    if isinstance(data_type, T.TimestampType):  # local bank time -> the UTC instant clean stores
        return datetime.fromisoformat(value).replace(tzinfo=BANK_TZ).astimezone(UTC)
    if isinstance(data_type, T.DateType):
        return date.fromisoformat(value)
    return value


def silver_frame(spark, name: str, rows: list[dict]) -> DataFrame:
    schema = silver_schema(name)
    data = [tuple(_typed({"batch_date": "2026-07-31", "run_id": "handmade", **row}.get(f.name), f.dataType)
                  for f in schema.fields) for row in rows]
    return spark.createDataFrame(data, schema)


def account(account_id, customer, open_date, close_date=None, account_type="current"):
    return {"account_id": account_id, "customer_id": customer, "account_type": account_type,
            "open_date": open_date, "close_date": close_date, "status": "closed" if close_date else "open",
            "currency": "CNY", "updated_at": f"{close_date or open_date}T12:00:00"}


def txn(txn_id, account_id, customer, ts, balance, txn_type="deposit", amount=100):
    return {"txn_id": txn_id, "account_id": account_id, "customer_id": customer, "txn_ts": ts, "amount": amount,
            "direction": "debit" if txn_type in ("withdrawal", "payment") else "credit", "currency": "CNY",
            "channel": "mobile", "txn_type": txn_type, "balance_after": balance}


def monthly(customer, account_id, first_month, last_month, balance):
    """One deposit on the 10th of each month, the balance staying at `balance`."""
    return [txn(f"{customer}-{m:02d}", account_id, customer, f"{2025 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}-10T10:00:00",
                balance) for m in range(first_month, last_month + 1)]


ACCOUNTS = [
    account("A1", "C1", "2025-01-01", "2026-05-15"),            # closes within the horizon
    account("A2", "C2", "2025-01-01"),                          # steady
    account("A3", "C3", "2025-01-01"),                          # empties the account and goes quiet
    account("A4", "C4", "2025-01-01", "2026-06-30"),            # closes the day after the horizon
    account("A5", "C5", "2025-01-01", "2026-06-29"),            # closes on the horizon's last day
    account("A6", "C6", "2026-04-10"),                          # opened after T: not active at T
    account("A7", "C7", "2025-01-01", account_type="savings"),  # passive saver: balance, no activity
    account("A8", "C8", "2025-01-01"),                          # too little activity and money at T
    account("A8C", "C8", "2025-01-01", account_type="credit_card"),  # debt is not a deposit balance
    account("A9", "C9", "2025-01-01"),                          # time-zone edge at T
    account("A10", "C10", "2025-01-01"),                        # only bank bookings after T
]
TRANSACTIONS = [
    *monthly("C1", "A1", 13, 15, 5000),                          # Jan..Mar 2026
    *monthly("C2", "A2", 13, 18, 5000),                          # Jan..Jun 2026
    *monthly("C3", "A3", 13, 15, 20000),
    txn("C3-W", "A3", "C3", "2026-04-20T09:00:00", 200, "withdrawal", 19800),
    *monthly("C4", "A4", 13, 18, 3000),
    *monthly("C5", "A5", 13, 18, 3000),
    *monthly("C6", "A6", 16, 18, 3000),
    txn("C7-1", "A7", "C7", "2025-06-10T10:00:00", 50000),
    txn("C8-1", "A8", "C8", "2026-03-10T10:00:00", 200),
    txn("C8-2", "A8C", "C8", "2026-03-11T10:00:00", 5000, "card_purchase"),
    txn("C9-1", "A9", "C9", "2026-03-10T10:00:00", 300),
    txn("C9-2", "A9", "C9", "2026-03-20T10:00:00", 400),
    # 00:30 on April 1st in the bank is 16:30 UTC on March 31st: after T, so C9 is not active at T.
    txn("C9-3", "A9", "C9", "2026-04-01T00:30:00", 500),
    *monthly("C10", "A10", 13, 15, 800),
    *[txn(f"C10-i{m}", "A10", "C10", f"2026-0{m}-28T10:00:00", 800, "interest", 1) for m in (4, 5, 6)],
]


@pytest.fixture
def labels(spark, settings):
    accounts = silver_frame(spark, "accounts", ACCOUNTS)
    transactions = with_local_day(silver_frame(spark, "transactions", TRANSACTIONS), "Asia/Shanghai")
    return churn_labels(accounts, transactions, CUTOFF, settings.job("churn").label)


def test_churn_labels_constructed_histories_expected_labels(spark, labels):
    expected = spark.createDataFrame(
        [("C1", CUTOFF, 1, "closure"), ("C2", CUTOFF, 0, None), ("C3", CUTOFF, 1, "dormancy"),
         ("C4", CUTOFF, 0, None), ("C5", CUTOFF, 1, "closure"), ("C7", CUTOFF, 0, None),
         ("C10", CUTOFF, 1, "dormancy")],
        "customer_id string, cutoff_date date, churned int, churn_kind string")
    assert_df_equality(labels, expected, ignore_row_order=True, ignore_nullable=True)


def test_churn_labels_not_active_at_cutoff_absent(labels):
    ids = {r.customer_id for r in labels.collect()}
    assert not ids & {"C6", "C8", "C9"}


def test_training_cutoffs_default_conf_latest_is_horizon_before_business_date(settings):
    assert training_cutoffs(date(2026, 10, 31), settings.job("churn")) == [
        date(2026, 5, 4), date(2026, 6, 3), date(2026, 7, 3), date(2026, 8, 2)]


# ------------------------------------------------------------------ no leakage
CUSTOMERS = [{"customer_id": c, "gender": "f", "birth_date": "1980-05-01", "region": "east",
              "annual_income": 120000, "risk_tolerance": 3, "status": "active", "updated_at": "2025-01-01T00:00:00"}
             for c in ("C1", "C2", "C3")]
PRODUCTS = [{"product_id": "P1", "product_name": "Fund One", "product_type": "fund", "risk_level": 2,
             "active": True}]
HOLDINGS_UNTIL_T = [{"holding_id": "H1", "customer_id": "C3", "product_id": "P1", "start_date": "2025-06-01",
                     "amount": 10000, "updated_at": "2025-06-01T00:00:00"}]


def _write_lake(lake: Lake, later: bool) -> None:
    """The history as it was known at T (later=False) or with what happened after T (later=True)."""
    accounts = [a for a in ACCOUNTS if a["customer_id"] in ("C1", "C2", "C3")]
    transactions = [t for t in TRANSACTIONS if t["customer_id"] in ("C1", "C2", "C3")]
    customers, holdings = CUSTOMERS, HOLDINGS_UNTIL_T
    if not later:
        accounts = [{**account(a["account_id"], a["customer_id"], a["open_date"]), "account_type": a["account_type"]}
                    for a in accounts]
        transactions = [t for t in transactions if t["txn_ts"] < "2026-04-01"]
    else:
        customers = [{**c, "status": "closed", "updated_at": "2026-05-15T12:00:00"} if c["customer_id"] == "C1" else c
                     for c in customers]
        holdings = [{**holdings[0], "end_date": "2026-04-20", "updated_at": "2026-04-20T00:00:00"}]
    for name, rows in (("customers", customers), ("accounts", accounts), ("products", PRODUCTS),
                       ("holdings", holdings)):
        lake.overwrite(silver_frame(lake.spark, name, rows), f"silver.{name}")
    lake.append(silver_frame(lake.spark, "transactions", transactions), "silver.transactions",
                partition_by=["batch_date"])


def test_labelled_features_later_history_present_or_absent_features_identical(spark, settings, tmp_path):
    full_settings = load_settings(env={"CRM_LAKE__ROOT": str(tmp_path / "full")})
    known_at_t = Lake(spark, str(tmp_path / "known_at_t"))
    _write_lake(known_at_t, later=False)
    full = RunContext(full_settings, date(2026, 7, 31), spark_session=spark)
    _write_lake(full.lake, later=True)

    training_rows = labelled_features(full, [CUTOFF])
    assert {(r.customer_id, r.churned) for r in training_rows.select("customer_id", "churned").collect()} == {
        ("C1", 1), ("C2", 0), ("C3", 1)}   # the later history is there: C1 closed, C3 emptied
    blind = build_features(spark, known_at_t, CUTOFF, full_settings)
    assert_df_equality(training_rows.drop("churned"), blind, ignore_row_order=True, ignore_nullable=True)
