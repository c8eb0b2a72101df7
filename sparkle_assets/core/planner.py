"""A plan for a big run: the compute and the pairs to expect from N source clips, per stage, from
the pass rates and per-item costs measured so far (or a profile of per-stage estimates).

The arithmetic (`plan`), on the measured rows of the funnel (core.funnel) pooled over themes:

- a stage's pass rate is ``kept / in``; its range is the 95 % Wilson score interval for that many
  items (`wilson`), so a rate measured on 3 clips has a wide range and one on 3,000 a narrow one;
- the items entering a stage are N times the product of the pass rates of the stages before it
  (the low and high ends multiply the interval ends: a conservative range, every rate at its end
  at once, which is wide until each stage rests on tens of clips); the theme stages start from the
  clips the theme-independent stages keep, once per theme planned;
- a stage's compute per item is the mean of the recorded wall seconds per clip (all the clip's
  artifacts of the stage), with the range mean +- 1.96 standard errors (at least 0); with a single
  clip measured the range is x0.5 to x2;
- a stage's compute is items in times compute per item, low end times low end, high times high.

A profile (`load_profile`, YAML) replaces a stage's measured compute per item by an estimate, e.g.
for a real model on a GPU this machine cannot measure; its rows are marked ``estimate``. The file
is untrusted input: at most 64 KiB, a mapping ``stages: {stage: {wall_s: x, gpu_s: y, device: d,
note: text}}`` with known stage names, numbers finite and within [0, 1e7], text at most 200
characters; anything else is refused with a one-line `ProfileError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .funnel import FUNNEL_STAGES, SHARED_STAGES, stage_funnels
from .lineage import UNPARTITIONED

Z95 = 1.959964
PROFILE_MAX_BYTES = 64 * 1024
PROFILE_FIELDS = {"wall_s": float, "gpu_s": float, "device": str, "note": str}
STAGE_NAMES = [a for a, _, _ in SHARED_STAGES + FUNNEL_STAGES]


class ProfileError(ValueError):
    """A profile file that cannot be used (one line, naming the file and the entry)."""


@dataclass(frozen=True)
class Measured:
    """What the runs so far measured for one stage: items in, kept, and the per-item wall seconds."""

    stage: str
    per_theme: bool
    n_in: int
    kept: int
    item_costs: tuple[float, ...]  # wall seconds spent per item, one value per item measured


@dataclass(frozen=True)
class PlanRow:
    stage: str
    items: tuple[float, float, float]  # (expected, low, high) entering the stage
    kept: tuple[float, float, float]
    pass_rate: tuple[float, float, float]
    wall_s: tuple[float, float, float]  # compute of the stage for all its items
    gpu_s: float | None  # from a profile only
    source: str  # "measured (n items)" or "estimate (profile: note)"


def wilson(kept: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion kept/n ((0, 1) when nothing was measured)."""
    if n <= 0:
        return 0.0, 1.0
    p = kept / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cost_range(values: tuple[float, ...]) -> tuple[float, float, float]:
    """(mean, low, high) of the per-item costs measured (see the module docstring)."""
    if not values:
        return 0.0, 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, mean / 2, mean * 2
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = Z95 * sd / math.sqrt(len(values))
    return mean, max(0.0, mean - half), mean + half


def plan(measured: list[Measured], clips: int, themes: int, profile: dict[str, dict] | None = None) -> list[PlanRow]:
    """The plan for `clips` source clips and `themes` themes (see the module docstring)."""
    profile = profile or {}
    rows = []
    flow = (float(clips), float(clips), float(clips))  # items entering: expected, low, high
    for i, m in enumerate(measured):
        if m.per_theme and (i == 0 or not measured[i - 1].per_theme):
            flow = tuple(v * themes for v in flow)
        rate = m.kept / m.n_in if m.n_in else 0.0
        lo, hi = wilson(m.kept, m.n_in)
        est = profile.get(m.stage)
        if est is not None:
            per = (est["wall_s"], est["wall_s"], est["wall_s"])
            gpu = est.get("gpu_s")
            source = f"estimate (profile{': ' + est['note'] if est.get('note') else ''})"
        else:
            per, gpu, source = cost_range(m.item_costs), None, f"measured ({m.n_in} items)"
        rows.append(PlanRow(m.stage, flow, (flow[0] * rate, flow[1] * lo, flow[2] * hi), (rate, lo, hi),
                            (flow[0] * per[0], flow[1] * per[1], flow[2] * per[2]),
                            None if gpu is None else flow[0] * gpu, source))
        flow = rows[-1].kept
    return rows


