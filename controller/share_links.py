"""What a subscriber's app imports: VMess/VLESS share links and subscription bodies.

Pure: endpoints and a credential in, text out. The credential is one id, or a function giving each
endpoint's own (per-node ids, controller.credentials). Three subscription formats:

* ``base64`` — newline-joined share links, base64-encoded (v2rayN, v2rayNG, Shadowrocket, ...);
* ``sing-box`` — a complete sing-box client config (JSON);
* ``clash`` — a Clash Meta (mihomo) config (YAML): every app built on mihomo (Clash Verge, FlClash, Clash Meta
  for Android, Stash, ...);
* ``clash-legacy`` — the same without VLESS, for the original Clash core (Clash for Windows, ClashX), which
  refuses a whole profile that names a proxy type it does not know.

Every format names each endpoint the same way: names are made unique (see :func:`unique_names`), so
a node keeps one name whichever app the subscriber uses. A subscription needs at least one endpoint:
without one there is no config that is both valid and safe (a group with nothing in it is refused by the
apps, and falling back to "direct" would silently send traffic outside the VPN), so rendering raises
:class:`NoEndpoints` and the caller decides what to answer.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import re
import unicodedata
import uuid as uuidlib
from dataclasses import dataclass
from typing import Callable, Literal, Sequence
from urllib.parse import quote

import yaml

Protocol = Literal["vmess", "vless"]
PROTOCOLS: tuple[Protocol, ...] = ("vmess", "vless")

SUBSCRIPTION_FORMATS = ("base64", "sing-box", "clash", "clash-legacy")
MEDIA_TYPES = {
    "base64": "text/plain; charset=utf-8",
    "sing-box": "application/json",
    "clash": "text/yaml; charset=utf-8",
    "clash-legacy": "text/yaml; charset=utf-8",
}
_FORMAT_ALIASES = {
    "base64": "base64", "v2ray": "base64", "links": "base64",
    "sing-box": "sing-box", "singbox": "sing-box", "json": "sing-box",
    "clash": "clash", "mihomo": "clash", "yaml": "clash",
    "clash-legacy": "clash-legacy", "clash-premium": "clash-legacy",
}
# User-Agent markers, checked in this order (Clash Meta apps also say "meta"; sing-box GUIs are SFA/SFI/SFM).
_CLASH_AGENTS = re.compile(r"clash|mihomo|stash|(?<![a-z])meta(?![a-z])")
# Clash apps whose core is mihomo (VLESS works); any other Clash app gets clash-legacy.
_MIHOMO_AGENTS = re.compile(r"mihomo|meta|stash|verge|flclash|nyanpasu|hiddify")
_SING_BOX_AGENTS = re.compile(r"sing-?box|hiddify|(?<![a-z])sf[aim](?![a-z])")

TEST_URL = "https://www.gstatic.com/generate_204"  # what url-test groups probe
TEST_INTERVAL = 300  # seconds between url-test probes
SING_BOX_LISTEN = ("127.0.0.1", 2080)  # the local "mixed" (SOCKS + HTTP) inbound
# Names the configs use themselves (sing-box tags, Clash groups and built-ins): an endpoint never gets one.
RESERVED_NAMES = frozenset({"proxy", "auto", "direct", "vpnfleet", "DIRECT", "REJECT", "REJECT-DROP", "PASS",
                            "GLOBAL", "COMPATIBLE"})


class NoEndpoints(ValueError):
    """A subscription was asked for with no endpoint in it."""


@dataclass(frozen=True)
class Endpoint:
    """One place a subscriber can connect to: a node's VMess or VLESS inbound."""

    name: str
    host: str
    port: int
    protocol: Protocol
    #: the node the inbound is on (the subscriber's credential differs per node)
    node_id: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"port must be an integer 1..65535, not {self.port!r}")
        host = self.host.strip("[]")
        if not host or any(c.isspace() or c in "[]/@?#" or unicodedata.category(c) == "Cc" for c in host):
            raise ValueError(f"{self.host!r} is not a host name or IP address")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{self.host!r} is not a host name or IP address (no port here)") from None
        if any(unicodedata.category(c) == "Cc" for c in self.name):
            raise ValueError("name must not contain control characters")

    @property
    def address(self) -> str:
        """The host without brackets (``2001:db8::1``, ``node.example.com``)."""
        return self.host.strip("[]")

    @property
    def netloc(self) -> str:
        """``host:port`` for a URL, an IPv6 literal in brackets."""
        try:
            if ipaddress.ip_address(self.address).version == 6:
                return f"[{self.address}]:{self.port}"
        except ValueError:
            pass
        return f"{self.address}:{self.port}"


