"""jobs/features on a tiny handmade silver dataset whose every feature value is computed by hand.

As-of date D = 2026-06-30, bank time zone Asia/Shanghai (UTC+8); timestamps below are local bank time
and are stored in UTC like clean does. Windows: 30 days = 06-01..06-30, 90 days = 04-02..06-30,
the 90 days before = 01-02..04-01, 365 days = 2025-07-01..2026-06-30.
"""
from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.contract import source
from jobs.common.errors import InputError
from jobs.common.lake import Lake
from jobs.features.build import AsOf, build_features, count_distinct_below, deposit_balances, salary_signals
from jobs.features.catalog import conform
from jobs.features.job import run
from jobs.features.lifecycle import value_tier_cutoffs, with_lifecycle_stage, with_value_tier
from jobs.features.loan_warnings import loan_warnings
from jobs.features.tags import feature_tags

D = date(2026, 6, 30)
BANK_TZ = ZoneInfo("Asia/Shanghai")


# ------------------------------------------------------------------ silver tables as clean writes them
def silver_schema(name: str) -> T.StructType:
    """Contract fields with contract types + lineage; customers without raw PII, with id_number_hash."""
    spec = source(name)
    fields = [f for f in spec.spark_schema.fields
              if not (name == "customers" and spec.field(f.name).pii)]
    if name == "customers":
        fields.append(T.StructField("id_number_hash", T.StringType()))
    return T.StructType([*fields, T.StructField("batch_date", T.DateType()),
                         T.StructField("run_id", T.StringType())])


def _value(value, data_type: T.DataType):
    if value is None:
        return None
    if isinstance(data_type, T.DecimalType):
        return Decimal(str(value))
    if isinstance(data_type, T.TimestampType):  # local bank time -> the UTC instant
        return datetime.fromisoformat(value).replace(tzinfo=BANK_TZ).astimezone(UTC)
    if isinstance(data_type, T.DateType):
        return date.fromisoformat(value)
    return value


def silver_frame(spark, name: str, rows: list[dict]) -> DataFrame:
    schema = silver_schema(name)
    unknown = {k for row in rows for k in row} - set(schema.fieldNames())
    assert not unknown, f"{name}: not catalogue columns {unknown}"
    defaults = {"batch_date": D.isoformat(), "run_id": "handmade"}
    data = [tuple(_value({**defaults, **row}.get(f.name), f.dataType) for f in schema.fields) for row in rows]
    return spark.createDataFrame(data, schema)


def write_silver(lake: Lake, name: str, rows: list[dict]) -> None:
    frame = silver_frame(lake.spark, name, rows)
    if source(name).kind == "append":
        lake.append(frame, f"silver.{name}", partition_by=["batch_date"])
    else:
        lake.overwrite(frame, f"silver.{name}")


def txn(txn_id, account, customer, ts, amount, direction, txn_type, balance, channel=None, counterparty=None):
    return {"txn_id": txn_id, "account_id": account, "customer_id": customer, "txn_ts": ts, "amount": amount,
            "direction": direction, "currency": "CNY", "channel": channel, "txn_type": txn_type,
            "counterparty": counterparty, "balance_after": balance}


