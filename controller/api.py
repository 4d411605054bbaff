"""What every route module builds on: the controller dependency, the error format, pages, bounded ids.

A route module declares ``router = APIRouter()`` and typed handlers::

    @router.get("/api/v1/things/{id}", response_model=ThingOut, responses=errors(404), tags=["things"])
    async def get_thing(ctl: Ctl, id: IntId) -> dict[str, Any]:
        return thing_to_dict(await ctl.things.get(id))

Everything a handler takes (path, query, body) and returns is a declared pydantic model or an annotated type,
so ``/openapi.json`` is generated from them (``controller.routes.docs``). Request validation errors keep the
API's ``{"error": {...}}`` format (``controller.edge.errors``); services raise ``controller.errors``.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Depends, Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.requests import Request
from starlette.routing import Route

from controller.errors import NotFound

if TYPE_CHECKING:
    from controller.app import Controller


def _controller(request: Request) -> "Controller":
    return request.app.state.ctl


#: the controller (its services) in a handler: ``async def h(ctl: Ctl)``
Ctl = Annotated["Controller", Depends(_controller)]

#: the largest integer id: a 64-bit signed column; beyond it a clear 422, never a database error
MAX_ID = 2**63 - 1


def _ascii_digits(value: Any) -> Any:
    """A numeric id as text is ASCII digits only: int() would also take "١" (Arabic-Indic one), "1_0" (ten),
    " 1" and "+1", each silently naming another resource."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a positive integer in ASCII digits")
    return value


_DIGITS = re.compile(r"[0-9]{1,19}")
#: a numeric id in a path
IntId = Annotated[int, Path(ge=1, le=MAX_ID, description="numeric id"), BeforeValidator(_ascii_digits)]
#: a numeric id in a body
BodyIntId = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]


def uuid_or_404(raw: str, not_found: str) -> str:
    """A UUID path value, normalised (lower case, hyphens); anything else is a 404 naming the value."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"{not_found}{raw}") from None


def uuid_path(description: str) -> Any:
    """A UUID path parameter: documented as one; a malformed one is the route's 404 (``uuid_or_404``)."""
    return Path(description=description, max_length=45)


# -- the error format ----------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. RESOURCE_NOT_FOUND, VALIDATION_ERROR")
    message: str
    request_id: str = Field(description="also in the X-Request-ID header and the controller's log line")
    details: dict[str, Any] | None = Field(default=None, description="per field: what is wrong with it")


class ErrorResponse(BaseModel):
    """Every /api/v1 error."""

    error: ErrorDetail


class CompatErrorResponse(BaseModel):
    """Seed 000's /api/v2ray errors: one message."""

    error: str


#: what each status means on this API (the descriptions of the documented responses)
STATUS_DESCRIPTIONS = {
    400: "malformed request: not JSON, not an object, NUL characters, nested too deeply",
    401: "no credential, or an invalid or expired one (INVALID_CREDENTIALS, TOKEN_EXPIRED, TOKEN_INVALID)",
    403: "the caller lacks the permission the operation needs (INSUFFICIENT_PERMISSIONS, details.required), or "
         "its key may not be used from this address or on this path",
    404: "no such resource",
    409: "conflicts with the resource's state or another resource",
    413: "request body too large",
    422: "a field is invalid (named in error.details)",
    429: "over a rate limit (RATE_LIMIT_EXCEEDED) or too many failed authentications from this address "
         "(see Retry-After)",
    503: "a node needed for this is not connected",
    504: "the node did not answer in time",
}


def errors(*statuses: int, compat: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it can return, beyond those every route can
    (``controller.routes.docs`` adds 400/401/403/413/422/429 where they apply)."""
    model = CompatErrorResponse if compat else ErrorResponse
    return {s: {"model": model, "description": STATUS_DESCRIPTIONS[s]} for s in statuses}


# -- pages -------------------------------------------------------------------------------------------------

class PageQuery(BaseModel):
    """``?page=&size=`` of a list; extend it with a route's filters."""

    page: int = Field(default=1, ge=1, le=1_000_000)
    size: int = Field(default=50, ge=1, le=500)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(extra="forbid")
    items: list[T]
    total: int
    page: int
    size: int
    pages: int


def page_of(items: list[Any], total: int, query: PageQuery) -> dict[str, Any]:
    """The JSON of a ``Page``."""
    return {"items": items, "total": total, "page": query.page, "size": query.size,
            "pages": (total + query.size - 1) // query.size}


# -- the app's routes ----------------------------------------------------------------------------------------

def http_routes(routes: list[Any]) -> list[Route]:
    """Every HTTP route under ``routes`` (an app's or router's), flattened: FastAPI keeps an included router as
    one wrapper whose ``original_router`` holds its routes. The route modules include no prefix, so each route's
    path is its full path."""
    out: list[Route] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            assert not prefix, "route modules are included without a prefix"
            out += http_routes(inner.routes)
        elif isinstance(route, Route):
            out.append(route)
    return out


#: a query model in a handler: ``q: Annotated[ClientQuery, Query()]``
__all__ = ["http_routes", "Ctl", "IntId", "BodyIntId", "MAX_ID", "uuid_or_404", "uuid_path", "ErrorResponse",
           "CompatErrorResponse", "errors", "PageQuery", "Page", "page_of", "Query"]
