"""What every stage receives: settings, the Spark session, the lake, the business date and a run id."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from pyspark.sql import SparkSession

from jobs.common.config import Settings
from jobs.common.lake import Lake
from jobs.common.spark import get_spark

log = logging.getLogger("crm")


@dataclass
class RunContext:
    settings: Settings
    business_date: date
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    spark_session: SparkSession | None = None
    # A nightly run on a new lake trains the first churn model before scoring instead of failing.
    train_if_missing: bool = False

    @cached_property
    def spark(self) -> SparkSession:
        return self.spark_session or get_spark(self.settings)

    @cached_property
    def lake(self) -> Lake:
        return Lake.from_settings(self.spark, self.settings)
