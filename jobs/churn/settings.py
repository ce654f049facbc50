"""Settings of the churn job (defaults and documentation in conf/churn.yaml)."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from jobs.common.config import Section
from jobs.common.contract import source


def _contract_codes(values: list[str], source_name: str, field: str) -> list[str]:
    allowed = set(source(source_name).field(field).codes or ())
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{unknown} are not {source_name}.{field} codes ({sorted(allowed)})")
    return values


class LabelSettings(Section):
    horizon_days: int
    customer_initiated_txn_types: list[str]
    deposit_account_types: list[str]
    min_active_txns: int
    balance_floor: float
    balance_drop_share: float

    @field_validator("customer_initiated_txn_types")
    @classmethod
    def _txn_types(cls, value: list[str]) -> list[str]:
        return _contract_codes(value, "transactions", "txn_type")

    @field_validator("deposit_account_types")
    @classmethod
    def _account_types(cls, value: list[str]) -> list[str]:
        return _contract_codes(value, "accounts", "account_type")


class GbtSettings(Section):
    max_iter: int
    max_depth: int
    step_size: float
    subsampling_rate: float
    min_instances_per_node: int
    seed: int


class LogisticSettings(Section):
    reg_param: float
    elastic_net_param: float
    max_iter: int


class TrainingSettings(Section):
    cutoffs: int
    cutoff_step_days: int
    min_class_rows: int
    categorical_columns: list[str]
    excluded_columns: list[str]
    algorithms: list[Literal["gbt", "logistic"]]
    selection_metric: Literal["roc_auc", "pr_auc"]
    balance_classes: bool
    top_fraction: float
    gbt: GbtSettings
    logistic: LogisticSettings


class RegistrySettings(Section):
    model_name: str
    champion_alias: str
    promotion_min_gain: float


class ScoringSettings(Section):
    band_high: float
    band_medium: float
    reason_codes: int


class ChurnSettings(Section):
    label: LabelSettings
    training: TrainingSettings
    registry: RegistrySettings
    scoring: ScoringSettings
