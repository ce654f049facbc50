"""The generic trainer on a planted-signal table and on UCI Bank Marketing; metrics against references.

References are independent of Spark: scikit-learn's roc_auc_score and plain numpy for Brier, lift and
capture, computed on the collected validation predictions (small).
"""
from __future__ import annotations

import math
import random
from datetime import date

import numpy as np
import pytest
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from jobs.churn.bank_marketing import DEFAULT_DATA, LABEL, feature_names, load_bank_marketing
from jobs.churn.train import (
    PROBABILITY,
    VECTOR,
    WEIGHTED_PROBABILITY,
    FeatureSlot,
    ScoringProfile,
    Validation,
    evaluate,
    predict,
    reason_codes,
    train_model,
)
from jobs.common.config import load_settings

SMALL_MODELS = {
    "CRM_CHURN__TRAINING__GBT__MAX_ITER": "8",
    "CRM_CHURN__TRAINING__GBT__MAX_DEPTH": "3",
    "CRM_CHURN__TRAINING__MIN_CLASS_ROWS": "10",
}


@pytest.fixture(scope="module")
def churn_settings(tmp_path_factory):
    return load_settings(env={"CRM_LAKE__ROOT": str(tmp_path_factory.mktemp("lake")), **SMALL_MODELS}).job("churn")


def planted_table(spark, rows: int, seed: int):
    """signal raises the odds of label 1, `segment` a raises them too, noise does nothing; two cut-offs."""
    rng = random.Random(seed)
    data = []
    for i in range(rows):
        signal, noise = rng.gauss(0, 1), rng.gauss(0, 1)
        segment = rng.choice("abc")
        logit = 2.0 * signal - 2.5 + (1.2 if segment == "a" else 0.0)
        label = int(rng.random() < 1 / (1 + math.exp(-logit)))
        as_of = date(2026, 1, 31) if i < rows // 2 else date(2026, 2, 28)
        data.append((f"C{i}", as_of, signal, noise, segment, rng.choice([True, False]), label))
    return spark.createDataFrame(
        data, "customer_id string, as_of_date date, signal double, noise double, segment string, "
              "flag boolean, churned int")


@pytest.fixture(scope="module")
def planted(spark):
    return planted_table(spark, 1200, seed=11)


@pytest.fixture(scope="module")
def result(planted, churn_settings):
    return train_model(planted, "churned", ["signal", "noise", "segment", "flag"], churn_settings,
                       Validation.latest("as_of_date"))


