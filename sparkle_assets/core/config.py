"""One way to check a configuration: every numeric field declares its range, and a bad value fails
with one line naming the field, its range and the value given (`config_failures` turns it into the
step's failure message).

`StageConfig` is the base of every stage's run config (its `RANGES`, plus `problems()` for rules
across fields); resources raise `ConfigError` from their `settings()` the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import dagster as dg

from sparkle_model.taxonomy import TaxonomyError


class ConfigError(ValueError):
    """A configuration value or setting that cannot be used; the message names the field."""


@contextlib.contextmanager
def config_failures(where: str) -> Iterator[None]:
    """A ConfigError (bad config, unusable backend setting) or an invalid theme file raised inside
    fails the step with one line naming `where` and the field, instead of a traceback."""
    try:
        yield
    except (ConfigError, TaxonomyError) as exc:
        raise dg.Failure(description=f"{where}: {exc}") from exc


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


class StageConfig(dg.Config):
    """Run config of a stage. `RANGES` maps each numeric field to its documented `Range` (a None
    value, where the field allows it, turns a filter off); `problems()` adds cross-field rules."""

    RANGES: ClassVar[dict[str, Range]] = {}

    def problems(self) -> list[str]:
        return []

    def check(self) -> None:
        """ConfigError naming every field outside its range (and every broken cross-field rule)."""
        found = []
        for name, rng in self.RANGES.items():
            value = getattr(self, name)
            if value is not None and value not in rng:
                found.append(f"{name} must be {rng}, got {value}")
        found += self.problems()
        if found:
            raise ConfigError("; ".join(found))


