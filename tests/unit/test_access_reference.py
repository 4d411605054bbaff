"""docs/permissions.md is rendered from the roles and the routes' declarations (so it cannot drift)."""

from __future__ import annotations

from pathlib import Path

from controller.access_reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"


def test_docs_permissions_md_is_current() -> None:
    """Regenerate with `.venv/bin/python -m controller.access_reference > docs/permissions.md`."""
    text = render()
    assert DOC.read_text() == text, "docs/permissions.md is stale: python -m controller.access_reference > it"
    assert "| POST | `/api/v1/nodes` | `nodes.edit` |  |" in text
    assert "| GET | `/api/v1/clients` | `subscribers.view` | owned |" in text
    assert "| GET | `/sub/{short_uuid}` | anyone |  |" in text
