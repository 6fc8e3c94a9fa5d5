"""Perses provisioning resources, checked offline: their shape, and their PromQL against the metric table.

No Perses schema is installable here (its schemas are CUE files inside the server image and the
perses/plugins sources; ``percli`` is a Go binary shipped only in the image), so ``RESOURCE_SCHEMA``
transcribes what Perses v0.54 reads for the resources and plugins we use: the resource envelope and
dashboard spec (perses/spec ``go/dashboard``), and the closed specs of the panel, query and variable
plugins (perses/plugins ``*/schemas/*.cue``). ``structure_problems`` adds what a schema cannot say:
panel references, the grid, variables, projects and the default datasource.

``query_problems`` parses every query with a real PromQL parser (``promql-parser``) after putting
values in place of Perses variables, and checks each series it selects, each label it matches,
groups or joins on, and each ``{{label}}`` of its legend against the series the metric table makes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from jsonschema import Draft202012Validator

GRID_COLUMNS = 24
ID = r"^[a-zA-Z0-9_.-]+$"  # Perses resource and panel ids
DURATION = r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$"
PROJECT_SCOPED = ("Dashboard", "Datasource")
# Perses's built-in variables, with values that keep a query parseable.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__dashboard": "overview",
    "__project": "hftfeed",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::[\w-]+)?\}|(\w+))")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")

_UNITS = [
    *("nanoseconds", "microseconds", "milliseconds", "seconds", "minutes", "hours", "days"),
    *("percent", "percent-decimal", "decimal", "bytes", "decbytes"),
    *("counts/sec", "events/sec", "messages/sec", "ops/sec", "records/sec", "requests/sec"),
]
_FORMAT = {
    "type": "object",
    "properties": {
        "unit": {"enum": _UNITS},
        "decimalPlaces": {"type": "number"},
        "shortValues": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_LEGEND = {
    "type": "object",
    "required": ["position"],
    "properties": {
        "position": {"enum": ["bottom", "right"]},
        "mode": {"enum": ["list", "table"]},
        "size": {"enum": ["small", "medium"]},
        "values": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
_THRESHOLDS = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["percent", "absolute"]},
        "defaultColor": {"type": "string"},
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["value"],
                "properties": {"value": {"type": "number"}, "color": {"type": "string"}},
            },
        },
    },
    "additionalProperties": False,
}
_COLOR = {"type": "string", "pattern": "^#(?:[0-9a-fA-F]{3}){1,2}$"}
_MAPPING_RESULT = {
    "type": "object",
    "required": ["value"],
    "properties": {"value": {"type": "string"}, "color": _COLOR},
    "additionalProperties": False,
}
_MAPPING = {
    "type": "object",
    "required": ["kind", "spec"],
    "properties": {"kind": {"enum": ["Value", "Range", "Regex", "Misc"]}, "spec": {"type": "object"}},
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": "Value"}}},
            "then": {"properties": {"spec": {"required": ["value", "result"]}}},
        },
        {"properties": {"spec": {"properties": {"result": _MAPPING_RESULT}, "required": ["result"]}}},
    ],
}


def _plugin(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["kind", "spec"],
        "properties": {"kind": {"const": kind}, "spec": {"type": "object", **spec}},
        "additionalProperties": False,
    }


def _closed(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"properties": dict(properties), "required": list(required), "additionalProperties": False}


_DATASOURCE_SELECTOR = _closed({"kind": {"const": "PrometheusDatasource"}, "name": {"type": "string"}})
PANEL_PLUGINS = {
    "TimeSeriesChart": _closed(
        {
            "legend": _LEGEND,
            "tooltip": _closed({"enablePinning": {"type": "boolean"}}),
            "yAxis": _closed(
                {
                    "show": {"type": "boolean"},
                    "label": {"type": "string"},
                    "format": _FORMAT,
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "logBase": {"enum": [2, 10]},
                }
            ),
            "thresholds": _THRESHOLDS,
            "visual": _closed(
                {
                    "display": {"enum": ["line", "bar"]},
                    "lineWidth": {"type": "number", "minimum": 0.25, "maximum": 3},
                    "areaOpacity": {"type": "number", "minimum": 0, "maximum": 1},
                    "showPoints": {"enum": ["auto", "always"]},
                    "stack": {"enum": ["all", "percent"]},
                    "connectNulls": {"type": "boolean"},
                }
            ),
        }
    ),
    "StatChart": _closed(
        {
            "calculation": {
                "enum": ["first", "last", "first-number", "last-number", "mean", "sum", "min", "max"]
            },
            "format": _FORMAT,
            "thresholds": _THRESHOLDS,
            "sparkline": _closed({"color": {"type": "string"}, "width": {"type": "number"}}),
            "valueFontSize": {"type": "number"},
            "colorMode": {"enum": ["value", "background_solid", "none"]},
            "mappings": {"type": "array", "items": _MAPPING},
        },
        required=("calculation",),
    ),
    "StatusHistoryChart": _closed(
        {
            "legend": _LEGEND,
            "mappings": {"type": "array", "items": _MAPPING},
            "sorting": {"enum": ["asc", "desc"]},
        }
    ),
    "Markdown": _closed({"text": {"type": "string"}}, required=("text",)),
}
_QUERY = {
    "type": "object",
    "required": ["kind", "spec"],
    "properties": {
        "kind": {"const": "TimeSeriesQuery"},
        "spec": _closed(
            {
                "name": {"type": "string"},
                "plugin": _plugin(
                    "PrometheusTimeSeriesQuery",
                    _closed(
                        {
                            "datasource": _DATASOURCE_SELECTOR,
                            "query": {"type": "string", "minLength": 1},
                            "seriesNameFormat": {"type": "string"},
                            "minStep": {"type": "string", "pattern": DURATION + r"|^\$\w+$"},
                            "resolution": {"type": "number"},
                            "instant": {"type": "boolean"},
                        },
                        required=("query",),
                    ),
                ),
            },
            required=("plugin",),
        ),
    },
    "additionalProperties": False,
}
_PANEL = {
    "type": "object",
    "required": ["kind", "spec"],
    "properties": {
        "kind": {"const": "Panel"},
        "spec": _closed(
            {
                "display": _closed({"name": {"type": "string"}, "description": {"type": "string"}}),
                "plugin": {
                    "type": "object",
                    "required": ["kind", "spec"],
                    "properties": {"kind": {"enum": sorted(PANEL_PLUGINS)}, "spec": {"type": "object"}},
                    "allOf": [
                        {
                            "if": {"properties": {"kind": {"const": kind}}},
                            "then": {"properties": {"spec": {"type": "object", **spec}}},
                        }
                        for kind, spec in PANEL_PLUGINS.items()
                    ],
                    "additionalProperties": False,
                },
                "queries": {"type": "array", "items": _QUERY},
            },
            required=("plugin",),
        ),
    },
    "additionalProperties": False,
}
_GRID_ITEM = _closed(
    {
        **{key: {"type": "integer", "minimum": 0} for key in ("x", "y")},
        **{key: {"type": "integer", "minimum": 1} for key in ("width", "height")},
        "content": _closed({"$ref": {"type": "string", "pattern": "^#/spec/panels/"}}, required=("$ref",)),
    },
    required=("x", "y", "width", "height", "content"),
)
_LAYOUT = _closed(
    {
        "kind": {"const": "Grid"},
        "spec": _closed(
            {
                "display": _closed(
                    {
                        "title": {"type": "string"},
                        "collapse": _closed({"open": {"type": "boolean"}}, ("open",)),
                    },
                    required=("title",),
                ),
                "items": {"type": "array", "items": _GRID_ITEM},
                "repeatVariable": {"type": "string"},
            },
            required=("items",),
        ),
    },
    required=("kind", "spec"),
)
_VARIABLE_SCHEMA = _closed(
    {
        "kind": {"const": "ListVariable"},
        "spec": _closed(
            {
                "name": {"type": "string", "pattern": r"^\w*?[^0-9]\w*$", "not": {"pattern": "^__"}},
                "display": _closed(
                    {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "hidden": {"type": "boolean"},
                    }
                ),
                "defaultValue": {
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                },
                "allowAllValue": {"type": "boolean"},
                "allowMultiple": {"type": "boolean"},
                "customAllValue": {"type": "string"},
                "capturingRegexp": {"type": "string"},
                "sort": {"type": "string"},
                "plugin": _plugin(
                    "PrometheusLabelValuesVariable",
                    _closed(
                        {
                            "datasource": _DATASOURCE_SELECTOR,
                            "labelName": {"type": "string", "minLength": 1},
                            "matchers": {"type": "array", "items": {"type": "string"}},
                        },
                        required=("labelName",),
                    ),
                ),
            },
            required=("name", "plugin"),
        ),
    },
    required=("kind", "spec"),
)
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": ID, "maxLength": 75}, "project": {"type": "string"}},
}
_DISPLAY = _closed({"name": {"type": "string"}, "description": {"type": "string"}})
_DATASOURCE_SPEC = _closed(
    {
        "default": {"type": "boolean"},
        "display": _DISPLAY,
        "plugin": _plugin(
            "PrometheusDatasource",
            {
                "properties": {
                    "directUrl": {"type": "string", "format": "uri"},
                    "proxy": _plugin(
                        "HTTPProxy", {"required": ["url"], "properties": {"url": {"type": "string"}}}
                    ),
                    "scrapeInterval": {"type": "string", "pattern": DURATION},
                    "queryParams": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "additionalProperties": False,
                "oneOf": [{"required": ["directUrl"]}, {"required": ["proxy"]}],
            },
        ),
    },
    required=("default", "plugin"),
)
RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "metadata", "spec"],
    "properties": {"kind": {"enum": ["Project", "GlobalDatasource", "Datasource", "Dashboard"]}},
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": "Project"}}},
            "then": _closed({"kind": {}, "metadata": _METADATA, "spec": _closed({"display": _DISPLAY})}),
        },
        {
            "if": {"properties": {"kind": {"enum": ["GlobalDatasource", "Datasource"]}}},
            "then": _closed({"kind": {}, "metadata": _METADATA, "spec": _DATASOURCE_SPEC}),
        },
        {
            "if": {"properties": {"kind": {"const": "Dashboard"}}},
            "then": _closed(
                {
                    "kind": {},
                    "metadata": _METADATA,
                    "spec": _closed(
                        {
                            "display": _DISPLAY,
                            "duration": {"type": "string", "pattern": DURATION},
                            "refreshInterval": {"type": "string", "pattern": DURATION},
                            "variables": {"type": "array", "items": _VARIABLE_SCHEMA},
                            "panels": {
                                "type": "object",
                                "propertyNames": {"pattern": ID},
                                "additionalProperties": _PANEL,
                            },
                            "layouts": {"type": "array", "items": _LAYOUT},
                        },
                        required=("panels", "layouts"),
                    ),
                }
            ),
        },
    ],
}


# --- loading ----------------------------------------------------------------------------------------


def load_resources(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every resource in a provisioning folder, as Perses reads it: each .json/.yaml/.yml file below it
    holds one resource or a list of them."""
    resources: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".json", ".yaml", ".yml") or not path.is_file():
            continue
        text = path.read_text()
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        for item in loaded if isinstance(loaded, list) else [loaded]:
            resources.append((path.name, item))
    return resources


