"""Real data for the schemathesis run: a running local node (real agent), subscribers, WireGuard, IPv6.

``seed`` builds it through the public API and returns the ids. This module is also the run's hooks module
(``SCHEMATHESIS_HOOKS=tests.e2e.schemathesis_data``): with the ids in ``$VPNFLEET_SCHEMATHESIS_DATA`` it
registers hooks that point a share of the generated cases at the real resources (so they are read and
changed, not only 404s) and keep DELETE off them (so the later operations still find them).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import schemathesis
from hypothesis import strategies as st

from tests.controller_process import ControllerProcess

#: the environment variable carrying LiveData (JSON) into the schemathesis process
DATA_ENV = "VPNFLEET_SCHEMATHESIS_DATA"
#: body/query fields that name another resource: half of the cases get the fixture's real one
REFERENCE_FIELDS = ("node_id", "server_id", "pool_id")


@dataclass(frozen=True)
class LiveData:
    """Ids of what the fixture made; the fuzzer may change these resources but is kept from deleting them."""

    node_id: str
    client_ids: list[str]
    short_uuids: list[str]
    wg_server_id: int
    wg_client_id: int
    pool_id: int
    allocation_id: int
    #: path template prefix -> the real ids its {id}-like parameter may take
    by_path: dict[str, list[str | int]] = field(default_factory=dict)
    #: body/query field -> real values (references to other resources)
    by_field: dict[str, list[str | int]] = field(default_factory=dict)
    #: path template prefix -> ids never revoked, rotated or deleted (the run's own key and account: without
    #: them every later case is a 401); unlike by_path, cases are not steered towards them
    protected: dict[str, list[str | int]] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    def real_ids_for(self, path: str) -> list[str | int]:
        """Real ids for the path parameter of ``path`` (an OpenAPI template like /api/v1/nodes/{id}/stop)."""
        for prefix, ids in self.by_path.items():
            if path.startswith(prefix):
                return ids
        return []


def _ok(r, status: int) -> dict:  # noqa: ANN001 - an httpx.Response
    assert r.status_code == status, f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:500]}"
    return r.json()


def seed(ctl: ControllerProcess, subscribers: int = 5) -> LiveData:
    """A running local node with a WireGuard server and client on it, subscribers, an IPv6 pool with one
    allocation. The node is left running (its agent online) so metrics, info and tcping answer for real."""
    api = ctl.api
    node = ctl.wait_running(ctl.create_node(name="fuzz-node")["id"], timeout=60)
    clients = [_ok(api.post("/api/v1/clients", json={"username": f"fuzz{i}", "days": 30, "note": "fixture",
                                                     "data_limit_gb": 10}), 201) for i in range(subscribers)]
    server = _ok(api.post("/api/v1/wireguard/servers", json={
        "node_id": node["id"], "name": "fuzz-wg", "interface": "wgf0", "listen_port": 51830,
        "ipv4_address": "10.66.0.1/24", "ipv6_address": "fd00:66::1/64", "dns_servers": ["1.1.1.1"]}), 201)
    wg_client = _ok(api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "fuzz-peer"}),
                    201)
    pool = _ok(api.post("/api/v1/ipv6/pools", json={"name": "fuzz-pool", "prefix": "2001:db8:6600::/48",
                                                    "prefix_length": 64}), 201)
    allocation = _ok(api.post("/api/v1/ipv6/allocations", json={"pool_id": pool["id"], "client_name": "fuzz0"}),
                     201)
    client_ids = [c["id"] for c in clients]
    own_key = next(k for k in _ok(api.get("/api/v1/auth/api-keys"), 200)["items"] if k["name"] == "admin")
    return LiveData(
        node_id=node["id"], client_ids=client_ids, short_uuids=[c["short_uuid"] for c in clients],
        wg_server_id=server["id"], wg_client_id=wg_client["id"], pool_id=pool["id"], allocation_id=allocation["id"],
        by_path={
            "/api/v1/nodes/{": [node["id"]],
            "/api/v2ray/instances/{": [node["id"]],
            "/api/v1/clients/{": client_ids,
            "/api/v1/wireguard/servers/{": [server["id"]],
            "/api/v1/wireguard/clients/{": [wg_client["id"]],
            "/api/v1/ipv6/pools/{": [pool["id"]],
            "/api/v1/ipv6/allocations/{": [allocation["id"]],
            "/sub/{": [c["short_uuid"] for c in clients],
        },
        by_field={"node_id": [node["id"]], "server_id": [server["id"]], "pool_id": [pool["id"]]},
        protected={"/api/v1/auth/api-keys/{": [own_key["id"]], "/api/v1/users/{": [own_key["account_id"]]},
    )


#: ids that name no resource (what a DELETE aimed at the fixture is sent to instead)
NOWHERE_UUID = "00000000-0000-4000-8000-000000000000"
NOWHERE_ID = 2**62


def register_hooks(data: LiveData) -> None:
    """Schemathesis hooks (global: this module is the hooks module of one run)."""
    fixture_ids = {str(i) for ids in data.by_path.values() for i in ids}

    def destructive(method: str, path: str) -> bool:
        """Removes the resource, or (rotating a key, changing an account) takes the run's credential away."""
        method = method.upper()
        return method == "DELETE" or path.endswith("/rotate") or (
            path.startswith("/api/v1/users/{") and method in ("PUT", "PATCH", "POST"))

    def untouchable(path: str, value: Any) -> bool:
        return str(value) in fixture_ids or any(
            path.startswith(prefix) and str(value) in {str(i) for i in ids} for prefix, ids in data.protected.items())

    @schemathesis.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
        real = data.real_ids_for(context.operation.path)
        if not real or not path_parameters or destructive(context.operation.method, context.operation.path):
            return st.just(path_parameters)
        name = next(iter(path_parameters))
        return st.sampled_from([path_parameters] + [{**path_parameters, name: r} for r in real])

    @schemathesis.hook
    def filter_path_parameters(context: Any, path_parameters: dict[str, Any]) -> bool:
        # a generated DELETE that happens to name a fixture resource (small integer ids do) is dropped
        if not destructive(context.operation.method, context.operation.path):
            return True
        return not any(untouchable(context.operation.path, v) for v in (path_parameters or {}).values())

    @schemathesis.hook
    def before_call(context: Any, case: Any, **kwargs: Any) -> None:
        # the stateful phase takes ids from earlier responses (a list names the fixture's resources), not from
        # the generators above: a DELETE it aims at a fixture resource goes to an id that names nothing
        if not destructive(case.method, case.path) or not case.path_parameters:
            return
        for name, value in list(case.path_parameters.items()):
            if untouchable(case.path, value):
                case.path_parameters[name] = NOWHERE_UUID if isinstance(value, str) and "-" in value else NOWHERE_ID

    def with_references(values: Any) -> st.SearchStrategy:
        if not isinstance(values, dict) or not any(f in values for f in REFERENCE_FIELDS):
            return st.just(values)
        return st.sampled_from([values, {**values, **{f: data.by_field[f][0] for f in REFERENCE_FIELDS
                                                      if f in values}}])

    @schemathesis.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
        return with_references(body)

    @schemathesis.hook
    def flatmap_query(context: Any, query: dict[str, Any]) -> st.SearchStrategy:
        return with_references(query)


if os.environ.get(DATA_ENV):  # imported by schemathesis as its hooks module
    register_hooks(LiveData(**json.loads(os.environ[DATA_ENV])))
