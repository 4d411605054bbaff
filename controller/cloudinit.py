"""Render cloud-init user data from cloud-init/user-data.yaml, and read back what rendered user data carries.

The template is parsed as YAML and ``${NAME}`` placeholders are replaced inside string values only, then the
structure is dumped again: a value (a token, a PEM, a URL) can never change the document's structure, which
string templating of YAML would allow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError

HEADER = "#cloud-config\n"
#: Where the template writes the package checksum that ``sha256sum --check`` reads.
CHECKSUM_PATH = "/opt/vpnfleet/dist/SHA256SUMS"

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A wheel file name, and nothing a shell or a checksum line could misread.
_FILENAME = re.compile(r"[A-Za-z0-9_.+-]+\.whl")


class CloudInitError(ValueError):
    """The template or a value for it is unusable, or user data lacks what it should carry."""


def render_user_data(agent_config: AgentConfig, package_url: str, package_sha256: str, package_filename: str,
                     template_path: Path) -> str:
    """The ``#cloud-config`` user data that installs the agent package and starts it with agent_config."""
    if not package_url.startswith(("https://", "http://")):
        raise CloudInitError(f"package URL must be http(s), got {package_url[:40]!r}")
    if not _SHA256.fullmatch(package_sha256):
        raise CloudInitError("package sha256 must be 64 lowercase hex digits")
    if not _FILENAME.fullmatch(package_filename):
        raise CloudInitError(f"bad package file name {package_filename!r}")
    try:
        template = yaml.safe_load(Path(template_path).read_text())
    except OSError as exc:
        raise CloudInitError(f"cannot read cloud-init template {template_path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CloudInitError(f"cloud-init template {template_path} is not valid YAML: {exc}") from exc
    values = {
        "AGENT_CONFIG": agent_config.to_yaml(),
        "PACKAGE_URL": package_url,
        "PACKAGE_SHA256": package_sha256,
        "PACKAGE_FILENAME": package_filename,
    }
    return HEADER + yaml.dump(substitute(template, values), Dumper=_Dumper, sort_keys=False, width=1000)


def substitute(node: Any, values: Mapping[str, str]) -> Any:
    """A copy of node with every ``${NAME}`` in its string values replaced; an unknown name is an error."""
    if isinstance(node, dict):
        return {key: substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if isinstance(node, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise CloudInitError(f"cloud-init template uses unknown placeholder ${{{name}}}")
            return values[name]

        # One pass: replacement text is never scanned again, so a value containing "${X}" stays literal.
        return _PLACEHOLDER.sub(replace, node)
    return node


def agent_config_from_user_data(user_data: str) -> AgentConfig:
    """The AgentConfig that user data writes to DEFAULT_CONFIG_PATH (for the local provider and tests)."""
    content = _written_file(_load(user_data), DEFAULT_CONFIG_PATH)
    try:
        return AgentConfig.from_dict(yaml.safe_load(content))
    except (yaml.YAMLError, ConfigError) as exc:
        raise CloudInitError(f"agent config in user data is invalid: {exc}") from exc


def package_url_from_user_data(user_data: str) -> tuple[str, str]:
    """(package URL, sha256) from rendered user data: the curl download and the checksum file."""
    doc = _load(user_data)
    url = next((arg for cmd in doc.get("runcmd") or [] if isinstance(cmd, list) and cmd and cmd[0] == "curl"
                for arg in cmd if isinstance(arg, str) and arg.startswith(("https://", "http://"))), None)
    if url is None:
        raise CloudInitError("user data has no curl download of the agent package")
    sha256 = _written_file(doc, CHECKSUM_PATH).split()[0]
    return url, sha256


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