CUSTOMERS = [
    {"customer_id": "C1", "gender": "f", "birth_date": "1990-07-15", "region": "north",
     "annual_income": 120000, "risk_tolerance": 3, "status": "active", "updated_at": "2026-01-01T09:00:00"},
    # closed before D: not active
    {"customer_id": "C2", "gender": "m", "birth_date": "1980-01-01", "region": "south",
     "status": "closed", "updated_at": "2026-05-01T09:00:00"},
    # closed after D: still active at D
    {"customer_id": "C3", "gender": "m", "birth_date": "1950-03-01", "region": "south",
     "annual_income": 700000, "status": "closed", "updated_at": "2026-08-01T09:00:00"},
    # first account opens after D: not a customer yet
    {"customer_id": "C4", "status": "active", "updated_at": "2026-07-15T09:00:00"},
    # no transactions, nothing known but the account
    {"customer_id": "C5", "status": "active", "updated_at": "2026-03-01T09:00:00"},
]
ACCOUNTS = [
    {"account_id": "A1", "customer_id": "C1", "account_type": "current", "open_date": "2024-01-10",
     "status": "open", "currency": "CNY", "updated_at": "2026-06-30T10:00:00"},
    {"account_id": "A2", "customer_id": "C1", "account_type": "savings", "open_date": "2025-01-01",
     "status": "open", "currency": "CNY", "updated_at": "2026-06-30T10:00:00"},
    {"account_id": "A3", "customer_id": "C3", "account_type": "current", "open_date": "2020-01-01",
     "close_date": "2026-08-01", "status": "closed", "currency": "CNY", "updated_at": "2026-08-01T10:00:00"},
    {"account_id": "A4", "customer_id": "C2", "account_type": "current", "open_date": "2019-01-01",
     "close_date": "2026-05-01", "status": "closed", "currency": "CNY", "updated_at": "2026-05-01T10:00:00"},
    {"account_id": "A5", "customer_id": "C4", "account_type": "current", "open_date": "2026-07-15",
     "status": "open", "currency": "CNY", "updated_at": "2026-07-15T10:00:00"},
    {"account_id": "A6", "customer_id": "C5", "account_type": "savings", "open_date": "2026-03-01",
     "status": "open", "currency": "CNY", "updated_at": "2026-03-01T10:00:00"},
]
TRANSACTIONS = [
    txn("t01", "A1", "C1", "2025-06-15T10:00:00", 1000, "credit", "deposit", 1000, "branch"),
    txn("t02", "A1", "C1", "2025-12-10T12:00:00", 200, "debit", "card_purchase", 800, "pos"),
    txn("t03", "A1", "C1", "2026-02-15T09:00:00", 5000, "credit", "transfer_in", 5800, "online", "ACME"),
    txn("t04", "A1", "C1", "2026-03-15T09:00:00", 5000, "credit", "transfer_in", 10800, "online", "ACME"),
    txn("t05", "A1", "C1", "2026-04-15T09:00:00", 5000, "credit", "transfer_in", 15800, "online", "ACME"),
    txn("t06", "A1", "C1", "2026-05-15T09:00:00", 5000, "credit", "transfer_in", 20800, "online", "ACME"),
    txn("t07", "A1", "C1", "2026-06-10T09:00:00", 800, "debit", "payment", 20000, "mobile"),
    txn("t08", "A1", "C1", "2026-06-15T09:00:00", 5000, "credit", "transfer_in", 25000, "online", "ACME"),
    txn("t09", "A1", "C1", "2026-06-20T09:00:00", 10, "debit", "fee", 24990, "other"),
    # 23:30 local on D is 15:30 UTC on D: inside
    txn("t10", "A1", "C1", "2026-06-30T23:30:00", 490, "debit", "card_purchase", 24500, "pos"),
    txn("s01", "A2", "C1", "2025-01-01T10:00:00", 3000, "credit", "deposit", 3000, "branch"),
    txn("s02", "A2", "C1", "2026-05-31T10:00:00", 1000, "debit", "withdrawal", 2000, "atm"),
    txn("s03", "A2", "C1", "2026-06-30T10:00:00", 5, "credit", "interest", 2005),
]
# Rows known only after D (a later batch): none of them may change the features of D.
AFTER_D = [
    # 00:30 local on D+1 is 16:30 UTC on D: outside
    txn("t11", "A1", "C1", "2026-07-01T00:30:00", 24000, "debit", "withdrawal", 500, "atm"),
    txn("t12", "A1", "C1", "2026-07-20T09:00:00", 5000, "credit", "transfer_in", 5500, "online", "ACME"),
    txn("c01", "A3", "C3", "2026-07-02T09:00:00", 900, "credit", "deposit", 900, "branch"),
]
PRODUCTS = [
    {"product_id": "PW", "product_name": "Wealth A", "product_type": "wealth_management", "risk_level": 3,
     "active": True},
    {"product_id": "PF", "product_name": "Fund B", "product_type": "fund", "risk_level": 4, "active": True},
    {"product_id": "PS", "product_name": "Structured C", "product_type": "structured_deposit", "risk_level": 2,
     "active": True},
    {"product_id": "PI", "product_name": "Insurance D", "product_type": "insurance", "risk_level": 1,
     "active": True},
]
HOLDINGS = [
    {"holding_id": "H1", "customer_id": "C1", "product_id": "PW", "start_date": "2025-10-01", "amount": 50000,
     "updated_at": "2025-10-01T10:00:00"},
    {"holding_id": "H2", "customer_id": "C1", "product_id": "PF", "start_date": "2024-05-01",
     "end_date": "2026-03-01", "amount": 10000, "updated_at": "2026-03-01T10:00:00"},
    {"holding_id": "H3", "customer_id": "C1", "product_id": "PS", "start_date": "2026-02-01", "amount": 20000,
     "updated_at": "2026-02-01T10:00:00"},
    {"holding_id": "H4", "customer_id": "C1", "product_id": "PI", "start_date": "2026-07-05", "amount": 300,
     "updated_at": "2026-07-05T10:00:00"},
    {"holding_id": "H5", "customer_id": "C1", "product_id": "PF", "start_date": "2026-01-10",
     "end_date": "2026-07-10", "amount": 5000, "updated_at": "2026-07-10T10:00:00"},
]
LOANS = [
    {"loan_id": "L1", "customer_id": "C1", "principal": 10000, "outstanding": 8000, "start_date": "2025-09-01",
     "days_past_due": 0, "status": "current", "snapshot_date": "2026-06-30"},
    # snapshot taken after D: not known at D
    {"loan_id": "L2", "customer_id": "C1", "principal": 900000, "outstanding": 850000,
     "start_date": "2026-01-01", "days_past_due": 0, "status": "current", "snapshot_date": "2026-07-02"},
    {"loan_id": "L3", "customer_id": "C1", "principal": 5000, "outstanding": 0, "start_date": "2024-01-01",
     "days_past_due": 0, "status": "closed", "snapshot_date": "2026-06-30"},
]
APP_EVENTS = [
    {"customer_id": "C1", "event_ts": "2026-06-01T08:00:00", "event_type": "login"},
    {"customer_id": "C1", "event_ts": "2026-06-01T20:00:00", "event_type": "login"},
    {"customer_id": "C1", "event_ts": "2026-05-01T08:00:00", "event_type": "login"},
    {"customer_id": "C1", "event_ts": "2026-06-01T08:05:00", "event_type": "page_view",
     "page": "wealth/product_detail", "product_id": "PW"},
    {"customer_id": "C1", "event_ts": "2026-05-01T08:01:00", "event_type": "page_view", "page": "home"},
    {"customer_id": "C1", "event_ts": "2026-03-01T08:00:00", "event_type": "page_view", "page": "loan/apply"},
    # 00:10 local on D+1: outside
    {"customer_id": "C1", "event_ts": "2026-07-01T00:10:00", "event_type": "page_view", "page": "wealth/list"},
]
RESPONSES = [
    {"push_id": "p1", "customer_id": "C1", "campaign_id": "wealth_upsell", "channel": "app",
     "event": "delivered", "event_ts": "2026-05-01T10:00:00"},
    {"push_id": "p1", "customer_id": "C1", "campaign_id": "wealth_upsell", "channel": "app",
     "event": "opened", "event_ts": "2026-05-01T11:00:00"},
    {"push_id": "p1", "customer_id": "C1", "campaign_id": "wealth_upsell", "channel": "app",
     "event": "clicked", "event_ts": "2026-05-02T11:00:00"},
    {"push_id": "p2", "customer_id": "C1", "campaign_id": "cross_sell", "channel": "sms",
     "event": "delivered", "event_ts": "2026-06-01T10:00:00"},
    {"push_id": "p0", "customer_id": "C1", "campaign_id": "cross_sell", "channel": "sms",
     "event": "clicked", "event_ts": "2025-03-01T10:00:00"},
]


