"""Settings of the association-rules job (defaults and documentation in conf/apriori.yaml, docs/apriori.md)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from jobs.common.config import Section

Share = Annotated[float, Field(gt=0, le=1)]


class Band(Section):
    """Values in [min, max) become `attr:<name>=<label>`; null = open end."""

    label: str
    min: float | None
    max: float | None


class AttributeItem(Section):
    """One basket item per customer from `column`: the banded value, or the value itself without bands."""

    name: str
    column: str
    bands: list[Band] | None

    @model_validator(mode="after")
    def _bands_do_not_overlap(self) -> AttributeItem:
        edges = sorted((b.min if b.min is not None else float("-inf"),
                        b.max if b.max is not None else float("inf"), b.label) for b in self.bands or [])
        for (_, high, label), (low, _, next_label) in zip(edges, edges[1:], strict=False):
            if low < high:
                raise ValueError(f"attribute {self.name!r}: bands {label!r} and {next_label!r} overlap")
        return self


class CrossSellSettings(Section):
    top_n: Annotated[int, Field(ge=1)]
    min_lift: float
    lift_weight: Annotated[float, Field(ge=0)]


class EvaluationSettings(Section):
    enabled: bool
    seed: int
    k: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]


class BankMarketingSettings(Section):
    min_support: Share
    min_confidence: Annotated[float, Field(ge=0, le=1)]
    attributes: list[AttributeItem]

    @model_validator(mode="after")
    def _no_outcome_leak(self) -> BankMarketingSettings:
        # The call's duration is only known once the call is over: it leaks the outcome.
        if any(a.column == "duration" for a in self.attributes):
            raise ValueError("bank_marketing attributes must not use `duration` (known only after the call)")
        return self


class AprioriSettings(Section):
    min_support: Share
    min_confidence: Annotated[float, Field(ge=0, le=1)]
    max_estimated_itemsets: Annotated[int, Field(ge=1)]
    num_partitions: Annotated[int, Field(ge=1)] | None
    attributes: list[AttributeItem]
    segment_item: str | None
    cross_sell: CrossSellSettings
    evaluation: EvaluationSettings
    bank_marketing: BankMarketingSettings
