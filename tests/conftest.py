"""One SparkSession for the whole test run (small shuffle, no UI), and a fresh lake per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.common.config import load_settings
from jobs.common.lake import Lake

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# The configured Spark settings the tests' JVMs must share with the product (conf/pipeline.yaml).
PIPELINE_SPARK_CONF = load_settings().spark.conf
TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "false",
    **{key: PIPELINE_SPARK_CONF[key]
       for key in ("spark.python.daemon.module", "spark.driver.extraJavaOptions")},
}


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    builder = SparkSession.builder.master("local[2]").appName("crm-pipeline-tests")
    for key, value in TEST_SPARK_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def roots_env(root: Path) -> dict[str, str]:
    """CRM_* variables putting the lake, landing, outbox and report roots under `root`."""
    return {f"CRM_{section.upper()}__ROOT": str(root / section)
            for section in ("lake", "landing", "outbox", "reports")}


@pytest.fixture
def settings_with(tmp_path):
    """Settings with the roots in the test's temporary folder plus further CRM_* overrides."""
    return lambda **overrides: load_settings(env={**roots_env(tmp_path), **overrides})


@pytest.fixture
def settings(settings_with):
    """Settings whose lake, landing, outbox and report roots live in the test's temporary folder."""
    return settings_with()


@pytest.fixture
def lake(spark, settings) -> Lake:
    return Lake.from_settings(spark, settings)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared datasets are expected at {SHARED_DATA}")
    return SHARED_DATA


# One generated bank, run once through the whole nightly pipeline and shared by the tests that check
# the jobs against the generator's planted truth (archetypes, churners, rules, dirty rows).
PIPELINE_CUSTOMERS = 1500
PIPELINE_END_DATE = "2026-10-31"


@pytest.fixture(scope="session")
def pipeline_run(spark, tmp_path_factory):
    """Generate, then run every nightly stage for the last date; yields (settings, lake, truth_dir, date)."""
    from datetime import date

    from jobs.common.context import RunContext
    from jobs.generate.generator import generate
    from jobs.stages import NIGHTLY, load_stage

    root = tmp_path_factory.mktemp("pipeline")
    pipeline_settings = load_settings(env=roots_env(root))
    business_date = date.fromisoformat(PIPELINE_END_DATE)
    generate(customers=PIPELINE_CUSTOMERS, months=12, end_date=business_date, seed=7,
             landing=root / "landing", daily_batches=0, dirty_rate=0.01, settings=pipeline_settings)
    ctx = RunContext(pipeline_settings, business_date, spark_session=spark, train_if_missing=True)
    for name in NIGHTLY:
        stage = load_stage(name)
        if stage is not None:
            stage(ctx)
    yield pipeline_settings, ctx.lake, root / "landing.truth", business_date


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Groups for `pytest -n 2 --dist loadgroup`: a module stays on one worker, so its module fixtures
    are built once; the modules over the shared `pipeline_run` share one group, so it is built once too,
    and that group, the longest, goes first."""
    pipeline_modules = {item.module.__name__ for item in items if "pipeline_run" in item.fixturenames}
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("pipeline_run" if module in pipeline_modules else module))
    items.sort(key=lambda item: item.module.__name__ not in pipeline_modules)
