"""A WireGuard client's ``.conf`` (wg-quick format), its QR code, and its file name (seed 001's ``config``/``qr_code``).

Pure: text in, text out.

When the client brought its own key pair (the controller only knows the public key), the ``[Interface]``
gets a *commented* placeholder ``# PrivateKey = <insert your private key>``: every wg-quick parser skips
comments, so the file stays well-formed, and the user just uncomments the line and pastes the key.
The official apps refuse a tunnel without a private key, so an unedited file is rejected at import with
a clear "no private key" error rather than a confusing "invalid key" one; a placeholder that looked like a
value would also risk being shipped as-is.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import segno

from controller.errors import ValidationFailed
from controller.wireguard_keys import validate_key

PRIVATE_KEY_PLACEHOLDER = "# PrivateKey = <insert your private key>"
QR_ERROR = "l"  # qrencode's default (as in `qrencode -t ansiutf8 < wg0.conf`); segno boosts it when the version allows
QR_SCALE = 8  # pixels per module: a ~400-byte config (version 13, 69 modules + 8 quiet) is ~620 px
WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _clean(value: object, field: str) -> str:
    """A value as written on one line; control characters (a newline could inject ``PostUp``) are refused."""
    text = str(value)
    if not text.strip() or any(unicodedata.category(c) == "Cc" for c in text):
        why = "must be a non-empty single-line value"
        raise ValidationFailed(f"{field} {why}", {field: why})
    return text.strip()


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal bracketed: ``[2001:db8::1]:51820``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationFailed(f"endpoint port must be 1..65535, not {port!r}", {"endpoint": "port must be 1..65535"})
    host = _clean(host, "endpoint").strip("[]")
    if not host or any(c.isspace() or c in "[]/" for c in host):
        why = f"{host!r} is not a host name or IP address"
        raise ValidationFailed(f"endpoint: {why}", {"endpoint": why})
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{ipaddress.ip_address(host)}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def normalise_endpoint(endpoint: str) -> str:
    """``host:port``, ``[v6]:port`` or ``v6:port`` (unambiguous only) -> canonical form with brackets for IPv6."""
    text = _clean(endpoint, "endpoint")
    why = "must be host:port, with an IPv6 address in brackets: [2001:db8::1]:51820"
    bracketed = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text)
    if bracketed:
        host, port = bracketed.groups()
    else:
        try:
            ipaddress.ip_address(text)  # a bare address: no port, or a v6 one ending in a port-like hextet
        except ValueError:
            pass
        else:
            raise ValidationFailed(f"endpoint {why}", {"endpoint": why})
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or (":" in host and not _is_ipv6(host)):
            raise ValidationFailed(f"endpoint {why}", {"endpoint": why})
    return format_endpoint(host, int(port))


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def render_client_config(*, private_key: str | None, addresses: list[str], dns: list[str], mtu: int | None,
                         server_public_key: str, preshared_key: str | None, endpoint: str, allowed_ips: list[str],
                         persistent_keepalive: int | None) -> str:
    """The client's wg-quick ``.conf``; empty/None optional fields are left out. Ends with a newline.

    Keys are checked (ValidationFailed naming the field); a value with a newline is refused, so no field
    can smuggle extra lines (e.g. ``PostUp``) into a file the user runs with wg-quick.
    """
    def joined(values: list[str], field: str) -> str:
        return ", ".join(_clean(v, field) for v in values)

    lines = ["[Interface]"]
    lines.append(f"PrivateKey = {validate_key(private_key, 'private_key')}" if private_key else PRIVATE_KEY_PLACEHOLDER)
    if addresses:
        lines.append(f"Address = {joined(addresses, 'addresses')}")
    if dns:
        lines.append(f"DNS = {joined(dns, 'dns_servers')}")
    if mtu:
        lines.append(f"MTU = {int(mtu)}")
    lines += ["", "[Peer]", f"PublicKey = {validate_key(server_public_key, 'server_public_key')}"]
    if preshared_key:
        lines.append(f"PresharedKey = {validate_key(preshared_key, 'preshared_key')}")
    lines.append(f"Endpoint = {normalise_endpoint(endpoint)}")
    if allowed_ips:
        lines.append(f"AllowedIPs = {joined(allowed_ips, 'allowed_ips')}")
    if persistent_keepalive:
        lines.append(f"PersistentKeepalive = {int(persistent_keepalive)}")
    return "\n".join(lines) + "\n"


def make_qr(text: str) -> segno.QRCode:
    """The QR code of a config: full-size (never Micro QR), low error correction boosted when it costs nothing."""
    return segno.make_qr(text, error=QR_ERROR, boost_error=True)


def qr_code_data_url(text: str) -> str:
    """``data:image/png;base64,...`` of the config's QR code, with the standard 4-module quiet zone."""
    return make_qr(text).png_data_uri(scale=QR_SCALE, border=4)


def config_filename(name: str) -> str:
    """A safe ``<tunnel>.conf``: the apps take the tunnel name from it (1-15 of ``[a-zA-Z0-9_=+.-]``)."""
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-zA-Z0-9_=+.-]+", "_", ascii_name).strip("._-")[:15].rstrip("._-")
    if not stem:
        stem = "wg0"
    if stem.lower().split(".")[0] in WINDOWS_RESERVED:
        stem = f"wg-{stem}"[:15]
    return f"{stem}.conf"