def write_handmade(lake: Lake) -> None:
    write_silver(lake, "customers", CUSTOMERS)
    write_silver(lake, "accounts", ACCOUNTS)
    write_silver(lake, "transactions", TRANSACTIONS)
    write_silver(lake, "products", PRODUCTS)
    write_silver(lake, "holdings", HOLDINGS)
    write_silver(lake, "loans", LOANS)
    write_silver(lake, "app_events", APP_EVENTS)
    write_silver(lake, "campaign_responses", RESPONSES)


def make_settings(tmp_path, conf_text: str | None = None):
    env = {"CRM_LAKE__ROOT": str(tmp_path / "lake")}
    conf_file = None
    if conf_text is not None:
        conf_file = tmp_path / "override.yaml"
        conf_file.write_text(conf_text)
    return load_settings(conf_file=conf_file, env=env)


def copy_lake(lake: Lake, tmp_path) -> Lake:
    """A private copy of a lake (Delta logs hold relative paths, so the files can simply be copied)."""
    shutil.copytree(lake.root, tmp_path / "lake")
    return Lake(lake.spark, str(tmp_path / "lake"))


@pytest.fixture(scope="module")
def handmade(spark, tmp_path_factory):
    """The handmade lake and its features at D (built once for the module)."""
    root = tmp_path_factory.mktemp("features_handmade")
    settings = make_settings(root)
    lake = Lake.from_settings(spark, settings)
    write_handmade(lake)
    features = build_features(spark, lake, D, settings)
    return settings, lake, features, {r["customer_id"]: r.asDict() for r in features.collect()}


