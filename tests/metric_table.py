"""The metric table in docs/telemetry.md, the instruments the code creates, and their Prometheus names.

One place for three things the metric tests and the dashboard tests share:

- ``load_table()``: docs/telemetry.md's metric table, the single source of truth for metric names.
- ``code_instruments()``: every OpenTelemetry instrument created in ``services/`` (name, kind, unit),
  read from the source with ``ast`` (so an instrument that only reports on incidents is found too).
- ``prometheus_series()`` / ``prometheus_label()``: what the collector's ``prometheus`` exporter
  (translation ``UnderscoreEscapingWithSuffixes``, its default) makes of a metric and an attribute.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from services.common import instruments

ROOT = Path(__file__).resolve().parent.parent
TELEMETRY_DOC = ROOT / "docs" / "telemetry.md"
SERVICES_DIR = ROOT / "services"

KINDS = ("counter", "gauge", "histogram")
# Labels every series has besides its attributes: from the resource (service.namespace/service.name
# and service.instance.id) and the instrumentation scope; ``le`` only on histogram buckets.
RESOURCE_LABELS = frozenset({"job", "instance", "otel_scope_name", "otel_scope_version"})
BUCKET_LABEL = "le"

# OTel unit (UCUM) -> Prometheus unit word (the exporter's table, for the units we could use).
_UNIT_WORDS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "%": "percent",
    "1": "",
}
_PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9:]+")

# How each instrument factory maps to a kind; the helpers in services/common/instruments.py wrap
# the SDK's observable instruments and take (meter, name, points, unit, description).
_HELPERS = {"observable_counter": "counter", "observable_gauge": "gauge"}
_METER_METHODS = {
    "create_counter": "counter",
    "create_observable_counter": "counter",
    "create_up_down_counter": "gauge",
    "create_observable_up_down_counter": "gauge",
    "create_gauge": "gauge",
    "create_observable_gauge": "gauge",
    "create_histogram": "histogram",
}


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the metric table."""

    name: str
    kind: str
    unit: str
    attributes: frozenset[str]
    series: tuple[str, ...]  # the table's last column, histogram suffixes expanded


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument created in the code."""

    name: str
    kind: str
    unit: str
    where: str  # path:line


# --- the table ------------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def parse_table(markdown: str) -> dict[str, Metric]:
    """The rows of the table whose header starts ``| metric | kind | unit |``, by metric name."""
    lines = markdown.splitlines()
    header = next((i for i, line in enumerate(lines) if _cells(line)[:3] == ["metric", "kind", "unit"]), None)
    if header is None:
        raise ValueError("no `| metric | kind | unit | ... |` table found")
    columns = _cells(lines[header])
    table: dict[str, Metric] = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        row = dict(zip(columns, _cells(line), strict=True))
        (name,) = _ticked(row["metric"])
        series = _ticked(row["Prometheus series"])
        expanded = [series[0], *(series[0].rsplit("_", 1)[0] + suffix for suffix in series[1:])]
        attributes = frozenset(a.strip() for a in row["attributes"].split(",") if a.strip())
        if name in table:
            raise ValueError(f"{name} is listed twice")
        table[name] = Metric(name, row["kind"], _ticked(row["unit"])[0], attributes, tuple(expanded))
    return table


def load_table() -> dict[str, Metric]:
    return parse_table(TELEMETRY_DOC.read_text())


# --- the code -------------------------------------------------------------------------------------


def _default(function: object, parameter: str) -> str:
    value = inspect.signature(function).parameters[parameter].default  # type: ignore[arg-type]
    assert isinstance(value, str)
    return value


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == keyword:
            return item.value
    return call.args[index] if len(call.args) > index else None


def instruments_in_source(source: str, where: str) -> list[Instrument]:
    """Every instrument a module's source creates. Names and units must be literals (else ValueError),
    except in the helpers that take them as parameters."""
    found: list[Instrument] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in _HELPERS:
            kind, offset = _HELPERS[func.id], 1
            default_unit = _default(getattr(instruments, func.id), "unit")
        elif isinstance(func, ast.Attribute) and func.attr in _METER_METHODS:
            kind, offset, default_unit = _METER_METHODS[func.attr], 0, ""
        else:
            continue
        name = _argument(node, offset, "name")
        unit = _argument(node, offset + 2 if offset else 1, "unit")
        if isinstance(name, ast.Name) and where.endswith("common/instruments.py"):
            continue  # the helpers themselves
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            raise ValueError(f"{where}:{node.lineno}: instrument name is not a string literal")
        if unit is not None and not (isinstance(unit, ast.Constant) and isinstance(unit.value, str)):
            raise ValueError(f"{where}:{node.lineno}: unit of {name.value} is not a string literal")
        literal = unit.value if isinstance(unit, ast.Constant) else None
        unit_text = literal if isinstance(literal, str) else default_unit
        found.append(Instrument(name.value, kind, unit_text, f"{where}:{node.lineno}"))
    return found


def code_instruments() -> list[Instrument]:
    found: list[Instrument] = []
    for path in sorted(SERVICES_DIR.rglob("*.py")):
        found += instruments_in_source(path.read_text(), str(path.relative_to(ROOT)))
    return found


# --- Prometheus names -----------------------------------------------------------------------------


def _unit_words(unit: str) -> list[str]:
    main, _, per = unit.partition("/")
    words = []
    if main and not any(c in main for c in "{}"):
        words.append(_UNIT_WORDS.get(main, main))
    if per and not any(c in per for c in "{}"):
        words.append("per_" + _PER_UNIT_WORDS.get(per, per))
    return [w for w in words if w]


def prometheus_name(name: str, kind: str, unit: str) -> str:
    """The series name of a counter or gauge, or the base name of a histogram."""
    tokens = [t for t in _NOT_NAME_CHAR.split(name) if t]
    for word in _unit_words(unit):
        if word not in tokens:
            tokens.append(word)
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind == "gauge" and unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    return "_".join(tokens)


def prometheus_series(name: str, kind: str, unit: str) -> tuple[str, ...]:
    """Every series name an instrument becomes."""
    base = prometheus_name(name, kind, unit)
    if kind == "histogram":
        return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
    return (base,)


def prometheus_label(attribute: str) -> str:
    """An attribute key as a label name (a leading digit gets a ``key_`` prefix in the exporter)."""
    label = "_".join(t for t in re.split(r"[^a-zA-Z0-9_]+", attribute) if t)
    return f"key_{label}" if label[:1].isdigit() else label


def series_labels(table: dict[str, Metric]) -> dict[str, frozenset[str]]:
    """Every Prometheus series of the table -> the labels it can carry."""
    out: dict[str, frozenset[str]] = {}
    for metric in table.values():
        labels = frozenset(prometheus_label(a) for a in metric.attributes) | RESOURCE_LABELS
        for series in prometheus_series(metric.name, metric.kind, metric.unit):
            out[series] = labels | ({BUCKET_LABEL} if series.endswith("_bucket") else frozenset())
    return out
