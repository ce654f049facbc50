"""The segmentation stages over the lake: fit, nightly assignment, model store, ids, labels, MLflow."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from jobs.common.config import ConfigError, load_settings
from jobs.common.context import RunContext
from jobs.kmeans_mr import job
from jobs.kmeans_mr.model import ModelStore
from jobs.kmeans_mr.profile import label_segments
from jobs.kmeans_mr.settings import KMeansSettings

DAY_1, DAY_2 = date(2026, 10, 30), date(2026, 10, 31)

# Planted archetypes in the features' own units: (share, {feature: (mean, sd)}); money amounts and
# counts are log-normal (mean and sd of ln), the rest normal. Unlisted features take BASE.
BASE = {"aum": (9.5, 0.5), "income": (10.6, 0.3), "monetary_90d": (9.0, 0.5), "frequency_90d": (3.3, 0.3),
        "recency_days": (1.5, 0.4), "digital_share": (0.4, 0.1), "channel_share_branch": (0.2, 0.06),
        "app_logins_90d": (2.5, 0.4), "deposit_inclination": (0.95, 0.03), "loan_outstanding": (0.0, 0.0),
        "age": (40, 6), "tenure_months": (80, 20), "txn_trend_90d": (0.0, 0.1),
        "balance_trend_90d": (0.0, 0.1), "balance_slope_monthly": (1000.0, 1500.0)}
LOGNORMAL = {"aum", "income", "monetary_90d", "frequency_90d", "recency_days", "loan_outstanding",
             "app_logins_90d"}
ARCHETYPES = {
    "affluent_investor": (0.15, {"aum": (13.5, 0.4), "income": (11.8, 0.3), "deposit_inclination": (0.3, 0.1),
                                 "age": (52, 7), "tenure_months": (140, 25),
                                 "balance_slope_monthly": (20000.0, 8000.0)}),
    "conservative_saver": (0.2, {"aum": (12.0, 0.4), "digital_share": (0.08, 0.05), "age": (63, 6),
                                 "channel_share_branch": (0.45, 0.08), "tenure_months": (160, 25),
                                 "app_logins_90d": (0.5, 0.3), "frequency_90d": (2.5, 0.3)}),
    "young_digital": (0.2, {"aum": (8.3, 0.4), "digital_share": (0.9, 0.05), "age": (26, 3),
                            "channel_share_branch": (0.03, 0.02), "tenure_months": (20, 8),
                            "app_logins_90d": (4.8, 0.3), "frequency_90d": (4.4, 0.3)}),
    "salaried_mass": (0.2, {}),
    "borrower": (0.15, {"aum": (8.0, 0.4), "loan_outstanding": (12.5, 0.4), "age": (37, 5),
                        "deposit_inclination": (0.9, 0.05)}),
    "declining": (0.1, {"monetary_90d": (7.5, 0.5), "frequency_90d": (2.6, 0.4), "recency_days": (2.0, 0.3),
                        "channel_share_branch": (0.45, 0.08), "txn_trend_90d": (-0.6, 0.1),
                        "balance_trend_90d": (-0.5, 0.1), "balance_slope_monthly": (-7000.0, 3000.0),
                        "app_logins_90d": (0.5, 0.3)}),
}
# The business label (conf/kmeans.yaml rules) the segment holding most of each archetype should earn.
EXPECTED_LABELS = {"affluent_investor": "high_value", "borrower": "borrower", "declining": "declining",
                   "young_digital": "digital_young", "conservative_saver": "deposit_inclined",
                   "salaried_mass": "mainstream"}


def planted_features(n: int, seed: int, as_of: date) -> pd.DataFrame:
    """gold.customer_features-like rows of customers drawn from the archetypes, with some gaps."""
    rng = np.random.default_rng(seed)
    names = list(ARCHETYPES)
    truth = rng.choice(len(names), size=n, p=[ARCHETYPES[a][0] for a in names])
    data: dict[str, object] = {"customer_id": [f"C{seed:02d}{i:06d}" for i in range(n)],
                               "archetype": [names[t] for t in truth]}
    for feature, base in BASE.items():
        params = np.array([ARCHETYPES[a][1].get(feature, base) for a in names])
        values = rng.normal(params[truth, 0], params[truth, 1])
        data[feature] = np.where(params[truth, 0] == 0, 0.0, np.exp(values)) if feature in LOGNORMAL else values
    frame = pd.DataFrame(data).astype({"age": "int32", "tenure_months": "int32"})
    frame.loc[rng.random(n) < 0.03, "income"] = np.nan  # missing incomes are imputed with the mean
    frame["as_of_date"] = as_of
    return frame


def write_features(spark, lake, frame: pd.DataFrame) -> None:
    rows = spark.createDataFrame(frame.drop(columns="archetype"))
    day = frame["as_of_date"].iloc[0]
    lake.replace_partitions(rows, job.FEATURES_TABLE, [("as_of_date", "=", day)],
                            partition_by=["as_of_date"])


@pytest.fixture
def settings(settings_with):
    """One start per k: these tests are about the wiring (the generated bank's test runs the shipped
    restarts)."""
    return settings_with(CRM_KMEANS__RESTARTS="1")


def segments_of(lake, day: date) -> pd.DataFrame:
    return (lake.read(job.SEGMENTS_TABLE, partition_filters=[("as_of_date", "=", day)])
            .toPandas().sort_values("customer_id").reset_index(drop=True))


@pytest.fixture
def day_1(spark, lake):
    frame = planted_features(1500, seed=1, as_of=DAY_1)
    write_features(spark, lake, frame)
    return frame


def test_assign_on_a_lake_without_model_fits_the_first_and_recovers_archetypes(spark, settings, lake, day_1):
    written = job.assign(RunContext(settings, DAY_1, run_id="first", spark_session=spark))
    segments = segments_of(lake, DAY_1)
    store = ModelStore(settings.lake.root)

    assert store.current_version() == "v0001"
    assert written[job.SEGMENTS_TABLE] == len(day_1) == len(segments)
    assert (segments["model_version"] == "v0001").all()
    truth = day_1.sort_values("customer_id")["archetype"].to_numpy()
    ari = adjusted_rand_score(truth, segments["segment_id"])
    assert ari >= 0.8, f"adjusted Rand index {ari:.3f}"
    # Each segment's distance is the Euclidean distance to its centre in standardised units.
    assert (segments["distance"] >= 0).all()
    tags = lake.read("gold.customer_tags").where("written_by = 'kmeans'").toPandas()
    assert set(tags["tag"]) == {"segment", "segment_label"} and len(tags) == 2 * len(day_1)
    assert set(tags["source"]) == {"model"}

    profiles = lake.read(job.PROFILES_TABLE).toPandas().set_index("segment_id").sort_index()
    assert profiles["customers"].sum() == len(day_1)
    assert profiles["share"].sum() == pytest.approx(1.0)
    assert set(profiles["segment_label"]) == set(segments["segment_label"])
    # The business labels name the planted archetypes they hold most of.
    majority = (pd.DataFrame({"truth": truth, "label": segments["segment_label"]})
                .groupby("truth")["label"].agg(lambda s: s.value_counts().index[0]))
    assert majority.to_dict() == EXPECTED_LABELS

    experiment = mlflow.get_experiment_by_name(f"{settings.mlflow.experiment_prefix}-kmeans")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["chosen_k"] == "6" and run.data.tags["model_version"] == "v0001"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "cost")
    assert len(history) == int(run.data.metrics["iterations"]) >= 2
    assert run.data.metrics["distances_skipped_total"] > 0


def test_assign_with_a_model_uses_its_stored_centres(spark, settings, lake, day_1):
    job.fit(RunContext(settings, DAY_1, run_id="fit", spark_session=spark))
    later = planted_features(400, seed=2, as_of=DAY_2)
    later["aum"] *= 3.0  # a different day: its own statistics must not be used
    write_features(spark, lake, later)
    job.assign(RunContext(settings, DAY_2, run_id="nightly", spark_session=spark))

    model_dir = Path(settings.lake.root) / "_models" / "kmeans" / "v0001"
    info = json.loads((model_dir / "model.json").read_text())
    centres = np.load(model_dir / "centres.npy")
    later = later.sort_values("customer_id").reset_index(drop=True)
    raw = later[info["features"]].to_numpy(dtype=float)
    logged = np.array([t == "signed_log1p" for t in info["transforms"]])
    raw[:, logged] = np.sign(raw[:, logged]) * np.log1p(np.abs(raw[:, logged]))
    z = np.nan_to_num((raw - np.array(info["means"])) / np.array(info["scales"]))
    d2 = ((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    expected_ids = np.array(info["segment_ids"])[d2.argmin(axis=1)]

    segments = segments_of(lake, DAY_2)
    assert ModelStore(settings.lake.root).current_version() == "v0001"
    assert (segments["model_version"] == "v0001").all()
    np.testing.assert_array_equal(segments["segment_id"], expected_ids)
    np.testing.assert_allclose(segments["distance"], np.sqrt(d2.min(axis=1)), rtol=1e-9)


def test_fit_again_with_another_seed_keeps_segment_ids(spark, settings, settings_with, lake, day_1):
    job.fit(RunContext(settings, DAY_1, run_id="week1", spark_session=spark))
    first = segments_of(lake, DAY_1)
    reseeded = settings_with(CRM_KMEANS__SEED="99", CRM_KMEANS__RESTARTS="1")
    job.fit(RunContext(reseeded, DAY_1, run_id="week2", spark_session=spark))
    second = segments_of(lake, DAY_1)

    assert (second["model_version"] == "v0002").all()
    assert ModelStore(settings.lake.root).load("v0002").next_segment_id == 6
    # The same clusters come back in another order; matching gives them their old ids.
    agree = (first["segment_id"] == second["segment_id"]).mean()
    assert agree > 0.98
    assert (first["segment_label"] == second["segment_label"]).mean() > 0.98


def test_fit_rerun_same_date_replaces_the_days_rows(spark, settings, lake, day_1):
    ctx = RunContext(settings, DAY_1, run_id="again", spark_session=spark)
    job.fit(ctx)
    job.assign(ctx)
    assert lake.row_count(job.SEGMENTS_TABLE) == len(day_1)
    assert lake.row_count(job.PROFILES_TABLE) == 6


def test_label_segments_first_matching_rule_wins_and_duplicates_get_suffixes(settings):
    conf: KMeansSettings = settings.job("kmeans")
    columns = conf.columns
    z = np.zeros((4, len(columns)))
    z[0, columns.index("aum")], z[0, columns.index("income")] = 2.0, 1.0          # high_value
    z[1, columns.index("loan_outstanding")] = 2.0                                  # borrower
    z[2, columns.index("loan_outstanding")] = 1.0                                  # borrower, larger
    z[3, columns.index("recency_days")], z[3, columns.index("frequency_90d")] = 2.0, -1.0  # dormant
    z[3, columns.index("aum")], z[3, columns.index("income")] = 2.0, 1.0          # dormant comes first
    labels = label_segments(z, columns, np.array([10, 20, 30, 5]), conf.labels, conf.fallback_label)
    assert labels == ["high_value", "borrower_2", "borrower", "dormant"]
    assert label_segments(np.zeros((1, len(columns))), columns, np.array([1]), conf.labels,
                          conf.fallback_label) == [conf.fallback_label]


def test_settings_when_a_label_rule_names_an_unknown_feature_is_refused(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("kmeans:\n  labels:\n    - {label: rich, all: [{feature: yacht_count, op: above, z: 1}]}\n")
    with pytest.raises(ConfigError, match="yacht_count"):
        load_settings(conf)