# ------------------------------------------------------------------ hand-computed values
def test_build_features_handmade_data_active_customers_only(handmade):
    _, _, _, rows = handmade
    # C2 closed before D, C4 opens after D; C3 closes after D and is still active at D.
    assert sorted(rows) == ["C1", "C3", "C5"]


def test_build_features_handmade_data_demographics_by_hand(handmade):
    _, _, _, rows = handmade
    c1, c5 = rows["C1"], rows["C5"]
    assert (c1["age"], c1["gender"], c1["region"], c1["income"], c1["risk_tolerance"]) == \
        (35, "f", "north", 120000.0, 3)
    assert c1["tenure_months"] == 29  # 2024-01-10 .. 2026-06-30
    assert c1["accounts_open"] == 2
    assert c1["as_of_date"] == D
    # unknowns: age stays null, gender u, region unknown; 2026-03-01 .. 06-30 = 3 months
    assert (c5["age"], c5["gender"], c5["region"], c5["tenure_months"]) == (None, "u", "unknown", 3)


def test_build_features_handmade_data_rfm_flows_and_channels_by_hand(handmade):
    _, _, _, c1 = (*handmade[:3], handmade[3]["C1"])
    # own: t01..t08, t10, s01, s02 (fee t09 and interest s03 are not own)
    expected = {
        "recency_days": 0,                                   # t10 at 23:30 local on D
        "frequency_30d": 3, "monetary_30d": 800 + 5000 + 490.0,            # t07 t08 t10
        "frequency_90d": 6, "monetary_90d": 5000 * 3 + 800 + 490 + 1000.0,  # t05 t06 t07 t08 t10 s02
        "frequency_365d": 9, "monetary_365d": 200 + 5000 * 5 + 800 + 490 + 1000.0,
        "frequency_prev_90d": 2,                             # t03 t04
        "txn_trend_90d": (6 - 2) / (6 + 2),
        "inflow_90d": 15000.0, "outflow_90d": 2290.0, "net_flow_90d": 12710.0,
        "channel_share_online": 3 / 6, "channel_share_mobile": 1 / 6, "channel_share_pos": 1 / 6,
        "channel_share_atm": 1 / 6, "channel_share_branch": 0.0, "channel_share_other": 0.0,
        "digital_share": 4 / 6,
    }
    assert {k: c1[k] for k in expected} == pytest.approx(expected)


def test_build_features_handmade_data_balances_and_trends_by_hand(handmade):
    c1 = handmade[3]["C1"]
    # A1 daily closing balances over 04-02..06-30 and A2 (3000 until 05-30, 2000, then 2005 on D)
    last_90 = (10800 * 13 + 15800 * 30 + 20800 * 26 + 20000 * 5 + 25000 * 5 + 24990 * 10 + 24500 * 1
               + 3000 * 59 + 2000 * 30 + 2005 * 1)
    # 01-02..04-01: A1 800 for 44 days, 5800 for 28, 10800 for 18; A2 3000 for 90
    before_90 = 800 * 44 + 5800 * 28 + 10800 * 18 + 3000 * 90
    # balances at 01-31, 03-02, 04-01, 05-01, 05-31, 06-30 (x = 0..5, mean 2.5, Sxx 17.5)
    points = [3800, 8800, 13800, 18800, 22800, 26505]
    slope = sum((x - 2.5) * y for x, y in enumerate(points)) / 17.5
    expected = {
        "end_balance": 24500 + 2005.0,
        "avg_balance_90d": round(last_90 / 90, 2),  # money in cents
        "balance_trend_90d": (last_90 - before_90) / (last_90 + before_90),
        "balance_slope_monthly": round(slope, 2),
    }
    assert {k: c1[k] for k in expected} == pytest.approx(expected)
    assert slope == pytest.approx(80262.5 / 17.5)


def test_build_features_money_features_when_sums_have_fractions_of_a_cent_are_whole_cents(handmade):
    settings, _, _, customers = handmade
    money = [e.name for e in settings.job("features").catalog if e.unit.startswith("CUR")]
    # C1's average balance is 21,040.0555... before rounding
    assert customers["C1"]["avg_balance_90d"] == 21040.06
    fractional = {(c, name): row[name] for c, row in customers.items() for name in money
                  if row[name] is not None and round(row[name] * 100) != row[name] * 100}
    assert fractional == {}


