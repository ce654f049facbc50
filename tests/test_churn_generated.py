"""The first nightly run on a new lake over generated data: churn-score trains a first model, then scores.

1,500 customers x 12 months (seed 7), business date D = 2026-10-31. The generator's ground truth
(`landing.truth/customers.csv`, churn_date per planted churner) checks the labels and the ranking
independently of the pipeline's own label definition.
"""
from __future__ import annotations

import csv
from datetime import date, timedelta

import mlflow
import pytest
from sklearn.metrics import roc_auc_score

from jobs.churn.job import SCORES_TABLE, score, training_cutoffs
from jobs.churn.labels import churn_labels, with_local_day
from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.tracking import use_tracking
from jobs.generate.generator import generate
from jobs.stages import load_stage

D = date(2026, 10, 31)


@pytest.fixture(scope="module")
def nightly(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    settings = load_settings(env={"CRM_LAKE__ROOT": str(root / "lake"), "CRM_LANDING__ROOT": str(root / "landing"),
                                  "CRM_OUTBOX__ROOT": str(root / "outbox"),
                                  "CRM_REPORTS__ROOT": str(root / "reports")})
    generate(customers=1500, months=12, end_date=D, seed=7, landing=root / "landing", settings=settings)
    ctx = RunContext(settings, D, spark_session=spark, train_if_missing=True)
    for stage in ("ingest", "clean", "features"):
        load_stage(stage)(ctx)
    written = score(ctx)
    with open(root / "landing.truth" / "customers.csv", newline="") as handle:
        churn_dates = {row["customer_id"]: date.fromisoformat(row["churn_date"])
                       for row in csv.DictReader(handle) if row["churn_date"]}
    return ctx, written, churn_dates


def test_first_nightly_run_no_champion_trains_then_scores(nightly):
    ctx, written, _ = nightly
    assert written["churn_model v1 training rows"] > 1000
    features = ctx.lake.read("gold.customer_features", partition_filters=[("as_of_date", "=", D)]).count()
    assert written[SCORES_TABLE] == features
    versions = {r.model_version for r in ctx.lake.read(SCORES_TABLE).select("model_version").distinct().collect()}
    assert versions == {"1"}


def test_generated_data_validation_cutoff_roc_auc_at_least_085(nightly):
    ctx, _, _ = nightly
    use_tracking(ctx.settings, "churn")
    run = mlflow.search_runs(output_format="list")[0]
    assert run.data.tags["promotion.decision"] == "promoted"
    print(f"generated data, validation cut-off {training_cutoffs(D, ctx.settings.job('churn'))[-1]}: "
          f"ROC AUC {run.data.metrics['validation_roc_auc']:.4f}, PR AUC {run.data.metrics['validation_pr_auc']:.4f}, "
          f"top-decile lift {run.data.metrics['validation_top_lift']:.2f}")
    assert run.data.metrics["validation_roc_auc"] >= 0.85


def test_generated_data_labels_agree_with_planted_churn_dates(spark, nightly):
    ctx, _, churn_dates = nightly
    label = ctx.settings.job("churn").label
    cutoff = training_cutoffs(D, ctx.settings.job("churn"))[-1]
    end = cutoff + timedelta(days=label.horizon_days)
    transactions = with_local_day(ctx.lake.read("silver.transactions"), spark, ctx.settings.bank.timezone)
    labels = {r.customer_id: r.churned for r in
              churn_labels(ctx.lake.read("silver.accounts"), transactions, cutoff, label).collect()}
    planted = {c for c, d in churn_dates.items() if cutoff < d <= end and c in labels}
    labelled = {c for c, churned in labels.items() if churned}
    assert planted and planted <= labelled        # every planted churner of the window is labelled
    assert len(labelled - planted) <= 0.5 * len(planted)   # dormancy adds a few, not a flood


def test_generated_data_scores_rank_coming_churners_high(nightly):
    ctx, _, churn_dates = nightly
    scores = {r.customer_id: r.churn_probability for r in ctx.lake.read(SCORES_TABLE).collect()}
    coming = [1 if D < churn_dates.get(c, date.max) <= D + timedelta(days=90) else 0 for c in scores]
    auc = roc_auc_score(coming, list(scores.values()))
    print(f"scores at {D} against planted churners of the next 90 days: ROC AUC {auc:.4f} "
          f"({sum(coming)} of {len(coming)} customers)")
    assert auc >= 0.85
