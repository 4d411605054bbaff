from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from controller.share_links import (
    SUBSCRIPTION_FORMATS,
    Endpoint,
    NoEndpoints,
    pick_format,
    render,
    render_base64,
    render_clash,
    render_sing_box,
    share_link,
    subscription_userinfo,
    unique_names,
    vless_link,
    vmess_link,
)

UUID = "3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718"
#: the X25519 public key of the private key bytes 0..31 (base64url, no padding)
PBK = "j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8"
SID = "0123456789abcdef"


def reality_endpoint(name: str = "Frankfurt", host: str = "2001:db8::7", port: int = 443, **kw) -> Endpoint:
    return Endpoint(name, host, port, "vless", **({"profile": "vless-reality-vision", "sni": "www.microsoft.com",
                                                   "public_key": PBK, "short_id": SID} | kw))


def ws_endpoint(name: str, protocol: str, port: int, **kw) -> Endpoint:
    return Endpoint(name, "cdn.example.com", port, protocol,  # type: ignore[arg-type]
                    **({"profile": f"{protocol}-ws-tls", "sni": "vpn.example.com", "ws_path": "/0a1b2c3d4e5f6071"}
                       | kw))


ENDPOINTS = [
    Endpoint("Tokyo", "203.0.113.10", 11994, "vmess"),
    reality_endpoint(),
    Endpoint("Virginia", "us-east.example.net", 8443, "vmess"),
    ws_endpoint("Paris vmess-ws", "vmess", 8443),
    ws_endpoint("Paris vless-ws", "vless", 2053),
]


def parse_share_link(link: str) -> dict[str, object]:
    """A share link back to {protocol, name, host, port, uuid, ...}, strictly (bad base64 or JSON raises)."""
    scheme, _, rest = link.partition("://")
    if scheme == "vmess":
        data = json.loads(base64.b64decode(rest, validate=True).decode())
        return {"protocol": "vmess", "name": data["ps"], "host": data["add"], "port": int(data["port"]),
                "uuid": data["id"], "raw": data}
    if scheme == "vless":
        url = urlsplit(link)
        return {"protocol": "vless", "name": unquote(url.fragment), "host": url.hostname, "port": url.port,
                "uuid": url.username, "netloc": url.netloc, "query": parse_qs(url.query)}
    raise ValueError(f"not a share link: {link!r}")


def test_vmess_link_is_the_v2rayn_json_in_order() -> None:
    link = vmess_link(ENDPOINTS[0], UUID)
    assert link.startswith("vmess://")
    payload = base64.b64decode(link.removeprefix("vmess://"), validate=True).decode()
    assert payload == (
        '{"v":"2","ps":"Tokyo","add":"203.0.113.10","port":"11994","id":"' + UUID + '","aid":"0",'
        '"scy":"auto","net":"tcp","type":"none","host":"","path":"","tls":""}'
    )


def test_vmess_link_keeps_unicode_names_and_bare_ipv6() -> None:
    data = parse_share_link(vmess_link(Endpoint("香港 🚀", "[2001:db8::1]", 80, "vmess"), UUID))
    assert data["name"] == "香港 🚀"
    assert data["host"] == "2001:db8::1"


def test_vmess_ws_tls_link_is_the_v2rayn_json_with_tls_ws_path_host_sni() -> None:
    data = parse_share_link(vmess_link(ENDPOINTS[3], UUID))["raw"]
    assert data == {"v": "2", "ps": "Paris vmess-ws", "add": "cdn.example.com", "port": "8443", "id": UUID,
                    "aid": "0", "scy": "auto", "net": "ws", "type": "none", "host": "vpn.example.com",
                    "path": "/0a1b2c3d4e5f6071", "tls": "tls", "sni": "vpn.example.com", "alpn": "", "fp": "chrome"}


def test_vless_reality_link_follows_the_xray_share_link_standard() -> None:
    link = vless_link(reality_endpoint(host="us-east.example.net", port=8443, name="Virginia"), UUID)
    assert link == (f"vless://{UUID}@us-east.example.net:8443?encryption=none&security=reality&pbk={PBK}&sid={SID}"
                    "&sni=www.microsoft.com&fp=chrome&flow=xtls-rprx-vision&type=tcp#Virginia")