def test_build_features_handmade_data_holdings_aum_and_loans_by_hand(handmade):
    c1 = handmade[3]["C1"]
    holds = {k[len("holds_"):]: v for k, v in c1.items() if k.startswith("holds_")}
    # H1 wealth, H3 structured deposit, H5 fund (ends after D); H2 ended, H4 starts after D
    assert {t for t, v in holds.items() if v == 1} == {"wealth_management", "fund", "structured_deposit"}
    assert set(holds) == set(source("products").field("product_type").codes)
    deposits = 26505 + 20000.0
    expected = {
        "products_held": 3, "product_types_held": 3,
        "investment_holdings": 55000.0, "deposit_product_holdings": 20000.0,
        "aum": deposits + 55000,
        "investment_inclination": 55000 / 75000,  # bought in the year: H1 + H5 against H3
        "deposit_inclination": deposits / (deposits + 55000),
        # L2's snapshot is after D, L3 is closed
        "loan_outstanding": 8000.0, "max_days_past_due": 0, "loans_open": 1,
    }
    assert {k: c1[k] for k in expected} == pytest.approx(expected)


def test_build_features_handmade_data_salary_engagement_campaigns_revenue_by_hand(handmade):
    c1 = handmade[3]["C1"]
    last_90 = (10800 * 13 + 15800 * 30 + 20800 * 26 + 20000 * 5 + 25000 * 5 + 24990 * 10 + 24500
               + 3000 * 59 + 2000 * 30 + 2005)
    expected = {
        "salary_earner": 1, "salary_stopped": 0,  # ACME in April, May and June
        "app_logins_90d": 3, "wealth_page_views_90d": 1, "product_page_views_90d": 1, "app_active_days_90d": 2,
        "campaign_contacts_365d": 2, "campaign_responses_365d": 1, "campaign_response_rate": 0.5,
        # fee t09 + 1.5 % of the average deposit balance + 0.8 % of investments + 2.5 % of the loan
        "revenue_annual": round(10 + 0.015 * last_90 / 90 + 0.008 * 55000 + 0.025 * 8000, 2),
        "lifecycle_stage": "growth",  # tenure 29 months, transactions +50 %
    }
    assert {k: c1[k] for k in expected} == pytest.approx(expected)


def test_build_features_customer_without_activity_documented_fills(handmade):
    c5 = handmade[3]["C5"]
    assert c5["recency_days"] == 121  # never transacted: days since the account opened on 2026-03-01
    numeric = {k: v for k, v in c5.items()
               if k not in ("customer_id", "as_of_date", "gender", "region", "lifecycle_stage", "value_tier",
                            "age", "income", "risk_tolerance", "tenure_months", "recency_days", "accounts_open")}
    assert numeric and all(v == 0 for v in numeric.values()), numeric
    assert c5["lifecycle_stage"] == "acquisition"


def test_build_features_output_follows_catalog_order_and_types(handmade):
    settings, _, features, _ = handmade
    catalog = settings.job("features").catalog
    assert features.columns == [e.name for e in catalog]
    types = {"string": "string", "int": "int", "double": "double", "date": "date"}
    assert [(f.name, f.dataType.simpleString()) for f in features.schema.fields] == \
        [(e.name, types[e.type]) for e in catalog]


def test_conform_undocumented_column_raises(spark, handmade):
    settings, _, features, _ = handmade
    with pytest.raises(InputError, match="built but not documented: shoe_size"):
        conform(features.withColumn("shoe_size", F.lit(42)), settings.job("features").catalog)


# ------------------------------------------------------------------ point in time
def test_build_features_rows_after_as_of_date_change_nothing(spark, tmp_path, handmade):
    settings, lake, before, _ = handmade
    later = copy_lake(lake, tmp_path)
    write_silver(later, "transactions", [{**t, "batch_date": "2026-07-20"} for t in AFTER_D])
    assert later.read("silver.transactions").count() == len(TRANSACTIONS) + len(AFTER_D)
    assert_df_equality(before, build_features(spark, later, D, settings), ignore_row_order=True)


# ------------------------------------------------------------------ salary rule
def test_salary_signals_salary_missing_for_two_months_flags_stopped(spark):
    as_of = AsOf(D, "Asia/Shanghai")
    rows = [("S", "EMP", d, "transfer_in", "credit", Decimal("8000"))
            for d in (date(2026, 2, 25), date(2026, 3, 25), date(2026, 4, 25))]
    rows += [("E", "EMP", d, "transfer_in", "credit", Decimal("8000"))
             for d in (date(2026, 4, 28), date(2026, 5, 28), date(2026, 6, 28))]
    # three monthly credits, but each below the minimum amount
    rows += [("T", "EMP", d, "transfer_in", "credit", Decimal("500"))
             for d in (date(2026, 4, 28), date(2026, 5, 28), date(2026, 6, 28))]
    frame = spark.createDataFrame(rows, "customer_id string, counterparty string, txn_date date, "
                                        "txn_type string, direction string, amount decimal(18,2)")
    settings = load_settings()
    got = {r["customer_id"]: (r["salary_earner"], r["salary_stopped"])
           for r in salary_signals(frame, as_of, settings.job("features")).collect()}
    # T's credits are below the minimum amount: no salary source at all
    assert got == {"S": (0, 1), "E": (1, 0)}


