"""gold.loan_warnings: post-loan early warning per open loan and as-of date (rules in conf/features.yaml).

Reasons: dpd_rising (days past due above the latest value recorded in this table within
dpd_history_days before D), past_due, high_leverage (outstanding of all the borrower's open loans against
their deposit balance and yearly inflows), salary_stopped, activity_collapse. The level is the higher of
the level by days past due (and status) and the level by the number of reasons.
"""
from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.features.build import DAYS_PER_YEAR, AsOf, open_loans
from jobs.features.settings import FeatureSettings

WARNING_LEVELS = ("none", "watch", "warning", "critical")
LOAN_WARNINGS_TABLE = "gold.loan_warnings"


def history_window(as_of: date, conf: FeatureSettings) -> list[tuple[str, str, date]]:
    """Partition filters of the earlier warning rows a rise in days past due is measured against."""
    first = as_of - timedelta(days=conf.loan_warnings.dpd_history_days)
    return [("as_of_date", ">=", first), ("as_of_date", "<", as_of)]


def _level(*conditions: tuple[Column, int]) -> Column:
    level = F.lit(0)
    for condition, value in reversed(conditions):
        level = F.when(condition, F.lit(value)).otherwise(level)
    return level


def loan_warnings(loans: DataFrame, features: DataFrame, previous: DataFrame, as_of: AsOf,
                  conf: FeatureSettings) -> DataFrame:
    """One row per loan open at D: warning_level, reasons and the values behind them.

    `features` are the day's gold.customer_features rows; `previous` the earlier gold.loan_warnings rows
    of the history window (empty on the first run).
    """
    rules = conf.loan_warnings
    recent = conf.recent_window_days
    current = (open_loans(loans, as_of, conf)
               .select("loan_id", "customer_id", "status", "days_past_due",
                       F.col("outstanding").cast("double").alias("outstanding")))
    latest_before = (previous.groupBy("loan_id")
                     .agg(F.max_by("days_past_due", "as_of_date").alias("previous_days_past_due")))
    borrower = features.select("customer_id", "end_balance", f"inflow_{recent}d", "salary_stopped",
                               f"txn_trend_{recent}d", f"frequency_prev_{recent}d")
    exposure = F.sum("outstanding").over(Window.partitionBy("customer_id"))
    # Balances plus a year of inflows at the recent pace: what the borrower could repay from.
    capacity = (F.coalesce("end_balance", F.lit(0.0))
                + F.coalesce(f"inflow_{recent}d", F.lit(0.0)) * (DAYS_PER_YEAR / recent))
    frame = (current.join(latest_before, "loan_id", "left")
             .join(borrower, "customer_id", "left")
             .withColumn("leverage", F.when(capacity > 0, exposure / capacity)))
    dpd = F.col("days_past_due")
    reasons = {
        "dpd_rising": (dpd > F.col("previous_days_past_due")) & (dpd >= rules.watch_dpd),
        "past_due": dpd >= rules.watch_dpd,
        "high_leverage": F.coalesce(F.col("leverage") > rules.leverage_max, exposure > 0),
        "salary_stopped": F.col("salary_stopped") == 1,
        "activity_collapse": ((F.col(f"txn_trend_{recent}d") <= rules.activity_collapse_max_txn_trend)
                              & (F.col(f"frequency_prev_{recent}d") >= rules.activity_collapse_min_prev_txns)),
    }
    reason_list = F.array_compact(F.array(*[F.when(F.coalesce(cond, F.lit(False)), F.lit(code))
                                            for code, cond in reasons.items()]))
    by_dpd = _level(((dpd >= rules.critical_dpd) | F.col("status").isin(rules.critical_statuses), 3),
                    (dpd >= rules.warning_dpd, 2), (dpd >= rules.watch_dpd, 1))
    count = F.size("reasons")
    by_reasons = _level((count >= rules.critical_min_reasons, 3), (count >= rules.warning_min_reasons, 2),
                        (count >= 1, 1))
    levels = F.array(*[F.lit(level) for level in WARNING_LEVELS])
    return (frame.withColumn("reasons", reason_list)
            .withColumn("warning_level", F.element_at(levels, F.greatest(by_dpd, by_reasons) + 1))
            .select("loan_id", "customer_id", F.lit(as_of.date).alias("as_of_date"), "warning_level",
                    "reasons", "days_past_due", "previous_days_past_due", "outstanding", "leverage"))
