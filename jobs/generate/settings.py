"""Settings of the seeded data generator (defaults and documentation in conf/generator.yaml)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from jobs.common.config import Section

FileFormat = Literal["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet"]
ARCHETYPES = ("affluent_investor", "conservative_saver", "young_digital", "salaried_mass", "borrower",
              "declining")


class AgeBand(Section):
    label: str
    min: int
    max: int


class ConsentShares(Section):
    sms: float
    email: float
    app: float
    do_not_contact: float


class ChurnSettings(Section):
    history_share: float
    history_window_days: int
    decay_days: int
    activity_floor: float
    decay_power: float
    balance_drain_per_month: float
    future_churn_days: tuple[int, int]
    min_tenure_days: int


class LoanKind(Section):
    term_months: tuple[int, int]
    income_multiple: tuple[float, float]


class LoanSettings(Section):
    mortgage: LoanKind
    personal_loan: LoanKind
    overdue_share: float
    default_share: float
    overdue_within_days: int


class AppSettings(Section):
    page_views_per_login: float
    search_share: float
    click_share: float


class CampaignDefinition(Section):
    channels: list[Literal["sms", "email", "app", "rm_call"]]
    product_types: list[str]


class ResponseRates(Section):
    bounced: float
    opened: float
    clicked: float
    converted: float
    unsubscribed: float


class CampaignSettings(Section):
    pushes_per_customer_month: float
    response_lag_hours: tuple[int, int]
    rates: ResponseRates
    definitions: dict[str, CampaignDefinition]


class Archetype(Section):
    share: float
    age: tuple[int, int]
    income_median: float
    income_sigma: float
    balance_median: float
    balance_sigma: float
    current_share: float
    savings_account: float
    wealth: float
    risk_tolerance: tuple[float, float, float, float, float]
    salaried: float
    digital_share: float
    spend_ratio: float
    txn_per_month: dict[Literal["card_purchase", "withdrawal", "transfer_out", "payment", "deposit",
                                "transfer_in"], float]
    app_logins_per_month: float
    pages: dict[str, float]
    products: dict[str, float]
    occupations: list[str]
    campaign_affinity: dict[str, float]


class PlantedRule(Section):
    antecedent: list[str]
    consequent: str
    rate: float
    description: str


class Product(Section):
    product_id: str
    product_name: str
    product_type: str
    risk_level: int
    min_amount: float
    expected_yield: float
    active: bool


class DirtySettings(Section):
    extra_column: str
    unknown_codes: dict[str, str]
    bad_values: list[str]


class City(Section):
    city: str
    region: str
    weight: float


class Vocabulary(Section):
    surnames: list[str]
    given_names: list[str]
    cities: list[City]
    email_domains: list[str]


class GeneratorSettings(Section):
    block_customers: int
    transaction_chunks: int
    gzip_level: int
    formats: dict[str, FileFormat]
    currency: str
    phone_country_code: str
    max_tenure_years: int
    new_customer_share: float
    age_bands: list[AgeBand]
    consent: ConsentShares
    profile_history_share: float
    daily_profile_change_share: float
    churn: ChurnSettings
    spend_mix: dict[Literal["card_purchase", "withdrawal", "transfer_out", "payment"], float]
    amount_sigma: float
    interest_rates: dict[Literal["current", "savings", "time_deposit", "wealth"], float]
    monthly_fee: float
    card_on_credit_card_share: float
    merchant_categories: dict[str, float]
    employers: int
    holding_start_in_window_share: float
    past_holding_share: float
    loans: LoanSettings
    holding_amounts: dict[str, float]
    app: AppSettings
    campaigns: CampaignSettings
    archetypes: dict[str, Archetype]
    planted_rules: list[PlantedRule]
    products: list[Product]
    dirty: DirtySettings
    vocab: Vocabulary

    @model_validator(mode="after")
    def _consistent(self) -> GeneratorSettings:
        if tuple(self.archetypes) != ARCHETYPES:
            raise ValueError(f"archetypes must be exactly {', '.join(ARCHETYPES)} in this order")
        total = sum(a.share for a in self.archetypes.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"archetype shares must sum to 1, got {total}")
        types = {p.product_type for p in self.products}
        for name, archetype in self.archetypes.items():
            unknown = set(archetype.products) - types
            if unknown:
                raise ValueError(f"archetype {name}: unknown product types {sorted(unknown)}")
        bands = {b.label for b in self.age_bands}
        for rule in self.planted_rules:
            for item in [*rule.antecedent, rule.consequent]:
                kind, _, value = item.partition(":")
                name, _, wanted = value.partition("=")
                ok = ((kind == "prod" and value in types) or (kind == "attr" and name == "age_band" and wanted in bands)
                      or (kind == "attr" and name == "risk_tolerance" and wanted in {"1", "2", "3", "4", "5"}))
                if not ok or (item == rule.consequent and kind != "prod"):
                    raise ValueError(f"planted rule item {item!r}: use prod:<product type> (consequent), "
                                     "attr:age_band=<band label> or attr:risk_tolerance=<1..5>")
        return self