def test_vless_ws_tls_link() -> None:
    data = parse_share_link(vless_link(ENDPOINTS[4], UUID))
    assert data["host"] == "cdn.example.com" and data["port"] == 2053 and data["uuid"] == UUID
    assert data["query"] == {"encryption": ["none"], "security": ["tls"], "sni": ["vpn.example.com"],
                             "fp": ["chrome"], "type": ["ws"], "host": ["vpn.example.com"],
                             "path": ["/0a1b2c3d4e5f6071"]}
    assert "path=%2F0a1b2c3d4e5f6071" in vless_link(ENDPOINTS[4], UUID)  # percent-encoded, as the standard says


def test_vless_link_brackets_ipv6_and_percent_encodes_the_name() -> None:
    link = vless_link(reality_endpoint("美西 #1 / a&b?"), UUID)
    assert link.startswith(f"vless://{UUID}@[2001:db8::7]:443?")
    fragment = link.split("#", 1)[1]
    assert all(c not in fragment for c in " #/&?") and fragment.isascii()
    data = parse_share_link(link)
    assert data["name"] == "美西 #1 / a&b?"
    assert data["host"] == "2001:db8::7" and data["port"] == 443 and data["uuid"] == UUID
    assert data["query"] == {"encryption": ["none"], "security": ["reality"], "pbk": [PBK], "sid": [SID],
                             "sni": ["www.microsoft.com"], "fp": ["chrome"], "flow": ["xtls-rprx-vision"],
                             "type": ["tcp"]}


def test_vless_is_never_without_tls_or_reality() -> None:
    for kwargs in ({}, {"profile": "vmess"}, {"profile": "vless"}, {"profile": "none"}):
        with pytest.raises(ValueError, match="VLESS|profile"):
            Endpoint("plain", "203.0.113.1", 443, "vless", **kwargs)


def test_share_link_dispatches_on_protocol() -> None:
    assert share_link(ENDPOINTS[0], UUID).startswith("vmess://")
    assert share_link(ENDPOINTS[1], UUID).startswith("vless://")
    assert share_link(ENDPOINTS[3], UUID).startswith("vmess://")
    assert share_link(ENDPOINTS[4], UUID).startswith("vless://")


def _expected() -> list[tuple[str, str, str, int]]:
    return [(e.protocol, e.name, e.host, e.port) for e in ENDPOINTS]


def test_render_base64_parses_back() -> None:
    body = render_base64(ENDPOINTS, UUID)
    lines = base64.b64decode(body, validate=True).decode().split("\n")
    parsed = [parse_share_link(line) for line in lines]
    assert [(p["protocol"], p["name"], p["host"], p["port"]) for p in parsed] == _expected()
    assert {p["uuid"] for p in parsed} == {UUID}


def test_render_sing_box_is_a_complete_config() -> None:
    config = json.loads(render_sing_box(ENDPOINTS, UUID))
    assert config["inbounds"] == [{"type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1", "listen_port": 2080}]
    assert "dns" not in config and config["route"] == {"final": "proxy"}
    outbounds = {o["tag"]: o for o in config["outbounds"]}
    assert len(outbounds) == len(config["outbounds"]), "tags must be unique"
    nodes = [o for o in config["outbounds"] if o["type"] in ("vmess", "vless")]
    assert [(o["type"], o["tag"], o["server"], o["server_port"]) for o in nodes] == _expected()
    assert all(o["uuid"] == UUID for o in nodes)
    assert outbounds["Tokyo"] == {"type": "vmess", "tag": "Tokyo", "server": "203.0.113.10", "server_port": 11994,
                                  "uuid": UUID, "security": "auto", "alter_id": 0}
    assert outbounds["Frankfurt"] == {
        "type": "vless", "tag": "Frankfurt", "server": "2001:db8::7", "server_port": 443, "uuid": UUID,
        "flow": "xtls-rprx-vision",
        "tls": {"enabled": True, "server_name": "www.microsoft.com",
                "utls": {"enabled": True, "fingerprint": "chrome"},
                "reality": {"enabled": True, "public_key": PBK, "short_id": SID}}}
    ws = {"type": "ws", "path": "/0a1b2c3d4e5f6071", "headers": {"Host": "vpn.example.com"}}
    tls = {"enabled": True, "server_name": "vpn.example.com", "utls": {"enabled": True, "fingerprint": "chrome"}}
    assert outbounds["Paris vmess-ws"] == {"type": "vmess", "tag": "Paris vmess-ws", "server": "cdn.example.com",
                                           "server_port": 8443, "uuid": UUID, "security": "auto", "alter_id": 0,
                                           "tls": tls, "transport": ws}
    assert outbounds["Paris vless-ws"] == {"type": "vless", "tag": "Paris vless-ws", "server": "cdn.example.com",
                                           "server_port": 2053, "uuid": UUID, "tls": tls, "transport": ws}
    names = [e.name for e in ENDPOINTS]
    assert outbounds["proxy"]["type"] == "selector" and outbounds["proxy"]["outbounds"] == ["auto", *names]
    assert outbounds["auto"]["type"] == "urltest" and outbounds["auto"]["outbounds"] == names
    assert outbounds["direct"]["type"] == "direct"
    assert config["route"]["final"] == "proxy"
    every_reference = outbounds["proxy"]["outbounds"] + outbounds["auto"]["outbounds"]
    assert set(every_reference) <= set(outbounds)


