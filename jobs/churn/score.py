"""Nightly churn scores: the champion's calibrated probability, a risk band and reason codes."""
from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.churn.registry import Champion
from jobs.churn.settings import ScoringSettings
from jobs.churn.train import PROBABILITY, predict, reason_codes


def risk_band(probability: Column, scoring: ScoringSettings) -> Column:
    return (F.when(probability >= scoring.band_high, F.lit("high"))
            .when(probability >= scoring.band_medium, F.lit("medium"))
            .otherwise(F.lit("low")))


def churn_scores(features: DataFrame, champion: Champion, scoring: ScoringSettings, as_of: date) -> DataFrame:
    """gold.churn_scores rows: one per customer of `features` (the day's gold.customer_features)."""
    scored = predict(champion.model, champion.profile, features)
    return scored.select(
        "customer_id",
        F.lit(as_of).cast("date").alias("as_of_date"),
        F.col(PROBABILITY).alias("churn_probability"),
        risk_band(F.col(PROBABILITY), scoring).alias("risk_band"),
        F.lit(champion.version).alias("model_version"),
        reason_codes(scored, champion.profile, scoring.reason_codes).alias("reason_codes"))
