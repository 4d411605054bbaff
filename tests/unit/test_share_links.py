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
ENDPOINTS = [
    Endpoint("Tokyo", "203.0.113.10", 11994, "vmess"),
    Endpoint("Frankfurt", "2001:db8::7", 443, "vless"),
    Endpoint("Virginia", "us-east.example.net", 8443, "vmess"),
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


def test_vless_link_shape() -> None:
    link = vless_link(ENDPOINTS[2], UUID)
    assert link == f"vless://{UUID}@us-east.example.net:8443?encryption=none&type=tcp#Virginia"


def test_vless_link_brackets_ipv6_and_percent_encodes_the_name() -> None:
    link = vless_link(Endpoint("美西 #1 / a&b?", "2001:db8::7", 443, "vless"), UUID)
    assert link.startswith(f"vless://{UUID}@[2001:db8::7]:443?")
    fragment = link.split("#", 1)[1]
    assert all(c not in fragment for c in " #/&?") and fragment.isascii()
    data = parse_share_link(link)
    assert data["name"] == "美西 #1 / a&b?"
    assert data["host"] == "2001:db8::7" and data["port"] == 443 and data["uuid"] == UUID
    assert data["query"] == {"encryption": ["none"], "type": ["tcp"]}


def test_share_link_dispatches_on_protocol() -> None:
    assert share_link(ENDPOINTS[0], UUID).startswith("vmess://")
    assert share_link(ENDPOINTS[1], UUID).startswith("vless://")


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
    outbounds = {o["tag"]: o for o in config["outbounds"]}
    assert len(outbounds) == len(config["outbounds"]), "tags must be unique"
    nodes = [o for o in config["outbounds"] if o["type"] in ("vmess", "vless")]
    assert [(o["type"], o["tag"], o["server"], o["server_port"]) for o in nodes] == _expected()
    assert all(o["uuid"] == UUID for o in nodes)
    assert outbounds["Tokyo"]["alter_id"] == 0 and outbounds["Tokyo"]["security"] == "auto"
    assert "alter_id" not in outbounds["Frankfurt"]
    names = [e.name for e in ENDPOINTS]
    assert outbounds["proxy"]["type"] == "selector" and outbounds["proxy"]["outbounds"] == ["auto", *names]
    assert outbounds["auto"]["type"] == "urltest" and outbounds["auto"]["outbounds"] == names
    assert outbounds["direct"]["type"] == "direct"
    assert config["route"]["final"] == "proxy"
    every_reference = outbounds["proxy"]["outbounds"] + outbounds["auto"]["outbounds"]
    assert set(every_reference) <= set(outbounds)


def test_render_clash_parses_back() -> None:
    config = yaml.safe_load(render_clash(ENDPOINTS, UUID))
    proxies = config["proxies"]
    assert [(p["type"], p["name"], p["server"], p["port"]) for p in proxies] == _expected()
    assert all(p["uuid"] == UUID and p["udp"] is True for p in proxies)
    assert proxies[0]["alterId"] == 0 and proxies[0]["cipher"] == "auto"
    assert proxies[1]["network"] == "tcp" and "cipher" not in proxies[1]
    groups = {g["name"]: g for g in config["proxy-groups"]}
    names = [e.name for e in ENDPOINTS]
    assert groups["vpnfleet"] == {"name": "vpnfleet", "type": "select", "proxies": ["auto", *names]}
    assert groups["auto"]["type"] == "url-test" and groups["auto"]["proxies"] == names
    assert groups["auto"]["url"].startswith("http") and groups["auto"]["interval"] > 0
    assert config["rules"] == ["MATCH,vpnfleet"]


def test_clash_keeps_unicode_readable_and_quotes_what_yaml_would_misread() -> None:
    tricky = [Endpoint("日本: yes", "10.0.0.1", 1, "vmess"), Endpoint("no", "10.0.0.2", 2, "vless"),
              Endpoint("- 1", "10.0.0.3", 3, "vmess")]
    text = render_clash(tricky, UUID)
    assert "日本" in text
    assert [p["name"] for p in yaml.safe_load(text)["proxies"]] == ["日本: yes", "no", "- 1"]


def test_names_are_deduplicated_deterministically_in_every_format() -> None:
    twins = [Endpoint("HK", "10.0.0.1", 1, "vmess"), Endpoint("HK", "10.0.0.2", 2, "vless"),
             Endpoint("HK 2", "10.0.0.3", 3, "vmess"), Endpoint("  ", "10.0.0.4", 4, "vmess"),
             Endpoint("auto", "10.0.0.5", 5, "vmess"), Endpoint("DIRECT", "2001:db8::5", 6, "vless")]
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
        ("SFA/1.9.3 (34; sing-box 1.9.3)", "sing-box"),
        ("SFI/1.9.3 (Build 1; sing-box 1.9.3; language zh_CN)", "sing-box"),
        ("SFM/1.10.0", "sing-box"),
        ("sing-box 1.10.0", "sing-box"),
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
     ("clash-legacy", "clash-legacy"), ("Clash-Premium", "clash-legacy"), ("", "clash")],
)
def test_pick_format_explicit_request_wins(requested: str, expected: str) -> None:
    assert pick_format("clash-verge/v1.7.7", requested) == expected


def test_pick_format_refuses_unknown_values_and_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as caught:
        pick_format("v2rayN/6.42", "surge")
    message = str(caught.value)
    assert "'surge'" in message
    assert all(word in message for word in ("base64", "v2ray", "links", "sing-box", "singbox", "json",
                                            "clash", "mihomo", "yaml"))


@pytest.mark.parametrize("fmt", SUBSCRIPTION_FORMATS)
def test_render_returns_body_and_media_type(fmt: str) -> None:
    body, media_type = render(fmt, ENDPOINTS, UUID)
    loaders = {
        "base64": lambda text: base64.b64decode(text, validate=True).decode().split("\n"),
        "sing-box": json.loads,
        "clash": yaml.safe_load,
        "clash-legacy": yaml.safe_load,
    }
    assert loaders[fmt](body)
    assert media_type == {"base64": "text/plain; charset=utf-8", "sing-box": "application/json",
                          "clash": "text/yaml; charset=utf-8", "clash-legacy": "text/yaml; charset=utf-8"}[fmt]
    for e in ENDPOINTS:
        assert (e.host in body) or fmt == "base64" or (fmt, e.protocol) == ("clash-legacy", "vless")


def test_clash_legacy_leaves_out_vless_which_the_original_core_refuses() -> None:
    legacy = yaml.safe_load(render("clash-legacy", ENDPOINTS, UUID)[0])
    meta = yaml.safe_load(render("clash", ENDPOINTS, UUID)[0])
    assert {p["type"] for p in meta["proxies"]} == {"vmess", "vless"}
    assert {p["type"] for p in legacy["proxies"]} == {"vmess"}
    assert [p for p in meta["proxies"] if p["type"] == "vmess"] == legacy["proxies"]
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
    for render_one in (vmess_link, vless_link):
        with pytest.raises(ValueError, match="UUID"):
            render_one(ENDPOINTS[0], bad)
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
