"""``python -m controller.openapi_export FILE``: write the API's OpenAPI document, the one /openapi.json serves.

The panel's typed API client (controller/panel/src/api/schema.d.ts) is generated from this file by
openapi-typescript (`make panel`), so the panel cannot call a route or send a field the API does not declare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def openapi_document() -> dict[str, Any]:
    """The document of an app built to be read, never started (as controller.access_reference does)."""
    from controller.app import app_to_read
    from controller.routes.docs import build_openapi

    with app_to_read() as app:
        return build_openapi(app)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m controller.openapi_export FILE", file=sys.stderr)
        return 2
    Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(args[0]).write_text(json.dumps(openapi_document(), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
