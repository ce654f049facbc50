"""The MLflow side of churn: log a trained model in the active run, register it, promote it, load it.

A trained model is logged with its params, validation metrics, feature importances and scoring profile,
and registered as a new version of `registry.model_name`. It takes the champion alias only if it beats
the current champion on the same validation rows (or no champion exists); the decision is kept in the
run (tags `promotion.*`, artifact promotion.json) and on the model version (tag `promotion`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import mlflow
import mlflow.spark
import pyspark
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pyspark.ml import PipelineModel

from jobs.churn.settings import ChurnSettings, RegistrySettings
from jobs.churn.train import PROBABILITY, ScoringProfile, TrainResult, evaluate, predict

PROFILE_ARTIFACT = "scoring_profile.json"
MODEL_ARTIFACT = "model"


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    model: PipelineModel
    profile: ScoringProfile


@dataclass(frozen=True)
class Promotion:
    version: str
    promoted: bool
    reason: str
    metric: str
    value: float
    champion_version: str | None
    champion_value: float | None

    @property
    def decision(self) -> str:
        return "promoted" if self.promoted else "kept_champion"


def champion_version(registry: RegistrySettings) -> ModelVersion | None:
    """The model version holding the champion alias, or None (no registered model or no alias)."""
    try:
        return MlflowClient().get_model_version_by_alias(registry.model_name, registry.champion_alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def load_version(version: ModelVersion) -> Champion:
    model = mlflow.spark.load_model(f"models:/{version.name}/{version.version}")
    profile = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{PROFILE_ARTIFACT}")
    return Champion(str(version.version), version.run_id, model, ScoringProfile.from_dict(profile))


def load_champion(registry: RegistrySettings) -> Champion | None:
    version = champion_version(registry)
    return None if version is None else load_version(version)


def beats_champion(value: float, champion_value: float, min_gain: float) -> bool:
    return value > champion_value + min_gain


def _challenge(result: TrainResult, settings: ChurnSettings, version: str) -> Promotion:
    """Score the champion on the new model's validation rows and decide."""
    metric = settings.training.selection_metric
    value = result.metrics[metric]
    current = champion_version(settings.registry)
    if current is None:
        return Promotion(version, True, "no champion yet", metric, value, None, None)
    champion = load_version(current)
    missing = sorted(set(champion.profile.feature_cols) - set(result.validation_rows.columns))
    if missing:
        return Promotion(version, True, f"champion v{champion.version} cannot score today's features "
                         f"(missing {', '.join(missing)})", metric, value, champion.version, None)
    scored = predict(champion.model, champion.profile, result.validation_rows)
    champion_value = evaluate(scored, result.profile.label_col, PROBABILITY,
                              settings.training.top_fraction)[metric]
    gain = settings.registry.promotion_min_gain
    if beats_champion(value, champion_value, gain):
        reason = f"{metric} {value:.4f} beats champion v{champion.version} ({champion_value:.4f}) by more than {gain}"
    else:
        reason = f"{metric} {value:.4f} does not beat champion v{champion.version} ({champion_value:.4f}) by more than {gain}"
    return Promotion(version, beats_champion(value, champion_value, gain), reason, metric, value,
                     champion.version, champion_value)


def log_and_register(result: TrainResult, settings: ChurnSettings) -> Promotion:
    """Log `result` into the active MLflow run, register it and promote it if it beats the champion."""
    registry = settings.registry
    mlflow.log_params(result.params)
    mlflow.log_params({"train_rows": result.train_count, "validation_rows": result.validation_count})
    mlflow.log_metrics({f"validation_{k}": v for k, v in result.metrics.items()})
    for algorithm, metrics in result.candidates.items():
        mlflow.log_metrics({f"candidate_{algorithm}_{k}": v for k, v in metrics.items()})
    mlflow.log_dict({"feature_importances": dict(result.feature_importances)}, "feature_importances.json")
    mlflow.log_dict(result.profile.to_dict(), PROFILE_ARTIFACT)
    info = mlflow.spark.log_model(result.model, artifact_path=MODEL_ARTIFACT,
                                  registered_model_name=registry.model_name,
                                  # explicit requirements: inferring them would reload the model
                                  pip_requirements=[f"pyspark=={pyspark.__version__}"])
    version = str(info.registered_model_version)
    promotion = _challenge(result, settings, version)
    client = MlflowClient()
    if promotion.promoted:
        client.set_registered_model_alias(registry.model_name, registry.champion_alias, version)
    client.set_model_version_tag(registry.model_name, version, "promotion", promotion.decision)
    mlflow.set_tags({"model_version": version, "promotion.decision": promotion.decision,
                     "promotion.reason": promotion.reason})
    if promotion.champion_value is not None:
        mlflow.log_metric(f"champion_{promotion.metric}", promotion.champion_value)
    mlflow.log_dict(asdict(promotion), "promotion.json")
    return promotion
