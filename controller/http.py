"""Parsing helpers shared by the routes (bodies, path ids, query values, pages) and ``json``.

The middleware and the error mapping live in ``controller.edge``.
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import re
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from controller.edge.guards import has_nul
from controller.errors import BadRequest, NotFound, ValidationFailed


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


# -- parsing ----------------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M], allow_empty: bool = False) -> M:
    """Parse and validate a JSON body; errors name the field."""
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            raw = b"{}"
        else:
            raise BadRequest("request body is required (JSON)")
    try:
        data = jsonlib.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    if has_nul(data):
        raise BadRequest("request body holds a NUL character (\\u0000), which no field accepts")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
        first = next(iter(details.items()))
        raise ValidationFailed(f"invalid field '{first[0]}': {first[1]}", details) from None


def path_uuid(request: Request, name: str, not_found: str) -> str:
    """A UUID path parameter, normalised; anything else is a 404 with ``not_found`` + the raw value."""
    raw = request.path_params[name]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"{not_found}{raw}") from None


def path_int(request: Request, name: str, not_found: str) -> int:
    """A numeric id path parameter; anything else is a 404 with ``not_found`` + the raw value."""
    raw = request.path_params[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"{not_found}{raw}")
    return int(raw)


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter '{name}' must be an integer", {name: "not an integer"}) from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"query parameter '{name}' must be between {lo} and {hi}", {name: "out of range"})
    return value


def query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValidationFailed(f"query parameter '{name}' must be true or false", {name: "not a boolean"})


def query_time(request: Request, name: str) -> dt.datetime | None:
    """ISO 8601 (Z or offset) or unix seconds."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            return dt.datetime.fromtimestamp(float(raw), dt.timezone.utc)
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed(f"query parameter '{name}' must be an ISO 8601 time or unix seconds",
                               {name: "bad time"}) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def page_params(request: Request) -> tuple[int, int]:
    return query_int(request, "page", 1, 1, 1_000_000), query_int(request, "size", 50, 1, 500)


def paginated(items: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    return {"items": items, "total": total, "page": page, "size": size,
            "pages": (total + size - 1) // size if size else 0}
