"""The one error settings raise: a bad value in the file or the environment, named in the message."""

from __future__ import annotations


class SettingsError(ValueError):
    """The settings file or environment holds a bad value; the message names it."""