def test_count_distinct_below_values_over_three_words_equals_spark_count_distinct(spark):
    rng = random.Random(11)
    # every word edge (63/64, 127/128) and the last value; some groups hold one value many times
    rows = [(g, v) for g in range(40) for v in rng.choices([None, 0, 1, 63, 64, 65, 127, 128, 149]
                                                           + list(range(150)), k=rng.randint(1, 30))]
    frame = spark.createDataFrame(rows, "g int, v int")
    got = frame.groupBy("g").agg(count_distinct_below(F.col("v"), 150).alias("n"))
    expected = frame.groupBy("g").agg(F.count_distinct("v").alias("n"))
    assert_df_equality(got.withColumn("n", F.col("n").cast("long")), expected,
                       ignore_row_order=True, ignore_nullable=True)
    assert {r["n"] for r in expected.collect()} != {0}


def deposit_balances_of_c9(spark, transactions: list[dict], accounts: tuple[str, ...]):
    """deposit_balances at D of customer C9, who owns the savings `accounts`."""
    as_of = AsOf(D, "Asia/Shanghai")
    booked = silver_frame(spark, "transactions", transactions).withColumn("txn_date", as_of.local_date("txn_ts"))
    owned = silver_frame(spark, "accounts", [
        {"account_id": a, "customer_id": "C9", "account_type": "savings", "open_date": "2024-01-01",
         "status": "open", "currency": "CNY", "updated_at": "2024-01-01T10:00:00"} for a in accounts])
    return deposit_balances(booked, owned, as_of, load_settings().job("features")).first()


def test_deposit_balances_when_several_transactions_share_a_day_or_instant_last_in_booking_order_closes(spark):
    row = deposit_balances_of_c9(spark, [
        txn("b1", "A9", "C9", "2026-06-29T23:30:00", 50, "credit", "deposit", 50),
        txn("b2", "A9", "C9", "2026-06-30T08:00:00", 949, "credit", "deposit", 999),
        # same instant: the larger txn_id is booked last
        txn("b4", "A9", "C9", "2026-06-30T09:00:00", 699, "debit", "withdrawal", 300),
        txn("b3", "A9", "C9", "2026-06-30T09:00:00", 899, "debit", "withdrawal", 100),
    ], ("A9",))
    # 06-29 closes at 50 (local date, though 06-29 15:30 UTC), D at 300 (b4 after b3 at the same instant)
    assert (row["end_balance"], round(row["avg_balance_90d"], 2)) == (Decimal("300.00"), Decimal("3.89"))


def test_deposit_balances_history_before_the_window_opens_at_its_last_balance_in_booking_order(spark):
    row = deposit_balances_of_c9(spark, [
        # before the 180 days of history (which start 2026-01-01): only the last in booking order counts,
        # and two rows share that instant (a2 after a1 by txn_id)
        txn("a0", "A9", "C9", "2025-10-01T09:00:00", 5, "credit", "deposit", 5),
        txn("a2", "A9", "C9", "2025-11-01T09:00:00", 65, "credit", "deposit", 70),
        txn("a1", "A9", "C9", "2025-11-01T09:00:00", 15, "credit", "deposit", 20),
        txn("b1", "A9", "C9", "2026-06-29T23:30:00", 45, "debit", "withdrawal", 25),
        # another account of the same customer, whose history ends before the window
        txn("x1", "A8", "C9", "2024-03-01T09:00:00", 1000, "credit", "deposit", 1000),
    ], ("A9", "A8"))
    # last 90 days (04-02..06-30): A9 70 for 88 days, then 25 on 06-29 and D; A8 1000 throughout
    assert 70 * 88 + 25 * 2 + 1000 * 90 == 1069 * 90
    assert (row["end_balance"], row["avg_balance_90d"]) == (Decimal("1025.00"), Decimal("1069"))
    # the 90 days before held the two opening balances only: 70 + 1000
    assert row["balance_trend_90d"] == pytest.approx((1069 - 1070) / (1069 + 1070))


# ------------------------------------------------------------------ lifecycle and value tier
LIFECYCLE_COLUMNS = ("customer_id string, recency_days int, aum double, tenure_months int, "
                     "txn_trend_90d double, balance_trend_90d double, frequency_prev_90d long")


