"""docs/settings.md and the declared settings models agree; every Settings value has a key in the file."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

from controller import settings as settings_module
from controller.settings import ENV_OVERRIDES, REPO_ROOT, ConfigFile, Section, Settings, reference, render_reference

DOC = REPO_ROOT / "docs" / "settings.md"
#: Settings values that are not operator settings (where the controller's own files are)
NOT_IN_THE_FILE = {"cloud_init_template"}


def test_docs_settings_md_is_rendered_from_the_models() -> None:
    """Regenerate with `.venv/bin/python -m controller.settings > docs/settings.md`."""
    assert DOC.read_text() == render_reference(), "docs/settings.md is stale: python -m controller.settings > it"
    text = DOC.read_text()
    for section in reference():
        assert f"## `{section.key}`" in text
        for row in section.rows:
            assert f"| `{row.key.rpartition('.')[2]}` |" in text


def test_every_key_is_documented_with_its_bounds() -> None:
    rows = {row.key: row for section in reference() for row in section.rows}
    assert all(row.doc for row in rows.values()), [k for k, r in rows.items() if not r.doc]
    assert rows["v2ray.port"].kind == "integer, 1–65535" and rows["v2ray.port"].default == "11994"
    assert rows["limits.max_body_bytes"].kind == f"integer, 1–{1 << 30}"
    assert rows["pki.agent_cert_days"].kind == "integer, 1–825" and rows["pki.agent_cert_days"].default == "90"
    assert rows["server.tls.enabled"].env == "VPNFLEET_TLS_ENABLED"
    assert rows["v2ray.tls.key_file"].default == "required"


def test_every_setting_has_a_key_and_every_variable_a_key() -> None:
    set_by_file = {row.setting for section in reference() for row in section.rows if row.setting}
    set_by_file |= {"regions", "v2ray_tls", "xray_release"}  # mappings of their own
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields - NOT_IN_THE_FILE == set_by_file
    keys = {row.key for section in reference() for row in section.rows}
    assert set(ENV_OVERRIDES.values()) <= keys, set(ENV_OVERRIDES.values()) - keys
    assert len(set(ENV_OVERRIDES.values())) == len(ENV_OVERRIDES)


def _bare(hint: Any) -> Any:
    """The value type of a key: without Optional and the "blank means default" layer."""
    if typing.get_origin(hint) is Annotated and all(getattr(m, "func", None) is settings_module._blank_is_unset
                                                    for m in hint.__metadata__):
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def test_each_key_has_the_type_and_bounds_of_its_setting() -> None:
    """A key's section declares the same type (bounds included) as the Settings value it fills."""
    flat = typing.get_type_hints(Settings, include_extras=True)

    def visit(model: type[BaseModel]) -> None:
        hints = typing.get_type_hints(model, include_extras=True)
        for name, info in model.model_fields.items():
            inner = _bare(hints[name])
            if isinstance(inner, type) and issubclass(inner, Section):
                visit(inner)
            elif (setting := settings_module._setting_of(info)) and setting != "regions":
                assert inner == _bare(flat[setting]), f"{model.__name__}.{name} vs Settings.{setting}"

    visit(ConfigFile)


def test_the_reference_runs_as_a_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "controller.settings"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out == render_reference()