def test_render_sing_box_tun_is_the_apps_profile() -> None:
    cli = json.loads(render("sing-box", ENDPOINTS, UUID)[0])
    app, media_type = render("sing-box-tun", ENDPOINTS, UUID)
    config = json.loads(app)
    assert media_type == "application/json"
    assert config["inbounds"] == [{"type": "tun", "tag": "tun-in", "address": ["172.19.0.1/30", "fdfe:dcba:9876::1/126"],
                                   "auto_route": True, "strict_route": True}]
    route = config["route"]
    assert route["auto_detect_interface"] is True and route["final"] == "proxy"
    # sing-box 1.11+ rule actions: sniff first, then every DNS query to the DNS module
    assert route["rules"][:2] == [{"action": "sniff"}, {"protocol": "dns", "action": "hijack-dns"}]
    assert {"ip_is_private": True, "outbound": "direct"} in route["rules"]
    # DNS in the 1.12+ server format (type/server), resolved through the tunnel; names of servers locally
    servers = {s["tag"]: s for s in config["dns"]["servers"]}
    assert servers["dns-remote"] == {"type": "https", "tag": "dns-remote", "server": "1.1.1.1", "detour": "proxy"}
    assert servers["dns-local"] == {"type": "local", "tag": "dns-local"}
    assert config["dns"]["final"] == "dns-remote" and route["default_domain_resolver"] == "dns-local"
    assert all("address" not in s for s in config["dns"]["servers"])  # the legacy format is gone in 1.14
    # the outbounds are the CLI profile's, exactly
    assert config["outbounds"] == cli["outbounds"]


def test_no_group_can_pick_a_cleartext_vless_server() -> None:
    for fmt in ("sing-box", "sing-box-tun"):
        config = json.loads(render(fmt, ENDPOINTS, UUID)[0])
        by_tag = {o["tag"]: o for o in config["outbounds"]}
        for group in ("auto", "proxy"):
            for tag in by_tag[group]["outbounds"]:
                o = by_tag[tag]
                assert o["type"] != "vless" or o["tls"]["enabled"], (fmt, tag)
    clash = yaml.safe_load(render("clash", ENDPOINTS, UUID)[0])
    for p in clash["proxies"]:
        assert p["type"] != "vless" or p["tls"] is True
        assert p["type"] != "vless" or p.get("reality-opts") or p["network"] == "ws"