#: A subscriber's credential: one id for every endpoint, or the id per endpoint (per-node ids).
Credential = str | Callable[[Endpoint], str]


def _credential_of(credential: Credential) -> Callable[[Endpoint], str]:
    """The credential as a function of the endpoint, each id checked when it is used."""
    if callable(credential):
        return lambda endpoint: _check_uuid(credential(endpoint))
    _check_uuid(credential)
    return lambda endpoint: credential


def _check_uuid(uuid: str) -> str:
    """The credential as given, after checking it is a UUID (V2Ray 4.x accepts nothing else)."""
    try:
        uuidlib.UUID(uuid)
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"the credential must be a UUID, not {uuid!r}") from None
    return uuid


def unique_names(endpoints: Sequence[Endpoint]) -> list[str]:
    """Display names, one per endpoint, unique and never a reserved name.

    A blank name becomes ``host:port``; the first holder of a name keeps it, later ones (and reserved
    names) get `` 2``, `` 3``, ... — the first suffix not taken. Deterministic: same input, same names.
    """
    wanted = [e.name.strip() or e.netloc for e in endpoints]
    taken = set(RESERVED_NAMES)
    names: list[str] = []
    for name in wanted:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name} {n}"
        taken.add(candidate)
        names.append(candidate)
    return names


def vmess_link(endpoint: Endpoint, uuid: str) -> str:
    """The v2rayN ``vmess://`` link: base64 of the compact JSON description."""
    data = {
        "v": "2", "ps": endpoint.name, "add": endpoint.address, "port": str(endpoint.port),
        "id": _check_uuid(uuid), "aid": "0", "scy": "auto", "net": "tcp", "type": "none",
        "host": "", "path": "", "tls": "",
    }
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return "vmess://" + base64.b64encode(text.encode()).decode("ascii")


def vless_link(endpoint: Endpoint, uuid: str) -> str:
    """The ``vless://UUID@HOST:PORT?encryption=none&type=tcp#NAME`` link, the name percent-encoded."""
    return f"vless://{_check_uuid(uuid)}@{endpoint.netloc}?encryption=none&type=tcp#{quote(endpoint.name, safe='')}"


def share_link(endpoint: Endpoint, uuid: str) -> str:
    """The share link for the endpoint's protocol."""
    return vmess_link(endpoint, uuid) if endpoint.protocol == "vmess" else vless_link(endpoint, uuid)


