from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from controller.errors import ValidationFailed
from controller.wireguard_keys import generate_keypair, generate_preshared_key, public_key_of, validate_key


def test_keypair_is_consistent_and_well_formed() -> None:
    pairs = [generate_keypair() for _ in range(20)]
    assert len({private for private, _ in pairs}) == 20
    for private, public in pairs:
        assert len(private) == len(public) == 44
        assert public_key_of(private) == public
        raw = base64.b64decode(private)
        assert raw[0] & 7 == 0 and raw[31] & 0xC0 == 0x40  # clamped, like `wg genkey`
    psk = generate_preshared_key()
    assert len(base64.b64decode(psk)) == 32 and psk != generate_preshared_key()


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools (wg) not installed")
def test_public_key_matches_wg_pubkey() -> None:
    wg = shutil.which("wg")
    assert wg is not None
    for _ in range(5):
        private, public = generate_keypair()
        out = subprocess.run([wg, "pubkey"], input=private + "\n", capture_output=True, text=True, check=True)
        assert out.stdout.strip() == public
    # and keys made by wg itself
    private = subprocess.run([wg, "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run([wg, "pubkey"], input=private + "\n", capture_output=True, text=True, check=True)
    assert public_key_of(private) == out.stdout.strip()
    validate_key(subprocess.run([wg, "genpsk"], capture_output=True, text=True, check=True).stdout, "preshared_key")


def test_validate_key_accepts_and_normalises() -> None:
    private, public = generate_keypair()
    assert validate_key(public, "public_key") == public
    assert validate_key(f"  {private}\n", "private_key") == private


@pytest.mark.parametrize("bad", [
    "", "not base64!", base64.b64encode(b"x" * 31).decode(), base64.b64encode(b"x" * 33).decode(),
    base64.b64encode(b"x" * 32).decode().rstrip("="), None, 42, b"x" * 32,
])
def test_validate_key_rejects_naming_the_field(bad: object) -> None:
    with pytest.raises(ValidationFailed) as e:
        validate_key(bad, "public_key")
    assert set(e.value.details) == {"public_key"}
    with pytest.raises(ValidationFailed) as e:
        public_key_of(bad)  # type: ignore[arg-type]
    assert set(e.value.details) == {"private_key"}
