"""The REST surface: seed 000 conformance, auth, bad input (never a 500), OpenAPI coverage."""

from __future__ import annotations

import concurrent.futures
import re
import sqlite3

import httpx
import pytest

from tests.controller_process import ControllerProcess, wait_for

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SEED000_KEYS = {"id", "uuid", "ec2_id", "ec2_region", "ec2_region_name", "ec2_public_ip", "status",
                "created_at", "updated_at"}


@pytest.fixture(scope="module")
def ctl(shared_controller: ControllerProcess) -> ControllerProcess:
    return shared_controller


def test_admin_key_is_stored_hashed_and_file_is_private(ctl: ControllerProcess) -> None:
    key_file = ctl.data_dir / "admin.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = key_file.read_text().strip()
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        hashes = [h for (h,) in db.execute("select key_hash from api_keys")]
    assert hashes and key not in hashes and all(len(h) == 64 for h in hashes)
    wait_for(lambda: "Admin key:" in ctl.log(), 10, message="start banner")
    # the banner shows the key only to a terminal: the controller's output here is a file (like journald)
    assert key not in ctl.log() and f"in {key_file}" in ctl.log()


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic abc"}])
def test_every_endpoint_needs_a_key(ctl: ControllerProcess, headers: dict) -> None:
    for method, path in [("GET", "/api/v1/nodes"), ("POST", "/api/v1/nodes"), ("GET", "/api/v2ray/instances"),
                         ("GET", "/api/v1/events"), ("GET", "/api/v1/operations"), ("GET", "/api/v1/regions")]:
        r = httpx.request(method, ctl.url + path, headers=headers, timeout=10, verify=ctl.verify())
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] if path.startswith("/api/v2ray") else r.json()["error"]["code"] == "INVALID_CREDENTIALS"