def test_render_clash_parses_back() -> None:
    config = yaml.safe_load(render_clash(ENDPOINTS, UUID))
    proxies = config["proxies"]
    assert [(p["type"], p["name"], p["server"], p["port"]) for p in proxies] == _expected()
    assert all(p["uuid"] == UUID and p["udp"] is True for p in proxies)
    assert proxies[0] == {"name": "Tokyo", "type": "vmess", "server": "203.0.113.10", "port": 11994, "uuid": UUID,
                          "alterId": 0, "cipher": "auto", "udp": True}
    assert proxies[1] == {"name": "Frankfurt", "type": "vless", "server": "2001:db8::7", "port": 443, "uuid": UUID,
                          "udp": True, "tls": True, "servername": "www.microsoft.com", "client-fingerprint": "chrome",
                          "flow": "xtls-rprx-vision", "reality-opts": {"public-key": PBK, "short-id": SID},
                          "network": "tcp"}
    ws_opts = {"path": "/0a1b2c3d4e5f6071", "headers": {"Host": "vpn.example.com"}}
    assert proxies[3] == {"name": "Paris vmess-ws", "type": "vmess", "server": "cdn.example.com", "port": 8443,
                          "uuid": UUID, "alterId": 0, "cipher": "auto", "udp": True, "tls": True,
                          "servername": "vpn.example.com", "client-fingerprint": "chrome", "network": "ws",
                          "ws-opts": ws_opts}
    assert proxies[4] == {"name": "Paris vless-ws", "type": "vless", "server": "cdn.example.com", "port": 2053,
                          "uuid": UUID, "udp": True, "tls": True, "servername": "vpn.example.com",
                          "client-fingerprint": "chrome", "network": "ws", "ws-opts": ws_opts}
    groups = {g["name"]: g for g in config["proxy-groups"]}
    names = [e.name for e in ENDPOINTS]
    assert groups["vpnfleet"] == {"name": "vpnfleet", "type": "select", "proxies": ["auto", *names]}
    assert groups["auto"]["type"] == "url-test" and groups["auto"]["proxies"] == names
    assert groups["auto"]["url"].startswith("http") and groups["auto"]["interval"] > 0
    assert config["rules"] == ["MATCH,vpnfleet"]


def test_the_same_reality_values_in_every_format() -> None:
    """sni, short id, public key and fingerprint are the endpoint's, identical in links, sing-box and mihomo."""
    query = parse_share_link(base64.b64decode(render("base64", ENDPOINTS, UUID)[0]).decode().split("\n")[1])["query"]
    box = next(o for o in json.loads(render("sing-box-tun", ENDPOINTS, UUID)[0])["outbounds"]
               if o["tag"] == "Frankfurt")
    clash = yaml.safe_load(render("clash", ENDPOINTS, UUID)[0])["proxies"][1]
    assert (query["sni"][0], query["sid"][0], query["pbk"][0], query["fp"][0]) == \
        (box["tls"]["server_name"], box["tls"]["reality"]["short_id"], box["tls"]["reality"]["public_key"],
         box["tls"]["utls"]["fingerprint"]) == \
        (clash["servername"], clash["reality-opts"]["short-id"], clash["reality-opts"]["public-key"],
         clash["client-fingerprint"]) == ("www.microsoft.com", SID, PBK, "chrome")


def test_clash_keeps_unicode_readable_and_quotes_what_yaml_would_misread() -> None:
    tricky = [Endpoint("日本: yes", "10.0.0.1", 1, "vmess"), reality_endpoint("no", "10.0.0.2", 2),
              Endpoint("- 1", "10.0.0.3", 3, "vmess")]
    text = render_clash(tricky, UUID)
    assert "日本" in text
    assert [p["name"] for p in yaml.safe_load(text)["proxies"]] == ["日本: yes", "no", "- 1"]


