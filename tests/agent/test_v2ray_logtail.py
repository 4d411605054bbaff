"""Masking subscribers' source addresses in V2Ray's access log (agent.v2ray.logtail.mask_source_addresses).

The unit cases use lines exactly as V2Ray 4.34 writes them (captured from a real run: `FROM STATUS TO
[DETOUR] REASON email: EMAIL`, an IPv6 client as `[::1]:46074`, a rejected one with an empty TO); the last
test runs a real V2Ray with an access log on 127.0.0.1 and masks what it wrote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from agent.v2ray.logtail import mask_address, mask_source_addresses, parse_line
from tests.v2ray_lab import V2RAY, HttpServer, V2RayClient, can_fetch, free_port, v2ray_binary, wait_port

TS = "2026/12/01 09:00:59 "


@pytest.mark.parametrize("line, masked", [
    # accepted, IPv4: the /16 stays, host and port go; the destination, detour and email stay
    ("127.0.0.1:39030 accepted tcp:127.0.0.1:34293 [direct] email: alice@x",
     "127.0.x.x accepted tcp:127.0.0.1:34293 [direct] email: alice@x"),
    ("203.0.113.7:51234 accepted tcp:example.com:443 [vm >> direct] email: X",
     "203.0.x.x accepted tcp:example.com:443 [vm >> direct] email: X"),
    # with V2Ray's timestamp (the raw file line)
    (TS + "203.0.113.7:51234 accepted udp:8.8.8.8:53 [direct] email: bob",
     TS + "203.0.x.x accepted udp:8.8.8.8:53 [direct] email: bob"),
    # IPv6 in brackets: its /48
    ("[2001:db8:1:2::7]:51234 accepted tcp:example.com:443 [direct] email: bob",
     "2001:db8:1::/48 accepted tcp:example.com:443 [direct] email: bob"),
    ("[::1]:46074 accepted tcp:127.0.0.1:34293 [direct] email: bob",
     "::/48 accepted tcp:127.0.0.1:34293 [direct] email: bob"),
    ("[fe80::1%eth0]:5 accepted tcp:example.com:80 [direct] email: z",
     "fe80::/48 accepted tcp:example.com:80 [direct] email: z"),
    # an IPv4 client on a dual-stack listener
    ("[::ffff:198.51.100.23]:4000 accepted tcp:example.com:443 [direct] email: c",
     "198.51.x.x accepted tcp:example.com:443 [direct] email: c"),
    # rejected: TO is empty (two spaces), the reason stays
    ("127.0.0.1:39032 rejected  v2ray.com/core/proxy/vmess/encoding: invalid user",
     "127.0.x.x rejected  v2ray.com/core/proxy/vmess/encoding: invalid user"),
    ("[::1]:46078 rejected  v2ray.com/core/proxy/vless/encoding: invalid request user id",
     "::/48 rejected  v2ray.com/core/proxy/vless/encoding: invalid request user id"),
    # a source written as a destination (some UDP inbounds)
    ("udp:192.0.2.9:5353 accepted udp:1.1.1.1:53 [direct]", "udp:192.0.x.x accepted udp:1.1.1.1:53 [direct]"),
    # a source this cannot read is not passed on either
    ("@:0 accepted tcp:example.com:443 [direct] email: d", "<source> accepted tcp:example.com:443 [direct] email: d"),
])
def test_the_source_is_masked_and_the_destination_kept(line: str, masked: str) -> None:
    assert mask_source_addresses(line) == masked
    assert mask_source_addresses(masked) == masked  # masking twice changes nothing


@pytest.mark.parametrize("line", [
    "[Warning] v2ray.com/core: V2Ray 4.34.0 started",
    "[Info] [642566157] v2ray.com/core/proxy/vmess/inbound: received request for tcp:203.0.113.9:443",
    TS + "[Info] v2ray.com/core/transport/internet/tcp: listening TCP on 127.0.0.1:35597",
    "",
])
def test_other_lines_are_left_alone(line: str) -> None:
    assert mask_source_addresses(line) == line


def test_the_same_source_in_the_error_log_is_masked_too() -> None:
    line = ("[Info] [476121455] v2ray.com/core/app/proxyman/inbound: connection ends > "
            "v2ray.com/core/proxy/vmess/inbound: invalid request from 203.0.113.7:39032 > "
            "v2ray.com/core/proxy/vmess/encoding: invalid user")
    assert mask_source_addresses(line) == line.replace("203.0.113.7:39032", "203.0.x.x")
    six = "[Info] [1] v2ray.com/core/proxy/vless/inbound: invalid request from [2001:db8:5::1]:46078 > x"
    assert mask_source_addresses(six) == six.replace("[2001:db8:5::1]:46078", "2001:db8:5::/48")


def test_mask_address() -> None:
    assert mask_address("203.0.113.7:51234") == mask_address("203.0.113.7") == "203.0.x.x"
    assert mask_address("[2001:db8:abcd:12::1]:443") == mask_address("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert mask_address("not-an-address:1") == "<source>"


def test_it_composes_with_parse_line() -> None:
    raw = TS + "203.0.113.7:51234 accepted tcp:example.com:443 [direct] email: a\n"
    level, message = parse_line(raw, access=True)
    assert level == "info"
    assert mask_source_addresses(message) == "203.0.x.x accepted tcp:example.com:443 [direct] email: a"


@pytest.mark.timeout(60)
@pytest.mark.skipif(v2ray_binary() is None, reason="needs the v2ray binary (Debian package v2ray, or $VPNFLEET_V2RAY)")
def test_a_real_v2ray_access_log_is_masked() -> None:
    """A V2Ray with an access log on 127.0.0.1: one accepted and one rejected client; every line it wrote
    has its source masked and its destination kept."""
    directory = Path(tempfile.mkdtemp(prefix="v2ray-access-"))
    good, port = str(uuid.uuid4()), free_port()
    config = {
        "log": {"access": str(directory / "access.log"), "error": str(directory / "error.log"), "loglevel": "warning"},
        "inbounds": [{"tag": "vm", "listen": "127.0.0.1", "port": port, "protocol": "vmess",
                      "settings": {"clients": [{"id": good, "alterId": 0, "email": "alice@example"}]}}],
        "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}}],
    }
    (directory / "config.json").write_text(json.dumps(config))
    server = subprocess.Popen([V2RAY, "-config", str(directory / "config.json")], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port)
        with HttpServer() as web:
            with V2RayClient("vmess", "127.0.0.1", port, good) as client:
                assert can_fetch(client.socks_port, web.url(100))
            with V2RayClient("vmess", "127.0.0.1", port, str(uuid.uuid4())) as client:
                assert not can_fetch(client.socks_port, web.url(100), 1.0)
            destination = f"tcp:127.0.0.1:{web.port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = (directory / "access.log").read_text().splitlines()
            if any(" rejected " in line for line in lines) and any(" accepted " in line for line in lines):
                break
            time.sleep(0.1)
        masked = [mask_source_addresses(parse_line(line, access=True)[1]) for line in lines]
        accepted = [m for m in masked if " accepted " in m]
        assert accepted and all(m == f"127.0.x.x accepted {destination} [direct] email: alice@example"
                                for m in accepted), masked
        assert any(m.startswith("127.0.x.x rejected ") for m in masked), masked
        assert not any("127.0.0.1:" in m.split(" ", 1)[0] for m in masked)  # no client port or host left
    finally:
        server.kill()
        server.wait(5)
        shutil.rmtree(directory, ignore_errors=True)
