"""Registration and promotion in a real MLflow store (SQLite under the test's lake), and nightly scoring."""
from __future__ import annotations

from datetime import date

import mlflow
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F
from test_churn_train import planted_table

from jobs.churn.job import SCORES_TABLE, score
from jobs.churn.registry import champion_version, load_version, log_and_register
from jobs.churn.train import PROBABILITY, Validation, predict, train_model
from jobs.common.config import load_settings
from jobs.common.context import RunContext
from jobs.common.errors import InputError
from jobs.common.tracking import use_tracking

D = date(2026, 3, 31)
GOOD, WORSE = ["signal", "noise", "segment"], ["noise"]


@pytest.fixture(scope="module")
def table(spark):
    return planted_table(spark, 800, seed=5).persist()


@pytest.fixture(scope="module")
def trained(table, tmp_path_factory):
    """A good model (the planted signal) and a worse one (noise only), trained once for the module."""
    churn = load_settings(env={"CRM_LAKE__ROOT": str(tmp_path_factory.mktemp("unused")),
                               "CRM_CHURN__TRAINING__ALGORITHMS": "[logistic]",
                               "CRM_CHURN__TRAINING__MIN_CLASS_ROWS": "10"}).job("churn")
    return {name: train_model(table, "churned", cols, churn, Validation.latest("as_of_date"))
            for name, cols in (("good", GOOD), ("worse", WORSE))}


def publish(result, settings):
    """Log, register and challenge the champion in one MLflow run."""
    with mlflow.start_run() as run:
        promotion = log_and_register(result, settings.job("churn"))
    return promotion, run.info.run_id


def test_log_and_register_worse_model_not_promoted(settings, trained):
    use_tracking(settings, "churn")
    first, _ = publish(trained["good"], settings)
    second, run_id = publish(trained["worse"], settings)

    assert (first.version, first.promoted, first.reason) == ("1", True, "no champion yet")
    assert (second.version, second.promoted, second.champion_version) == ("2", False, "1")
    # the champion was scored on the same validation rows it was validated on when trained
    assert second.champion_value == pytest.approx(first.value, abs=1e-9)
    assert second.value < first.value
    assert str(champion_version(settings.job("churn").registry).version) == "1"
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags["promotion.decision"] == "kept_champion" and "does not beat" in tags["promotion.reason"]
    assert MlflowClient().get_model_version("churn_model", "2").tags["promotion"] == "kept_champion"


def test_log_and_register_better_model_promoted(settings, trained):
    use_tracking(settings, "churn")
    publish(trained["worse"], settings)
    better, run_id = publish(trained["good"], settings)
    assert (better.version, better.promoted, better.champion_version) == ("2", True, "1")
    assert str(champion_version(settings.job("churn").registry).version) == "2"
    assert MlflowClient().get_run(run_id).data.tags["promotion.decision"] == "promoted"


def test_score_no_champion_input_error_tells_how_to_train(spark, settings):
    with pytest.raises(InputError) as caught:
        score(RunContext(settings, D, spark_session=spark))
    assert "no champion" in str(caught.value)
    assert "crm-pipeline stage churn-train --date 2026-03-31" in caught.value.hint


def test_score_champion_and_newer_model_scores_with_champion(spark, settings, lake, table, trained):
    use_tracking(settings, "churn")
    publish(trained["good"], settings)   # v1, champion
    publish(trained["worse"], settings)  # v2, not promoted
    features = table.drop("churned").withColumn("as_of_date", F.lit(D))
    lake.replace_partitions(features, "gold.customer_features", [("as_of_date", "=", D)],
                            partition_by=["as_of_date"])
    ctx = RunContext(settings, D, spark_session=spark)

    written = score(ctx)
    score(ctx)                          # a rerun replaces the day, nothing doubles
    scores = lake.read(SCORES_TABLE)
    assert written[SCORES_TABLE] == scores.count() == 800
    assert {r.model_version for r in scores.select("model_version").distinct().collect()} == {"1"}

    client = MlflowClient()
    by_version = {}
    for version in ("1", "2"):
        model = load_version(client.get_model_version("churn_model", version))
        by_version[version] = {r.customer_id: r[PROBABILITY] for r in
                               predict(model.model, model.profile, features).select("customer_id", PROBABILITY).collect()}
    written_p = {r.customer_id: r.churn_probability for r in scores.collect()}
    assert all(written_p[c] == pytest.approx(p, abs=1e-12) for c, p in by_version["1"].items())
    assert any(abs(written_p[c] - p) > 1e-3 for c, p in by_version["2"].items())

    rows = scores.collect()
    for row in rows:
        expected = "high" if row.churn_probability >= 0.5 else "medium" if row.churn_probability >= 0.2 else "low"
        assert row.risk_band == expected
        assert len(row.reason_codes) <= 3
    assert any(row.reason_codes and row.reason_codes[0] == "signal:high" for row in rows if row.risk_band == "high")
    tags = lake.read("gold.customer_tags").where(F.col("tag") == "churn_band")
    assert {(t.customer_id, t.value, t.source) for t in tags.collect()} == {
        (r.customer_id, r.risk_band, "model") for r in rows}
