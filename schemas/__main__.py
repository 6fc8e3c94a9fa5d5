"""Regenerate ``schemas/json/*.json`` from the models: ``python -m schemas``."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.models import json_schemas

JSON_DIR = Path(__file__).parent / "json"


def render(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for stem, schema in json_schemas().items():
        (JSON_DIR / f"{stem}.json").write_text(render(schema))
        print(f"wrote schemas/json/{stem}.json")


if __name__ == "__main__":
    main()
