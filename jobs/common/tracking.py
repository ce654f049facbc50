"""MLflow set-up: the tracking store (SQLite under the lake root by default) and experiments per job."""
from __future__ import annotations

from pathlib import Path

import mlflow

from jobs.common.config import Settings


def use_tracking(settings: Settings, job: str) -> str:
    """Point MLflow at the configured store and select the job's experiment; returns its name."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = f"{settings.mlflow.experiment_prefix}-{job}"
    if mlflow.get_experiment_by_name(name) is None:
        artifact_root = Path(settings.mlflow_artifact_root) / name
        artifact_root.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())
    mlflow.set_experiment(name)
    return name