def measure(db, themes: list[str]) -> list[Measured]:
    """The measured rows for a plan: the theme-independent stages, then the theme stages pooled
    over `themes` (items in, kept, and the per-item wall seconds of each stage's artifacts)."""
    out = []
    for (asset, kind, short), shared in [(s, True) for s in SHARED_STAGES] + [(s, False) for s in FUNNEL_STAGES]:
        parts = [UNPARTITIONED] if shared else themes
        rows = [stage_funnels(db, [(asset, kind, short)], p)[0] for p in parts]
        out.append(Measured(asset, not shared, sum(r.n_in for r in rows), sum(r.kept for r in rows),
                            tuple(c for r in rows for c in r.item_costs)))
    return out


def load_profile(path: str | Path) -> dict[str, dict]:
    """A profile file, validated (see the module docstring)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > PROFILE_MAX_BYTES:
            raise ProfileError(f"{path}: {size} bytes, more than a profile's {PROFILE_MAX_BYTES}")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read it as YAML: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(data, dict) or set(data) != {"stages"} or not isinstance(data["stages"], dict):
        raise ProfileError(f"{path}: a profile is a mapping with one key, `stages: {{stage: {{wall_s: ...}}}}`")
    out = {}
    for stage, entry in data["stages"].items():
        if stage not in STAGE_NAMES:
            raise ProfileError(f"{path}: unknown stage {str(stage)[:60]!r} (known: {', '.join(STAGE_NAMES)})")
        if not isinstance(entry, dict) or "wall_s" not in entry or set(entry) - set(PROFILE_FIELDS):
            raise ProfileError(f"{path}: stages.{stage} must be a mapping with wall_s and optionally "
                               f"{', '.join(f for f in PROFILE_FIELDS if f != 'wall_s')}")
        clean = {}
        for key, value in entry.items():
            if PROFILE_FIELDS[key] is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or not 0 <= value <= 1e7:
                    raise ProfileError(f"{path}: stages.{stage}.{key} must be a number of seconds in [0, 1e7]")
                clean[key] = float(value)
            else:
                if not isinstance(value, str) or len(value) > 200 or not value.isprintable():
                    raise ProfileError(f"{path}: stages.{stage}.{key} must be printable text of at most 200 characters")
                clean[key] = value
        out[stage] = clean
    return out


def plan_text(rows: list[PlanRow], clips: int, themes: list[str]) -> str:
    """The plan as a table (what `sparkle plan` prints)."""
    fmt = lambda t, d=0: f"{t[0]:,.{d}f} [{t[1]:,.{d}f}-{t[2]:,.{d}f}]"  # noqa: E731
    out = [f"plan for {clips:,} source clips, themes: {', '.join(themes)} (95% ranges)",
           f"  {'stage':<20}{'items in':>30}{'pass rate':>22}{'compute (wall h)':>30}  source"]
    for r in rows:
        gpu = f", GPU {r.gpu_s / 3600:,.1f} h" if r.gpu_s is not None else ""
        out.append(f"  {r.stage:<20}{fmt(r.items):>30}{fmt(r.pass_rate, 2):>22}"
                   f"{fmt(tuple(v / 3600 for v in r.wall_s), 1):>30}  {r.source}{gpu}")
    total = tuple(sum(r.wall_s[i] for r in rows) / 3600 for i in range(3))
    pairs = rows[-1].kept if rows else (0.0, 0.0, 0.0)
    out.append(f"\n  pairs expected: {fmt(pairs)}")
    out.append(f"  compute: {fmt(total, 1)} wall hours = {fmt(tuple(v / 24 for v in total), 2)} worker-days")
    if pairs[0]:
        out.append(f"  per pair: {total[0] * 3600 / pairs[0]:,.1f} wall s")
    return "\n".join(out)