def test_train_model_planted_signal_metrics_match_references(result):
    scored = predict(result.model, result.profile, result.validation_rows)
    rows = scored.select("churned", PROBABILITY).toPandas()
    y, p = rows["churned"].to_numpy(), rows[PROBABILITY].to_numpy()
    assert result.validation_count == len(y) == 600   # the later cut-off validates
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert result.metrics["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-9)
    order = np.lexsort((y, -p))                         # probability desc, ties: label 0 first
    top = y[order][: math.ceil(len(y) * 0.1)]
    assert result.metrics["top_capture"] == pytest.approx(top.sum() / y.sum())
    assert result.metrics["top_lift"] == pytest.approx(top.mean() / y.mean())
    assert result.metrics["roc_auc"] > 0.8              # the planted signal is learned
    assert set(result.candidates) == {"gbt", "logistic"}
    assert result.algorithm == max(result.candidates, key=lambda a: result.candidates[a]["roc_auc"])
    importances = dict(result.feature_importances)
    assert result.feature_importances[0][0] == "signal" and importances["signal"] > 2 * importances["noise"]


def test_train_model_balanced_classes_probability_prior_corrected(result):
    scored = predict(result.model, result.profile, result.validation_rows)
    means = scored.select(F.avg(PROBABILITY).alias("p"), F.avg("churned").alias("y"),
                          F.avg(vector_to_array(WEIGHTED_PROBABILITY)[1]).alias("weighted")).first()
    assert result.profile.positive_weight > 2            # churners are the minority
    assert abs(means["weighted"] - means["y"]) > 0.15    # weighted training alone is not calibrated
    assert means["p"] == pytest.approx(means["y"], abs=0.05)


def test_train_model_unseen_category_at_scoring_scored(spark, result):
    tomorrow = spark.createDataFrame([("N1", 0.5, 0.1, "new-segment", True), ("N2", 0.5, 0.1, None, None)],
                                     "customer_id string, signal double, noise double, segment string, flag boolean")
    assert predict(result.model, result.profile, tomorrow).where(F.col(PROBABILITY).isNotNull()).count() == 2


def test_train_model_too_few_churners_raises(spark, churn_settings):
    table = planted_table(spark, 60, seed=3)
    with pytest.raises(ValueError, match="positives"):
        train_model(table, "churned", ["signal"], churn_settings, Validation.latest("as_of_date"))


def test_evaluate_tied_top_boundary_counts_negatives_first(spark):
    # 10 rows, top decile = 1 row; the two highest scores tie, one positive, one negative.
    rows = [(0.9, 1), (0.9, 0)] + [(0.1 * i, i % 2) for i in range(8)]
    frame = spark.createDataFrame(rows, "p double, y int")
    metrics = evaluate(frame, "y", "p", 0.1)
    assert metrics["top_capture"] == 0.0 and metrics["top_lift"] == 0.0


def test_reason_codes_handmade_profile_largest_pushes_first(spark):
    profile = ScoringProfile("churned", ["recency_days", "balance", "segment"], 1.0, [
        FeatureSlot(0, "recency_days", "recency_days:high", "recency_days:low", mean=10.0, std=5.0, weight=0.5),
        FeatureSlot(1, "balance", "balance:high", "balance:low", mean=1000.0, std=500.0, weight=-0.3),
        FeatureSlot(2, "segment", "segment=a", None, mean=0.2, std=0.4, weight=0.2),
    ])
    frame = spark.createDataFrame([
        # pushes: recency (40-10)/5*0.5 = 3.0, balance (0-1000)/500*-0.3 = 0.6, segment (1-.2)/.4*.2 = 0.4
        ("X", Vectors.dense([40.0, 0.0, 1.0])),
        # recency below mean pushes down, balance above mean pushes down, segment 0 has no code
        ("Y", Vectors.dense([5.0, 2000.0, 0.0])),
    ], ["customer_id", VECTOR])
    codes = {r.customer_id: r.codes for r in frame.select("customer_id", reason_codes(frame, profile, 2)
                                                          .alias("codes")).collect()}
    assert codes == {"X": ["recency_days:high", "balance:low"], "Y": []}


def test_train_model_bank_marketing_sample_auc_matches_sklearn(spark, churn_settings, shared_data):
    # A quarter of bank-full keeps the test fast; `python -m jobs.churn.bank_marketing` runs the full set.
    path = shared_data / DEFAULT_DATA.relative_to(DEFAULT_DATA.parents[1])
    table = load_bank_marketing(spark, path).where(F.xxhash64("age", "balance", "day", "month", "campaign") % 4 == 0)
    settings = churn_settings.model_copy(update={"training": churn_settings.training.model_copy(
        update={"algorithms": ["gbt"], "gbt": churn_settings.training.gbt.model_copy(update={"max_iter": 20})})})
    result = train_model(table, LABEL, feature_names(table), settings, Validation.random(0.25, seed=7))
    rows = predict(result.model, result.profile, result.validation_rows).select(LABEL, PROBABILITY).toPandas()
    assert "duration" not in table.columns
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(rows[LABEL], rows[PROBABILITY]), abs=1e-9)
    assert result.metrics["roc_auc"] > 0.75


def test_evaluate_twenty_rows_gives_hand_computed_decile_lifts(spark):
    # 20 rows ranked by p: deciles of 2 rows; positives at ranks 1, 2 (decile 1), 3 (decile 2), 20 (decile 10).
    ys = [1, 1, 1] + [0] * 16 + [1]
    frame = spark.createDataFrame([(1.0 - i / 20, y) for i, y in enumerate(ys)], "p double, y int")
    metrics = evaluate(frame, "y", "p", 0.1)
    base_rate = 4 / 20
    lifts = [metrics[f"lift_decile_{d}"] for d in range(1, 11)]
    assert lifts == pytest.approx([1.0 / base_rate, 0.5 / base_rate] + [0.0] * 7 + [0.5 / base_rate])
