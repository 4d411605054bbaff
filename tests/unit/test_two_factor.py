"""TOTP steps (a real pyotp clock), QR codes and recovery codes (controller.two_factor)."""

from __future__ import annotations

import base64
import time
import urllib.parse

import pyotp

from controller import two_factor


def test_secret_and_uri_are_what_authenticator_apps_take() -> None:
    secret = two_factor.new_secret()
    assert len(base64.b32decode(secret)) == 20  # 160 bits
    uri = two_factor.otpauth_uri(secret, "alice")
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    query = urllib.parse.parse_qs(parsed.query)
    assert query["secret"] == [secret] and query["issuer"] == ["vpnfleet"]
    assert pyotp.parse_uri(uri).now() == pyotp.TOTP(secret).now()


def test_qr_code_is_an_svg_data_url() -> None:
    qr = two_factor.qr_data_url(two_factor.otpauth_uri(two_factor.new_secret(), "alice"))
    assert qr.startswith("data:image/svg+xml")
    assert "svg" in urllib.parse.unquote(qr)


def test_window_either_side_and_no_further() -> None:
    secret = two_factor.new_secret()
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = int(now // 30)
    assert two_factor.matching_step(secret, totp.at(now), None, now) == step
    assert two_factor.matching_step(secret, totp.at(now - 30), None, now) == step - 1
    assert two_factor.matching_step(secret, totp.at(now + 30), None, now) == step + 1
    assert two_factor.matching_step(secret, totp.at(now - 90), None, now) is None
    assert two_factor.matching_step(secret, totp.at(now - 60), None, now) is None


def test_a_code_is_good_once() -> None:
    secret = two_factor.new_secret()
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = two_factor.matching_step(secret, totp.at(now), None, now)
    assert step is not None
    assert two_factor.matching_step(secret, totp.at(now), step, now) is None  # replayed
    assert two_factor.matching_step(secret, totp.at(now - 30), step, now) is None  # older than the last one
    assert two_factor.matching_step(secret, totp.at(now + 30), step, now) == step + 1


def test_malformed_codes_never_match() -> None:
    secret = two_factor.new_secret()
    for code in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5"):
        assert two_factor.matching_step(secret, code, None) is None
    spaced = pyotp.TOTP(secret).now()
    assert two_factor.matching_step(secret, f"{spaced[:3]} {spaced[3:]}", None) is not None


def test_recovery_codes_are_random_and_hashed_forgivingly() -> None:
    codes = two_factor.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert len(groups) == 4 and all(len(g) == 4 for g in groups)
    code = codes[0]
    assert two_factor.recovery_hash(code) == two_factor.recovery_hash(code.upper().replace("-", " "))
    assert two_factor.recovery_hash(code) != two_factor.recovery_hash(codes[1])
    assert not two_factor.looks_like_totp(code) and two_factor.looks_like_totp("123456")
