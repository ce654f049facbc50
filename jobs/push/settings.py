"""Settings of the push job (defaults and documentation in conf/push.yaml; campaigns in conf/campaigns.yaml)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from jobs.common.config import Section

ChannelName = Literal["sms", "email", "app", "rm_call"]
ConsentColumn = Literal["consent_sms", "consent_email", "consent_app"]


class ChannelSettings(Section):
    consent: list[ConsentColumn] = Field(min_length=1)
    contact_field: Literal["phone", "email"] | None
    blocked_by_unsubscribe_on: list[ChannelName] = Field(min_length=1)


class FrequencySettings(Section):
    max_per_day: int = Field(ge=1)
    max_per_window: int = Field(ge=1)
    window_days: int = Field(ge=1)


class MeasureSettings(Section):
    lookback_days: int = Field(ge=1)
    confidence_level: float = Field(gt=0, lt=1)
    activity_excluded_txn_types: list[str]


class PushSettings(Section):
    campaigns_file: str
    control_seed: str = Field(min_length=1)
    unknown_tolerance_max_risk_level: int = Field(ge=1, le=5)
    frequency: FrequencySettings
    channels: dict[ChannelName, ChannelSettings]
    max_outbox_rows: int = Field(ge=1)
    score_decimals: int = Field(ge=0, le=12)
    measure: MeasureSettings
