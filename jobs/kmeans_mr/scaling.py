"""From feature columns to the points K-means sees, and back: transform, standardise, impute.

Each feature is transformed (`signed_log1p` = sign(x) ln(1 + |x|) tames skewed money amounts and counts
while keeping zero and negatives meaningful), then standardised with the mean and the population
standard deviation over the fitting day's customers, computed by one Spark aggregation and stored with
the model so that later days are placed with the same yardstick. A missing value (or NaN) becomes the
mean, i.e. 0 after standardising; a constant feature gets scale 1 (it is 0 for everyone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.common.errors import InputError
from jobs.kmeans_mr.settings import Feature

POINT_KEY = "_point_key"  # stable per-customer key seeding the samplers: xxhash64(customer_id)


def _transformed(column: str, transform: str) -> Column:
    value = F.col(column).cast("double")
    value = F.when(F.isnan(value), None).otherwise(value)
    if transform == "signed_log1p":
        return F.signum(value) * F.log1p(F.abs(value))
    return value


@dataclass(frozen=True)
class Scaler:
    columns: tuple[str, ...]
    transforms: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]

    @staticmethod
    def fit(frame: DataFrame, features: list[Feature]) -> tuple[Scaler, dict[str, int]]:
        """The statistics of `frame`'s features, and how many values of each are missing."""
        check_columns(frame, [f.column for f in features])
        aggregates = []
        for i, feature in enumerate(features):
            value = _transformed(feature.column, feature.transform)
            aggregates += [F.avg(value).alias(f"m{i}"), F.stddev_pop(value).alias(f"s{i}"),
                           F.count_if(value.isNull()).alias(f"n{i}")]
        row = frame.agg(*aggregates).first()
        means = tuple(float(row[f"m{i}"] or 0.0) for i in range(len(features)))
        scales = tuple(float(row[f"s{i}"]) if row[f"s{i}"] else 1.0 for i in range(len(features)))
        missing = {f.column: int(row[f"n{i}"]) for i, f in enumerate(features)}
        return Scaler(tuple(f.column for f in features), tuple(f.transform for f in features),
                      means, scales), missing

    def standardise(self, frame: DataFrame, id_column: str = "customer_id") -> DataFrame:
        """`id_column`, the point key and the standardised features (named as the columns)."""
        check_columns(frame, list(self.columns))
        z = [F.coalesce((_transformed(c, t) - F.lit(m)) / F.lit(s), F.lit(0.0)).alias(c)
             for c, t, m, s in zip(self.columns, self.transforms, self.means, self.scales, strict=True)]
        return frame.select(id_column, F.xxhash64(id_column).alias(POINT_KEY), *z)

    def to_original(self, standardised: np.ndarray) -> np.ndarray:
        """Rows of standardised values back in the features' own units."""
        values = np.asarray(standardised) * np.array(self.scales) + np.array(self.means)
        logged = np.array([t == "signed_log1p" for t in self.transforms])
        values[..., logged] = np.sign(values[..., logged]) * np.expm1(np.abs(values[..., logged]))
        return values

    def to_standardised(self, original: np.ndarray) -> np.ndarray:
        values = np.array(original, dtype=np.float64)
        logged = np.array([t == "signed_log1p" for t in self.transforms])
        values[..., logged] = np.sign(values[..., logged]) * np.log1p(np.abs(values[..., logged]))
        return (values - np.array(self.means)) / np.array(self.scales)


def check_columns(frame: DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"gold.customer_features has no column {', '.join(missing)} "
                         f"(kmeans.features in conf/kmeans.yaml)")
