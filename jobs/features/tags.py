"""Statistical and rule tags of gold.customer_tags from the feature rows (rules in conf/features.yaml)."""
from __future__ import annotations

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.common.errors import InputError
from jobs.common.tags import tags_from_columns
from jobs.features.settings import Band, FeatureSettings

# Tags that carry a feature's value as it is.
STATISTICAL_COLUMNS = ("gender", "region")
# Rule-based features that are also tags.
RULE_COLUMNS = ("lifecycle_stage", "value_tier")


def band(column: str, bands: list[Band]) -> Column:
    """The label of the first band [min, max) holding the value; null when none does (or no value)."""
    label = None
    for b in bands:
        inside = F.lit(True)
        if b.min is not None:
            inside = inside & (F.col(column) >= b.min)
        if b.max is not None:
            inside = inside & (F.col(column) < b.max)
        label = F.when(inside, b.label) if label is None else label.when(inside, b.label)
    return label if label is not None else F.lit(None).cast("string")


def statistical_tags(features: DataFrame, conf: FeatureSettings) -> DataFrame:
    """age_band, gender, region and income_band per customer (source statistical)."""
    columns: dict[str, Column | str] = {
        "age_band": band("age", conf.age_bands),
        **{name: name for name in STATISTICAL_COLUMNS},
        "income_band": band("income", conf.income_bands),
    }
    return tags_from_columns(features, columns, "statistical")


def rule_conditions(features: DataFrame, conf: FeatureSettings) -> dict[str, Column]:
    """Each configured rule tag as a Spark condition, checked against the feature columns."""
    conditions = {}
    for rule in conf.rule_tags:
        if rule.name in ("age_band", "income_band", *STATISTICAL_COLUMNS, *RULE_COLUMNS):
            raise InputError(f"conf features.rule_tags {rule.name!r}: the features job already writes a tag "
                             "of that name; choose another name")
        try:
            condition = F.expr(rule.expression)
            features.select(condition.cast("boolean"))  # analysed now: unknown columns fail here
        except (ParseException, AnalysisException) as exc:
            raise InputError(f"conf features.rule_tags {rule.name!r}: expression {rule.expression!r} is not "
                             f"a valid condition over the feature columns: {str(exc).splitlines()[0]}",
                             hint="use the column names of conf/feature_catalog.yaml") from None
        conditions[rule.name] = condition
    return conditions


def rule_tags(features: DataFrame, conf: FeatureSettings) -> DataFrame:
    """One row (value "true") per customer and configured rule that holds, plus lifecycle stage and
    value tier (source rule)."""
    columns: dict[str, Column | str] = {
        name: F.when(condition, F.lit("true")) for name, condition in rule_conditions(features, conf).items()}
    columns.update({name: name for name in RULE_COLUMNS})
    return tags_from_columns(features, columns, "rule")


def feature_tags(features: DataFrame, conf: FeatureSettings) -> DataFrame:
    """Every tag the features job writes."""
    return statistical_tags(features, conf).unionByName(rule_tags(features, conf))
