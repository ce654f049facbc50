"""The history window of one generation run: day offsets, months and batches.

Every event is placed on an integer day offset from the first day of the window (negative = before the
window) plus seconds within the day. Batch 0 is the initial load (all days up to `init_day`), batch k > 0
is the daily batch of day `init_day + k`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from jobs.common.errors import InputError

DAY = 86_400
NEVER = 10**7  # a day offset later than any window: "no churn", "still held", "not closed"


def _months_back(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


@dataclass(frozen=True)
class Window:
    start: date
    end: date
    daily_batches: int

    @classmethod
    def of(cls, end: date, months: int, daily_batches: int) -> Window:
        if months < 1:
            raise InputError("months must be at least 1")
        start = _months_back(end, months) + timedelta(days=1)
        window = cls(start=start, end=end, daily_batches=daily_batches)
        if not 0 <= daily_batches < window.days - 1:
            raise InputError(f"daily batches must be between 0 and {window.days - 2} for {months} months of history")
        return window

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def init_day(self) -> int:
        return self.days - 1 - self.daily_batches

    @property
    def batch_dates(self) -> list[date]:
        return [self.date(self.init_day + k) for k in range(self.daily_batches + 1)]

    def date(self, day: int) -> date:
        return self.start + timedelta(days=int(day))

    def batch_of(self, day: np.ndarray) -> np.ndarray:
        """Batch index of each day offset (0 = initial load)."""
        return np.maximum(np.asarray(day) - self.init_day, 0)

    def month_starts(self) -> np.ndarray:
        """Day offsets of the first day of every calendar month touching the window (may be negative)."""
        first = date(self.start.year, self.start.month, 1)
        starts = []
        while first <= self.end:
            starts.append((first - self.start).days)
            first = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return np.array(starts, dtype=np.int64)

    def month_ends(self) -> np.ndarray:
        """Day offsets of month ends inside the window."""
        ends = self.month_starts()[1:] - 1
        return ends[(ends >= 0) & (ends < self.days)]

    def to_datetime64(self, day: np.ndarray, seconds: np.ndarray | int = 0) -> np.ndarray:
        base = np.datetime64(self.start, "s")
        return base + (np.asarray(day, dtype=np.int64) * DAY + np.asarray(seconds, dtype=np.int64))

    def to_date64(self, day: np.ndarray) -> np.ndarray:
        return np.datetime64(self.start, "D") + np.asarray(day, dtype=np.int64)
