"""The Dagster-free half of `core.config`: `Range` (the allowed values of a numeric field) and
`ConfigError` (a setting that cannot be used, naming the field). Modules that pool workers import
(`core.sources`, `core.ingest`) take them from here; everything else imports them from `core.config`."""

from __future__ import annotations

import math
from dataclasses import dataclass


class ConfigError(ValueError):
    """A configuration value or setting that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: [lo, hi] with either end open or unbounded."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below and not math.isnan(value)

    def __str__(self) -> str:
        if self.hi == math.inf:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo == -math.inf:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
