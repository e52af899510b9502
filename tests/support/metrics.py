"""Reading Prometheus scrapes and docs/operations.md's metric table in tests."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_ROW = re.compile(r"^\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \| (\w+) \|")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    """Every sample of a /metrics answer: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is not there (a labelled counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def documented_metrics(*services: str) -> set[str]:
    """The metric names docs/operations.md's table lists for these services."""
    names = set()
    for line in DOCS.read_text().splitlines():
        match = _ROW.match(line)
        if match and match.group(2) in services:
            names.add(match.group(1))
    return names


def missing_metrics(samples: Samples, names: set[str]) -> set[str]:
    """The names with no sample in a scrape (a histogram or summary counts by its _count)."""
    present = {name for name, _ in samples}
    return {n for n in names if n not in present and f"{n}_count" not in present}
