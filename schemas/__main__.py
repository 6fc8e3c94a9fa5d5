"""Regenerate ``schemas/json/*.json`` and ``schemas/asyncapi.json`` from the models: ``python -m schemas``."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.asyncapi import asyncapi_document
from schemas.models import json_schemas

SCHEMAS_DIR = Path(__file__).parent
JSON_DIR = SCHEMAS_DIR / "json"
ASYNCAPI_FILE = SCHEMAS_DIR / "asyncapi.json"


def render(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render_asyncapi(document: dict[str, object]) -> str:
    """In the order it was built (asyncapi, info, servers, channels, operations, components)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for stem, schema in json_schemas().items():
        (JSON_DIR / f"{stem}.json").write_text(render(schema))
        print(f"wrote schemas/json/{stem}.json")
    ASYNCAPI_FILE.write_text(render_asyncapi(asyncapi_document()))
    print(f"wrote schemas/{ASYNCAPI_FILE.name}")


if __name__ == "__main__":
    main()
