"""From bronze strings to typed, normalised values, with one failure flag per rule (pure functions).

The raw values stay in a struct column `raw` (what quarantine keeps); every contract field becomes a
top-level column of its contract type; `_fail_<reason>` booleans say which rules a row breaks.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.clean.settings import CleanSettings
from jobs.common.contract import FieldSpec, SourceSpec
from jobs.common.local_dates import instant_of_wall_clock, local_midnight

RAW = "raw"
FAIL = "_fail_"
TEXT = "_text_"

_INT = r"^[+-]?[0-9]+(\.0*)?$"            # "3.0": integers written by float-typed writers
_DECIMAL = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Seconds are required, as in the contract; Spark's cast refuses HH:MM before a zone, so without
# seconds a value was bad_type already.
_TIMESTAMP = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
              r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$")
# Local timestamps of the ten years up to D (a nightly batch, or an initial load of that much history)
# become instants by arithmetic; other ones by Spark's zone rules, row by row. Both give the same instant.
FAST_TIMESTAMP_DAYS = 10 * 365


def fail_column(reason: str) -> str:
    return FAIL + reason


def keep_raw(spec: SourceSpec):
    """The contract fields as delivered, in one struct; lineage needed downstream beside it."""
    def apply(bronze: DataFrame) -> DataFrame:
        return bronze.select(F.struct(*[F.col(n) for n in spec.field_names]).alias(RAW),
                             "batch_date", "source_file")
    return apply


def text_value(field: str) -> Column:
    """The field's value as delivered (in `raw`), trimmed; an empty field is null (the contract: empty
    field = null). The typing, the reference lookups and the key's clustering all read this one
    expression, which is how Spark sees that the typed key is the clustered one."""
    trimmed = F.trim(F.col(f"{RAW}.{field}"))
    return F.when(trimmed != "", trimmed)


def _string_form(spec: SourceSpec, conf: CleanSettings, field: FieldSpec) -> str:
    """How a string field's value is normalised: `code`, `phone`, `email`, or `text` (kept as trimmed)."""
    dotted = f"{spec.source}.{field.name}"
    if field.codes:
        return "code"
    if dotted in conf.phone_fields:
        return "phone"
    return "email" if dotted in conf.email_fields else "text"


def text_valued_fields(spec: SourceSpec, conf: CleanSettings) -> list[str]:
    """The fields whose typed value is their `text_value`: strings that no rule rewrites."""
    return [f.name for f in spec.fields if f.type == "string" and _string_form(spec, conf, f) == "text"]


def _text_column(name: str) -> str:
    return TEXT + name


def _timestamp_part_columns(name: str) -> tuple[str, str]:
    return f"_zoned_{name}", f"_wall_clock_{name}"


# Java's \s and the hyphen: the separators a code's words may have.
_SEPARATORS = " \t\n\x0b\f\r-"


def normalise_code(text: Column, synonyms: dict[str, str], codes: tuple[str, ...] = ()) -> Column:
    """Lower-cased, separator runs as one "_", synonyms mapped. `codes`: the field's codes, which most
    values already are once lower-cased; they skip the separator tests (six substring searches)."""
    lowered = F.lower(text)
    # Most codes arrive without separators; testing for them costs half the regular expression.
    separated = F.greatest(*[lowered.contains(c) for c in _SEPARATORS])
    code = F.when(separated, F.regexp_replace(lowered, r"[\s-]+", "_")).otherwise(lowered)
    if synonyms:
        mapping = F.create_map(*[F.lit(x) for pair in sorted(synonyms.items()) for x in pair])
        code = F.coalesce(F.try_element_at(mapping, code), code)
    final = [c for c in codes if c not in synonyms]  # a code that is also a synonym is mapped
    return F.when(lowered.isin(final), lowered).otherwise(code) if final else code


