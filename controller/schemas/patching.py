"""What PATCH/PUT bodies share: a field that may be left out but not set to null."""

from __future__ import annotations

from typing import Any


def refuse_null(value: Any) -> Any:
    """A before-validator: only an explicit null gets here (a field left out keeps its default without
    validation), and it is refused."""
    if value is None:
        raise ValueError("cannot be null")
    return value


def no_default(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of such a field: the document shows no null default for it."""
    schema.pop("default", None)
