"""Signing in to the panel in a real browser: password, then TOTP; a wrong password shows the API's message."""

from __future__ import annotations

import time

import pyotp

from tests.browser.panel import Panel
from tests.controller_process import ControllerProcess


def _enable_totp(controller: ControllerProcess) -> str:
    """Turn on 2FA for the admin account through the API; its TOTP secret."""
    api = controller.http_client()
    token = api.post("/api/v1/auth/login", json={"username": "admin", "password": controller.admin_password()}
                     ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    secret = api.post("/api/v1/auth/2fa/setup", headers=auth).json()["secret"]
    enabled = api.post("/api/v1/auth/2fa/enable", headers=auth, json={"code": pyotp.TOTP(secret).now()})
    assert enabled.status_code == 200, enabled.text
    return secret


def test_sign_in_with_totp_reaches_the_fleet(panel: Panel, controller: ControllerProcess) -> None:
    secret = _enable_totp(controller)
    page = panel.goto()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", controller.admin_password())
    page.click("form button[type=submit]")
    # the code of the next 30-second window (accepted: one window either side): enabling used this window's
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.click("form button[type=submit]")
    page.wait_for_selector("nav#nav")
    assert page.locator("main h1").inner_text() == "Fleet"
    assert page.locator(".who").inner_text() == "admin"


def test_a_wrong_password_shows_the_api_message_and_keeps_the_form(panel: Panel,
                                                                     controller: ControllerProcess) -> None:
    page = panel.goto()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not-the-password")
    page.click("form button[type=submit]")
    alert = page.get_by_role("alert")
    assert "invalid" in alert.inner_text().lower()
    assert page.input_value("input[name=username]") == "admin"


def test_sign_in_screen_is_accessible_in_every_language(panel: Panel) -> None:
    page = panel.goto()
    for language in ("en", "zh", "ru"):
        page.select_option("[data-testid=language]", language)
        assert panel.axe() == []
    from tests.browser.panel import untranslated
    page.select_option("[data-testid=language]", "zh")
    assert untranslated(page) == []
    page.select_option("[data-testid=language]", "ru")
    assert untranslated(page) == []