def normalise_phone(text: Column, country_code: str) -> Column:
    """E.164: separators removed; 00 -> +; a national number (trunk 0 dropped) gets +<country code>."""
    compact = F.regexp_replace(text, r"[\s().\-/]", "")
    return (F.when(compact.startswith("+"), compact)
            .when(compact.startswith("00"), F.concat(F.lit("+"), compact.substr(3, 64)))
            .when(compact.startswith("0"), F.concat(F.lit("+" + country_code), compact.substr(2, 64)))
            .otherwise(F.concat(F.lit("+" + country_code), compact)))


def _has_zone(text: Column) -> Column:
    """Past the minutes (16 characters) of an ISO timestamp, only a zone has a Z, + or -: three substring
    tests instead of a second regular expression, which took as long as the cast."""
    tail = F.substring(text, 17, 64)
    return tail.contains("Z") | tail.contains("+") | tail.contains("-")


def timestamp_parts(text: Column, zoned: str, wall_clock: str) -> list[Column]:
    """The two readings of a timestamp text that `parse_timestamp` combines, as columns `zoned` (the
    instant of a text with a zone) and `wall_clock` (a local text's wall clock, read as if in UTC).

    Casting a local text with the bank's zone id appended looks up the zone's rules for every row
    (2.5 times the cost of this cast with a Z appended, which Spark reads as UTC).
    """
    has_zone = _has_zone(text)
    return [F.when(has_zone, text.try_cast(T.TimestampType())).alias(zoned),
            F.when(~has_zone, F.concat(text, F.lit("Z")).try_cast(T.TimestampType())).alias(wall_clock)]


def parse_timestamp(text: Column, zoned: Column, wall_clock: Column, timezone: str,
                    fast_span: tuple[datetime, datetime] | None = None) -> Column:
    """ISO 8601; without a zone the value is the bank's local time. The result is an instant (UTC).

    `zoned` and `wall_clock` are the text's `timestamp_parts`, computed in an earlier projection: here
    they are read inside `when` branches, where Spark shares no subexpression, so an inline cast would be
    computed once per use. `fast_span`: where most local times are expected (`instant_of_wall_clock`).
    """
    return F.when(text.rlike(_TIMESTAMP),
                  F.coalesce(zoned, instant_of_wall_clock(wall_clock, timezone, fast_span)))


class _FieldRules:
    """Typed value and failure conditions of one field."""

    def __init__(self, spec: SourceSpec, conf: CleanSettings, timezone: str, business_date: date):
        self.spec, self.conf, self.timezone, self.business_date = spec, conf, timezone, business_date
        self.failures: dict[str, list[Column]] = defaultdict(list)
        self.not_after = set(conf.not_after_business_date.get(spec.source, []))
        # The first instant after day D in the bank's zone: timestamps must be before it.
        self.day_end = local_midnight(business_date + timedelta(days=1), timezone)
        self.fast_span = (self.day_end - timedelta(days=FAST_TIMESTAMP_DAYS), self.day_end)

    def fail(self, reason: str, condition: Column) -> None:
        self.failures[reason].append(F.coalesce(condition, F.lit(False)))

    def value(self, field: FieldSpec) -> Column:
        """The typed value, from the field's `_text_` column; the rules test the value's own column."""
        text, value = F.col(_text_column(field.name)), F.col(field.name)
        dotted = f"{self.spec.source}.{field.name}"
        if field.required:
            self.fail("missing_required", text.isNull())
        if field.type == "string":
            expression = self._string(field, dotted, text, value)
        else:
            expression = self._typed(field, text)
            self.fail("bad_type", text.isNotNull() & value.isNull())
        if field.min is not None:
            self.fail("out_of_range", value < F.lit(field.min))
        if field.max is not None:
            self.fail("out_of_range", value > F.lit(field.max))
        if field.positive:
            self.fail("non_positive_amount", value <= F.lit(0))
        if field.name in self.not_after:
            limit = (F.lit(self.business_date) if field.type == "date"
                     else F.lit(self.day_end).cast("timestamp"))
            self.fail("future_date", value >= limit if field.type == "timestamp" else value > limit)
        return expression.alias(field.name)

    def _string(self, field: FieldSpec, dotted: str, text: Column, value: Column) -> Column:
        conf = self.conf
        form = _string_form(self.spec, conf, field)
        if form == "code":
            self.fail("unknown_code", value.isNotNull() & ~value.isin(list(field.codes)))
            return normalise_code(text, conf.code_synonyms.get(dotted, {}), field.codes)
        if form == "phone":
            self.fail("bad_format", value.isNotNull() & ~value.rlike(conf.phone_pattern))
            return normalise_phone(text, conf.phone_country_code)
        if form == "email":
            self.fail("bad_format", value.isNotNull() & ~value.rlike(conf.email_pattern))
            return F.lower(text)
        if field.pattern:
            self.fail("bad_format", text.isNotNull() & ~text.rlike(field.pattern))
        return text

    def _typed(self, field: FieldSpec, text: Column) -> Column:
        kind = field.spark_type
        if isinstance(kind, T.BooleanType):
            lowered = F.lower(text)
            return (F.when(lowered.isin(self.conf.boolean_true), F.lit(True))
                    .when(lowered.isin(self.conf.boolean_false), F.lit(False)))
        if isinstance(kind, T.IntegerType):
            return F.when(text.rlike(_INT), F.regexp_replace(text, r"\.0*$", "").try_cast(kind))
        if isinstance(kind, T.DecimalType):
            return F.when(text.rlike(_DECIMAL), text.try_cast(kind))
        if isinstance(kind, T.DateType):
            return F.when(text.rlike(_DATE), text.try_cast(kind))
        if isinstance(kind, T.TimestampType):
            zoned, wall_clock = _timestamp_part_columns(field.name)
            return parse_timestamp(text, F.col(zoned), F.col(wall_clock), self.timezone, self.fast_span)
        raise TypeError(f"{self.spec.source}.{field.name}: no parser for {field.type}")


