"""Lifecycle stage and value tier: documented rules over the features, thresholds in conf/features.yaml."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.features.settings import FeatureSettings, ValueTierRules

LIFECYCLE_STAGES = ("acquisition", "growth", "maturity", "decline", "churned")
VALUE_TIERS = ("high", "potential", "mass", "low")
# The two value measures and their percentile cut-offs (bottom, top).
VALUE_MEASURES = ("aum", "revenue_annual")


def with_lifecycle_stage(frame: DataFrame, conf: FeatureSettings) -> DataFrame:
    """lifecycle_stage: the first rule that holds of churned, acquisition, decline, growth, maturity."""
    rules = conf.lifecycle
    recent = conf.recent_window_days
    txn_trend = F.col(f"txn_trend_{recent}d")
    balance_trend = F.col(f"balance_trend_{recent}d")
    tenure = F.col("tenure_months")
    churned = (F.col("recency_days") >= rules.churned_min_recency_days) & (F.col("aum") <= rules.churned_max_aum)
    acquisition = tenure < rules.acquisition_max_tenure_months
    # A drop in activity counts only when there was activity to lose.
    decline = (((txn_trend <= rules.decline_max_txn_trend)
                & (F.col(f"frequency_prev_{recent}d") >= rules.decline_min_prev_txns))
               | (balance_trend <= rules.decline_max_balance_trend))
    growth = ((tenure < rules.growth_max_tenure_months) | (txn_trend >= rules.growth_min_txn_trend)
              | (balance_trend >= rules.growth_min_balance_trend))
    stage = (F.when(churned, "churned").when(acquisition, "acquisition").when(decline, "decline")
             .when(growth, "growth").otherwise("maturity"))
    return frame.withColumn("lifecycle_stage", stage)


def value_tier_cutoffs(frame: DataFrame, rules: ValueTierRules) -> dict[str, tuple[float, float]]:
    """The day's (bottom, top) percentile values of AUM and revenue (one small Spark job)."""
    quantiles = frame.approxQuantile(list(VALUE_MEASURES), [rules.bottom_percentile, rules.top_percentile],
                                     rules.quantile_relative_error)
    return {measure: (q[0], q[1]) if q else (0.0, 0.0) for measure, q in zip(VALUE_MEASURES, quantiles, strict=True)}


def with_value_tier(frame: DataFrame, cutoffs: dict[str, tuple[float, float]]) -> DataFrame:
    """value_tier: high (top in both measures), potential (top in one), low (bottom in both), else mass.

    "Top" = above the top percentile value (so a crowd of ties, e.g. zeros, is never top);
    "bottom" = at or below the bottom percentile value.
    """
    top = {m: F.col(m) > F.lit(cutoffs[m][1]) for m in VALUE_MEASURES}
    bottom = {m: F.col(m) <= F.lit(cutoffs[m][0]) for m in VALUE_MEASURES}
    aum_top, revenue_top = top["aum"], top["revenue_annual"]
    tier = (F.when(aum_top & revenue_top, "high")
            .when(aum_top | revenue_top, "potential")
            .when(bottom["aum"] & bottom["revenue_annual"], "low")
            .otherwise("mass"))
    return frame.withColumn("value_tier", tier)
