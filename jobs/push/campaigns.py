"""Campaigns as configuration: conf/campaigns.yaml, validated on load with errors naming file, campaign and key.

The list order is the campaign priority: earlier campaigns claim a customer's frequency budget first.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobs.common.config import ConfigError
from jobs.common.contract import source
from jobs.common.paths import CONF_DIR
from jobs.push.settings import ChannelName, PushSettings

# The business labels of jobs/kmeans_mr (conf/kmeans.yaml); a label also matches its numbered variants.
SegmentLabel = Literal["investment_inclined", "deposit_inclined", "digital_young", "high_value", "dormant",
                       "borrower", "declining", "mainstream"]
ChurnBand = Literal["high", "medium", "low"]
ValueTier = Literal["high", "potential", "mass", "low"]
LifecycleStage = Literal["acquisition", "growth", "maturity", "decline", "churned"]
# expected_yield: the product's annual yield; rule_score / rule_lift: the customer's cross-sell
# recommendation (gold.cross_sell_candidates); churn_probability: a call list without a product.
ScoreName = Literal["expected_yield", "rule_score", "rule_lift", "churn_probability"]

SEGMENTS = "gold.customer_segments"
CHURN = "gold.churn_scores"
FEATURES = "gold.customer_features"
TAGS = "gold.customer_tags"
RECOMMENDATIONS = "gold.cross_sell_candidates"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleRecommendations(_Model):
    max_rank: int = Field(ge=1)  # only the customer's recommendations ranked 1..max_rank


class Target(_Model):
    """Who a campaign is for. Criteria combine with AND; the values of one criterion with OR."""

    segments: list[SegmentLabel] | None = None
    churn_bands: list[ChurnBand] | None = None
    value_tiers: list[ValueTier] | None = None
    lifecycle_stages: list[LifecycleStage] | None = None
    tags: dict[str, list[str]] | None = None
    rule_recommendations: RuleRecommendations | None = None

    @model_validator(mode="after")
    def _not_everyone(self) -> Target:
        given = [v for v in (self.segments, self.churn_bands, self.value_tiers, self.lifecycle_stages,
                             self.tags) if v]
        if not given and self.rule_recommendations is None:
            raise ValueError("a target needs at least one criterion (segments, churn_bands, value_tiers, "
                             "lifecycle_stages, tags, rule_recommendations); a push to everyone is not allowed")
        for name, values in (self.tags or {}).items():
            if not values:
                raise ValueError(f"tag {name!r} lists no values")
        return self


class Products(_Model):
    """Candidate products: active products of these types or with these ids (either may be empty)."""

    types: list[str] = []
    ids: list[str] = []

    @model_validator(mode="after")
    def _known_types(self) -> Products:
        if not self.types and not self.ids:
            raise ValueError("products needs types or ids")
        codes = source("products").field("product_type").codes or ()
        unknown = sorted(set(self.types) - set(codes))
        if unknown:
            raise ValueError(f"unknown product types {unknown} (known: {', '.join(codes)})")
        return self


class Campaign(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    target: Target
    products: Products | None = None
    score: ScoreName
    priority_feature: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    channels: list[ChannelName] = Field(min_length=1)
    daily_cap: int = Field(ge=1)
    control_share: float = Field(ge=0, le=0.5)
    validity_days: int = Field(ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels repeat a channel: {self.channels}")
        if self.score == "churn_probability" and self.products is not None:
            raise ValueError("score churn_probability makes a call list without products; remove 'products'")
        if self.score == "expected_yield" and self.products is None:
            raise ValueError("score expected_yield needs 'products' (types or ids)")
        if self.score in ("rule_score", "rule_lift") and self.target.rule_recommendations is None:
            raise ValueError(f"score {self.score} needs target.rule_recommendations")
        return self

    @property
    def offers_products(self) -> bool:
        return self.score != "churn_probability"

    @property
    def uses_rules(self) -> bool:
        return self.target.rule_recommendations is not None

    @property
    def uses_churn(self) -> bool:
        return bool(self.target.churn_bands) or self.score == "churn_probability"

    @property
    def uses_features(self) -> bool:
        return bool(self.target.value_tiers or self.target.lifecycle_stages or self.priority_feature)

    def needed_tables(self) -> list[str]:
        """The model tables this campaign's targeting and scoring read (for date D)."""
        needs = []
        if self.target.segments:
            needs.append(SEGMENTS)
        if self.uses_churn:
            needs.append(CHURN)
        if self.uses_features:
            needs.append(FEATURES)
        if self.target.tags:
            needs.append(TAGS)
        if self.uses_rules:
            needs.append(RECOMMENDATIONS)
        return needs


class _Book(_Model):
    campaigns: list[Campaign] = Field(min_length=1)


@dataclass(frozen=True)
class CampaignBook:
    campaigns: list[Campaign]  # in priority order
    path: Path
    sha256: str  # of the file's bytes, recorded in each manifest for audit

    def get(self, campaign_id: str) -> Campaign:
        return next(c for c in self.campaigns if c.id == campaign_id)


def campaigns_path(settings: PushSettings) -> Path:
    path = Path(settings.campaigns_file)
    return path if path.is_absolute() else CONF_DIR / path


def _where(raw: dict, loc: tuple) -> str:
    if len(loc) >= 2 and loc[0] == "campaigns" and isinstance(loc[1], int):
        items = raw.get("campaigns") or []
        ident = items[loc[1]].get("id") if loc[1] < len(items) and isinstance(items[loc[1]], dict) else None
        rest = ".".join(str(p) for p in loc[2:])
        return f"campaign #{loc[1] + 1}" + (f" {ident!r}" if ident else "") + (f", key {rest!r}" if rest else "")
    return "key " + repr(".".join(str(p) for p in loc)) if loc else "top level"


def load_campaigns(settings: PushSettings, path: Path | None = None) -> CampaignBook:
    """Read and validate the campaigns; ConfigError names the file, the campaign and the key."""
    path = path or campaigns_path(settings)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: campaign file not found (push.campaigns_file)") from None
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with the key 'campaigns'")
    try:
        book = _Book.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"{_where(raw, loc[:-1])}: unknown key {loc[-1]!r}")
            elif err["type"] == "missing":
                problems.append(f"{_where(raw, loc[:-1])}: missing key {loc[-1]!r}")
            else:
                problems.append(f"{_where(raw, loc)}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None

    problems = []
    seen: set[str] = set()
    for number, campaign in enumerate(book.campaigns, start=1):
        where = f"campaign #{number} {campaign.id!r}"
        if campaign.id in seen:
            problems.append(f"{where}: the id is used twice")
        seen.add(campaign.id)
        unknown = [c for c in campaign.channels if c not in settings.channels]
        if unknown:
            problems.append(f"{where}: channels {unknown} are not defined in push.channels "
                            f"({', '.join(settings.channels)})")
    total_cap = sum(c.daily_cap for c in book.campaigns)
    if total_cap > settings.max_outbox_rows:
        problems.append(f"the daily caps add up to {total_cap}, above push.max_outbox_rows "
                        f"({settings.max_outbox_rows})")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return CampaignBook(book.campaigns, path, hashlib.sha256(data).hexdigest())
