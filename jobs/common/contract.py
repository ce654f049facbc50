"""The landing contract, read from `schemas/` (one YAML file per source). Nothing else declares it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from pyspark.sql import types as T

from jobs.common.paths import SCHEMAS_DIR

_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")
_SIMPLE_TYPES = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = False
    codes: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    positive: bool = False
    pattern: str | None = None
    pii: bool = False
    references: str | None = None
    notes: str | None = None

    @property
    def spark_type(self) -> T.DataType:
        match = _DECIMAL.match(self.type)
        if match:
            return T.DecimalType(int(match.group(1)), int(match.group(2)))
        return _SIMPLE_TYPES[self.type]


@dataclass(frozen=True)
class SourceSpec:
    source: str
    contract_version: int
    optional: bool
    kind: str  # current_state | append
    key: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    order_by: str | None = None
    event_time: str | None = None

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.source} has no field {name!r}")

    @property
    def spark_schema(self) -> T.StructType:
        """The typed schema of the source (what clean produces before lineage columns)."""
        return T.StructType([T.StructField(f.name, f.spark_type, True) for f in self.fields])


def _parse(path: Path) -> SourceSpec:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    fields = []
    for item in raw["fields"]:
        item = dict(item)
        if item.get("codes") is not None:
            item["codes"] = tuple(str(c) for c in item["codes"])
        spec = FieldSpec(**item)
        spec.spark_type  # noqa: B018 - fail on an unknown type at load time
        fields.append(spec)
    return SourceSpec(source=raw["source"], contract_version=raw["contract_version"],
                      optional=raw["optional"], kind=raw["kind"], key=tuple(raw["key"]),
                      fields=tuple(fields), order_by=raw.get("order_by"),
                      event_time=raw.get("event_time"))


@cache
def load_contract(schemas_dir: Path = SCHEMAS_DIR) -> dict[str, SourceSpec]:
    """All sources of the contract by name, in a stable order."""
    specs = [_parse(p) for p in sorted(schemas_dir.glob("*.yaml"))]
    if not specs:
        raise FileNotFoundError(f"no source schemas under {schemas_dir}")
    return {spec.source: spec for spec in specs}


def source(name: str) -> SourceSpec:
    try:
        return load_contract()[name]
    except KeyError:
        raise KeyError(f"unknown landing source {name!r}; known: {', '.join(load_contract())}") from None
