"""Settings of the clean job (defaults and documentation in conf/clean.yaml)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from jobs.common.config import Section
from jobs.common.contract import load_contract

# Every rule of the clean job names its rejections with one of these codes (docs/ingest_clean.md).
REASON_CODES = ("missing_required", "bad_type", "unknown_code", "bad_format", "out_of_range",
                "non_positive_amount", "future_date", "orphan_customer", "orphan_account",
                "orphan_product", "duplicate_key")


def _field_of(dotted: str) -> tuple[str, str]:
    source_name, _, field = dotted.partition(".")
    contract = load_contract()
    if source_name not in contract or field not in contract[source_name].field_names:
        raise ValueError(f"{dotted!r} is not a contract field (write <source>.<field>)")
    return source_name, field


class PiiKeySettings(Section):
    mode: Literal["demo", "production"]
    env_var: str
    demo_key: str
    min_length: int

    @field_validator("env_var")
    @classmethod
    def _not_a_setting(cls, value: str) -> str:
        if not value.startswith("CRM_") or "__" in value:
            raise ValueError("use a CRM_ variable without '__' (those are read as settings)")
        return value


class CleanSettings(Section):
    pii_key: PiiKeySettings
    phone_country_code: str
    phone_fields: list[str]
    email_fields: list[str]
    id_number_field: str
    phone_pattern: str
    email_pattern: str
    boolean_true: list[str]
    boolean_false: list[str]
    code_synonyms: dict[str, dict[str, str]]
    reason_precedence: list[str]
    reference_reasons: dict[str, str]
    not_after_business_date: dict[str, list[str]]
    duplicates: dict[str, Literal["quarantine", "drop"]]
    expectations_dir: str
    dq_dir: str
    parallel_sources: Annotated[int, Field(ge=1)]
    reference_pool: str | None

    @field_validator("phone_fields", "email_fields")
    @classmethod
    def _string_fields(cls, value: list[str]) -> list[str]:
        for dotted in value:
            _field_of(dotted)
        return value

    @field_validator("id_number_field")
    @classmethod
    def _pii_field(cls, value: str) -> str:
        source_name, field = _field_of(value)
        if not load_contract()[source_name].field(field).pii:
            raise ValueError(f"{value} is not a PII field of the contract")
        return value

    @field_validator("code_synonyms")
    @classmethod
    def _synonyms_map_to_codes(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for dotted, synonyms in value.items():
            source_name, field = _field_of(dotted)
            codes = set(load_contract()[source_name].field(field).codes or ())
            wrong = sorted(set(synonyms.values()) - codes)
            if wrong:
                raise ValueError(f"{dotted}: {wrong} are not codes of the field ({sorted(codes)})")
        return value

    @field_validator("reason_precedence")
    @classmethod
    def _every_reason_once(cls, value: list[str]) -> list[str]:
        if sorted(value) != sorted(REASON_CODES):
            raise ValueError(f"list each reason code exactly once: {', '.join(REASON_CODES)}")
        return value

    @field_validator("not_after_business_date")
    @classmethod
    def _date_fields(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for source_name, fields in value.items():
            for field in fields:
                _, name = _field_of(f"{source_name}.{field}")
                if load_contract()[source_name].field(name).type not in ("date", "timestamp"):
                    raise ValueError(f"{source_name}.{field} is not a date or timestamp")
        return value

    @model_validator(mode="after")
    def _sources(self) -> CleanSettings:
        contract = load_contract()
        append = sorted(n for n, s in contract.items() if s.kind == "append")
        if sorted(self.duplicates) != append:
            raise ValueError(f"duplicates: give quarantine or drop for exactly {append}")
        referenced = sorted({f.references.split(".")[0] for s in contract.values() for f in s.fields
                             if f.references})
        if sorted(self.reference_reasons) != referenced:
            raise ValueError(f"reference_reasons: give a reason for exactly {referenced}")
        unknown = sorted(set(self.reference_reasons.values()) - set(REASON_CODES))
        if unknown:
            raise ValueError(f"reference_reasons: unknown reason codes {unknown}")
        return self
