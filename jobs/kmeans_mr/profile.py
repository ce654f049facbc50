"""Segment profiles (gold.segment_profiles) and the business labels derived from them.

A centre's z-scores are its coordinates in standardised units: how many standard deviations of the
fitting day's customers the segment's typical (transformed) value lies from their mean. The
distinguishing features are those with the largest |z|. The label is that of the first rule of
`kmeans.labels` whose conditions all hold for the centre (else `fallback_label`); when several segments
earn the same label, the larger keeps it and the others get _2, _3, ... by decreasing size.
"""
from __future__ import annotations

from datetime import date

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.kmeans_mr.model import SegmentModel
from jobs.kmeans_mr.settings import LabelRule

PROFILE_SCHEMA = T.StructType([
    T.StructField("as_of_date", T.DateType()),
    T.StructField("model_version", T.StringType()),
    T.StructField("segment_id", T.IntegerType()),
    T.StructField("segment_label", T.StringType()),
    T.StructField("customers", T.LongType()),
    T.StructField("share", T.DoubleType()),
    T.StructField("centre", T.MapType(T.StringType(), T.DoubleType())),
    T.StructField("centre_z", T.MapType(T.StringType(), T.DoubleType())),
    T.StructField("distinguishing_features", T.ArrayType(T.StructType([
        T.StructField("feature", T.StringType()), T.StructField("z", T.DoubleType())]))),
])


def rule_holds(rule: LabelRule, z: dict[str, float]) -> bool:
    return all(z[c.feature] > c.z if c.op == "above" else z[c.feature] < c.z for c in rule.all)


def label_segments(centres: np.ndarray, columns: list[str], sizes: np.ndarray, rules: list[LabelRule],
                   fallback: str) -> list[str]:
    """A business label per centre (rows of standardised `centres`), unique within the model."""
    labels = []
    for centre in centres:
        z = dict(zip(columns, centre.tolist(), strict=True))
        labels.append(next((r.label for r in rules if rule_holds(r, z)), fallback))
    unique = list(labels)
    for label in set(labels):
        holders = sorted((i for i, value in enumerate(labels) if value == label),
                         key=lambda i: (-sizes[i], i))
        for rank, i in enumerate(holders[1:], start=2):
            unique[i] = f"{label}_{rank}"
    return unique


def distinguishing(centre: np.ndarray, columns: list[str], count: int) -> list[tuple[str, float]]:
    order = np.argsort(-np.abs(centre), kind="stable")[:count]
    return [(columns[i], float(centre[i])) for i in order]


def profile_rows(model: SegmentModel, sizes: np.ndarray, as_of: date, top: int) -> list[tuple]:
    """One row per segment (PROFILE_SCHEMA) from the model and the day's segment sizes."""
    columns = list(model.scaler.columns)
    original = model.scaler.to_original(model.centres)
    total = max(int(sizes.sum()), 1)

    def by_feature(values: np.ndarray) -> dict[str, float]:
        return dict(zip(columns, values.tolist(), strict=True))

    return [(as_of, model.version, model.segment_ids[i], model.labels[i], int(sizes[i]),
             float(sizes[i]) / total, by_feature(original[i]), by_feature(model.centres[i]),
             distinguishing(model.centres[i], columns, top))
            for i in range(model.k)]


def segment_profiles(spark: SparkSession, model: SegmentModel, sizes: np.ndarray, as_of: date,
                     top: int) -> DataFrame:
    return spark.createDataFrame(profile_rows(model, sizes, as_of, top), PROFILE_SCHEMA)