def test_public_endpoints_and_bearer(ctl: ControllerProcess) -> None:
    assert ctl.get("/api/v1/health").json()["status"] == "ok"
    assert ctl.get("/openapi.json").status_code == 200
    docs = ctl.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert ctl.get("/docs/static/swagger-ui-bundle.js").status_code == 200
    key = (ctl.data_dir / "admin.key").read_text().strip()
    assert ctl.get("/api/v1/version", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_openapi_covers_every_route(ctl: ControllerProcess) -> None:
    """Every route of the app is in the document, each with a schema for every response it declares."""
    spec = ctl.api.get("/openapi.json").json()
    from controller.api import http_routes
    from controller.app import create_app
    from controller.settings import Settings

    app = create_app(Settings(data_dir=ctl.data_dir / "unused"))
    routes = [r for r in http_routes(app.routes) if r.include_in_schema]
    assert len(routes) > 50
    for route in routes:
        for method in route.methods - {"HEAD"}:
            op = spec["paths"].get(route.path, {}).get(method.lower())
            assert op is not None, f"{method} {route.path} missing"
            for status, response in op["responses"].items():
                assert "content" in response or status == "204", f"{method} {route.path} {status}: no schema"
    assert "NodeCreate" in spec["components"]["schemas"]


def test_seed000_regions_and_instance_shapes(ctl: ControllerProcess) -> None:
    api = ctl.api
    assert api.get("/api/v2ray/regions").json() == [{"region": "local", "name": "Local"}]
    r = api.post("/api/v2ray/instances", json={"region": "local"})
    assert r.status_code == 200 and set(r.json()) == {"uuid", "status"} and UUID_RE.match(r.json()["uuid"])
    uuid = r.json()["uuid"]
    # the region now has an active instance: the same uuid comes back
    again = api.post("/api/v2ray/instances", json={"region": "local"})
    assert again.status_code == 200 and again.json()["uuid"] == uuid
    listed = api.get("/api/v2ray/instances").json()
    assert isinstance(listed, list) and set(listed[0]) == SEED000_KEYS
    one = api.get(f"/api/v2ray/instances/{uuid}").json()
    assert set(one) == SEED000_KEYS and isinstance(one["id"], int)
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", one["created_at"])
    ctl.wait_running(uuid)
    assert api.get(f"/api/v2ray/instances/{uuid}").json()["status"] == "running"
    r = api.delete(f"/api/v2ray/instances/{uuid}")
    assert r.status_code == 200 and r.json() == {"status": "deleting"}
    wait_for(lambda: ctl.node(uuid)["status"] == "deleted", 20, message="deleted")
    assert api.get(f"/api/v2ray/instances/{uuid}").status_code == 404
    assert uuid not in [i["uuid"] for i in api.get("/api/v2ray/instances").json()]


def test_seed000_errors(ctl: ControllerProcess) -> None:
    api = ctl.api
    r = api.get("/api/v2ray/instances/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json()["error"].startswith("instance not found: ")
    assert api.get("/api/v2ray/instances/not-a-uuid").status_code == 404
    assert api.delete("/api/v2ray/instances/00000000-0000-0000-0000-000000000000").json()["error"].startswith(
        "instance not found")
    for body in ({}, {"region": ""}, {"region": 5}, {"region": "mars-1"}):
        r = api.post("/api/v2ray/instances", json=body)
        assert r.status_code == 400 and isinstance(r.json()["error"], str), body
    r = api.post("/api/v2ray/instances", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_concurrent_seed000_creates_make_one_node(ctl: ControllerProcess) -> None:
    api = ctl.api
    # free the region first (an earlier test may have left an active instance)
    for inst in api.get("/api/v2ray/instances").json():
        if inst["status"] in ("pending", "creating", "running"):
            api.delete(f"/api/v2ray/instances/{inst['uuid']}")
    key = (ctl.data_dir / "admin.key").read_text().strip()

    def post(_: int) -> str:
        return httpx.post(ctl.url + "/api/v2ray/instances", json={"region": "local"},
                          headers={"X-API-Key": key}, timeout=30, verify=ctl.verify()).json()["uuid"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        uuids = set(pool.map(post, range(8)))
    assert len(uuids) == 1
    active = [i for i in api.get("/api/v2ray/instances").json() if i["status"] in ("pending", "creating", "running")]
    assert [i["uuid"] for i in active] == list(uuids)


@pytest.mark.parametrize("method,path,body,status,code,field", [
    ("POST", "/api/v1/nodes", {"region": "mars-1"}, 422, "VALIDATION_ERROR", "region"),
    ("POST", "/api/v1/nodes", {}, 422, "VALIDATION_ERROR", "region"),
    ("POST", "/api/v1/nodes", {"region": "local", "name": "bad name!"}, 422, "VALIDATION_ERROR", "name"),
    ("POST", "/api/v1/nodes", {"region": "local", "color": "red"}, 422, "VALIDATION_ERROR", "color"),
    ("POST", "/api/v1/nodes", [1, 2], 400, "BAD_REQUEST", None),
    ("POST", "/api/v1/nodes", {"region": "local", "core": "sing-box"}, 422, "VALIDATION_ERROR", "core"),
    ("POST", "/api/v1/nodes", {"region": "local", "core": "v2ray", "reality": {"dest": "www.microsoft.com:443"}},
     422, "VALIDATION_ERROR", "reality"),  # V2Ray has no REALITY
    ("POST", "/api/v1/nodes", {"region": "local", "reality": {"dest": "www.microsoft.com"}}, 422,
     "VALIDATION_ERROR", "reality.dest"),
    ("POST", "/api/v1/nodes", {"region": "local", "reality": {"dest": "www.google.com:443"}}, 422,
     "VALIDATION_ERROR", "reality.dest"),  # does not serve the server names
    ("POST", "/api/v1/nodes", {"region": "local", "reality": {"short_ids": ["not-hex"]}}, 422, "VALIDATION_ERROR",
     "reality.short_ids"),
    ("POST", "/api/v1/nodes", {"region": "local", "reality": {"private_key": "A" * 43}}, 422, "VALIDATION_ERROR",
     "reality.private_key"),
    ("POST", "/api/v1/nodes", {"region": "local", "v2ray_inbounds": [{"tag": "vless", "protocol": "vless",
                                                                      "port": 443}]},
     422, "VALIDATION_ERROR", "v2ray_inbounds"),  # VLESS without security: the inbounds follow the core
    ("GET", "/api/v1/nodes?status=sleeping", None, 422, "VALIDATION_ERROR", "status"),
    ("GET", "/api/v1/nodes?page=0", None, 422, "VALIDATION_ERROR", "page"),
    ("GET", "/api/v1/nodes?size=abc", None, 422, "VALIDATION_ERROR", "size"),
    ("GET", "/api/v1/nodes?online=maybe", None, 422, "VALIDATION_ERROR", "online"),
    ("GET", "/api/v1/nodes/not-a-uuid", None, 404, "RESOURCE_NOT_FOUND", None),
    ("GET", "/api/v1/nodes/00000000-0000-0000-0000-000000000000", None, 404, "RESOURCE_NOT_FOUND", None),
    ("DELETE", "/api/v1/nodes/00000000-0000-0000-0000-000000000000", None, 404, "RESOURCE_NOT_FOUND", None),
    ("POST", "/api/v1/nodes/00000000-0000-0000-0000-000000000000/start", None, 404, "RESOURCE_NOT_FOUND", None),
    ("GET", "/api/v1/nodes/00000000-0000-0000-0000-000000000000/logs", None, 404, "RESOURCE_NOT_FOUND", None),
    ("PUT", "/api/v1/fleet/agent-settings", {"metrics_interval_seconds": 0}, 422, "VALIDATION_ERROR",
     "metrics_interval_seconds"),
    ("PUT", "/api/v1/fleet/agent-settings", {"log_level": "loud"}, 422, "VALIDATION_ERROR", "log_level"),
    ("GET", "/api/v1/nowhere", None, 404, "RESOURCE_NOT_FOUND", None),
    ("PUT", "/api/v1/nodes", {}, 405, "METHOD_NOT_ALLOWED", None),
])
def test_bad_requests_get_clear_errors(ctl: ControllerProcess, method, path, body, status, code, field) -> None:  # noqa: ANN001
    r = ctl.api.request(method, path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"] == r.headers["x-request-id"]
    if field:
        assert field in err.get("details", {}), err


def test_node_core_reality_patch_and_no_private_key_anywhere(ctl: ControllerProcess) -> None:
    api = ctl.api
    node = ctl.create_node(name="reality-node")
    nid = node["id"]
    assert node["core"] == "xray"
    assert [i["profile"] for i in node["v2ray_inbounds"]] == ["vmess", "vless-reality-vision"]
    assert len(node["reality"]["public_key"]) == 43 and len(node["reality"]["short_ids"]) == 1
    for body, field in (({"core": "sing-box"}, "core"),
                        ({"core": "v2ray", "reality": {"short_ids": ["abcd"]}}, "reality"),
                        ({"reality": {"short_ids": ["zz"]}}, "reality.short_ids"),
                        ({"reality": {"dest": "no-port.example.com"}}, "reality.dest"),
                        ({"reality": {"private_key": "A" * 43}}, "reality.private_key"),
                        ({"v2ray_inbounds": [{"protocol": "vless", "port": 443}]}, "v2ray_inbounds")):
        r = api.patch(f"/api/v1/nodes/{nid}", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["error"]["details"], (body, r.text)
    before = api.get(f"/api/v1/nodes/{nid}").json()["agent"]["desired_revision"]
    assert before == node["agent"]["desired_revision"]  # refused PATCHes changed nothing
    r = api.patch(f"/api/v1/nodes/{nid}", json={"reality": {"dest": "www.apple.com:443",
                                                              "server_names": ["www.apple.com"],
                                                              "short_ids": ["abcd"]}})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["reality"] == {"public_key": node["reality"]["public_key"], "short_ids": ["abcd"],
                                  "dest": "www.apple.com:443", "server_names": ["www.apple.com"]}
    assert patched["agent"]["desired_revision"] == before + 1
    r = api.patch(f"/api/v1/nodes/{nid}", json={"core": "v2ray"})
    assert r.status_code == 200 and r.json()["core"] == "v2ray"
    assert [i["profile"] for i in r.json()["v2ray_inbounds"]] == ["vmess"]
    assert r.json()["agent"]["desired_revision"] == before + 2  # one revision: one restart on the node
    # The private key exists (in the database) and is in no answer of the API: node JSON, lists, the audit log.
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        (private_key,) = db.execute("select reality_private_key from nodes where uuid = ?", (nid,)).fetchone()
    assert len(private_key) == 43
    ops = api.get("/api/v1/operations", params={"target_id": nid, "size": 100})
    assert ops.status_code == 200
    texts = [api.get(f"/api/v1/nodes/{nid}").text, api.get("/api/v1/nodes", params={"size": 500}).text, ops.text]
    for text in texts:
        assert private_key not in text
    payloads = [op["payload"] for op in ops.json()["items"]]
    assert {"reality": {"dest": "www.apple.com:443", "server_names": ["www.apple.com"], "short_ids": ["abcd"]}} \
        in payloads
    # a private key someone tried to send was refused and is not kept in the audit log either
    assert {"reality": {"private_key": "***"}} in payloads and "A" * 43 not in ops.text


def test_node_queries_validate_and_filter(ctl: ControllerProcess) -> None:
    api = ctl.api
    nid = ctl.create_node(name="query-me")["id"]
    ctl.wait_running(nid)
    assert api.get(f"/api/v1/nodes/{nid}/tcping").status_code == 422
    assert api.get(f"/api/v1/nodes/{nid}/tcping", params={"target": "host:99999"}).status_code == 422
    assert api.get(f"/api/v1/nodes/{nid}/tcping", params={"target": "a b:80"}).status_code == 422
    assert api.get(f"/api/v1/nodes/{nid}/metrics", params={"interval": 61}).status_code == 422
    assert api.get(f"/api/v1/nodes/{nid}/metrics", params={"start_time": "yesterday"}).status_code == 422
    r = api.get(f"/api/v1/nodes/{nid}/metrics", params={"start_time": "2026-01-02T00:00:00Z",
                                                       "end_time": "2026-01-01T00:00:00Z"})
    assert r.status_code == 422 and "end_time" in r.json()["error"]["details"]
    assert api.get(f"/api/v1/nodes/{nid}/logs", params={"level": "loud"}).status_code == 422
    found = api.get("/api/v1/nodes", params={"search": "query-me"}).json()
    assert [n["id"] for n in found["items"]] == [nid] and found["total"] == 1
    assert api.get("/api/v1/nodes", params={"region": "elsewhere"}).json()["total"] == 0
    page = api.get("/api/v1/nodes", params={"size": 1}).json()
    assert len(page["items"]) == 1 and page["size"] == 1 and page["pages"] == page["total"]


def test_tcping_to_an_offline_node_is_503(ctl: ControllerProcess) -> None:
    api = ctl.api
    nid = ctl.create_node()["id"]
    ctl.wait_running(nid)
    api.post(f"/api/v1/nodes/{nid}/stop")
    wait_for(lambda: ctl.node(nid)["status"] == "stopped", 20, message="stopped")
    r = api.get(f"/api/v1/nodes/{nid}/tcping", params={"target": "127.0.0.1:1"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


# -- the typed layer (issue 10, item 6) ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def typed_node(ctl: ControllerProcess) -> str:
    """One node for the tests below (nodes.creations_per_minute bounds how many a module may create)."""
    return ctl.create_node(name="typed-layer")["id"]

@pytest.mark.parametrize("params,status,field", [
    # year 1 was a 500 (the default start left the calendar): times are clamped to 1970..9999 now
    ({"end_time": "0001-01-01T00:00:00Z"}, 200, None),
    ({"end_time": "0001-01-01T00:00:00+05:00"}, 200, None),
    ({"end_time": "9999-12-31T23:59:59-05:00", "start_time": "9999-12-31T00:00:00Z"}, 422, "end_time"),
    ({"start_time": "0001-01-01T00:00:00Z", "end_time": "0001-01-01T02:00:00Z"}, 422, "end_time"),
    ({"start_time": "0001-01-01T00:00:00Z"}, 422, "interval"),  # 1970 to now: too many points, not a 500
    ({"end_time": "999999999999"}, 200, None),  # unix seconds beyond the calendar
    ({"end_time": "99999999999999"}, 422, "end_time"),
    ({"end_time": ""}, 422, "end_time"),
    ({"interval": "60.5"}, 422, "interval"),
    ({"interval": "99999999999999999999999"}, 422, "interval"),
])
def test_metrics_times_never_500(ctl: ControllerProcess, typed_node: str, params: dict, status: int,
                                 field: str | None) -> None:
    nid = typed_node
    r = ctl.api.get(f"/api/v1/nodes/{nid}/metrics", params=params)
    assert r.status_code == status, r.text
    if field:
        assert field in r.json()["error"]["details"], r.text
    else:
        body = r.json()
        assert body["history"] == [] and body["end_time"] in ("1970-01-01T00:00:00Z", "9999-01-01T00:00:00Z")
    ok = ctl.api.get(f"/api/v1/nodes/{nid}/metrics", params={"end_time": "1970-01-01T00:30:00Z"})
    assert ok.status_code == 200 and ok.json()["start_time"] == "1969-12-31T23:30:00Z", ok.text


@pytest.mark.parametrize("path,params,field", [
    ("/api/v1/nodes", {"status": ""}, "status"),  # an empty value is no longer "no filter"
    ("/api/v1/nodes", {"region": ""}, "region"),
    ("/api/v1/nodes", {"search": ""}, "search"),
    ("/api/v1/nodes", {"online": ""}, "online"),
    ("/api/v1/nodes", {"include_deleted": "perhaps"}, "include_deleted"),
    ("/api/v1/nodes", {"size": "501"}, "size"),
    ("/api/v1/nodes", {"page": "99999999999999999999999"}, "page"),
    ("/api/v1/events", {"node_id": ""}, "node_id"),
    ("/api/v1/events", {"logs": "sometimes"}, "logs"),
])
def test_empty_or_bad_query_values_are_422(ctl: ControllerProcess, path: str, params: dict, field: str) -> None:
    r = ctl.api.get(path, params=params)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR" and field in err["details"] and field in err["message"]


def test_node_bodies_and_paths_are_typed(ctl: ControllerProcess, typed_node: str) -> None:
    api = ctl.api
    nid = typed_node
    for body, field in (({"agent_settings": {"log_level": None}}, "agent_settings.log_level"),
                        ({"agent_settings": {"colour": "red"}}, "agent_settings.colour"),
                        ({"agent_settings": {"metrics_interval_seconds": 2**64}}, "agent_settings.metrics_interval_seconds"),
                        ({"agent_settings": {"metrics_interval_seconds": "5"}}, "agent_settings.metrics_interval_seconds"),
                        ({"agent_settings": {"metrics_interval_seconds": 5.5}}, "agent_settings.metrics_interval_seconds"),
                        ({"name": "x" * 129}, "name"),
                        ({"reality": {"short_ids": []}}, "reality.short_ids")):
        r = api.patch(f"/api/v1/nodes/{nid}", json=body)
        assert r.status_code == 422 and field in r.json()["error"]["details"], (body, r.text)
    r = api.patch(f"/api/v1/nodes/{nid}", json={"agent_settings": {"log_level": "debug",
                                                                   "metrics_interval_seconds": 7.0},
                                                "name": "typed"})  # 7.0 is a JSON integer
    assert r.status_code == 200 and r.json()["agent"]["settings"] == {"log_level": "debug",
                                                                     "metrics_interval_seconds": 7}
    assert r.json()["name"] == "typed"
    # an id in capitals or with braces names the same node; anything else is the route's 404
    assert api.get(f"/api/v1/nodes/{nid.upper()}").json()["id"] == nid
    for bad in ("1", "%C2%B9", "x" * 46):
        r = api.get(f"/api/v1/nodes/{bad}")
        assert r.status_code in (404, 422) and r.status_code != 500, (bad, r.text)
    for target in ("127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:\u0661", "", "a" * 254 + ":80"):
        r = api.get(f"/api/v1/nodes/{nid}/tcping", params={"target": target})
        assert r.status_code == 422 and "target" in r.json()["error"]["details"], (target, r.text)


def test_node_logs_json_shape_and_level_any_case(ctl: ControllerProcess, typed_node: str) -> None:
    nid = typed_node
    r = ctl.api.get(f"/api/v1/nodes/{nid}/logs", params={"level": "INFO", "limit": 5})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"node_id", "lines", "dropped_by_agent"} and r.json()["node_id"] == nid
    assert ctl.api.get(f"/api/v1/nodes/{nid}/logs", params={"since": "0001-01-01T00:00:00Z"}).status_code == 200
    for params in ({"limit": 0}, {"limit": 5001}, {"since": "yesterday"}, {"since": ""}, {"follow": "later"}):
        r = ctl.api.get(f"/api/v1/nodes/{nid}/logs", params=params)
        assert r.status_code == 422 and set(params) <= set(r.json()["error"]["details"]), (params, r.text)


def test_seed000_body_errors_stay_400_in_its_shape(ctl: ControllerProcess) -> None:
    for body in ({"region": None}, {"region": ["local"]}, {"region": "x" * 65}, "local", None):
        r = ctl.api.post("/api/v2ray/instances", json=body)
        assert r.status_code == 400 and isinstance(r.json()["error"], str), (body, r.text)
    r = ctl.api.get("/api/v2ray/instances/not-a-uuid")
    assert r.status_code == 404 and r.json() == {"error": "instance not found: not-a-uuid"}


def test_openapi_documents_nodes_streams_and_seed000(ctl: ControllerProcess) -> None:
    spec = ctl.api.get("/openapi.json").json()
    paths = spec["paths"]
    assert "text/event-stream" in paths["/api/v1/events"]["get"]["responses"]["200"]["content"]
    logs = paths["/api/v1/nodes/{id}/logs"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(logs)
    create = paths["/api/v1/nodes"]["post"]
    assert create["requestBody"]["required"] and {"202", "409", "422", "429"} <= set(create["responses"])
    assert "Retry-After" in create["responses"]["429"]["headers"]
    compat = paths["/api/v2ray/instances"]["post"]["responses"]
    assert compat["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/CompatErrorResponse")
    params = {p["name"]: p for p in paths["/api/v1/nodes/{id}/metrics"]["get"]["parameters"]}
    assert params["interval"]["schema"]["multipleOf"] == 60
    for name in ("NodeOut", "NodeMetrics", "NodeLogs", "Instance", "InstanceCreated"):
        assert name in spec["components"]["schemas"], name


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/api/v1/clients", {"GET", "POST"}),
    ("OPTIONS", "/api/v1/nodes/00000000-0000-0000-0000-000000000000", {"GET", "PATCH", "DELETE"}),
    ("TRACE", "/api/v1/wireguard/servers", {"GET", "POST"}),
])
def test_405_allow_names_every_method_of_the_path(ctl: ControllerProcess, method: str, path: str,
                                                 allowed: set[str]) -> None:
    r = ctl.api.request(method, path)
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) == allowed, r.headers
