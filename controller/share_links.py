"""What a subscriber's app imports: share links and subscription bodies for every transport profile.

Pure: endpoints and a credential in, text out. The credential is one id, or a function giving each
endpoint's own (per-node ids, controller.credentials). An endpoint is one inbound of one node with its
transport profile (controller.services.desired_state):

* ``vmess`` — VMess AEAD over TCP;
* ``vless-reality-vision`` — VLESS over REALITY with the XTLS Vision flow (Xray nodes);
* ``vmess-ws-tls`` / ``vless-ws-tls`` — WebSocket over TLS (for CDN fronting, where the operator gave a domain).

VLESS never goes without TLS or REALITY: an endpoint refuses it, so no format (and no ``urltest``/``auto``
group) can carry a cleartext VLESS server. Each format follows its published form:

* ``base64`` — newline-joined share links, base64-encoded (v2rayN, v2rayNG, Shadowrocket, ...): v2rayN's
  ``vmess://`` JSON (``net``/``tls``/``path``/``host``/``sni``/``fp``) and the ``vless://`` links of the Xray
  share-link standard (XTLS/Xray-core discussion #716: ``security=reality&pbk&sid&sni&fp&flow&type``);
* ``sing-box`` — a complete sing-box client config (JSON) with a local ``mixed`` inbound (the CLI);
* ``sing-box-tun`` — the same for the sing-box apps (SFA/SFI/SFM): a ``tun`` inbound with ``auto_route``,
  ``strict_route``, DNS hijack and ``route.auto_detect_interface`` (they capture device traffic only so);
* ``clash`` — a Clash Meta (mihomo) config (YAML) with ``reality-opts``/``client-fingerprint``/``ws-opts``:
  every app built on mihomo (Clash Verge, FlClash, Clash Meta for Android, Stash, ...);
* ``clash-legacy`` — only what the original Clash core knows (VMess, also over ws+tls), for Clash for
  Windows / ClashX, which refuse a whole profile that names a proxy type they do not know.

The same endpoint carries the same sni, short id, public key and fingerprint in every format and every
fetch. Every format names each endpoint the same way: names are made unique (see :func:`unique_names`), so
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

from controller import reality

Protocol = Literal["vmess", "vless"]
PROTOCOLS: tuple[Protocol, ...] = ("vmess", "vless")
#: transport profile -> its protocol
PROFILES: dict[str, Protocol] = {"vmess": "vmess", "vless-reality-vision": "vless", "vmess-ws-tls": "vmess",
                                 "vless-ws-tls": "vless"}
VISION_FLOW = "xtls-rprx-vision"
#: uTLS client fingerprints every client here knows (Xray's fp, sing-box's utls.fingerprint, mihomo's
#: client-fingerprint)
FINGERPRINTS = ("chrome", "firefox", "safari", "ios", "android", "edge", "360", "qq", "random", "randomized")
DEFAULT_FINGERPRINT = "chrome"

SUBSCRIPTION_FORMATS = ("base64", "sing-box", "sing-box-tun", "clash", "clash-legacy")
MEDIA_TYPES = {
    "base64": "text/plain; charset=utf-8",
    "sing-box": "application/json",
    "sing-box-tun": "application/json",
    "clash": "text/yaml; charset=utf-8",
    "clash-legacy": "text/yaml; charset=utf-8",
}
_FORMAT_ALIASES = {
    "base64": "base64", "v2ray": "base64", "links": "base64",
    "sing-box": "sing-box", "singbox": "sing-box", "json": "sing-box",
    "sing-box-tun": "sing-box-tun", "singbox-tun": "sing-box-tun",
    "clash": "clash", "mihomo": "clash", "yaml": "clash",
    "clash-legacy": "clash-legacy", "clash-premium": "clash-legacy",
}
# User-Agent markers, checked in this order (Clash Meta apps also say "meta"; sing-box GUIs are SFA/SFI/SFM).
_CLASH_AGENTS = re.compile(r"clash|mihomo|stash|(?<![a-z])meta(?![a-z])")
# Clash apps whose core is mihomo (VLESS works); any other Clash app gets clash-legacy.
_MIHOMO_AGENTS = re.compile(r"mihomo|meta|stash|verge|flclash|nyanpasu|hiddify")
# The sing-box apps for Android, iOS/tvOS and macOS: they capture device traffic through a tun inbound only.
_SING_BOX_APPS = re.compile(r"(?<![a-z])sf[aimt](?![a-z])")
# Other sing-box users: the CLI, and apps that bring their own inbounds (Hiddify).
_SING_BOX_AGENTS = re.compile(r"sing-?box|hiddify")

TEST_URL = "https://www.gstatic.com/generate_204"  # what url-test groups probe
TEST_INTERVAL = 300  # seconds between url-test probes
SING_BOX_LISTEN = ("127.0.0.1", 2080)  # the local "mixed" (SOCKS + HTTP) inbound of the CLI profile
#: the tun inbound's own addresses (a /30 and a /126 no network uses; what the sing-box docs use)
SING_BOX_TUN_ADDRESSES = ("172.19.0.1/30", "fdfe:dcba:9876::1/126")
#: where the tun profile resolves names (DNS over HTTPS, through the tunnel)
SING_BOX_DNS_SERVER = "1.1.1.1"
# Names the configs use themselves (sing-box tags, Clash groups and built-ins): an endpoint never gets one.
RESERVED_NAMES = frozenset({"proxy", "auto", "direct", "vpnfleet", "DIRECT", "REJECT", "REJECT-DROP", "PASS",
                            "GLOBAL", "COMPATIBLE", "dns-remote", "dns-local", "mixed-in", "tun-in"})


class NoEndpoints(ValueError):
    """A subscription was asked for with no endpoint in it."""


@dataclass(frozen=True)
class Endpoint:
    """One place a subscriber can connect to: one inbound of a node, with its transport profile."""

    name: str
    host: str
    port: int
    protocol: Protocol
    #: the node the inbound is on (the subscriber's credential differs per node)
    node_id: str = ""
    #: the transport profile (PROFILES); "" is the protocol's plain TCP profile, which only VMess has
    profile: str = ""
    #: the TLS server name clients send (REALITY: one of the node's server names; ws-tls: the domain)
    sni: str = ""
    #: REALITY: the node's public key (base64url) and the short id subscriptions carry (hex)
    public_key: str = ""
    short_id: str = ""
    #: uTLS fingerprint of the client hello (REALITY and TLS profiles)
    fingerprint: str = DEFAULT_FINGERPRINT
    #: WebSocket path and Host header (ws-tls profiles; the host defaults to sni)
    ws_path: str = ""
    ws_host: str = ""

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
        profile = self.profile or ("vmess" if self.protocol == "vmess" else "")
        if not profile:
            raise ValueError("VLESS is never served without TLS or REALITY: a vless endpoint needs the "
                             "vless-reality-vision or vless-ws-tls profile")
        if PROFILES.get(profile) != self.protocol:
            raise ValueError(f"profile {profile!r} is not a {self.protocol} profile (profiles: {', '.join(PROFILES)})")
        object.__setattr__(self, "profile", profile)
        if self.fingerprint not in FINGERPRINTS:
            raise ValueError(f"fingerprint must be one of {', '.join(FINGERPRINTS)}, not {self.fingerprint!r}")
        if self.security != "none":
            reality.check_server_name(self.sni)  # ValueError names the value
        if self.security == "reality":
            reality.check_public_key(self.public_key)
            reality.check_short_id(self.short_id)
        if self.network == "ws":
            if not self.ws_path.startswith("/") or any(c.isspace() or unicodedata.category(c) == "Cc"
                                                       for c in self.ws_path):
                raise ValueError(f"ws_path must be a URL path starting with '/', not {self.ws_path!r}")
            object.__setattr__(self, "ws_host", self.ws_host or self.sni)
            reality.check_server_name(self.ws_host)

    @property
    def security(self) -> str:
        """What protects the stream: "reality", "tls" or "none" (VMess over TCP: VMess's own encryption)."""
        return {"vless-reality-vision": "reality", "vmess-ws-tls": "tls", "vless-ws-tls": "tls"}.get(self.profile,
                                                                                                       "none")

    @property
    def network(self) -> str:
        """The transport: "ws" or "tcp"."""
        return "ws" if self.profile.endswith("-ws-tls") else "tcp"

    @property
    def flow(self) -> str:
        """The VLESS flow: XTLS Vision on REALITY, none otherwise."""
        return VISION_FLOW if self.profile == "vless-reality-vision" else ""

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
    """The v2rayN ``vmess://`` link: base64 of the compact JSON description (``net: ws``, ``tls: tls``,
    ``path``, ``host``, ``sni``, ``fp`` for the ws-tls profile)."""
    if endpoint.protocol != "vmess":
        raise ValueError(f"not a VMess endpoint: {endpoint.profile}")
    data = {
        "v": "2", "ps": endpoint.name, "add": endpoint.address, "port": str(endpoint.port),
        "id": _check_uuid(uuid), "aid": "0", "scy": "auto", "net": endpoint.network, "type": "none",
        "host": endpoint.ws_host, "path": endpoint.ws_path, "tls": "",
    }
    if endpoint.security == "tls":
        data |= {"tls": "tls", "sni": endpoint.sni, "alpn": "", "fp": endpoint.fingerprint}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return "vmess://" + base64.b64encode(text.encode()).decode("ascii")


def _q(value: str) -> str:
    return quote(value, safe="")


def vless_link(endpoint: Endpoint, uuid: str) -> str:
    """The ``vless://UUID@HOST:PORT?...#NAME`` link of the Xray share-link standard, values and the name
    percent-encoded. REALITY: ``encryption=none&security=reality&pbk&sid&sni&fp&flow=xtls-rprx-vision&type=tcp``;
    ws-tls: ``encryption=none&security=tls&sni&fp&type=ws&host&path``."""
    if endpoint.protocol != "vless":
        raise ValueError(f"not a VLESS endpoint: {endpoint.profile}")
    if endpoint.security == "reality":
        query = (f"encryption=none&security=reality&pbk={_q(endpoint.public_key)}&sid={_q(endpoint.short_id)}"
                 f"&sni={_q(endpoint.sni)}&fp={_q(endpoint.fingerprint)}&flow={VISION_FLOW}&type=tcp")
    else:  # vless-ws-tls (an Endpoint is never VLESS without security)
        query = (f"encryption=none&security=tls&sni={_q(endpoint.sni)}&fp={_q(endpoint.fingerprint)}"
                 f"&type=ws&host={_q(endpoint.ws_host)}&path={_q(endpoint.ws_path)}")
    return f"vless://{_check_uuid(uuid)}@{endpoint.netloc}?{query}#{_q(endpoint.name)}"


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


def sing_box_outbound(endpoint: Endpoint, uuid: str) -> dict[str, object]:
    """One endpoint as a sing-box outbound: VMess/VLESS, REALITY in ``tls.reality`` with uTLS, ws-tls as a
    ``ws`` transport with ``tls``."""
    e = endpoint
    out: dict[str, object] = {"type": e.protocol, "tag": e.name, "server": e.address, "server_port": e.port,
                              "uuid": uuid}
    if e.protocol == "vmess":
        out |= {"security": "auto", "alter_id": 0}
    if e.flow:
        out["flow"] = e.flow
    if e.security != "none":
        tls: dict[str, object] = {"enabled": True, "server_name": e.sni,
                                  "utls": {"enabled": True, "fingerprint": e.fingerprint}}
        if e.security == "reality":
            tls["reality"] = {"enabled": True, "public_key": e.public_key, "short_id": e.short_id}
        out["tls"] = tls
    if e.network == "ws":
        out["transport"] = {"type": "ws", "path": e.ws_path, "headers": {"Host": e.ws_host}}
    return out


def render_sing_box(endpoints: Sequence[Endpoint], uuid: Credential, *, tun: bool = False) -> str:
    """A complete sing-box client config: one outbound per endpoint, a ``proxy`` selector and an ``auto``
    urltest over them. For the CLI (``tun`` False): a local mixed (SOCKS + HTTP) inbound. For the apps: a
    ``tun`` inbound with auto_route and strict_route, DNS (over HTTPS through the tunnel) with a hijack rule
    for every DNS query, private destinations direct (the device's own network), auto_detect_interface."""
    named = _named(endpoints)
    credential = _credential_of(uuid)
    nodes = [sing_box_outbound(e, credential(e)) for e in named]
    tags = [e.name for e in named]
    config: dict[str, object] = {"log": {"level": "warn"}}
    if tun:
        config["dns"] = {
            "servers": [{"type": "https", "tag": "dns-remote", "server": SING_BOX_DNS_SERVER, "detour": "proxy"},
                        {"type": "local", "tag": "dns-local"}],
            "final": "dns-remote",
        }
        config["inbounds"] = [{"type": "tun", "tag": "tun-in", "address": list(SING_BOX_TUN_ADDRESSES),
                               "auto_route": True, "strict_route": True}]
    else:
        listen, port = SING_BOX_LISTEN
        config["inbounds"] = [{"type": "mixed", "tag": "mixed-in", "listen": listen, "listen_port": port}]
    config["outbounds"] = [
        {"type": "selector", "tag": "proxy", "outbounds": ["auto", *tags], "default": "auto"},
        {"type": "urltest", "tag": "auto", "outbounds": tags, "url": TEST_URL, "interval": f"{TEST_INTERVAL}s"},
        *nodes,
        {"type": "direct", "tag": "direct"},
    ]
    if tun:
        config["route"] = {
            "rules": [{"action": "sniff"}, {"protocol": "dns", "action": "hijack-dns"},
                      {"ip_is_private": True, "outbound": "direct"}],
            "auto_detect_interface": True,
            "default_domain_resolver": "dns-local",
            "final": "proxy",
        }
    else:
        config["route"] = {"final": "proxy"}
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def render_sing_box_tun(endpoints: Sequence[Endpoint], uuid: Credential) -> str:
    """render_sing_box for the sing-box apps (SFA/SFI/SFM): with the tun inbound."""
    return render_sing_box(endpoints, uuid, tun=True)


def clash_proxy(endpoint: Endpoint, uuid: str, *, legacy: bool = False) -> dict[str, object]:
    """One endpoint as a Clash proxy: mihomo's ``reality-opts``, ``client-fingerprint``, ``flow``, ``servername``,
    ``ws-opts``; with ``legacy`` only what the original Clash core knows (no fingerprint; VMess only)."""
    e = endpoint
    proxy: dict[str, object] = {"name": e.name, "type": e.protocol, "server": e.address, "port": e.port,
                                "uuid": uuid}
    if e.protocol == "vmess":
        proxy |= {"alterId": 0, "cipher": "auto"}
    proxy["udp"] = True
    if e.security != "none":
        proxy |= {"tls": True, "servername": e.sni}
        if not legacy:
            proxy["client-fingerprint"] = e.fingerprint
    if e.flow:
        proxy["flow"] = e.flow
    if e.security == "reality":
        proxy["reality-opts"] = {"public-key": e.public_key, "short-id": e.short_id}
    if e.network == "ws":
        proxy |= {"network": "ws", "ws-opts": {"path": e.ws_path, "headers": {"Host": e.ws_host}}}
    elif e.protocol == "vless":
        proxy["network"] = "tcp"
    return proxy


def render_clash_legacy(endpoints: Sequence[Endpoint], uuid: Credential) -> str:
    """render_clash with the VMess endpoints only (the original Clash core has no VLESS, no uTLS)."""
    return render_clash(endpoints, uuid, protocols=("vmess",), legacy=True)


def render_clash(endpoints: Sequence[Endpoint], uuid: Credential, protocols: Sequence[Protocol] = PROTOCOLS,
                 *, legacy: bool = False) -> str:
    """A Clash/Mihomo config: the proxies, a "vpnfleet" select group, an "auto" url-test group, MATCH rule."""
    # Named before filtering, so an endpoint has the same name in every format.
    named = [e for e in _named(endpoints) if e.protocol in protocols]
    if not named:
        raise NoEndpoints(f"no {'/'.join(protocols)} endpoint to put in the subscription")
    credential = _credential_of(uuid)
    proxies = [clash_proxy(e, credential(e), legacy=legacy) for e in named]
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


_RENDERERS = {"base64": render_base64, "sing-box": render_sing_box, "sing-box-tun": render_sing_box_tun,
              "clash": render_clash, "clash-legacy": render_clash_legacy}


def pick_format(user_agent: str | None, requested: str | None) -> str:
    """The subscription format: an explicit ``?format=`` wins, else the app's User-Agent, else base64.

    The sing-box apps (SFA, SFI, SFM, SFT) get ``sing-box-tun``; the sing-box CLI and Hiddify (which brings
    its own inbounds) ``sing-box``. Raises ValueError (naming the accepted values) for an unknown ``requested``.
    """
    if requested is not None and requested.strip():
        key = requested.strip().lower()
        if key not in _FORMAT_ALIASES:
            raise ValueError(f"unknown format {requested!r}; use one of: {', '.join(_FORMAT_ALIASES)}")
        return _FORMAT_ALIASES[key]
    agent = (user_agent or "").lower()
    if _CLASH_AGENTS.search(agent):
        return "clash" if _MIHOMO_AGENTS.search(agent) else "clash-legacy"
    if _SING_BOX_APPS.search(agent):
        return "sing-box-tun"
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
