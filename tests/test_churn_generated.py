"""The first nightly run on a new lake over generated data: churn-score trains a first model, then scores.

The shared `pipeline_run` (1,500 customers x 12 months, seed 7, business date D = 2026-10-31) ran every
nightly stage on a new lake. The generator's ground truth (`landing.truth/customers.csv`, churn_date per
planted churner) checks the labels and the ranking independently of the pipeline's own label definition.
"""
from __future__ import annotations

import csv
from datetime import date, timedelta

import mlflow
import pytest
from sklearn.metrics import roc_auc_score

from jobs.churn.job import SCORES_TABLE, training_cutoffs
from jobs.churn.labels import churn_labels, with_local_day
from jobs.common.tracking import use_tracking


@pytest.fixture(scope="module")
def nightly(pipeline_run):
    settings, lake, truth_dir, day = pipeline_run
    with open(truth_dir / "customers.csv", newline="") as handle:
        churn_dates = {row["customer_id"]: date.fromisoformat(row["churn_date"])
                       for row in csv.DictReader(handle) if row["churn_date"]}
    use_tracking(settings, "churn")
    run = mlflow.search_runs(output_format="list")[0]
    return settings, lake, day, run, churn_dates


def test_first_nightly_run_no_champion_trains_then_scores(nightly):
    _, lake, day, run, _ = nightly
    assert int(run.data.params["train_rows"]) > 1000 and run.data.tags["model_version"] == "1"
    features = lake.read("gold.customer_features", partition_filters=[("as_of_date", "=", day)]).count()
    scores = lake.read(SCORES_TABLE, partition_filters=[("as_of_date", "=", day)])
    assert scores.count() == features
    assert {r.model_version for r in scores.select("model_version").distinct().collect()} == {"1"}


def test_generated_data_validation_cutoff_roc_auc_at_least_085(nightly):
    settings, _, day, run, _ = nightly
    assert run.data.tags["promotion.decision"] == "promoted"
    print(f"generated data, validation cut-off {training_cutoffs(day, settings.job('churn'))[-1]}: "
          f"ROC AUC {run.data.metrics['validation_roc_auc']:.4f}, PR AUC {run.data.metrics['validation_pr_auc']:.4f}, "
          f"top-decile lift {run.data.metrics['validation_top_lift']:.2f}")
    assert run.data.metrics["validation_roc_auc"] >= 0.85


def test_generated_data_labels_agree_with_planted_churn_dates(spark, nightly):
    settings, lake, day, _, churn_dates = nightly
    label = settings.job("churn").label
    cutoff = training_cutoffs(day, settings.job("churn"))[-1]
    end = cutoff + timedelta(days=label.horizon_days)
    transactions = with_local_day(lake.read("silver.transactions"), settings.bank.timezone)
    labels = {r.customer_id: r.churned for r in
              churn_labels(lake.read("silver.accounts"), transactions, cutoff, label).collect()}
    planted = {c for c, d in churn_dates.items() if cutoff < d <= end and c in labels}
    labelled = {c for c, churned in labels.items() if churned}
    assert planted and planted <= labelled        # every planted churner of the window is labelled
    assert len(labelled - planted) <= 0.5 * len(planted)   # dormancy adds a few, not a flood


def test_generated_data_scores_rank_coming_churners_high(nightly):
    _, lake, day, _, churn_dates = nightly
    scores = {r.customer_id: r.churn_probability
              for r in lake.read(SCORES_TABLE, partition_filters=[("as_of_date", "=", day)]).collect()}
    coming = [1 if day < churn_dates.get(c, date.max) <= day + timedelta(days=90) else 0 for c in scores]
    auc = roc_auc_score(coming, list(scores.values()))
    print(f"scores at {day} against planted churners of the next 90 days: ROC AUC {auc:.4f} "
          f"({sum(coming)} of {len(coming)} customers)")
    assert auc >= 0.85
