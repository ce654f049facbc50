"""Settings of the ingest job (defaults and documentation in conf/ingest.yaml)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from jobs.common.config import Section
from jobs.common.contract import load_contract


class IngestSettings(Section):
    ready_marker: str
    source_required: dict[str, bool]
    csv_multiline: bool
    parallel_sources: Annotated[int, Field(ge=1)]

    @field_validator("source_required")
    @classmethod
    def _known_sources(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(value) - set(load_contract()))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known: {sorted(load_contract())}")
        return value

    def is_required(self, source_name: str) -> bool:
        """Configuration first, else the contract's `optional` flag."""
        if source_name in self.source_required:
            return self.source_required[source_name]
        return not load_contract()[source_name].optional
