"""Campaign measurement on a constructed set of pushes, holdings, transactions and responses whose
answer is known by hand."""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from test_push_fixtures import HISTORY_DDL, push_settings

from jobs.common.context import RunContext
from jobs.common.lake import Lake
from jobs.push import measure

PUSHED = date(2026, 10, 1)
EXPIRY = PUSHED + timedelta(days=14)
D = PUSHED + timedelta(days=20)  # the window is closed


def _history_rows():
    rows = []
    for n in range(100):
        rows.append((PUSHED, "wealth_upsell", f"pw{n}", f"T{n:03d}", "app", "FUND_HI", "fund", 1, 0.08, [],
                     EXPIRY, False, n + 1, "r"))
    for n in range(50):
        rows.append((PUSHED, "wealth_upsell", f"cw{n}", f"K{n:03d}", "app", "FUND_HI", "fund", 1, 0.08, [],
                     EXPIRY, True, 200 + n, "r"))
    for n in range(10):
        rows.append((PUSHED, "retention_call", f"pr{n}", f"R{n:03d}", "rm_call", None, None, None, 0.9, [],
                     EXPIRY, False, n + 1, "r"))
    for n in range(5):
        rows.append((PUSHED, "retention_call", f"cr{n}", f"Q{n:03d}", "rm_call", None, None, None, 0.9, [],
                     EXPIRY, True, 20 + n, "r"))
    return rows


def _holdings():
    inside = PUSHED + timedelta(days=5)
    rows = [(f"T{n:03d}", "FUND_B", inside) for n in range(20)]  # another fund: same offered TYPE converts
    rows += [(f"K{n:03d}", "FUND_HI", EXPIRY) for n in range(5)]  # expiry day is inside the window
    rows += [("T020", "FUND_HI", PUSHED),  # on the push date: before the file was sent
             ("T021", "FUND_HI", EXPIRY + timedelta(days=1)),  # after expiry
             ("T022", "INS_1", inside),  # another product type
             ("K010", "FUND_HI", PUSHED - timedelta(days=30))]  # before the push
    return rows


def _transactions():
    inside = datetime(2026, 10, 3, 2, 0)  # UTC; 10:00 in the bank's zone
    rows = [(f"R{n:03d}", "deposit", inside) for n in range(4)]
    rows += [("R004", "fee", inside),  # the bank's own transaction is no sign of life
             ("R005", "deposit", datetime(2026, 9, 30, 20, 0)),  # 04:00 on Oct 1 bank time: the push date
             ("Q000", "transfer_out", inside)]
    return rows


def _responses():
    rows = [(f"pw{n}", "delivered") for n in range(90)] + [(f"pw{n}", "opened") for n in range(40)]
    rows += [(f"pw{n}", "clicked") for n in range(10)] + [(f"pw{n}", "converted") for n in range(15)]
    rows += [("pw0", "opened")]  # a second open of the same push counts once
    return rows


@pytest.fixture
def measured(spark, tmp_path):
    settings = push_settings(tmp_path)
    lake = Lake.from_settings(spark, settings)
    history = spark.createDataFrame(_history_rows(), HISTORY_DDL)
    lake.replace_partitions(history, "gold.push_history", [("as_of_date", "=", PUSHED)], partition_by=["as_of_date"])
    lake.overwrite(spark.createDataFrame(
        [("FUND_HI", "fund"), ("FUND_B", "fund"), ("INS_1", "insurance")], "product_id string, product_type string"),
        "silver.products")
    lake.overwrite(spark.createDataFrame(
        [(f"H{n}", c, p, s, None, Decimal("100.00")) for n, (c, p, s) in enumerate(_holdings())],
        "holding_id string, customer_id string, product_id string, start_date date, end_date date, "
        "amount decimal(18,2)"), "silver.holdings")
    lake.overwrite(spark.createDataFrame(
        [(f"X{n}", c, t, ts, D) for n, (c, t, ts) in enumerate(_transactions())],
        "txn_id string, customer_id string, txn_type string, txn_ts timestamp, batch_date date"),
        "silver.transactions", partition_by=["batch_date"])
    lake.overwrite(spark.createDataFrame(
        [(p, "c", "wealth_upsell", "app", e, datetime(2026, 10, 2), D) for p, e in _responses()],
        "push_id string, customer_id string, campaign_id string, channel string, event string, "
        "event_ts timestamp, batch_date date"), "silver.campaign_responses", partition_by=["batch_date"])
    written = measure.run(RunContext(settings, D, run_id="measure-run", spark_session=spark))
    rows = lake.read("gold.campaign_performance").collect()
    return written, {(r["campaign_id"], r["channel"]): r.asDict() for r in rows}


def test_measure_when_constructed_responses_counts_and_rates_match_hand_count(measured):
    written, rows = measured
    assert written == {"gold.campaign_performance": 2}
    wealth = rows[("wealth_upsell", "app")]
    assert (wealth["push_date"], wealth["as_of_date"]) == (PUSHED, D)
    assert (wealth["sent"], wealth["delivered"], wealth["opened"], wealth["clicked"]) == (100, 90, 40, 10)
    assert (wealth["converted"], wealth["control_size"], wealth["control_converted"]) == (20, 50, 5)
    assert wealth["reported_conversions"] == 15
    assert wealth["conversion_rate"] == pytest.approx(0.20)
    assert wealth["control_conversion_rate"] == pytest.approx(0.10)
    assert wealth["window_closed"] is True


def test_measure_uplift_when_known_answer_matches_hand_computed_interval(measured):
    wealth = measured[1][("wealth_upsell", "app")]
    se = math.sqrt(0.2 * 0.8 / 100 + 0.1 * 0.9 / 50)  # 0.0583095
    assert wealth["uplift"] == pytest.approx(0.10)
    assert wealth["uplift_ci_low"] == pytest.approx(0.10 - 1.959964 * se, abs=1e-6)  # -0.014284
    assert wealth["uplift_ci_high"] == pytest.approx(0.10 + 1.959964 * se, abs=1e-6)  # 0.214284
    assert wealth["uplift_ci_low"] == pytest.approx(-0.014284, abs=1e-6)


def test_measure_call_list_when_customers_transact_in_window_count_as_retained(measured):
    retention = measured[1][("retention_call", "rm_call")]
    assert (retention["sent"], retention["converted"]) == (10, 4)
    assert (retention["control_size"], retention["control_converted"]) == (5, 1)
    assert retention["uplift"] == pytest.approx(0.4 - 0.2)
