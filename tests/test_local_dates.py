"""Bank-local dates of instants and instants of local wall clocks: the fast path agrees with the zone
database around every kind of edge."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pyspark.sql import types as T

from jobs.common.local_dates import instant_of_wall_clock, local_date, offset_pieces

SPAN = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_offset_pieces_when_zone_keeps_summer_time_splits_at_the_two_changes():
    changes = offset_pieces("Europe/Berlin", *SPAN)
    # EU rules: the last Sundays of March and October, 01:00 UTC
    assert changes == ((int(SPAN[0].timestamp()), 3600),
                       (int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()), 7200),
                       (int(datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()), 3600))


def test_offset_pieces_when_zone_has_one_offset_is_one_piece():
    assert offset_pieces("Asia/Shanghai", *SPAN) == ((int(SPAN[0].timestamp()), 8 * 3600),)


def _instants_around(edges: list[datetime]) -> list[datetime]:
    return [edge + timedelta(microseconds=delta) for edge in edges for delta in (-1, 0, 1)]


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "Asia/Shanghai", "America/St_Johns"])
@pytest.mark.parametrize("session_zone", ["UTC", "America/Los_Angeles"])
def test_local_date_when_instants_straddle_midnights_offset_changes_and_the_span_matches_zoneinfo(
        spark, timezone, session_zone):
    zone = ZoneInfo(timezone)
    edges = [
        *(datetime(2026, m, d, tzinfo=zone).astimezone(UTC) for m, d in [(3, 29), (3, 30), (10, 25), (10, 26),
                                                                        (11, 1), (11, 2), (7, 1)]),
        *(datetime(2026, 3, 8, 2, tzinfo=UTC) + timedelta(hours=h) for h in range(12)),
        *(datetime(2026, 10, 25, tzinfo=UTC) + timedelta(minutes=30 * h) for h in range(8)),
        SPAN[0], SPAN[1], datetime(1969, 12, 31, 23, 30, tzinfo=UTC), datetime(1988, 4, 17, tzinfo=UTC),
    ]
    instants = _instants_around(edges)
    expected = [instant.astimezone(zone).date() for instant in instants]
    frame = spark.createDataFrame([(i,) for i in instants], T.StructType([T.StructField("ts", T.TimestampType())]))
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", session_zone)
    try:
        rows = frame.select(local_date("ts", timezone, SPAN).alias("fast"),
                            local_date("ts", timezone).alias("exact")).collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    assert [r["fast"] for r in rows] == expected
    assert [r["exact"] for r in rows] == expected


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "Asia/Shanghai", "America/St_Johns"])
@pytest.mark.parametrize("session_zone", ["UTC", "America/Los_Angeles"])
def test_instant_of_wall_clock_when_clocks_fall_in_gaps_overlaps_and_outside_the_span_matches_zoneinfo(
        spark, timezone, session_zone):
    zone = ZoneInfo(timezone)
    changes = [(datetime.fromtimestamp(start, UTC), before, after) for (start, after), (_, before)
               in zip(offset_pieces(timezone, *SPAN)[1:], offset_pieces(timezone, *SPAN), strict=False)]
    # The wall clocks where each change begins and ends (a gap forward, an overlap back) and between them.
    edges = [(change + timedelta(seconds=offset)).replace(tzinfo=None)
             for change, before, after in changes for offset in (before, after, (before + after) // 2)]
    edges += [datetime(2026, 7, 1), datetime(2026, 1, 1), datetime(2026, 12, 31, 23), datetime(2027, 1, 1, 1),
              datetime(1969, 12, 31, 23, 30), datetime(1988, 4, 17, 2, 30)]
    walls = _instants_around(edges)
    # Java's atZone, like fold=0: a wall clock in a gap or an overlap takes the offset before the change.
    expected = [wall.replace(tzinfo=zone).astimezone(UTC) for wall in walls]
    frame = spark.createDataFrame([(wall.replace(tzinfo=UTC),) for wall in walls],
                                  T.StructType([T.StructField("wall", T.TimestampType())]))
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", session_zone)
    try:
        rows = [(r["fast"], r["exact"]) for r in frame.select(
            instant_of_wall_clock("wall", timezone, SPAN).alias("fast"),
            instant_of_wall_clock("wall", timezone).alias("exact")).collect()]
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    as_utc = [tuple(value.astimezone(UTC) for value in row) for row in rows]
    assert [fast for fast, _ in as_utc] == expected
    assert [exact for _, exact in as_utc] == expected
