"""Stages `kmeans-assign` (nightly) and `kmeans-fit` (weekly retrain) of the customer segmentation.

assign: place the day's customers (gold.customer_features at D) in the segments of the current model;
        on a lake without a model it fits the first one.
fit:    fit a new model on the day's customers (k fixed or chosen), keep segment ids where centres match
        the previous model's, store it as the current model, log the run to MLflow, then publish.
Both publish gold.customer_segments and gold.segment_profiles for D and the `segment` and
`segment_label` tags (a rerun of the date replaces them).
"""
from __future__ import annotations

import logging
import time
from datetime import date

import mlflow
import numpy as np
from mlflow.entities import Metric
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.context import RunContext
from jobs.common.errors import InputError
from jobs.common.tags import tags_from_columns, write_tags
from jobs.common.tracking import use_tracking
from jobs.kmeans_mr.mapreduce import blocks_from_frame, count_points, nearest_centres
from jobs.kmeans_mr.model import ModelStore, SegmentModel, match_segment_ids
from jobs.kmeans_mr.profile import label_segments, profile_rows, segment_profiles
from jobs.kmeans_mr.scaling import POINT_KEY, Scaler
from jobs.kmeans_mr.settings import KMeansSettings
from jobs.kmeans_mr.train import Training, train

log = logging.getLogger("crm.kmeans")

FEATURES_TABLE = "gold.customer_features"
SEGMENTS_TABLE = "gold.customer_segments"
PROFILES_TABLE = "gold.segment_profiles"
WRITTEN_BY = "kmeans"
_MLFLOW_BATCH = 1000  # metrics per MLflow log_batch call (the store's limit)


def assign(ctx: RunContext) -> dict[str, int]:
    model = ModelStore(ctx.settings.lake.root).current()
    if model is None:
        log.info("no segmentation model yet: fitting the first one")
        return fit(ctx)
    return _publish(ctx, model, _features(ctx))


def fit(ctx: RunContext) -> dict[str, int]:
    conf: KMeansSettings = ctx.settings.job("kmeans")
    store = ModelStore(ctx.settings.lake.root)
    features = _features(ctx)
    started = time.monotonic()
    scaler, missing = Scaler.fit(features, conf.features)
    points = scaler.standardise(features)
    blocks = blocks_from_frame(points, conf.columns, POINT_KEY, conf.rows_per_block)
    try:
        customers = count_points(blocks)
        training = train(blocks, conf, customers)
    finally:
        blocks.unpersist()
    centres = training.fit.centres
    assigned = nearest_centres(points, conf.columns, centres).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sizes = _sizes(assigned, len(centres))
        previous = store.current()
        ids, next_id = match_segment_ids(centres, scaler, previous, conf.match_max_distance)
        model = SegmentModel(
            version=store.next_version(), scaler=scaler, centres=centres, segment_ids=ids,
            labels=label_segments(centres, conf.columns, sizes, conf.labels, conf.fallback_label),
            seed=conf.seed, next_segment_id=next_id, fitted_for=ctx.business_date.isoformat(),
            run_id=ctx.run_id,
            training={"customers": customers, "iterations": training.fit.iterations,
                      "converged": training.fit.converged, "cost": training.fit.cost,
                      "distances_computed": training.fit.distances,
                      "distances_skipped": training.fit.skipped,
                      "previous_version": previous.version if previous else None,
                      "k_curve": [vars(p) for p in training.curve]})
        runtime = time.monotonic() - started
        log.info("kmeans fit: k=%d (%s), %d iterations, cost %.6g, %d of %d distance computations "
                 "skipped, curve %s", training.k, "auto" if conf.k == "auto" else "fixed",
                 training.fit.iterations, training.fit.cost, training.fit.skipped,
                 training.fit.skipped + training.fit.distances, training.curve)
        model.training["mlflow_run_id"] = _log_run(ctx, conf, model, training, sizes, missing, runtime)
        store.save(model)
        return _write(ctx, model, assigned, sizes)
    finally:
        assigned.unpersist()


def _features(ctx: RunContext) -> DataFrame:
    the_day = [("as_of_date", "=", ctx.business_date)]
    if not ctx.lake.exists(FEATURES_TABLE):
        raise InputError(f"{FEATURES_TABLE} does not exist; run the features stage first")
    frame = ctx.lake.read(FEATURES_TABLE, partition_filters=the_day)
    if frame.limit(1).count() == 0:
        raise InputError(f"{FEATURES_TABLE} has no customers for {ctx.business_date}; "
                         "run the features stage for that date first")
    return frame


def _sizes(assigned: DataFrame, k: int) -> np.ndarray:
    sizes = np.zeros(k, dtype=np.int64)
    for row in assigned.groupBy("centre").count().collect():
        sizes[row["centre"]] = row["count"]
    return sizes