def test_names_are_deduplicated_deterministically_in_every_format() -> None:
    twins = [Endpoint("HK", "10.0.0.1", 1, "vmess"), reality_endpoint("HK", "10.0.0.2", 2),
             Endpoint("HK 2", "10.0.0.3", 3, "vmess"), Endpoint("  ", "10.0.0.4", 4, "vmess"),
             Endpoint("auto", "10.0.0.5", 5, "vmess"), reality_endpoint("DIRECT", "2001:db8::5", 6)]
    expected = ["HK", "HK 2", "HK 2 2", "10.0.0.4:4", "auto 2", "DIRECT 2"]
    assert unique_names(twins) == expected
    assert unique_names(twins) == unique_names(list(twins))
    links = base64.b64decode(render_base64(twins, UUID)).decode().split("\n")
    assert [parse_share_link(line)["name"] for line in links] == expected
    sing_box = json.loads(render_sing_box(twins, UUID))
    assert [o["tag"] for o in sing_box["outbounds"][2:-1]] == expected
    clash = yaml.safe_load(render_clash(twins, UUID))
    assert [p["name"] for p in clash["proxies"]] == expected


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("ClashMetaForAndroid/2.10.1.Meta", "clash"),
        ("clash-verge/v1.7.7", "clash"),
        ("mihomo/1.18.3", "clash"),
        ("Stash/2.4.7 Clash/1.9.0", "clash"),
        ("ClashforWindows/0.20.39", "clash-legacy"),  # the original core: no VLESS
        ("ClashX/1.118.0 (com.west2online.ClashX; build:1.118.0; macOS 14.5.0) Alamofire/5.8.1", "clash-legacy"),
        ("ClashX Meta/v1.4.1", "clash"),
        ("FlClash/v0.8 Platform/android", "clash"),
        ("Meta", "clash"),
        ("SFA/1.9.3 (34; sing-box 1.9.3)", "sing-box-tun"),  # the apps capture device traffic with tun only
        ("SFI/1.9.3 (Build 1; sing-box 1.9.3; language zh_CN)", "sing-box-tun"),
        ("SFM/1.10.0", "sing-box-tun"),
        ("SFA/1.14.4 (1144; sing-box 1.14.4; language en_US)", "sing-box-tun"),
        ("sing-box 1.10.0", "sing-box"),  # the CLI keeps the local mixed inbound
        ("sing-box/1.14.4", "sing-box"),
        ("SFAX/1.0", "base64"),
        ("singbox", "sing-box"),
        ("HiddifyNext/2.5.7 (android) like ClashMeta v2ray sing-box", "clash"),
        ("HiddifyNext/2.5.7 (android)", "sing-box"),
        ("v2rayN/6.42", "base64"),
        ("v2rayNG/1.8.19", "base64"),
        ("Shadowrocket/2070 CFNetwork/1496.0.7 Darwin/23.5.0", "base64"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15", "base64"),
        ("curl/8.5.0", "base64"),
        ("Metadata-Fetcher/1.0", "base64"),
        ("", "base64"),
        (None, "base64"),
    ],
)
def test_pick_format_by_user_agent(user_agent: str | None, expected: str) -> None:
    assert pick_format(user_agent, None) == expected


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("base64", "base64"), ("v2ray", "base64"), ("links", "base64"), ("sing-box", "sing-box"),
     ("SingBox", "sing-box"), ("json", "sing-box"), ("clash", "clash"), (" Mihomo ", "clash"), ("yaml", "clash"),
     ("clash-legacy", "clash-legacy"), ("Clash-Premium", "clash-legacy"), ("", "clash"),
     ("sing-box-tun", "sing-box-tun"), ("SingBox-Tun", "sing-box-tun")],
)
def test_pick_format_explicit_request_wins(requested: str, expected: str) -> None:
    assert pick_format("clash-verge/v1.7.7", requested) == expected


def test_format_overrides_the_sing_box_apps_user_agent() -> None:
    assert pick_format("SFA/1.14.4 (1144; sing-box 1.14.4)", "sing-box") == "sing-box"
    assert pick_format("SFI/1.14.4", "base64") == "base64"
    assert pick_format("sing-box 1.14.4", "sing-box-tun") == "sing-box-tun"


def test_pick_format_refuses_unknown_values_and_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as caught:
        pick_format("v2rayN/6.42", "surge")
    message = str(caught.value)
    assert "'surge'" in message
    assert all(word in message for word in ("base64", "v2ray", "links", "sing-box", "singbox", "json",
                                            "sing-box-tun", "clash", "mihomo", "yaml"))


@pytest.mark.parametrize("fmt", SUBSCRIPTION_FORMATS)
def test_render_returns_body_and_media_type(fmt: str) -> None:
    body, media_type = render(fmt, ENDPOINTS, UUID)
    loaders = {
        "base64": lambda text: base64.b64decode(text, validate=True).decode().split("\n"),
        "sing-box": json.loads,
        "sing-box-tun": json.loads,
        "clash": yaml.safe_load,
        "clash-legacy": yaml.safe_load,
    }
    assert loaders[fmt](body)
    assert media_type == {"base64": "text/plain; charset=utf-8", "sing-box": "application/json",
                          "sing-box-tun": "application/json", "clash": "text/yaml; charset=utf-8",
                          "clash-legacy": "text/yaml; charset=utf-8"}[fmt]
    for e in ENDPOINTS:
        assert (e.address in body) or fmt == "base64" or (fmt, e.protocol) == ("clash-legacy", "vless")


