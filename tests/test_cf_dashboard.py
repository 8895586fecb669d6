"""The Grafana dashboard in deploy/ charts only metrics cfban exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cfban.watch._metrics import EXPORTED

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana-cfban.json"
_METRIC = re.compile(r"\bcfban_[a-z0-9_]+\b")
_WORDS = re.compile(r"(?<![0-9])[a-z_][a-z0-9_]*")
_PROMQL = {"sum", "by", "rate", "increase", "without", "avg", "max", "min", "on", "and"}
_LABELS = {"jail", "op", "method", "route", "status", "budget", "reason", "kind"}


def _queries() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def test_every_query_names_only_exported_metrics() -> None:
    queries = _queries()
    assert len(queries) >= 10
    for expr in queries:
        named = set(_METRIC.findall(expr))
        assert named, f"{expr!r} names no cfban metric"
        assert named <= EXPORTED, f"{expr!r}: {named - EXPORTED} is not exported"
        # nothing else either: only PromQL words and cfban's own labels around them
        others = set(_WORDS.findall(expr.replace("cfban_", "x_"))) - _PROMQL - _LABELS
        assert {w for w in others if not w.startswith("x_")} == set(), expr


def test_it_charts_what_operators_need() -> None:
    named = {m for expr in _queries() for m in _METRIC.findall(expr)}
    for metric in (
        "cfban_bans_total",
        "cfban_queue_depth",
        "cfban_oldest_queued_age_seconds",
        "cfban_api_requests_total",
        "cfban_budget_left",
        "cfban_list_fill_ratio",
        "cfban_delivery_problem",
    ):
        assert metric in named
