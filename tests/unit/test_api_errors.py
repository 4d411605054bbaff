"""The one error mapping (controller.edge.errors) on a small FastAPI app wired like the controller's."""

from __future__ import annotations

import logging
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from controller.api import IntId, PageQuery
from controller.edge.errors import (domain_error_handler, http_error_handler, internal_error_handler,
                                    request_validation_handler)
from controller.edge.request_id import RequestIdMiddleware
from controller.errors import DomainError, NotFound


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=10)


class Filter(PageQuery):
    status: str | None = Field(default=None, pattern="^(on|off)$")


def make_app() -> FastAPI:
    app = FastAPI(middleware=[Middleware(RequestIdMiddleware)], exception_handlers={
        DomainError: domain_error_handler, HTTPException: http_error_handler,
        RequestValidationError: request_validation_handler, Exception: internal_error_handler})

    @app.post("/api/v1/things")
    async def create(body: Body) -> dict:
        return body.model_dump()

    @app.get("/api/v1/things/{id}")
    async def get(id: IntId) -> dict:
        if id != 1:
            raise NotFound(f"thing not found: {id}")
        return {"id": id}

    @app.get("/api/v1/things")
    async def list_(q: Annotated[Filter, Query()]) -> dict:
        return q.model_dump()

    @app.get("/api/v1/boom")
    async def boom() -> dict:
        raise RuntimeError("boom")

    @app.post("/api/v2ray/things")
    async def compat(body: Body) -> dict:
        return {}

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_body_errors_name_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/things", json={"name": "", "count": 99})
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "VALIDATION_ERROR"
    assert set(err["details"]) == {"name", "count"} and err["message"].startswith("invalid field 'name'")
    assert err["request_id"] == r.headers["x-request-id"]
    r = await client.post("/api/v1/things", json={"name": "a", "count": 1, "extra": 1})
    assert r.status_code == 422 and "extra" in r.json()["error"]["details"]


@pytest.mark.parametrize("content,message", [
    (b"", "request body is required"), (b"{not json", "not valid JSON"), (b"[1, 2]", "must be a JSON object")])
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, content: bytes, message: str) -> None:
    r = await client.post("/api/v1/things", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("raw", ["%C2%B9", "%D9%A1", "abc", "0", "99999999999999999999999", "1_0", "+1", "%201", "1.0",
                                 "9223372036854775808"])
async def test_int_ids_are_ascii_and_bounded(client: httpx.AsyncClient, raw: str) -> None:
    r = await client.get(f"/api/v1/things/{raw}")
    assert r.status_code == 422 and "id" in r.json()["error"]["details"], r.text


async def test_empty_and_bad_query_values_are_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/things?status=on")).status_code == 200
    for query in ("status=", "size=0", "size=", "page=x"):
        r = await client.get(f"/api/v1/things?{query}")
        assert r.status_code == 422, query
        assert r.json()["error"]["message"].startswith("query parameter")


async def test_405_keeps_allow(client: httpx.AsyncClient) -> None:
    r = await client.delete("/api/v1/things")
    assert r.status_code == 405 and {"GET", "POST"} <= set(r.headers["allow"].replace(" ", "").split(","))
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_500_carries_its_request_id_in_header_and_log(client: httpx.AsyncClient,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="vpnfleet.http"):
        r = await client.get("/api/v1/boom", headers={"X-Request-ID": "trace-42"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "trace-42"
    assert r.json()["error"]["request_id"] == "trace-42"
    assert any("trace-42" in rec.getMessage() for rec in caplog.records)


async def test_compat_api_keeps_its_shape(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v2ray/things", json={"name": ""})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


async def test_a_body_not_labelled_json_says_how_to_send_it(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/things", content=b'{"name": "a", "count": 1}',
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]["message"]
