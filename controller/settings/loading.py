"""load_settings: the file, then the environment over it, into ``Settings``; errors named by their keys."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from controller.settings.environment import ENV_OVERRIDES
from controller.settings.errors import SettingsError
from controller.settings.model import Settings
from controller.settings.reference import reference
from controller.settings.sections import ConfigFile

#: keys whose values never appear in an error message
_SECRET_KEYS = {"aws.access_key", "aws.secret_key", "database.url", "smtp.password"}


# -- loading ------------------------------------------------------------------------------------------------


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or $VPNFLEET_CONFIG) and apply environment overrides."""
    env = os.environ if env is None else env
    path = path or env.get("VPNFLEET_CONFIG")
    raw: Any = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"config file {path} must be a mapping of sections")
    sources = _apply_env(raw, env)
    try:
        return Settings(**ConfigFile.model_validate(raw).settings_values())
    except ValidationError as exc:
        raise _settings_error(exc, sources) from None


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Put each set variable at its key in ``raw``; returns {key: variable} to name them in errors."""
    sources = {}
    for var, key in ENV_OVERRIDES.items():
        if not env.get(var):
            continue
        *parents, leaf = key.split(".")
        node = raw
        for name in parents:
            if node.get(name) is None:
                node[name] = {}
            node = node[name]
            if not isinstance(node, dict):
                break  # the file's own section is malformed: that error is reported instead
        else:
            node[leaf] = env[var]
            sources[key] = var
    return sources


def _settings_error(exc: ValidationError, sources: Mapping[str, str]) -> SettingsError:
    """One message naming every bad setting by its key (and variable), never echoing a secret."""
    messages = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"] if part != "[key]" and not isinstance(part, int))
        if len(loc) == 1 and loc[0] in _KEY_OF:  # a Settings field (a value set by keyword, or a bug here)
            loc = tuple(_KEY_OF[loc[0]].split("."))
        base = ".".join(loc)
        key = base + "".join(f"[{part}]" for part in error["loc"] if isinstance(part, int))  # a list's item
        what = "section" if len(loc) == 1 else "setting"
        kind = error["type"]
        if not loc:  # a check across settings: its message names them
            messages.append(str(error.get("ctx", {}).get("error") or error["msg"]))
        elif kind in ("extra_forbidden", "unexpected_keyword_argument"):
            messages.append(f"unknown {what} '{key}'{_did_you_mean(loc)}")
        elif kind in ("model_type", "dict_type", "dataclass_type", "model_attributes_type"):
            messages.append(f"{what} '{key}' must be a mapping")
        elif kind == "missing":
            messages.append(f"setting '{key}' is required")
        else:
            source = f" (from ${sources[base]})" if base in sources else ""
            text = str(error["ctx"]["error"]) if kind == "value_error" else error["msg"]
            shown = error.get("input")
            echo = kind != "value_error" and base not in _SECRET_KEYS and not isinstance(shown, (dict, list))
            messages.append(f"setting '{key}'{source}: {text}" + (f", got {shown!r}" if echo else ""))
    return SettingsError("; ".join(dict.fromkeys(messages)))


def _did_you_mean(loc: tuple[str, ...]) -> str:
    """A near key of the same mapping, for a typo."""
    parent = ".".join("<code>" if loc[:2] == ("aws", "regions") and i == 2 else part for i, part in enumerate(loc[:-1]))
    siblings = [key.rpartition(".")[2] for key in _ALL_KEYS if key.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(loc[-1], siblings, n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


#: every key and mapping of the file (for "did you mean")
_ALL_KEYS = [key for section in reference() for key in (section.key, *(row.key for row in section.rows))]


def _keys_of_settings() -> dict[str, str]:
    """{Settings field: its key in the file}, to name a field's error by the key operators write."""
    out = {row.setting: row.key for section in reference() for row in section.rows if row.setting}
    out.update(regions="aws.regions", v2ray_tls="v2ray.tls", xray_release="v2ray.xray_release")
    return out


_KEY_OF = _keys_of_settings()
