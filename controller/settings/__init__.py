"""Controller settings: a YAML file whose sections follow seed 000, overridden by environment variables.

The file is read into declared models, one per section (``ServerSection``, ``V2raySection``, ...), that refuse
unknown keys. Their values fill the flat, frozen ``Settings`` the controller reads (``settings.v2ray_port``);
``Settings`` declares each value's type, bounds and default once and checks them again when it is built
directly by keyword (as tests do). Every error is a ``SettingsError`` that names the setting by its path in
the file (``server.tls.cert_file``) and, when the value came from the environment, the variable.

Sections: seed 000's ``server``, ``database``, ``aws``, ``v2ray``, ``logging``, ``scheduler``, plus vpnfleet's
own ``grpc``, ``local``, ``enrollment``, ``telemetry``, ``egress``, ``diagnostics``, ``limits``, ``audit``,
``pki``, ``nodes``, ``auth``, ``rate_limits`` and ``smtp``. Every key is optional: an empty or missing file gives a working controller on SQLite
with the ``local`` provider. ``docs/settings.md`` is rendered from these models: ``python -m controller.settings``.

Modules, each importing only those above it:

- ``errors``: ``SettingsError``.
- ``addresses``: ``split_hostport``, ``join_hostport``, ``is_unix`` (host:port and unix:/path addresses).
- ``types``: the shared value types (``Port``, ``Seconds``, ``Cidrs``, ...) and their checks.
- ``model``: ``Settings`` (flat, frozen, with derived values), ``RegionSettings``, ``TlsSettings``, ``XrayRelease``.
- ``sections``: the file's section models (``ConfigFile`` and the ``Section`` models in it).
- ``environment``: ``ENV_OVERRIDES``, the variables over the file.
- ``reference``: ``reference()`` and ``render_reference()``, docs/settings.md.
- ``loading``: ``load_settings()`` and its error messages.
"""

from __future__ import annotations

from controller.settings.addresses import is_unix, split_hostport
from controller.settings.environment import ENV_OVERRIDES
from controller.settings.errors import SettingsError
from controller.settings.loading import load_settings
from controller.settings.model import ENROLLMENT_TTL_MARGIN, REPO_ROOT, RegionSettings, Settings, TlsSettings, XrayRelease
from controller.settings.reference import reference, render_reference
from controller.settings.sections import ConfigFile, Section
from controller.settings.sections import _blank_is_unset as _blank_is_unset  # read by test_settings_reference
from controller.settings.sections import _setting_of as _setting_of  # read by test_settings_reference
from controller.settings.types import CORES, GiB

__all__ = [
    "CORES",
    "ENROLLMENT_TTL_MARGIN",
    "ENV_OVERRIDES",
    "REPO_ROOT",
    "ConfigFile",
    "GiB",
    "RegionSettings",
    "Section",
    "Settings",
    "SettingsError",
    "TlsSettings",
    "XrayRelease",
    "is_unix",
    "load_settings",
    "reference",
    "render_reference",
    "split_hostport",
]