@pytest.mark.parametrize("case, expected", [
    (("gone", 200, 500.0, 40, -1.0, -1.0, 10), "churned"),
    (("gone_but_rich", 200, 50000.0, 40, -1.0, -0.9, 10), "decline"),
    (("new", 3, 500.0, 2, 1.0, 1.0, 0), "acquisition"),
    (("fewer_txns", 5, 9000.0, 40, -0.4, 0.0, 10), "decline"),
    (("fewer_but_rare", 5, 9000.0, 40, -0.4, 0.0, 2), "maturity"),
    (("shrinking_balance", 5, 9000.0, 40, 0.0, -0.3, 10), "decline"),
    (("young", 5, 9000.0, 12, 0.0, 0.0, 10), "growth"),
    (("more_txns", 5, 9000.0, 40, 0.3, 0.0, 10), "growth"),
    (("steady", 5, 9000.0, 40, 0.05, -0.1, 10), "maturity"),
])
def test_lifecycle_stage_constructed_case_expected_stage(spark, case, expected):
    frame = spark.createDataFrame([case], LIFECYCLE_COLUMNS)
    stage = with_lifecycle_stage(frame, load_settings().job("features")).first()["lifecycle_stage"]
    assert stage == expected


def test_value_tier_ten_customers_percentile_rules(spark):
    # aum 1..10 thousand; revenue in the top for K3 and K10 only
    revenue = {1: 0, 2: 0, 3: 995, 4: 40, 5: 50, 6: 60, 7: 70, 8: 80, 9: 990, 10: 999}
    frame = spark.createDataFrame([(f"K{i}", i * 1000.0, float(revenue[i])) for i in range(1, 11)],
                                  "customer_id string, aum double, revenue_annual double")
    rules = load_settings().job("features").value_tier
    cutoffs = value_tier_cutoffs(frame, rules)
    # 30th / 80th percentile values = the 3rd / 8th smallest: aum 3000 / 8000, revenue 40 / 990
    assert cutoffs == {"aum": (3000.0, 8000.0), "revenue_annual": (40.0, 990.0)}
    tiers = {r["customer_id"]: r["value_tier"] for r in with_value_tier(frame, cutoffs).collect()}
    # top aum: K9 K10; top revenue: K3 K10; bottom in both: K1 K2 (K4 has revenue 40 but aum 4000)
    assert tiers == {"K10": "high", "K3": "potential", "K9": "potential", "K1": "low", "K2": "low",
                     "K4": "mass", "K5": "mass", "K6": "mass", "K7": "mass", "K8": "mass"}


# ------------------------------------------------------------------ tags
def test_feature_tags_config_rule_added_tags_matching_customers(spark, tmp_path, handmade):
    _, _, features, _ = handmade
    settings = make_settings(tmp_path, """
features:
  rule_tags:
    - {name: big_spender, expression: "monetary_30d >= 5000", description: "spent 5000 in 30 days"}
""")
    tags = feature_tags(features, settings.job("features")).where("source = 'rule'")
    rule_rows = {(r["customer_id"], r["tag"], r["value"]) for r in tags.where("tag != 'value_tier'").collect()}
    # the configured list replaces the default rules: only big_spender (C1 spent 6290) and the stages
    assert rule_rows == {("C1", "big_spender", "true"),
                         ("C1", "lifecycle_stage", "growth"), ("C3", "lifecycle_stage", "churned"),
                         ("C5", "lifecycle_stage", "acquisition")}
    assert tags.where("tag = 'value_tier'").count() == 3


def test_feature_tags_default_rules_and_statistical_bands(handmade):
    settings, _, features, _ = handmade
    tags = {(r["customer_id"], r["tag"], r["value"], r["source"])
            for r in feature_tags(features, settings.job("features")).collect()}
    c1 = {(t, v, s) for c, t, v, s in tags if c == "C1"}
    assert {("age_band", "30-49", "statistical"), ("gender", "f", "statistical"),
            ("region", "north", "statistical"), ("income_band", "middle", "statistical"),
            ("active", "true", "rule"), ("salary_earner", "true", "rule"), ("investor", "true", "rule"),
            ("borrower", "true", "rule")} <= c1
    assert not {t for t, _, _ in c1} & {"dormant", "high_net_worth", "digital_native"}
    c3 = {(t, v) for c, t, v, s in tags if c == "C3"}
    assert {("age_band", "65+"), ("income_band", "very_high"), ("dormant", "true")} <= c3
    # C5: unknown age and income carry no band tag
    assert not {t for c, t, _, _ in tags if c == "C5"} & {"age_band", "income_band"}


