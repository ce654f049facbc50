"""Settings of the segmentation job (defaults and documentation in conf/kmeans.yaml, docs/kmeans.md)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from jobs.common.config import Section


class Feature(Section):
    """A gold.customer_features column that places a customer, and how it is transformed first."""

    column: str
    transform: Literal["none", "signed_log1p"]


class Condition(Section):
    """Holds when the segment centre's standardised value of `feature` is above/below `z`."""

    feature: str
    op: Literal["above", "below"]
    z: float


class LabelRule(Section):
    label: str
    all: list[Condition]


class InitSettings(Section):
    kmeans_pp_max_points: int
    parallel_rounds: int
    oversampling: float
    local_restarts: int


class AutoK(Section):
    min_k: int
    max_k: int
    silhouette_sample: int


class KMeansSettings(Section):
    features: list[Feature]
    k: int | Literal["auto"]
    auto_k: AutoK
    seed: int
    restarts: int
    max_iter: int
    tol: float
    prune: bool
    init: InitSettings
    rows_per_block: int
    match_max_distance: float
    distinguishing_features: int
    fallback_label: str
    labels: list[LabelRule]

    @model_validator(mode="after")
    def _consistent(self) -> KMeansSettings:
        columns = [f.column for f in self.features]
        if len(set(columns)) != len(columns):
            raise ValueError(f"features: a column is listed twice ({columns})")
        for rule in self.labels:
            unknown = sorted({c.feature for c in rule.all} - set(columns))
            if unknown:
                raise ValueError(f"labels: rule {rule.label!r} uses {unknown}, which are not in features")
        if isinstance(self.k, int) and self.k < 2:
            raise ValueError(f"k must be at least 2 or 'auto' (got {self.k})")
        if not 2 <= self.auto_k.min_k < self.auto_k.max_k:
            raise ValueError("auto_k: need 2 <= min_k < max_k")
        if self.max_iter < 1 or self.tol < 0 or self.restarts < 1:
            raise ValueError("max_iter and restarts must be >= 1 and tol >= 0")
        return self

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.features]