def _named(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """The endpoints renamed to their unique names; refuses an empty list."""
    if not endpoints:
        raise NoEndpoints("no endpoint to put in the subscription")
    return [dataclasses.replace(e, name=name) for e, name in zip(endpoints, unique_names(endpoints))]


def render_base64(endpoints: Sequence[Endpoint], uuid: Credential) -> str:
    """Newline-joined share links, base64-encoded: what v2rayN/v2rayNG/Shadowrocket import."""
    credential = _credential_of(uuid)
    links = "\n".join(share_link(e, credential(e)) for e in _named(endpoints))
    return base64.b64encode(links.encode()).decode("ascii")


def render_sing_box(endpoints: Sequence[Endpoint], uuid: Credential) -> str:
    """A complete sing-box client config: a local mixed inbound, one outbound per endpoint, selector + urltest."""
    named = _named(endpoints)
    credential = _credential_of(uuid)
    nodes: list[dict[str, object]] = []
    for e in named:
        node: dict[str, object] = {"type": e.protocol, "tag": e.name, "server": e.address,
                                   "server_port": e.port, "uuid": credential(e)}
        if e.protocol == "vmess":
            node |= {"alter_id": 0, "security": "auto"}
        nodes.append(node)
    tags = [e.name for e in named]
    listen, port = SING_BOX_LISTEN
    config = {
        "log": {"level": "warn"},
        "inbounds": [{"type": "mixed", "tag": "mixed-in", "listen": listen, "listen_port": port}],
        "outbounds": [
            {"type": "selector", "tag": "proxy", "outbounds": ["auto", *tags], "default": "auto"},
            {"type": "urltest", "tag": "auto", "outbounds": tags, "url": TEST_URL, "interval": f"{TEST_INTERVAL}s"},
            *nodes,
            {"type": "direct", "tag": "direct"},
        ],
        "route": {"final": "proxy"},
    }
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def render_clash_legacy(endpoints: Sequence[Endpoint], uuid: Credential) -> str:
    """render_clash with the VMess endpoints only (the original Clash core has no VLESS)."""
    return render_clash(endpoints, uuid, protocols=("vmess",))


def render_clash(endpoints: Sequence[Endpoint], uuid: Credential, protocols: Sequence[Protocol] = PROTOCOLS) -> str:
    """A Clash/Mihomo config: the proxies, a "vpnfleet" select group, an "auto" url-test group, MATCH rule."""
    # Named before filtering, so an endpoint has the same name in every format.
    named = [e for e in _named(endpoints) if e.protocol in protocols]
    if not named:
        raise NoEndpoints(f"no {'/'.join(protocols)} endpoint to put in the subscription")
    credential = _credential_of(uuid)
    proxies: list[dict[str, object]] = []
    for e in named:
        proxy: dict[str, object] = {"name": e.name, "type": e.protocol, "server": e.address, "port": e.port,
                                    "uuid": credential(e)}
        if e.protocol == "vmess":
            proxy |= {"alterId": 0, "cipher": "auto", "udp": True}
        else:
            proxy |= {"udp": True, "network": "tcp"}
        proxies.append(proxy)
    names = [e.name for e in named]
    config = {
        "proxies": proxies,
        "proxy-groups": [
            {"name": "vpnfleet", "type": "select", "proxies": ["auto", *names]},
            {"name": "auto", "type": "url-test", "proxies": names, "url": TEST_URL, "interval": TEST_INTERVAL},
        ],
        "rules": ["MATCH,vpnfleet"],
    }
    return yaml.safe_dump(config, allow_unicode=True, sort_keys=False, default_flow_style=False)


_RENDERERS = {"base64": render_base64, "sing-box": render_sing_box, "clash": render_clash,
              "clash-legacy": render_clash_legacy}


def pick_format(user_agent: str | None, requested: str | None) -> str:
    """The subscription format: an explicit ``?format=`` wins, else the app's User-Agent, else base64.

    Raises ValueError (naming the accepted values) for an unknown ``requested`` value.
    """
    if requested is not None and requested.strip():
        key = requested.strip().lower()
        if key not in _FORMAT_ALIASES:
            raise ValueError(f"unknown format {requested!r}; use one of: {', '.join(_FORMAT_ALIASES)}")
        return _FORMAT_ALIASES[key]
    agent = (user_agent or "").lower()
    if _CLASH_AGENTS.search(agent):
        return "clash" if _MIHOMO_AGENTS.search(agent) else "clash-legacy"
    if _SING_BOX_AGENTS.search(agent):
        return "sing-box"
    return "base64"


def render(format: str, endpoints: Sequence[Endpoint], uuid: Credential) -> tuple[str, str]:
    """``(body, media type)`` of the subscription in ``format`` (one of :data:`SUBSCRIPTION_FORMATS`)."""
    if format not in _RENDERERS:
        raise ValueError(f"unknown format {format!r}; use one of: {', '.join(SUBSCRIPTION_FORMATS)}")
    return _RENDERERS[format](endpoints, uuid), MEDIA_TYPES[format]


def subscription_userinfo(upload: int, download: int, total: int, expire: int) -> str:
    """The ``Subscription-Userinfo`` header: bytes used/allowed (total 0 = unlimited), expiry (unix s, 0 = never)."""
    values = {"upload": upload, "download": download, "total": total, "expire": expire}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    return "; ".join(f"{key}={value}" for key, value in values.items())