def test_feature_tags_bad_rule_expression_names_rule(tmp_path, handmade):
    _, _, features, _ = handmade
    settings = make_settings(tmp_path, """
features:
  rule_tags:
    - {name: broken, expression: "no_such_feature > 1", description: "typo"}
""")
    with pytest.raises(InputError, match="'broken'.*no_such_feature"):
        feature_tags(features, settings.job("features"))


# ------------------------------------------------------------------ loan warnings
FEATURE_COLUMNS = ("customer_id string, end_balance double, inflow_90d double, salary_stopped int, "
                   "txn_trend_90d double, frequency_prev_90d int")


def test_loan_warnings_constructed_loans_expected_levels_and_reasons(spark):
    conf = load_settings().job("features")
    loans = silver_frame(spark, "loans", [
        {"loan_id": lid, "customer_id": cust, "principal": 100000, "outstanding": out, "start_date": "2025-01-01",
         "days_past_due": dpd, "status": status, "snapshot_date": "2026-06-30"}
        for lid, cust, out, dpd, status in [
            ("fine", "K1", 10000, 0, "current"),
            ("rising", "K1", 10000, 10, "overdue"),
            ("steady_late", "K1", 10000, 5, "overdue"),
            ("ninety", "K1", 10000, 95, "overdue"),
            ("defaulted", "K1", 10000, 0, "default"),
            ("leveraged", "K2", 100000, 0, "current"),
            ("collapse", "K3", 10000, 0, "current"),
            ("repaid", "K1", 0, 0, "closed"),
        ]])
    features = spark.createDataFrame([
        ("K1", 200000.0, 30000.0, 0, 0.0, 10),
        # 100000 owed against 1000 + 1000 * 365 / 90 of balances and yearly inflow; salary stopped
        ("K2", 1000.0, 1000.0, 1, 0.0, 10),
        ("K3", 50000.0, 9000.0, 0, -0.8, 10),
    ], FEATURE_COLUMNS)
    previous = spark.createDataFrame([("rising", 5, date(2026, 6, 29)), ("rising", 20, date(2026, 6, 1)),
                                      ("steady_late", 5, date(2026, 6, 29))],
                                     "loan_id string, days_past_due int, as_of_date date")
    got = {r["loan_id"]: (r["warning_level"], sorted(r["reasons"]))
           for r in loan_warnings(loans, features, previous, AsOf(D, "Asia/Shanghai"), conf).collect()}
    assert got == {
        "fine": ("none", []),
        "rising": ("warning", ["dpd_rising", "past_due"]),
        "steady_late": ("watch", ["past_due"]),
        "ninety": ("critical", ["past_due"]),
        "defaulted": ("critical", []),
        "leveraged": ("warning", ["high_leverage", "salary_stopped"]),
        "collapse": ("watch", ["activity_collapse"]),
    }


# ------------------------------------------------------------------ the stage
def test_run_two_dates_writes_tables_and_loan_history_shows_rising_dpd(spark, tmp_path, handmade):
    _, handmade_lake, features_at_d, _ = handmade
    lake = copy_lake(handmade_lake, tmp_path)
    settings = make_settings(tmp_path)
    first = run(RunContext(settings, D, run_id="r1", spark_session=spark))
    first_tags = lake.read("gold.customer_tags").where(F.col("as_of_date") == D)
    assert first == {"gold.customer_features": 3, "gold.customer_tags": first_tags.count(),
                     "gold.loan_warnings": 1}
    assert {r["written_by"] for r in first_tags.collect()} == {"features"}
    assert_df_equality(lake.read("gold.customer_features"), features_at_d, ignore_row_order=True,
                       ignore_nullable=True)  # Spark reads Parquet columns as nullable
    # the post-loan snapshot of the next day: L1 is 12 days past due
    next_day = D + timedelta(days=1)
    write_silver(lake, "loans", [{**LOANS[0], "days_past_due": 12, "status": "overdue",
                                  "snapshot_date": next_day.isoformat()}])
    run(RunContext(settings, next_day, run_id="r2", spark_session=spark))
    history = {(r["as_of_date"], r["warning_level"], tuple(sorted(r["reasons"])), r["previous_days_past_due"])
               for r in lake.read("gold.loan_warnings").collect()}
    assert history == {(D, "none", (), None), (next_day, "warning", ("dpd_rising", "past_due"), 0)}
    assert lake.read("gold.customer_features").groupBy("as_of_date").count().count() == 2