def _publish(ctx: RunContext, model: SegmentModel, features: DataFrame) -> dict[str, int]:
    points = model.scaler.standardise(features)
    assigned = (nearest_centres(points, list(model.scaler.columns), model.centres)
                .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        return _write(ctx, model, assigned, _sizes(assigned, model.k))
    finally:
        assigned.unpersist()


def _write(ctx: RunContext, model: SegmentModel, assigned: DataFrame, sizes: np.ndarray) -> dict[str, int]:
    conf: KMeansSettings = ctx.settings.job("kmeans")
    day: date = ctx.business_date
    the_day = [("as_of_date", "=", day)]
    metadata = {"run_id": ctx.run_id, "job": WRITTEN_BY, "model_version": model.version}
    ids = F.array(*[F.lit(i) for i in model.segment_ids])
    labels = F.array(*[F.lit(label) for label in model.labels])
    segments = assigned.select(
        "customer_id", ids[F.col("centre")].cast("int").alias("segment_id"),
        labels[F.col("centre")].alias("segment_label"), "distance",
        F.lit(model.version).alias("model_version"), F.lit(day).cast("date").alias("as_of_date"))
    profiles = segment_profiles(ctx.spark, model, sizes, day, conf.distinguishing_features)
    lake = ctx.lake
    written = {
        SEGMENTS_TABLE: lake.replace_partitions(segments, SEGMENTS_TABLE, the_day,
                                                partition_by=["as_of_date"], metadata=metadata).rows_added,
        PROFILES_TABLE: lake.replace_partitions(profiles, PROFILES_TABLE, the_day,
                                                partition_by=["as_of_date"], metadata=metadata).rows_added,
    }
    stored = lake.read(SEGMENTS_TABLE, partition_filters=the_day)
    tags = tags_from_columns(stored, {"segment": "segment_id", "segment_label": "segment_label"}, "model")
    written["gold.customer_tags"] = write_tags(lake, tags, WRITTEN_BY, day, ctx.run_id)
    return written


def _log_run(ctx: RunContext, conf: KMeansSettings, model: SegmentModel, training: Training,
             sizes: np.ndarray, missing: dict[str, int], runtime: float) -> str:
    """One MLflow run per fit: parameters, cost per iteration, pruning counts, k curve, artefacts."""
    use_tracking(ctx.settings, WRITTEN_BY)
    result = training.fit
    with mlflow.start_run(run_name=f"kmeans-fit {ctx.business_date} {model.version}") as run:
        mlflow.set_tags({"model_version": model.version, "as_of_date": ctx.business_date.isoformat(),
                         "pipeline_run_id": ctx.run_id})
        mlflow.log_params({"k": conf.k, "chosen_k": training.k, "seed": conf.seed, "restarts": conf.restarts,
                           "max_iter": conf.max_iter, "tol": conf.tol, "prune": conf.prune,
                           "features": ",".join(conf.columns),
                           "kmeans_pp_max_points": conf.init.kmeans_pp_max_points,
                           "customers": result.points})
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, it.number)
                   for it in result.history
                   for name, value in (("cost", it.cost), ("centre_shift", it.shift),
                                       ("distances_computed", it.distances),
                                       ("distances_skipped", it.skipped), ("reassigned", it.reassigned))]
        metrics += [Metric(name, float(value), now, p.k) for p in training.curve
                    for name, value in (("k_curve_cost", p.cost), ("k_curve_silhouette", p.silhouette))]
        computed = max(result.distances + result.skipped, 1)
        metrics += [Metric(name, float(value), now, 0) for name, value in (
            ("chosen_k", training.k), ("iterations", result.iterations), ("final_cost", result.cost),
            ("converged", result.converged), ("distances_computed_total", result.distances),
            ("distances_skipped_total", result.skipped), ("skipped_share", result.skipped / computed),
            ("runtime_seconds", runtime), *((f"missing_{c}", n) for c, n in missing.items()))]
        client = mlflow.MlflowClient()
        for start in range(0, len(metrics), _MLFLOW_BATCH):
            client.log_batch(run.info.run_id, metrics=metrics[start:start + _MLFLOW_BATCH])
        mlflow.log_dict(model.description(), "model/model.json")
        profiles = profile_rows(model, sizes, ctx.business_date, conf.distinguishing_features)
        mlflow.log_dict({"segments": [{"segment_id": r[2], "segment_label": r[3], "customers": r[4],
                                       "share": r[5], "centre": r[6], "centre_z": r[7],
                                       "distinguishing_features": r[8]} for r in profiles]},
                        "segment_profiles.json")
        return run.info.run_id
