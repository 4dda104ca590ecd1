"""Assemble normal traffic and campaigns into one time-ordered log with ground truth."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from marketguard.app.scenario.campaigns import CAMPAIGNS, Campaign
from marketguard.app.scenario.traffic import format_combined, normal_request

__all__ = ["Scenario", "generate", "write_log"]

DEFAULT_START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@dataclass
class Scenario:
    """Log lines plus, per campaign, the 1-based line numbers of its attack requests."""

    lines: list[str]
    truth: dict[str, list[int]] = field(default_factory=dict)
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    start: datetime = DEFAULT_START
    end: datetime = DEFAULT_START

    def attack_lines(self) -> set[int]:
        """Every line number that belongs to some campaign."""
        return {n for lines in self.truth.values() for n in lines}


def generate(
    normal: int = 20_000,
    *,
    seed: int = 7,
    start: datetime = DEFAULT_START,
    duration: timedelta = timedelta(hours=2),
    campaigns: Sequence[Campaign] = CAMPAIGNS,
    repeats: int = 1,
) -> Scenario:
    """Generate ``normal`` benign requests over ``duration`` with each campaign injected ``repeats`` times.

    Deterministic for a given seed: the same arguments give the same log.
    """
    rng = random.Random(seed)
    step = duration / max(normal, 1)
    tagged = [(start + step * i, normal_request(rng, start + step * i), None) for i in range(normal)]
    for _ in range(repeats):
        for campaign in campaigns:
            at = start + timedelta(seconds=rng.uniform(0, duration.total_seconds() * 0.9))
            tagged.extend((r.ts, r, campaign.name) for r in campaign.make(rng, at))
    tagged.sort(key=lambda item: item[0])
    scenario = Scenario(lines=[], start=start, end=start + duration)
    scenario.campaigns = {c.name: c for c in campaigns}
    for number, (_, request, name) in enumerate(tagged, start=1):
        scenario.lines.append(format_combined(request))
        if name:
            scenario.truth.setdefault(name, []).append(number)
    return scenario


def write_log(scenario: Scenario, path: Path) -> Path:
    """Write the scenario's lines to ``path`` (combined format, one per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(scenario.lines) + "\n", encoding="utf-8")
    return path