def parse_fields(spec: SourceSpec, conf: CleanSettings, timezone: str, business_date: date):
    """Typed contract columns plus `_fail_<reason>` for the row-level rules.

    Four projections: the trimmed texts, the timestamps' parts, the typed values, the rule flags. Each
    step reads what the one before computed as columns, so Spark computes every value once per row;
    written as one projection, a time stamp was parsed again for each rule that tests it (`when`
    branches share no subexpression).
    """
    def apply(frame: DataFrame) -> DataFrame:
        rules = _FieldRules(spec, conf, timezone, business_date)
        lineage = [RAW, "batch_date", "source_file", *[c for c in frame.columns if c.startswith(FAIL)]]
        texts = [_text_column(field.name) for field in spec.fields]
        timestamp_fields = [f.name for f in spec.fields if isinstance(f.spark_type, T.TimestampType)]
        parts = [part for name in timestamp_fields
                 for part in timestamp_parts(F.col(_text_column(name)), *_timestamp_part_columns(name))]
        values = [rules.value(field) for field in spec.fields]
        flags = [F.greatest(*conditions, F.lit(False)).alias(fail_column(reason))
                 for reason, conditions in rules.failures.items()]
        return (frame.select(*lineage, *[text_value(field.name).alias(text)
                                         for field, text in zip(spec.fields, texts, strict=True)])
                .select(*lineage, *texts, *parts)
                .select(*lineage, *texts, *values)
                .select(*lineage, *spec.field_names, *flags))
    return apply


def assemble_reasons(precedence: list[str]):
    """`reasons`: every failed rule in precedence order; `reason`: the first (null = row accepted)."""
    def apply(frame: DataFrame) -> DataFrame:
        present = [r for r in precedence if fail_column(r) in frame.columns]
        # concat_ws skips the nulls (rules passed). Not array_compact: a higher-order function has no
        # generated code, and would make Spark interpret the whole typing step row by row.
        failed = F.concat_ws(",", *[F.when(F.col(fail_column(r)), F.lit(r)) for r in present])
        reasons = F.when(failed == "", F.array().cast("array<string>")).otherwise(F.split(failed, ","))
        return (frame.withColumn("reasons", reasons)
                .withColumn("reason", F.try_element_at(F.col("reasons"), F.lit(1)))
                .drop(*[fail_column(r) for r in present]))
    return apply