def dashboards(resources: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for source, resource in resources:
        if isinstance(resource, dict) and resource.get("kind") == "Dashboard":
            yield f"{source}:{resource['metadata']['name']}", resource["spec"]


# --- structure ------------------------------------------------------------------------------------


def structure_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    validator = Draft202012Validator(RESOURCE_SCHEMA)
    problems = [
        f"{source}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for source, resource in resources
        for error in validator.iter_errors(resource)
    ]
    if problems:
        return sorted(problems)
    projects = {r["metadata"]["name"] for _, r in resources if r["kind"] == "Project"}
    for source, resource in resources:
        project = resource["metadata"].get("project")
        if resource["kind"] in PROJECT_SCOPED and project not in projects:
            problems.append(f"{source}: project {project!r} is not provisioned")
    defaults = [
        r["metadata"]["name"] for _, r in resources if "Datasource" in r["kind"] and r["spec"]["default"]
    ]
    if len(defaults) != 1:
        problems.append(f"want exactly one default Prometheus datasource, have {defaults}")
    for where, spec in dashboards(resources):
        problems += [f"{where}: {p}" for p in _grid_problems(spec) + _variable_problems(spec)]
    return problems


def _grid_problems(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    placed: list[str] = []
    for layout in spec["layouts"]:
        title = layout["spec"].get("display", {}).get("title")
        owner: dict[tuple[int, int], str] = {}
        for item in layout["spec"]["items"]:
            panel = item["content"]["$ref"].removeprefix("#/spec/panels/")
            placed.append(panel)
            if panel not in spec["panels"]:
                problems.append(f"layout {title!r} places {panel!r}, which is not a panel")
            if item["x"] + item["width"] > GRID_COLUMNS:
                problems.append(f"{panel!r} ends past column {GRID_COLUMNS}")
            cells = {
                (x, y)
                for x in range(item["x"], item["x"] + item["width"])
                for y in range(item["y"], item["y"] + item["height"])
            }
            problems += [
                f"{panel!r} overlaps {other!r}" for other in sorted({owner[c] for c in cells & set(owner)})
            ]
            owner.update(dict.fromkeys(cells, panel))
    problems += [f"panel {p!r} is in no layout" for p in sorted(set(spec["panels"]) - set(placed))]
    problems += [
        f"panel {p!r} is placed more than once" for p in sorted({p for p in placed if placed.count(p) > 1})
    ]
    return problems


def _variable_problems(spec: Mapping[str, Any]) -> list[str]:
    names = [v["spec"]["name"] for v in spec.get("variables", [])]
    problems = [f"variable {n!r} is defined twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for where, text, _ in queries(spec):
        for match in _VARIABLE.finditer(text):
            name = match.group(1) or match.group(2)
            if name not in names and name not in BUILTIN_VARIABLES:
                problems.append(f"{where} uses ${name}, which is neither a dashboard nor a built-in variable")
    return problems


# --- queries --------------------------------------------------------------------------------------


def queries(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend format) of every panel query and every variable's series selectors."""
    for panel_id, panel in spec["panels"].items():
        for index, query in enumerate(panel["spec"].get("queries", [])):
            plugin = query["spec"]["plugin"]["spec"]
            yield f"panel {panel_id!r} query {index}", plugin["query"], plugin.get("seriesNameFormat", "")
    for variable in spec.get("variables", []):
        for matcher in variable["spec"]["plugin"]["spec"].get("matchers", []):
            yield f"variable {variable['spec']['name']!r}", matcher, ""


def substituted(query: str) -> str:
    """The query with a value in place of each variable (a duration for the interval built-ins)."""
    return _VARIABLE.sub(lambda m: BUILTIN_VARIABLES.get(m.group(1) or m.group(2), "x"), query)


def _selectors(node: Any) -> list[Any]:
    found: list[Any] = []

    def visit(child: Any) -> bool:
        if isinstance(child, promql_parser.VectorSelector):
            found.append(child)
        return True

    promql_parser.walk(node, visit)
    return found


def _name(selector: Any) -> str | None:
    if selector.name:
        return str(selector.name)
    names = [
        m.value
        for m in selector.matchers.matchers
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
    ]
    return str(names[0]) if names else None


def query_problems(query: str, series: Mapping[str, frozenset[str]], legend: str = "") -> list[str]:
    """What is wrong with one query: PromQL syntax, series not in the table, labels they do not carry."""
    try:
        expression = promql_parser.parse(substituted(query))
    except (ValueError, RuntimeError) as error:
        return [f"not valid PromQL: {error}"]
    problems: list[str] = []
    selected = _selectors(expression)
    for selector in selected:
        name = _name(selector)
        if name is None:
            problems.append(f"{selector} names no metric")
        elif name not in series:
            problems.append(f"selects {name}, which is not a series of the metric table (docs/telemetry.md)")
        else:
            problems += [
                f"matches label {m.name!r}, which {name} does not carry"
                for m in selector.matchers.matchers
                if m.name != "__name__" and m.name not in series[name]
            ]

    def visit(node: Any) -> bool:
        labels: list[str] = []
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels = list(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier and node.modifier.matching:
            labels = list(node.modifier.matching.labels) + list(node.modifier.group_labels or [])
        carried = frozenset().union(*(series.get(_name(s) or "", frozenset()) for s in _selectors(node)))
        problems.extend(
            f"groups or joins on {label!r}, which no series under it carries"
            for label in labels
            if label not in carried
        )
        return True

    promql_parser.walk(expression, visit)
    carried = frozenset().union(*(series.get(_name(s) or "", frozenset()) for s in selected))
    problems += [
        f"legend uses {{{{{label}}}}}, which no series carries"
        for label in _LEGEND_LABEL.findall(legend)
        if label not in carried
    ]
    return problems
