"""Stage `features`: gold.customer_features, the features job's tags and gold.loan_warnings for D."""
from __future__ import annotations

from jobs.common.context import RunContext
from jobs.common.spark import empty_frame
from jobs.common.tags import write_tags
from jobs.features.build import AsOf, build_features, read_inputs
from jobs.features.loan_warnings import LOAN_WARNINGS_TABLE, history_window, loan_warnings
from jobs.features.settings import FeatureSettings
from jobs.features.tags import feature_tags

FEATURES_TABLE = "gold.customer_features"


def run(ctx: RunContext) -> dict[str, int]:
    """Build and write the day's features, tags and loan warnings; a rerun replaces the day's rows."""
    conf: FeatureSettings = ctx.settings.job("features")
    day = ctx.business_date
    lake = ctx.lake
    the_day = [("as_of_date", "=", day)]
    metadata = {"run_id": ctx.run_id, "job": "features"}

    features = build_features(ctx.spark, lake, day, ctx.settings)
    # New documented features add columns to the table (older dates read them as null).
    written = {FEATURES_TABLE: lake.replace_partitions(features, FEATURES_TABLE, the_day,
                                                       partition_by=["as_of_date"], evolve=True,
                                                       metadata=metadata).rows_added}
    stored = lake.read(FEATURES_TABLE, partition_filters=the_day)
    written["gold.customer_tags"] = write_tags(lake, feature_tags(stored, conf), "features", day, ctx.run_id)

    as_of = AsOf(day, ctx.settings.bank.timezone)
    inputs = read_inputs(ctx.spark, lake, as_of)
    previous = (lake.read(LOAN_WARNINGS_TABLE, partition_filters=history_window(day, conf))
                if lake.exists(LOAN_WARNINGS_TABLE) else
                empty_frame(ctx.spark, "loan_id string, days_past_due int, as_of_date date"))
    warnings = loan_warnings(inputs.loans, stored, previous, as_of, conf)
    written[LOAN_WARNINGS_TABLE] = lake.replace_partitions(warnings, LOAN_WARNINGS_TABLE, the_day,
                                                           partition_by=["as_of_date"],
                                                           metadata=metadata).rows_added
    return written
