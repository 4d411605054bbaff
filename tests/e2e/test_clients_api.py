"""Subscribers through the REST API (seed 004's /api/v1/clients) and the public subscription URL.

One controller with one running local node. Real traffic through V2Ray is tested in test_v2ray_traffic.py;
here: shapes, rules, bad input, the schedule and the operations log.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.controller_process import V2RAY_ENV, ControllerProcess, running_controller, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    with running_controller(tmp_path_factory.mktemp("clients") / "data", V2RAY_ENV) as c:
        yield c


@pytest.fixture(scope="module")
def node(ctl: ControllerProcess) -> dict:
    return ctl.wait_running(ctl.create_node(name="sub-node")["id"])


def _create(ctl: ControllerProcess, **body) -> dict:
    r = ctl.api.post("/api/v1/clients", json={"days": 30, **body})
    assert r.status_code == 201, r.text
    return r.json()


def _links(config_data: str) -> list[str]:
    return base64.b64decode(config_data).decode().split()


def test_create_get_list_and_seed_004_config(ctl: ControllerProcess, node: dict) -> None:
    alice = _create(ctl, username="alice", data_limit_gb=50)
    assert alice["status"] == "active" and alice["data_limit_bytes"] == 50 * 1024**3
    expires = dt.datetime.fromisoformat(alice["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - dt.datetime.now(dt.timezone.utc)) - dt.timedelta(days=30)) < dt.timedelta(minutes=1)
    assert alice["subscription_url"].endswith("/sub/" + alice["short_uuid"])
    assert ctl.api.get(f"/api/v1/clients/{alice['id']}").json()["username"] == "alice"
    cfg = ctl.api.get(f"/api/v1/clients/{alice['id']}/config").json()
    assert set(cfg) == {"client_id", "short_uuid", "subscription_url", "config_data"}
    assert cfg["client_id"] == alice["id"] and cfg["short_uuid"] == alice["short_uuid"]
    links = _links(cfg["config_data"])
    assert sorted(link.split("://")[0] for link in links) == ["vless", "vmess"]  # one node, two inbounds
    ports = {i["port"] for i in ctl.node(node["id"]).get("v2ray_inbounds") or []} or None
    vmess = json.loads(base64.b64decode(links[[l.startswith("vmess") for l in links].index(True)][8:]))
    assert vmess["add"] == "127.0.0.1" and (ports is None or int(vmess["port"]) in ports)

    listed = ctl.api.get("/api/v1/clients", params={"search": "alic"}).json()
    assert [c["username"] for c in listed["items"]] == ["alice"] and listed["total"] == 1
    assert ctl.api.get("/api/v1/clients", params={"status": "blocked", "search": "alice"}).json()["total"] == 0
    assert ctl.api.get("/api/v1/clients", params={"expired": "false", "search": "alice"}).json()["total"] == 1


def test_bad_input_gets_clear_errors(ctl: ControllerProcess, node: dict) -> None:
    _create(ctl, username="dupe")
    cases = [
        ({"username": "dupe", "days": 1}, 409, "username"),
        ({"username": "DuPe", "days": 1}, 409, "username"),  # unique regardless of case
        ({"username": "huge", "days": 2**64}, 422, "days"),  # beyond 64 bits: a 422, never a 500
        ({"username": "hugelim", "days": 1, "data_limit_gb": 1e308}, 422, "data_limit_gb"),
        ({"username": "nullname", "days": 1, "note": None}, 422, "note"),
        ({"username": None, "days": 1}, 422, "username"),
        ({"username": "manynodes", "days": 1, "node_ids": [str(uuid.uuid4())] * 1001}, 422, "node_ids"),
        ({"username": "a b", "days": 1}, 422, "username"),
        ({"username": "ab", "days": 1}, 422, "username"),
        ({"username": "neg", "days": -1}, 422, "days"),
        ({"username": "zero", "days": 0}, 422, "days"),
        ({"username": "nodays"}, 422, "days"),
        ({"username": "both", "days": 1, "expires_at": "2099-01-01T00:00:00Z"}, 422, "days"),
        ({"username": "naive", "expires_at": "2099-01-01T00:00:00"}, 422, "expires_at"),
        ({"username": "lim", "days": 1, "data_limit_gb": -5}, 422, "data_limit_gb"),
        ({"username": "nodes", "days": 1, "node_ids": ["not-a-uuid"]}, 422, "node_ids"),
        ({"username": "nodes2", "days": 1, "node_ids": [str(uuid.uuid4())]}, 422, "node_ids"),
        ({"username": "reg", "days": 1, "regions": ["mars-1"]}, 422, "regions"),
        ({"username": "extra", "days": 1, "admin": True}, 422, "admin"),
        ({"username": "booldays", "days": True}, 422, "days"),
        ({"username": "strdays", "days": "30"}, 422, "days"),
        ({"username": "strlim", "days": 1, "data_limit_gb": "5"}, 422, "data_limit_gb"),
        ({"username": "nulldays", "days": None, "expires_at": "2099-01-01T00:00:00Z"}, 422, "days"),
        ({"username": "unix", "expires_at": 4102444800}, 422, "expires_at"),
        ({"username": "tinylim", "days": 1, "data_limit_gb": 1e-300}, 422, "data_limit_gb"),
        ({"username": "nul", "days": 1, "note": "a\u0000b"}, 400, "NUL"),
    ]
    for body, status, field in cases:
        r = ctl.api.post("/api/v1/clients", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert field in err["message"] or field in json.dumps(err.get("details", {})), (body, err)
    assert ctl.api.post("/api/v1/clients", content=b"{nope").status_code == 400
    assert ctl.api.post("/api/v1/clients", content=b"[" * 100_000).status_code == 400  # nested too deeply
    assert ctl.api.get("/api/v1/clients", params={"search": "a\x00"}).status_code == 400
    missing = str(uuid.uuid4())
    for method, path, body in [("GET", f"/api/v1/clients/{missing}", None),
                               ("POST", f"/api/v1/clients/{missing}/block", None),
                               ("POST", f"/api/v1/clients/{missing}/extend", {"days": 1}),
                               ("DELETE", f"/api/v1/clients/{missing}", None),
                               ("GET", "/api/v1/clients/12345", None)]:
        r = ctl.api.request(method, path, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "RESOURCE_NOT_FOUND", (path, r.text)
    cid = _create(ctl, username="extendme")["id"]
    for bad in ({"days": -3}, {"days": 0}, {}, {"days": "x"}):
        assert ctl.api.post(f"/api/v1/clients/{cid}/extend", json=bad).status_code == 422
    assert ctl.api.get("/api/v1/clients", params={"status": "gone"}).status_code == 422
    for empty in ("status", "expired", "search"):  # an empty value is not "no filter"
        r = ctl.api.get("/api/v1/clients", params={empty: ""})
        assert r.status_code == 422 and empty in r.json()["error"]["message"], (empty, r.text)
    for size in (0, 501, 2**64):
        assert ctl.api.get("/api/v1/clients", params={"size": size}).status_code == 422
    assert ctl.api.get(f"/api/v1/clients/{cid}/usage", params={"days": 367}).status_code == 422
    assert ctl.api.patch(f"/api/v1/clients/{cid}", json={"username": "dupe"}).status_code == 409
    assert ctl.api.patch(f"/api/v1/clients/{cid}", json={"username": "DUPE"}).status_code == 409
    for required in ("username", "days", "expires_at"):  # may be left out, not nulled (never a NOT NULL error)
        r = ctl.api.patch(f"/api/v1/clients/{cid}", json={required: None})
        assert r.status_code == 422 and r.json()["error"]["details"] == {required: "Value error, cannot be null"}
    renamed = ctl.api.patch(f"/api/v1/clients/{cid}", json={"username": "ExtendMe"})  # its own name, new case
    assert renamed.status_code == 200 and renamed.json()["username"] == "ExtendMe"
    for bad in ({"days": True}, {"days": 1.5}, {"expires_at": "2099-01-01"}):
        r = ctl.api.patch(f"/api/v1/clients/{cid}", json=bad)
        assert r.status_code == 422 and next(iter(bad)) in r.text, (bad, r.text)
    # every RFC 3339 time the document allows is accepted: out of range, it lands on the bound it passed
    for early in ("0001-01-01T00:00:00+01:00", "1960-01-01T00:00:00Z"):
        r = ctl.api.patch(f"/api/v1/clients/{cid}", json={"expires_at": early})
        assert r.status_code == 200 and r.json()["expires_at"] == "1970-01-01T00:00:00Z" and r.json()["expired"]
    for far in ("9999-12-31T00:00:00Z", "9999-12-31T23:00:00-05:00"):
        r = ctl.api.patch(f"/api/v1/clients/{cid}", json={"expires_at": far})
        assert r.status_code == 200 and r.json()["expires_at"] < "2127", r.text  # MAX_DAYS from now
    assert ctl.api.post(f"/api/v1/clients/{cid}/extend", json={"days": 30.0}).status_code == 200  # an integer
    past = ctl.api.post("/api/v1/clients", json={"username": "past", "expires_at": "2001-01-01T00:00:00Z"})
    assert past.status_code == 201 and past.json()["status"] == "expired"  # created expired, as PATCH can
    # the operations log finds a change made through any spelling of the id
    assert ctl.api.post(f"/api/v1/clients/{cid.upper()}/block").status_code == 200
    ops = ctl.api.get("/api/v1/operations", params={"client_id": cid}).json()["items"]
    assert ops[0]["action"] == "POST /api/v1/clients/{id}/block" and ops[0]["client_id"] == cid


def test_block_unblock_extend_and_operations_log(ctl: ControllerProcess, node: dict) -> None:
    bob = _create(ctl, username="bob")
    rev = ctl.node(node["id"])["agent"]["desired_revision"]
    for _ in range(2):  # idempotent
        r = ctl.api.post(f"/api/v1/clients/{bob['id']}/block")
        assert r.status_code == 200 and r.json()["status"] == "blocked"
    assert ctl.node(node["id"])["agent"]["desired_revision"] == rev + 1  # the second block changed nothing
    for _ in range(2):
        assert ctl.api.post(f"/api/v1/clients/{bob['id']}/unblock").json()["status"] == "active"
    before = dt.datetime.fromisoformat(bob["expires_at"].replace("Z", "+00:00"))
    after = ctl.api.post(f"/api/v1/clients/{bob['id']}/extend", json={"days": 10}).json()
    assert dt.datetime.fromisoformat(after["expires_at"].replace("Z", "+00:00")) - before == dt.timedelta(days=10)

    ops = ctl.api.get("/api/v1/operations", params={"client_id": bob["id"]}).json()["items"]
    actions = [o["action"] for o in reversed(ops)]
    assert actions[0] == "POST /api/v1/clients"
    assert actions.count("POST /api/v1/clients/{id}/block") == 2
    assert "POST /api/v1/clients/{id}/extend" in actions
    assert all(o["client_id"] == bob["id"] and o["result"] == "success" for o in ops)
    assert {"id", "client_id", "action", "payload", "result", "error", "created_at"} <= set(ops[0])


def test_import_links_are_the_subscription_pages(ctl: ControllerProcess, node: dict) -> None:
    """GET .../import answers what the subscriber's page offers (the panel shows it): a URL per format, one
    one-tap link per app, the same links the page renders; a user account only for what it owns."""
    sub = _create(ctl, username="importer")
    r = ctl.api.get(f"/api/v1/clients/{sub['id']}/import")
    assert r.status_code == 200, r.text
    body = r.json()
    url = sub["subscription_url"]
    assert body["client_id"] == sub["id"] and body["subscription_url"] == url and body["available"] is True
    assert body["formats"] == [{"name": "base64", "url": url + "?format=base64"},
                               {"name": "sing-box", "url": url + "?format=sing-box-tun"},
                               {"name": "clash", "url": url + "?format=clash"}]
    assert [link["app"] for link in body["import_links"]] == ["v2rayNG", "sing-box", "Clash / mihomo",
                                                               "Shadowrocket", "Hiddify", "Streisand"]
    page = ctl.get(f"/sub/{sub['short_uuid']}", headers={"Accept": "text/html", "User-Agent": "Mozilla/5.0"}).text
    for link in body["import_links"] + body["formats"]:
        assert f'"{html.escape(link["url"])}"' in page, link
    assert ctl.api.get(f"/api/v1/clients/{uuid.uuid4()}/import").status_code == 404


def test_rotate_changes_credentials_and_short_uuid(ctl: ControllerProcess, node: dict) -> None:
    carol = _create(ctl, username="carol")
    old = ctl.api.get(f"/api/v1/clients/{carol['id']}/config").json()
    assert ctl.api.get(f"/sub/{old['short_uuid']}").status_code == 200
    new = ctl.api.post(f"/api/v1/clients/{carol['id']}/config/rotate").json()
    assert new["short_uuid"] != old["short_uuid"] and new["subscription_url"] != old["subscription_url"]
    old_ids = {_uuid_of(link) for link in _links(old["config_data"])}
    new_ids = {_uuid_of(link) for link in _links(new["config_data"])}
    assert len(old_ids) == len(new_ids) == 1 and old_ids != new_ids
    assert ctl.api.get(f"/sub/{old['short_uuid']}").status_code == 404
    assert ctl.api.get(f"/sub/{new['short_uuid']}").status_code == 200


def _uuid_of(link: str) -> str:
    if link.startswith("vmess://"):
        return json.loads(base64.b64decode(link[8:]))["id"]
    return link[len("vless://"):].split("@")[0]


def test_subscription_formats_and_headers(ctl: ControllerProcess, node: dict) -> None:
    dave = _create(ctl, username="dave", data_limit_gb=1)
    url = f"/sub/{dave['short_uuid']}"
    anonymous = {"X-API-Key": ""}  # the subscription URL needs no API key
    r = ctl.api.get(url, headers={**anonymous, "User-Agent": "v2rayNG/1.8.5"})
    assert r.status_code == 200
    assert len(base64.b64decode(r.text).decode().split()) == 2
    info = dict(part.strip().split("=") for part in r.headers["subscription-userinfo"].split(";"))
    assert info["total"] == str(1024**3) and info["upload"] == "0" and info["download"] == "0"
    expires = dt.datetime.fromisoformat(dave["expires_at"].replace("Z", "+00:00"))
    assert int(info["expire"]) == int(expires.timestamp())
    assert int(r.headers["profile-update-interval"]) > 0

    sing = ctl.api.get(url, headers={**anonymous, "User-Agent": "SFA/1.8 (sing-box 1.8)"})
    assert sing.headers["content-type"].startswith("application/json")
    outbound_types = {o["type"] for o in json.loads(sing.text)["outbounds"]}
    assert {"vmess", "vless"} <= outbound_types
    clash = ctl.api.get(url, headers={**anonymous, "User-Agent": "ClashMetaForAndroid/2.10"})
    proxies = yaml.safe_load(clash.text)["proxies"]
    assert sorted(p["type"] for p in proxies) == ["vless", "vmess"]
    assert ctl.api.get(url, params={"format": "clash"}, headers=anonymous).text == clash.text
    assert ctl.api.get(url, params={"format": "bogus"}, headers=anonymous).status_code == 422
    assert ctl.api.get(url, params={"format": ""}, headers=anonymous).status_code == 422
    assert ctl.api.get(url, params={"format": "v2ray"}, headers=anonymous).text == r.text  # an alias
    assert ctl.api.get("/sub/does-not-exist-at-all", headers=anonymous).status_code == 404
    assert ctl.api.get("/sub/%00aaaaaaaaaa", headers=anonymous).status_code in (400, 404)
    assert ctl.api.get("/sub/a.b.c.d.e.f.g", headers=anonymous).status_code == 404
    legacy = ctl.api.get(url, headers={**anonymous, "User-Agent": "ClashforWindows/0.20.39"})
    assert [p["type"] for p in yaml.safe_load(legacy.text)["proxies"]] == ["vmess"]  # the old core has no VLESS


def test_expiry_deactivates_within_seconds_and_is_logged(ctl: ControllerProcess, node: dict) -> None:
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)).isoformat()
    erin = ctl.api.post("/api/v1/clients", json={"username": "erin", "expires_at": soon}).json()
    assert erin["status"] == "active"
    wait_for(lambda: ctl.api.get(f"/api/v1/clients/{erin['id']}").json()["status"] == "expired", 15,
             message="expired by the schedule")
    ops = ctl.api.get("/api/v1/operations", params={"client_id": erin["id"]}).json()["items"]
    auto = [o for o in ops if o["action"] == "deactivate_expired"]
    assert len(auto) == 1 and auto[0]["actor"] == "scheduler" and auto[0]["payload"]["status"] == "expired"
    # unblock does not revive an expired client; extend does
    assert ctl.api.post(f"/api/v1/clients/{erin['id']}/unblock").json()["status"] == "expired"
    assert ctl.api.post(f"/api/v1/clients/{erin['id']}/extend", json={"days": 1}).json()["status"] == "active"
    assert ctl.api.get("/api/v1/clients", params={"expired": "true", "search": "erin"}).json()["total"] == 0


def test_patch_new_plan_and_usage_shape(ctl: ControllerProcess, node: dict) -> None:
    frank = _create(ctl, username="frank", data_limit_gb=2)
    r = ctl.api.patch(f"/api/v1/clients/{frank['id']}", json={"data_limit_gb": 0, "note": "vip"})
    assert r.status_code == 200 and r.json()["data_limit_bytes"] is None and r.json()["note"] == "vip"
    r = ctl.api.patch(f"/api/v1/clients/{frank['id']}", json={"node_ids": [node["id"]]})
    assert r.json()["node_ids"] == [node["id"]]
    assert ctl.api.patch(f"/api/v1/clients/{frank['id']}", json={"days": None}).status_code == 422
    usage = ctl.api.get(f"/api/v1/clients/{frank['id']}/usage").json()
    assert usage["client_id"] == frank["id"] and usage["nodes"] == []
    assert usage["used"]["total_bytes"] == 0
    assert ctl.api.get(f"/api/v1/clients/{frank['id']}/usage", params={"days": 0}).status_code == 422
    reset = ctl.api.post(f"/api/v1/clients/{frank['id']}/usage/reset").json()
    assert reset["usage_reset_at"] is not None


def test_delete_is_irreversible(ctl: ControllerProcess, node: dict) -> None:
    gina = _create(ctl, username="gina")
    assert ctl.api.delete(f"/api/v1/clients/{gina['id']}").status_code == 204
    assert ctl.api.get(f"/api/v1/clients/{gina['id']}").status_code == 404
    assert ctl.api.get(f"/sub/{gina['short_uuid']}").status_code == 404
    assert ctl.api.delete(f"/api/v1/clients/{gina['id']}").status_code == 404
    # the name is free again; the operations log keeps the history
    assert _create(ctl, username="gina")["id"] != gina["id"]
    ops = ctl.api.get("/api/v1/operations", params={"client_id": gina["id"]}).json()["items"]
    assert ops[0]["action"] == "DELETE /api/v1/clients/{id}" and ops[0]["result"] == "fail"  # the second delete


def test_the_node_desired_state_carries_the_active_subscribers(ctl: ControllerProcess, node: dict,
                                                               tmp_path: Path) -> None:
    """What the agent receives: every active subscriber, none of the blocked/expired ones."""
    hank = _create(ctl, username="hank")
    ctl.api.post(f"/api/v1/clients/{hank['id']}/block")
    wait_for(lambda: ctl.node(node["id"])["agent"]["in_sync"], 20, message="agent in sync")
    state = Path(ctl.data_dir, "local-nodes", node["id"], "state", "applied_state.pb")
    from protos import agent_pb2

    applied = agent_pb2.DesiredState.FromString(state.read_bytes())
    emails = {u.email for u in applied.v2ray.users}
    assert hank["id"] not in emails
    active = ctl.api.get("/api/v1/clients", params={"status": "active", "size": 500}).json()["items"]
    assert {c["id"] for c in active} <= emails
    assert {i.protocol for i in applied.v2ray.inbounds} == {"vmess", "vless"}


def test_the_document_describes_every_client_route_and_the_subscription(ctl: ControllerProcess) -> None:
    """/openapi.json is generated from the routes' models: request bodies required, response schemas for
    every documented status, the subscription's media types and headers, the bounds the server enforces."""
    spec = ctl.api.get("/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in spec["paths"].items() for m, op in item.items()
           if p.startswith(("/api/v1/clients", "/sub/"))}
    assert len(ops) == 15, sorted(ops)
    for (method, path), op in ops.items():
        assert op["summary"] and op["tags"], (method, path)
        for status, response in op["responses"].items():
            if status != "204":
                assert response.get("content"), (method, path, status)
        if method in ("POST", "PATCH") and "requestBody" in op:
            assert op["requestBody"]["required"], (method, path)
    assert {"404", "409"} <= set(ops["PATCH", "/api/v1/clients/{id}"]["responses"])
    assert "409" in ops["POST", "/api/v1/clients"]["responses"]
    page = ops["GET", "/api/v1/clients"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["$ref"].endswith("Page_SubscriberOut_")
    client = spec["components"]["schemas"]["SubscriberOut"]["properties"]
    assert {"id", "username", "short_uuid", "subscription_url", "status", "expires_at", "created_at",
            "updated_at"} <= set(client)  # seed 004's fields
    update = spec["components"]["schemas"]["SubscriberUpdate"]["properties"]
    assert update["days"]["maximum"] == 36500 and "anyOf" not in update["username"]  # null is refused
    sub = ops["GET", "/sub/{short_uuid}"]
    assert sub["security"] == []  # public: the short uuid is the secret
    assert set(sub["responses"]["200"]["content"]) == {"text/plain", "application/json", "text/yaml", "text/html"}
    assert "subscription-userinfo" in sub["responses"]["200"]["headers"]
    assert {"404", "503"} <= set(sub["responses"])
