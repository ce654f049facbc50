"""The pipeline's stages, in nightly order: name -> "module:function".

Every stage function takes a `RunContext` and returns {table: rows written}. `crm-pipeline stage NAME`
runs one; `crm-pipeline run` runs the NIGHTLY ones in this order.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

STAGES: dict[str, str] = {
    "ingest": "jobs.ingest.job:run",
    "clean": "jobs.clean.job:run",
    "features": "jobs.features.job:run",
    "kmeans-assign": "jobs.kmeans_mr.job:assign",
    "kmeans-fit": "jobs.kmeans_mr.job:fit",
    "apriori": "jobs.apriori.job:run",
    "churn-train": "jobs.churn.job:train",
    "churn-score": "jobs.churn.job:score",
    "push": "jobs.push.job:run",
    "campaign-measure": "jobs.push.measure:run",
    "report": "jobs.report.job:run",
    "maintenance": "jobs.maintenance:run",
}

# Retrain stages (kmeans-fit, churn-train) run weekly; the nightly stages fit or train a first model
# themselves when none exists yet.
NIGHTLY = ["ingest", "clean", "features", "kmeans-assign", "apriori", "churn-score", "push",
           "campaign-measure", "report"]


def load_stage(name: str) -> Callable | None:
    """The stage's function, or None while its module is not built yet."""
    module_name, _, attr = STAGES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attr, None)
