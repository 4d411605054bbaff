"""Render cloud-init user data from cloud-init/user-data.yaml, and read back what rendered user data carries.

The template is parsed as YAML and ``${NAME}`` placeholders are replaced inside string values only, then the
structure is dumped again: a value (a token, a PEM, a URL) can never change the document's structure, which
string templating of YAML would allow.

Some values are optional (the Xray download: a controller may have no Xray binary). An optional value that is
absent removes every entry of a top-level list (a ``write_files`` file, a ``runcmd`` step) that uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError

HEADER = "#cloud-config\n"
#: Where the template writes the package checksum that ``sha256sum --check`` reads.
CHECKSUM_PATH = "/opt/vpnfleet/dist/SHA256SUMS"
#: Where nodes keep what they downloaded (the agent wheel, the Xray binary).
DIST_DIR = "/opt/vpnfleet/dist"
#: Where the template installs the Xray binary (on the agent's PATH: the driver runs `xray`).
XRAY_PATH = "/usr/local/bin/xray"
#: Where the template writes the controller's CA, which downloads from the controller are pinned to.
DOWNLOAD_CA_PATH = "/etc/vpnfleet/controller-ca.pem"
#: Debian's trust store (package ca-certificates): for downloads from elsewhere (a mirror, a TLS proxy).
SYSTEM_CA_PATH = "/etc/ssl/certs/ca-certificates.crt"

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A wheel file name, and nothing a shell or a checksum line could misread.
_FILENAME = re.compile(r"[A-Za-z0-9_.+-]+\.whl")
_REQUIREMENTS_FILENAME = re.compile(r"[A-Za-z0-9_.+-]+\.txt")
# What controller/core_bundle.py names the Xray binary it serves.
_XRAY_FILENAME = re.compile(r"xray-[0-9]+\.[0-9]+\.[0-9]+-linux-(amd64|arm64)")


class CloudInitError(ValueError):
    """The template or a value for it is unusable, or user data lacks what it should carry."""


@dataclass(frozen=True)
class Download:
    """A file a node downloads: where from, its sha256, and the name it is saved under in DIST_DIR."""

    url: str
    sha256: str
    filename: str


@dataclass(frozen=True)
class XrayDownload:
    """The Xray binary a node downloads from the controller or a mirror: URL (no credential in it), sha256, file name
    (``xray-<version>-linux-<arch>``) and the architecture it runs on (Debian's name: amd64, arm64)."""

    url: str
    sha256: str
    filename: str
    arch: str


def render_user_data(agent_config: AgentConfig, package_url: str, package_sha256: str, package_filename: str,
                     template_path: Path, xray: XrayDownload | None = None, *, requirements: Download,
                     download_ca_pem: str | None = None) -> str:
    """The ``#cloud-config`` user data that installs the agent package and its hash-pinned requirements (and
    xray, if given; without it the node runs V2Ray only) and starts the agent with agent_config.

    download_ca_pem: the CA the controller's own https certificate chains to; downloads from the controller's
    origin are pinned to it (``curl --cacert``). None: they use the system trust store (a TLS proxy with a
    public certificate in front of the controller, or the operator's own certificate)."""
    for what, url in (("package", package_url), ("requirements", requirements.url)):
        if not url.startswith(("https://", "http://")):
            raise CloudInitError(f"{what} URL must be http(s), got {url[:40]!r}")
        if "token=" in url:
            raise CloudInitError(f"{what} URL carries a token: downloads are sha256-pinned, never authenticated by URL")
    if not _SHA256.fullmatch(requirements.sha256):
        raise CloudInitError("requirements sha256 must be 64 lowercase hex digits")
    if not _REQUIREMENTS_FILENAME.fullmatch(requirements.filename):
        raise CloudInitError(f"bad requirements file name {requirements.filename!r}")
    if download_ca_pem is not None and "-----BEGIN CERTIFICATE-----" not in download_ca_pem:
        raise CloudInitError("download CA must be a PEM certificate")
    if not _SHA256.fullmatch(package_sha256):
        raise CloudInitError("package sha256 must be 64 lowercase hex digits")
    if not _FILENAME.fullmatch(package_filename):
        raise CloudInitError(f"bad package file name {package_filename!r}")
    if xray is not None:
        if not xray.url.startswith(("https://", "http://")):
            raise CloudInitError(f"Xray URL must be http(s), got {xray.url[:40]!r}")
        if not _SHA256.fullmatch(xray.sha256):
            raise CloudInitError("Xray sha256 must be 64 lowercase hex digits")
        if not _XRAY_FILENAME.fullmatch(xray.filename) or not xray.filename.endswith(f"-linux-{xray.arch}"):
            raise CloudInitError(f"bad Xray file name {xray.filename!r} (arch {xray.arch!r})")
    try:
        template = yaml.safe_load(Path(template_path).read_text())
    except OSError as exc:
        raise CloudInitError(f"cannot read cloud-init template {template_path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CloudInitError(f"cloud-init template {template_path} is not valid YAML: {exc}") from exc
    values: dict[str, str | None] = {
        "AGENT_CONFIG": agent_config.to_yaml(),
        "PACKAGE_URL": package_url,
        "PACKAGE_SHA256": package_sha256,
        "PACKAGE_FILENAME": package_filename,
        "REQUIREMENTS_URL": requirements.url,
        "REQUIREMENTS_SHA256": requirements.sha256,
        "REQUIREMENTS_FILENAME": requirements.filename,
        "DOWNLOAD_CA_PEM": download_ca_pem,
        "DOWNLOAD_CA_FILE": DOWNLOAD_CA_PATH if download_ca_pem is not None else SYSTEM_CA_PATH,
        "XRAY_CA_FILE": (DOWNLOAD_CA_PATH if download_ca_pem is not None and xray is not None
                         and _origin(xray.url) == _origin(package_url) else SYSTEM_CA_PATH),
        "DOWNLOAD_PROTO": _protocols(package_url),
        "XRAY_PROTO": xray and _protocols(xray.url),
        "XRAY_URL": xray and xray.url,
        "XRAY_SHA256": xray and xray.sha256,
        "XRAY_FILENAME": xray and xray.filename,
        "XRAY_ARCH": xray and xray.arch,
    }
    return HEADER + yaml.dump(substitute(template, values), Dumper=_Dumper, sort_keys=False, width=1000)


def _protocols(url: str) -> str:
    """curl --proto: an https download may not be redirected to plain http."""
    return "=https" if url.startswith("https://") else "=https,http"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def substitute(node: Any, values: Mapping[str, str | None], _in_list: bool = False) -> Any:
    """A copy of node with every ``${NAME}`` in its string values replaced; an unknown name is an error.

    A name whose value is None is absent: an entry of a top-level list (not nested in another list) that uses
    it is left out whole; anywhere else it is an error."""
    if isinstance(node, dict):
        return {key: substitute(value, values, _in_list) for key, value in node.items()}
    if isinstance(node, list):
        if _in_list:
            return [substitute(item, values, True) for item in node]
        return [substitute(item, values, True) for item in node if not _uses_absent(item, values)]
    if isinstance(node, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise CloudInitError(f"cloud-init template uses unknown placeholder ${{{name}}}")
            value = values[name]
            if value is None:
                raise CloudInitError(f"cloud-init template uses optional ${{{name}}} outside a list entry")
            return value

        # One pass: replacement text is never scanned again, so a value containing "${X}" stays literal.
        return _PLACEHOLDER.sub(replace, node)
    return node


def _uses_absent(node: Any, values: Mapping[str, str | None]) -> bool:
    """Whether node (of the template, before substitution) uses a placeholder whose value is None."""
    if isinstance(node, dict):
        return any(_uses_absent(value, values) for value in node.values())
    if isinstance(node, list):
        return any(_uses_absent(item, values) for item in node)
    if isinstance(node, str):
        return any(name in values and values[name] is None for name in _PLACEHOLDER.findall(node))
    return False


def agent_config_from_user_data(user_data: str) -> AgentConfig:
    """The AgentConfig that user data writes to DEFAULT_CONFIG_PATH (for the local provider and tests)."""
    content = _written_file(_load(user_data), DEFAULT_CONFIG_PATH)
    try:
        return AgentConfig.from_dict(yaml.safe_load(content))
    except (yaml.YAMLError, ConfigError) as exc:
        raise CloudInitError(f"agent config in user data is invalid: {exc}") from exc


def package_url_from_user_data(user_data: str) -> tuple[str, str]:
    """(package URL, sha256) from rendered user data: the curl download of the wheel and the checksum file."""
    doc = _load(user_data)
    url = next((url for output, url in _downloads(doc) if output.endswith(".whl")), None)
    if url is None:
        raise CloudInitError("user data has no curl download of the agent package")
    sha256 = _written_file(doc, CHECKSUM_PATH).split()[0]
    return url, sha256


def download_ca_from_user_data(user_data: str) -> str | None:
    """The CA PEM downloads from the controller are pinned to, or None: they use the system trust store."""
    try:
        return _written_file(_load(user_data), DOWNLOAD_CA_PATH)
    except CloudInitError as exc:
        if "does not write" in str(exc):
            return None
        raise


def xray_download_from_user_data(user_data: str) -> XrayDownload | None:
    """The Xray download rendered user data carries (its curl step and checksum file), or None: the node then
    runs V2Ray only."""
    doc = _load(user_data)
    prefix = f"{DIST_DIR}/"
    found = next(((output, url) for output, url in _downloads(doc)
                  if output.startswith(prefix) and _XRAY_FILENAME.fullmatch(output[len(prefix):])), None)
    if found is None:
        return None
    output, url = found
    sha256 = _written_file(doc, f"{output}.sha256").split()[0]
    filename = output[len(prefix):]
    return XrayDownload(url=url, sha256=sha256, filename=filename, arch=filename.rsplit("-", 1)[1])


def _downloads(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(output path, URL) of every list-form curl step in runcmd."""
    found = []
    for cmd in doc.get("runcmd") or []:
        if not (isinstance(cmd, list) and cmd and cmd[0] == "curl" and "--output" in cmd):
            continue
        at = cmd.index("--output")
        url = next((arg for arg in cmd if isinstance(arg, str) and arg.startswith(("https://", "http://"))), None)
        if url is not None and at + 1 < len(cmd):
            found.append((str(cmd[at + 1]), url))
    return found


def _load(user_data: str) -> dict[str, Any]:
    if not user_data.startswith(HEADER):
        raise CloudInitError("user data is not a #cloud-config document")
    try:
        doc = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        raise CloudInitError(f"user data is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise CloudInitError("user data must be a mapping")
    return doc


def _written_file(doc: dict[str, Any], path: str) -> str:
    for entry in doc.get("write_files") or []:
        if isinstance(entry, dict) and entry.get("path") == path:
            if entry.get("encoding") not in (None, "text/plain"):
                raise CloudInitError(f"user data writes {path} encoded; only plain text is supported")
            return str(entry.get("content", ""))
    raise CloudInitError(f"user data does not write {path}")


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings as literal blocks, so user data stays readable in the console."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML itself falls back to a quoted style when a block cannot hold the text exactly.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)
