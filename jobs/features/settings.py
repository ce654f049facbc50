"""Settings of the features job (defaults and documentation in conf/features.yaml and
conf/feature_catalog.yaml, both under the `features` section)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from jobs.common.config import Section
from jobs.common.contract import source


def _check_codes(what: str, values: list[str], source_name: str, field: str) -> None:
    allowed = set(source(source_name).field(field).codes or ())
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{what}: {unknown} are not {source_name}.{field} codes ({sorted(allowed)})")


class Band(Section):
    """A labelled half-open range [min, max); a null bound is open."""

    label: str
    min: float | None
    max: float | None


class RuleTag(Section):
    """A tag that holds for a customer when a Spark SQL expression over the feature columns is true."""

    name: str
    expression: str
    description: str


class SalaryRule(Section):
    lookback_days: int
    min_months: int
    min_amount: float
    stopped_after_days: int


class LifecycleRules(Section):
    churned_min_recency_days: int
    churned_max_aum: float
    acquisition_max_tenure_months: int
    decline_max_txn_trend: float
    decline_max_balance_trend: float
    decline_min_prev_txns: int
    growth_max_tenure_months: int
    growth_min_txn_trend: float
    growth_min_balance_trend: float


class ValueTierRules(Section):
    top_percentile: float
    bottom_percentile: float
    quantile_relative_error: float


class RevenueRates(Section):
    fee_txn_types: list[str]
    deposit_margin: float
    investment_fee_rate: float
    loan_margin: float


class LoanWarningRules(Section):
    open_statuses: list[str]
    watch_dpd: int
    warning_dpd: int
    critical_dpd: int
    critical_statuses: list[str]
    dpd_history_days: int
    leverage_max: float
    activity_collapse_max_txn_trend: float
    activity_collapse_min_prev_txns: int
    warning_min_reasons: int
    critical_min_reasons: int


class CatalogEntry(Section):
    name: str
    definition: str
    unit: str
    type: Literal["string", "int", "double", "date"]
    fill: str | None


class FeatureSettings(Section):
    customer_initiated_txn_types: list[str]
    digital_channels: list[str]
    deposit_account_types: list[str]
    investment_product_types: list[str]
    deposit_product_types: list[str]
    rfm_windows_days: list[int]
    recent_window_days: int
    slope_months: int
    wealth_page_prefixes: list[str]
    product_page_prefixes: list[str]
    inclination_window_days: int
    campaign_window_days: int
    campaign_response_events: list[str]
    salary: SalaryRule
    revenue: RevenueRates
    lifecycle: LifecycleRules
    value_tier: ValueTierRules
    age_bands: list[Band]
    income_bands: list[Band]
    rule_tags: list[RuleTag]
    loan_warnings: LoanWarningRules
    catalog: list[CatalogEntry]

    @model_validator(mode="after")
    def _codes_exist(self) -> FeatureSettings:
        _check_codes("customer_initiated_txn_types", self.customer_initiated_txn_types,
                     "transactions", "txn_type")
        _check_codes("revenue.fee_txn_types", self.revenue.fee_txn_types, "transactions", "txn_type")
        _check_codes("digital_channels", self.digital_channels, "transactions", "channel")
        _check_codes("deposit_account_types", self.deposit_account_types, "accounts", "account_type")
        _check_codes("investment_product_types", self.investment_product_types, "products", "product_type")
        _check_codes("deposit_product_types", self.deposit_product_types, "products", "product_type")
        _check_codes("campaign_response_events", self.campaign_response_events,
                     "campaign_responses", "event")
        _check_codes("loan_warnings.open_statuses", self.loan_warnings.open_statuses, "loans", "status")
        _check_codes("loan_warnings.critical_statuses", self.loan_warnings.critical_statuses,
                     "loans", "status")
        names = [entry.name for entry in self.catalog]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"catalog: features documented twice: {duplicates}")
        tags = [rule.name for rule in self.rule_tags]
        if len(set(tags)) != len(tags):
            raise ValueError(f"rule_tags: a tag name is defined twice: {tags}")
        return self