def test_clash_legacy_leaves_out_vless_which_the_original_core_refuses() -> None:
    legacy = yaml.safe_load(render("clash-legacy", ENDPOINTS, UUID)[0])
    meta = yaml.safe_load(render("clash", ENDPOINTS, UUID)[0])
    assert {p["type"] for p in meta["proxies"]} == {"vmess", "vless"}
    assert {p["type"] for p in legacy["proxies"]} == {"vmess"}
    # the original core knows vmess over ws+tls (tls, servername, ws-opts) but not uTLS fingerprints
    assert [{k: v for k, v in p.items() if k != "client-fingerprint"} for p in meta["proxies"]
            if p["type"] == "vmess"] == legacy["proxies"]
    assert all("client-fingerprint" not in p and "reality-opts" not in p for p in legacy["proxies"])
    ws = next(p for p in legacy["proxies"] if p.get("network") == "ws")
    assert ws["tls"] is True and ws["servername"] == "vpn.example.com" and ws["ws-opts"]["path"]
    with pytest.raises(NoEndpoints):
        render("clash-legacy", [e for e in ENDPOINTS if e.protocol == "vless"], UUID)


def test_render_refuses_unknown_formats_and_empty_subscriptions() -> None:
    with pytest.raises(ValueError, match="sing-box"):
        render("surge", ENDPOINTS, UUID)
    for fmt in SUBSCRIPTION_FORMATS:
        with pytest.raises(NoEndpoints):
            render(fmt, [], UUID)


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "3f1c2b4a-9d8e-4f70-a1b2"])
def test_credentials_must_be_uuids(bad: str) -> None:
    for render_one, endpoint in ((vmess_link, ENDPOINTS[0]), (vless_link, ENDPOINTS[1]),
                                 (vmess_link, ENDPOINTS[3]), (vless_link, ENDPOINTS[4])):
        with pytest.raises(ValueError, match="UUID"):
            render_one(endpoint, bad)
    for fmt in SUBSCRIPTION_FORMATS:
        with pytest.raises(ValueError, match="UUID"):
            render(fmt, ENDPOINTS, bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": True}, "port"),
        ({"protocol": "trojan"}, "protocol"),
        ({"protocol": "vless"}, "VLESS"),
        ({"profile": "vless-reality-vision"}, "profile"),
        ({"profile": "vmess-ws-tls"}, "host name"),  # no sni
        ({"profile": "vmess-ws-tls", "sni": "a.example", "ws_path": "no-slash"}, "ws_path"),
        ({"profile": "vmess-ws-tls", "sni": "a.example", "ws_path": "/a b"}, "ws_path"),
        ({"protocol": "vless", "profile": "vless-reality-vision", "sni": "a.example", "short_id": "ab"},
         "public key"),
        ({"protocol": "vless", "profile": "vless-reality-vision", "sni": "a.example", "public_key": PBK + "=",
          "short_id": "ab"}, "public key"),
        ({"protocol": "vless", "profile": "vless-reality-vision", "sni": "a.example", "public_key": PBK,
          "short_id": "xyz1"}, "short id"),
        ({"protocol": "vless", "profile": "vless-reality-vision", "sni": "203.0.113.9", "public_key": PBK,
          "short_id": "ab"}, "host name"),
        ({"fingerprint": "netscape"}, "fingerprint"),
        ({"host": ""}, "host name"),
        ({"host": "a b"}, "host name"),
        ({"host": "evil@host"}, "host name"),
        ({"host": "host.example:443"}, "no port"),
        ({"name": "line\nbreak"}, "control"),
    ],
)
def test_endpoint_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "n", "host": "10.0.0.1", "port": 443, "protocol": "vmess"} | kwargs
    with pytest.raises(ValueError, match=message):
        Endpoint(**fields)  # type: ignore[arg-type]


def test_subscription_userinfo() -> None:
    assert subscription_userinfo(1, 2, 3, 4) == "upload=1; download=2; total=3; expire=4"
    assert subscription_userinfo(0, 0, 0, 0) == "upload=0; download=0; total=0; expire=0"
    for bad in ((-1, 0, 0, 0), (0, 1.5, 0, 0), (0, 0, True, 0)):
        with pytest.raises(ValueError):
            subscription_userinfo(*bad)  # type: ignore[arg-type]


def test_base64_bodies_are_strict_base64() -> None:
    body = render_base64(ENDPOINTS, UUID)
    assert "\n" not in body
    try:
        base64.b64decode(body, validate=True)
    except binascii.Error:  # pragma: no cover - the assertion message is the point
        pytest.fail("subscription body is not standard padded base64")
