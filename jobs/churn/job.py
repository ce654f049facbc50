"""Churn stages: `train` (weekly or on demand: `churn-train`) and `score` (nightly: `churn-score`)."""
from __future__ import annotations

from datetime import date, timedelta
from functools import reduce

import mlflow
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.churn.labels import churn_labels, with_local_day
from jobs.churn.registry import Champion, load_champion, log_and_register
from jobs.churn.score import churn_scores
from jobs.churn.settings import ChurnSettings
from jobs.churn.train import Validation, feature_columns, train_model
from jobs.common.context import RunContext
from jobs.common.errors import InputError
from jobs.common.tags import tags_from_columns, write_tags
from jobs.common.tracking import use_tracking

LABEL = "churned"
FEATURES_TABLE = "gold.customer_features"
SCORES_TABLE = "gold.churn_scores"


def training_cutoffs(business_date: date, settings: ChurnSettings) -> list[date]:
    """The cut-offs, oldest first: the latest is D - horizon (labels fully observed by D)."""
    latest = business_date - timedelta(days=settings.label.horizon_days)
    step = timedelta(days=settings.training.cutoff_step_days)
    return [latest - k * step for k in reversed(range(settings.training.cutoffs))]


def labelled_features(ctx: RunContext, cutoffs: list[date]) -> DataFrame:
    """build_features(as_of=T) of the customers active at each T, with their label over (T, T + H]."""
    from jobs.features.build import build_features

    settings: ChurnSettings = ctx.settings.job("churn")
    for table in ("silver.accounts", "silver.transactions"):
        if not ctx.lake.exists(table):
            raise InputError(f"{table} does not exist; churn labels come from it",
                             hint="run ingest and clean first")
    accounts = ctx.lake.read("silver.accounts")
    transactions = with_local_day(ctx.lake.read("silver.transactions"), ctx.settings.bank.timezone)
    frames = []
    for cutoff in cutoffs:
        labels = churn_labels(accounts, transactions, cutoff, settings.label).select("customer_id", LABEL)
        frames.append(build_features(ctx.spark, ctx.lake, cutoff, ctx.settings).join(labels, "customer_id"))
    return reduce(DataFrame.unionByName, frames)


def train(ctx: RunContext) -> dict[str, int]:
    """Label the configured cut-offs, train, log to MLflow, register, promote if better than the champion."""
    settings: ChurnSettings = ctx.settings.job("churn")
    cutoffs = training_cutoffs(ctx.business_date, settings)
    use_tracking(ctx.settings, "churn")
    table = labelled_features(ctx, cutoffs).persist()
    try:
        with mlflow.start_run(run_name=f"churn-train {ctx.business_date}",
                              tags={"business_date": ctx.business_date.isoformat(), "pipeline_run_id": ctx.run_id}):
            mlflow.log_params({"cutoffs": ",".join(c.isoformat() for c in cutoffs),
                               **{f"label.{k}": v for k, v in settings.label.model_dump().items()}})
            try:
                result = train_model(table, LABEL, feature_columns(table, LABEL, settings.training), settings,
                                     Validation.latest("as_of_date"))
            except ValueError as exc:
                raise InputError(f"cannot train the churn model for {ctx.business_date}: {exc}",
                                 hint=f"labels need history: cut-offs {cutoffs[0]}..{cutoffs[-1]} plus "
                                      f"{settings.label.horizon_days} days after each") from None
            try:
                promotion = log_and_register(result, settings)
            finally:
                result.validation_rows.unpersist()
    finally:
        table.unpersist()
    print(f"  churn-train: {settings.registry.model_name} v{promotion.version} {result.algorithm} "
          f"{promotion.metric} {promotion.value:.4f}: {promotion.decision} ({promotion.reason})", flush=True)
    return {f"{settings.registry.model_name} v{promotion.version} training rows": result.train_count}


def ensure_champion(ctx: RunContext) -> tuple[Champion, dict[str, int]]:
    """The champion, training a first model when the registry has none (new lake, first nightly run)."""
    settings: ChurnSettings = ctx.settings.job("churn")
    use_tracking(ctx.settings, "churn")
    champion = load_champion(settings.registry)
    if champion is not None:
        return champion, {}
    print("  churn-score: no champion churn model yet: training a first one (churn-train) before scoring",
          flush=True)
    written = train(ctx)
    champion = load_champion(settings.registry)
    if champion is None:
        raise InputError("training did not produce a champion churn model")
    return champion, written


def score(ctx: RunContext) -> dict[str, int]:
    """Score the day's customer features with the champion into gold.churn_scores and churn_band tags."""
    settings: ChurnSettings = ctx.settings.job("churn")
    registry = settings.registry
    ctx.spark  # noqa: B018 - loading a Spark ML model from the registry needs an active session
    if ctx.train_if_missing:
        champion, written = ensure_champion(ctx)
    else:
        use_tracking(ctx.settings, "churn")
        champion, written = load_champion(registry), {}
        if champion is None:
            raise InputError(f"no champion churn model ({registry.model_name}@{registry.champion_alias}) in "
                             f"the model registry {ctx.settings.mlflow_tracking_uri}",
                             hint=f"train one first: crm-pipeline stage churn-train --date {ctx.business_date}")
    day = ctx.business_date
    features = (ctx.lake.read(FEATURES_TABLE, partition_filters=[("as_of_date", "=", day)])
                if ctx.lake.exists(FEATURES_TABLE) else None)
    if features is None or features.limit(1).count() == 0:
        raise InputError(f"{FEATURES_TABLE} has no rows for {day}",
                         hint=f"run the features stage first: crm-pipeline stage features --date {day}")
    missing = sorted(set(champion.profile.feature_cols) - set(features.columns))
    if missing:
        raise InputError(f"champion churn model v{champion.version} needs columns {FEATURES_TABLE} no longer "
                         f"has: {', '.join(missing)}",
                         hint=f"train a model on today's features: crm-pipeline stage churn-train --date {day}")
    scores = churn_scores(features, champion, settings.scoring, day).persist()
    try:
        result = ctx.lake.replace_partitions(scores, SCORES_TABLE, [("as_of_date", "=", day)],
                                             partition_by=["as_of_date"],
                                             metadata={"run_id": ctx.run_id, "job": "churn",
                                                       "model_version": champion.version})
        tags = tags_from_columns(scores, {"churn_band": F.col("risk_band")}, "model")
        tag_rows = write_tags(ctx.lake, tags, written_by="churn", as_of=day, run_id=ctx.run_id)
    finally:
        scores.unpersist()
    return {**written, SCORES_TABLE: result.rows_added, "gold.customer_tags": tag_rows}
