"""The settings reference, docs/settings.md: every key of the file rendered from the section models."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from controller.settings.environment import ENV_OVERRIDES
from controller.settings.model import Settings, TlsSettings, XrayRelease
from controller.settings.sections import AwsSection, ConfigFile, RegionSection, Section, _setting_of
from controller.settings.types import Kind

# -- the reference (docs/settings.md) -------------------------------------------------------------------------


class SettingDoc(NamedTuple):
    """One key of the file, as docs/settings.md lists it."""

    key: str  # "server.tls.cert_file"
    kind: str  # "integer, 1–65535"
    default: str
    env: str
    doc: str
    setting: str | None  # the Settings field it sets (None: a field of v2ray.tls, xray_release, a region)


class SectionDoc(NamedTuple):
    """One mapping of the file and its keys."""

    key: str  # "server.tls", "aws.regions.<code>"
    doc: str
    rows: list[SettingDoc]


def reference() -> list[SectionDoc]:
    """Every mapping and key of the file, in file order: type, bounds, default, environment variable."""
    out: list[SectionDoc] = []
    for name, info in ConfigFile.model_fields.items():
        _walk(_inner(info.annotation), name, out)
    return out


def _walk(model: Any, prefix: str, out: list[SectionDoc]) -> None:
    section = SectionDoc(prefix, (model.__doc__ or "").strip().split("\n")[0].split(": ", 1)[-1], [])
    out.append(section)
    for name, info in _fields(model).items():
        key, inner = f"{prefix}.{name}", _inner(info.annotation)
        if isinstance(inner, type) and (issubclass(inner, Section) or inner in (TlsSettings, XrayRelease)):
            _walk(inner, key, out)
        elif model is AwsSection and name == "regions":
            _walk(RegionSection, f"{key}.<code>", out)
        else:
            setting = _setting_of(info)
            declared = Settings.__pydantic_fields__[setting] if setting else info  # defaults live in Settings
            default = ("the code" if name == "name" else '""') if model is RegionSection else _default(declared)
            section.rows.append(SettingDoc(key, _kind(declared), default, _ENV_OF.get(key, ""),
                                           info.description or "", setting))


def _fields(model: Any) -> dict[str, FieldInfo]:
    """The fields of a section model or of a pydantic dataclass (v2ray.tls, v2ray.xray_release)."""
    return model.model_fields if issubclass(model, BaseModel) else model.__pydantic_fields__


def _strip_optional(annotation: Any) -> Any:
    """X for ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _flatten(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """The type inside Annotated / Optional layers, with every layer's metadata."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation, *more = typing.get_args(annotation)
            metadata = metadata + more
        elif _strip_optional(annotation) is not annotation:
            annotation = _strip_optional(annotation)
        else:
            return annotation, metadata


def _inner(annotation: Any) -> Any:
    """The bare type of an annotation."""
    return _flatten(annotation, [])[0]


def _kind(info: FieldInfo) -> str:
    """"integer, 1–65535", "list of CIDRs", "one of xray, v2ray", ..."""
    annotation, metadata = _flatten(info.annotation, list(info.metadata))
    kinds = [m.text for m in metadata if isinstance(m, Kind)]
    if kinds:
        text = kinds[0]
    elif typing.get_origin(annotation) is Literal:
        text = "one of " + ", ".join(map(str, typing.get_args(annotation)))
    else:
        text = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path"}.get(annotation, "")
    ge = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    gt = next((m.gt for m in metadata if isinstance(m, annotated_types.Gt)), None)
    le = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    if ge is not None and le is not None:
        return f"{text}, {_num(ge)}–{_num(le)}"
    bounds = [f"> {_num(gt)}" if gt is not None else "", f">= {_num(ge)}" if ge is not None else "",
              f"<= {_num(le)}" if le is not None else ""]
    return ", ".join(p for p in (text, *bounds) if p)


def _num(value: Any) -> str:
    """A bound as written: 1 rather than 1.0."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _default(info: FieldInfo) -> str:
    """A default as the reference shows it: "required", "none", or its YAML."""
    if info.is_required():
        return "required"
    value = info.default
    if value is None:
        return "none"
    if value == "":
        return '""'
    value = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def render_reference() -> str:
    """docs/settings.md."""
    out = [_DOC_HEAD]
    for section in reference():
        out.append(f"\n## `{section.key}`\n\n{_md(section.doc[:1].upper() + section.doc[1:])}\n")
        if section.rows:
            out.append("| key | type | default | environment | meaning |\n|---|---|---|---|---|")
        for row in section.rows:
            default = row.default if row.default in ("required", "none", "the code") else f"`{row.default}`"
            env = f"`{row.env}`" if row.env else ""
            out.append(f"| `{row.key.rpartition('.')[2]}` | {row.kind} | {default} | {env} | {_md(row.doc)} |")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


_ENV_OF = {key: var for var, key in ENV_OVERRIDES.items()}

_DOC_HEAD = """\
# Settings reference

<!-- generated: `python -m controller.settings > docs/settings.md`; tests/unit/test_settings_reference.py
     fails when this file and the models in controller/settings/ disagree -->

The controller reads one YAML file (`vpnfleet-controller --config FILE`, or `$VPNFLEET_CONFIG`). Its sections
follow seed 000's V2Ray backend (`server`, `database`, `aws`, `v2ray`, `logging`, `scheduler`), then vpnfleet's
own. Every key is optional; a key left out, or `null`, keeps its default. Environment variables (the
*environment* column) override the file; an empty variable is ignored; lists may be given comma-separated.

Every key is checked at start. An unknown key (`unknown setting 'server.tls.cert_fil' (did you mean
'cert_file'?)`), a value of the wrong type or out of its bounds, or settings that contradict each other
(`v2ray.port` equal to `v2ray.vless_port`, a REALITY `dest` that is not one of its `server_names`, only one of
`server.tls.cert_file` / `key_file`) stop the controller with a message that names the key, and the variable
when the value came from the environment. Secrets (`aws.access_key`, `aws.secret_key`, `database.url`, `smtp.password`) are
never echoed."""
