"""The panel's administration screens in a real browser against a real controller: API keys (shown once, work,
refused once revoked), accounts (a viewer made in the panel, the API's message on a bad field, the viewer offered
no changes), WireGuard (a peer's QR code and .conf are the API's config), settings (2FA on, recovery codes) and
the operations log naming who did it; every screen accessible and translated in zh and ru.
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pyotp
import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.browser.panel import Panel, dump, untranslated
from tests.controller_process import ControllerProcess, wait_for

pytestmark = pytest.mark.timeout(300)

VIEWER_PASSWORD = "Viewer-horse-battery-7"


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}"
    return r.json() if r.content else None


def _admin(panel: Panel, controller: ControllerProcess) -> Page:
    return panel.sign_in("admin", controller.admin_password())


def _wireguard_server(controller: ControllerProcess) -> dict[str, Any]:
    """A server through the API (tests/e2e/test_wireguard_api.py's body), on a stopped node so nothing touches
    the host's network."""
    nid = controller.wait_running(controller.create_node(name="wg-node")["id"])["id"]
    stopped = controller.api.post(f"/api/v1/nodes/{nid}/stop")
    assert stopped.status_code < 300, stopped.text
    wait_for(lambda: controller.node(nid)["status"] == "stopped", 30, message="node stopped")
    return _ok(controller.api.post("/api/v1/wireguard/servers", json={
        "node_id": nid, "name": "wg0", "interface": "wg0", "listen_port": 51820, "ipv4_address": "10.8.0.1/24",
        "ipv6_address": "fd00:8::1/64", "dns_servers": ["1.1.1.1"]}), 201)


def _wireguard(controller: ControllerProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """A server and one peer on it."""
    server = _wireguard_server(controller)
    peer = _ok(controller.api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "phone"}), 201)
    return server, peer


def _check_screen(panel: Panel, fragment: str, ready: str) -> None:
    """`fragment` in en, zh and ru: no serious axe violation in any, no untranslated text in zh and ru."""
    page = panel.goto(fragment)
    for language in ("en", "zh", "ru"):
        page.select_option("[data-testid=language]", language)
        page.wait_for_selector(ready)
        assert panel.axe() == [], f"{fragment} in {language}: {dump(panel.axe())}"
        if language != "en":
            assert untranslated(page) == [], f"{fragment} in {language}"
    page.select_option("[data-testid=language]", "en")


# -- API keys ----------------------------------------------------------------------------------------------------

def test_an_api_key_is_shown_once_works_and_is_refused_once_revoked(panel: Panel, controller: ControllerProcess) -> None:
    page = _admin(panel, controller)
    panel.goto("/keys")
    page.get_by_role("button", name="New API key").click()
    form = page.get_by_test_id("key-form")
    form.get_by_label("Name").fill("panel-made")
    form.get_by_label("Access level").select_option("read")
    form.get_by_role("button", name="Create").click()

    reveal = page.get_by_test_id("key-reveal")
    expect(reveal).to_be_visible()
    expect(reveal.get_by_role("alert")).to_contain_text("shown only this once")
    key = reveal.get_by_test_id("new-key").inner_text().strip()
    assert len(key) > 20
    reveal.get_by_role("button", name="I have copied it").click()
    expect(reveal).to_be_hidden()

    row = page.locator("tr[data-key='panel-made']")
    listed = _ok(controller.api.get("/api/v1/auth/api-keys")).get("items")
    made = next(k for k in listed if k["name"] == "panel-made")
    assert key.startswith(made["prefix"])
    expect(row).to_contain_text(made["prefix"])
    # never again: not in the list, not anywhere in the page
    assert key not in page.content()

    with httpx.Client(base_url=controller.url, verify=controller.verify(), headers={"X-API-Key": key}) as client:
        assert client.get("/api/v1/nodes").status_code == 200
        assert client.post("/api/v1/nodes", json={"region": "local"}).status_code == 403  # read only

        row.get_by_role("button", name="Revoke").click()
        question = page.locator("dialog[open]")
        expect(question).to_contain_text("Revoke this key?")
        assert client.get("/api/v1/nodes").status_code == 200  # asking is not revoking
        question.get_by_role("button", name="Revoke").click()
        expect(question).to_be_hidden()
        expect(row).to_contain_text("Revoked")
        assert client.get("/api/v1/nodes").status_code == 401


# -- accounts -----------------------------------------------------------------------------------------------------

def test_a_viewer_made_in_the_panel_is_offered_no_changes(panel: Panel, browser: Browser,
                                                           controller: ControllerProcess) -> None:
    _wireguard_server(controller)
    page = _admin(panel, controller)
    panel.goto("/accounts")
    page.get_by_role("button", name="New account").click()
    form = page.get_by_test_id("account-form")
    form.get_by_label("Username").fill("watcher")
    form.get_by_label("Password").fill("short")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_role("button", name="Create").click()

    # the API's own message for the field, under the field (the API is asked the same to know what it says)
    said = controller.api.post("/api/v1/users", json={"username": "watcher", "password": "short", "role": "viewer"})
    assert said.status_code == 422
    message = said.json()["error"]["details"]["password"]
    field = form.locator(".field.invalid", has=page.locator("input[name=password]"))
    expect(field.locator(".field-error")).to_have_text(message)
    expect(form.get_by_label("Password")).to_have_attribute("aria-invalid", "true")

    form.get_by_label("Password").fill(VIEWER_PASSWORD)
    form.get_by_role("button", name="Create").click()
    expect(form).to_be_hidden()
    row = page.locator("tr[data-account='watcher']")
    expect(row).to_contain_text("Viewer")
    expect(row).to_contain_text("Active")
    assert _ok(controller.api.get("/api/v1/users", params={"search": "watcher"}))["items"][0]["role"] == "viewer"

    viewer = Panel.open(browser, controller.url)
    try:
        vpage = viewer.sign_in("watcher", VIEWER_PASSWORD)
        nav = vpage.locator("nav#nav")
        expect(nav.get_by_role("link", name="WireGuard")).to_be_visible()
        expect(nav.get_by_role("link", name="Accounts")).to_have_count(0)
        viewer.goto("/wireguard")
        expect(vpage.locator("table[data-testid=wg-servers] tr[data-server]")).to_have_count(1)
        for name in ("New server", "Delete", "Stop", "Start"):
            expect(vpage.get_by_role("button", name=name, exact=True)).to_have_count(0)
        # a viewer has neither users.view nor keys.manage: neither screen is offered, nor reachable by its link
        expect(nav.get_by_role("link", name="API keys")).to_have_count(0)
        for fragment in ("/accounts", "/keys"):
            viewer.goto(fragment)
            expect(vpage.locator("main")).to_contain_text("no access to this screen")
            expect(vpage.get_by_role("button", name="New", exact=False)).to_have_count(0)
        viewer.assert_clean()
    finally:
        viewer.close()


# -- WireGuard ----------------------------------------------------------------------------------------------------

def test_a_peers_qr_code_and_conf_are_the_apis_config(panel: Panel, controller: ControllerProcess) -> None:
    server, peer = _wireguard(controller)
    conf = controller.api.get(f"/api/v1/wireguard/clients/{peer['id']}/config")
    assert conf.status_code == 200
    page = _admin(panel, controller)

    panel.goto("/wireguard")
    listed = page.locator(f"tr[data-server='{server['id']}']")
    expect(listed).to_contain_text("wg0")
    expect(listed).to_contain_text("Node offline")  # the status endpoint's side: the node is stopped
    listed.get_by_role("link", name="wg0").click()

    row = page.locator("tr[data-peer='phone']")
    expect(row).to_contain_text(peer["ipv4_address"])
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name="QR code and config").click()
    dialog = page.get_by_test_id("wg-peer-config")
    qr = dialog.get_by_role("img", name="QR code of the WireGuard config of phone")
    expect(qr).to_be_visible()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))
    assert [b.text for b in decoded] == [conf.text]
    expect(dialog.get_by_test_id("wg-conf-text")).to_have_text(conf.text)

    with page.expect_download() as download:
        dialog.get_by_role("button", name="Download .conf").click()
    file = download.value
    assert file.suggested_filename == "phone.conf"
    assert open(file.path(), encoding="utf-8").read() == conf.text
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # disabling asks first, and the API then says disabled
    row.get_by_role("button", name="Disable").click()
    page.locator("dialog[open]").get_by_role("button", name="Confirm").click()
    expect(row).to_contain_text("Disabled")
    assert _ok(controller.api.get(f"/api/v1/wireguard/clients/{peer['id']}"))["status"] == "disabled"

    for fragment, ready in (("/wireguard", "tr[data-server]"), (f"/wireguard/{server['id']}", "tr[data-peer]")):
        _check_screen(panel, fragment, ready)


def test_a_server_and_peer_made_in_the_panel(panel: Panel, controller: ControllerProcess) -> None:
    first = _wireguard_server(controller)
    page = _admin(panel, controller)
    panel.goto("/wireguard")
    page.get_by_role("button", name="New server").click()
    form = page.get_by_test_id("wg-server-form")
    form.get_by_label("Name", exact=True).fill("office")
    form.get_by_label("Interface").fill("wg1")
    form.get_by_label("Listen port").fill("51821")
    form.get_by_label("IPv4 address with subnet").fill("10.9.0.0/24")  # the network's address, not the server's
    form.get_by_role("button", name="Create").click()
    said = controller.api.post("/api/v1/wireguard/servers", json={
        "node_id": first["node_id"], "name": "office", "interface": "wg1", "listen_port": 51821,
        "ipv4_address": "10.9.0.0/24"})
    assert said.status_code == 422
    expect(form.locator(".field.invalid .field-error")).to_have_text(said.json()["error"]["details"]["ipv4_address"])

    form.get_by_label("IPv4 address with subnet").fill("10.9.0.1/24")
    form.get_by_role("button", name="Create").click()
    expect(form).to_be_hidden()
    made = next(s for s in _ok(controller.api.get("/api/v1/wireguard/servers"))["items"] if s["name"] == "office")
    wait_for(lambda: page.url.endswith(f"#/wireguard/{made['id']}"), 10, message="the new server's screen")
    assert made["interface"] == "wg1" and made["listen_port"] == 51821 and made["ipv4_address"] == "10.9.0.1/24"

    page.get_by_role("button", name="New peer").click()
    peer_form = page.get_by_test_id("wg-peer-form")
    peer_form.get_by_label("Name").fill("tablet")
    peer_form.get_by_role("button", name="Create").click()
    # a new peer's config opens at once
    config = page.get_by_test_id("wg-peer-config")
    expect(config.get_by_role("img", name="QR code of the WireGuard config of tablet")).to_be_visible()
    peer = _ok(controller.api.get("/api/v1/wireguard/clients", params={"server_id": made["id"]}))["items"][0]
    assert peer["name"] == "tablet" and peer["ipv4_address"] == "10.9.0.2/32"
    config.get_by_role("button", name="Close").click()
    row = page.locator("tr[data-peer='tablet']")
    row.get_by_role("button", name="Delete").click()
    page.locator("dialog[open]").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert controller.api.get(f"/api/v1/wireguard/clients/{peer['id']}").status_code == 404


# -- settings and the operations log -------------------------------------------------------------------------------

def test_two_factor_turned_on_in_settings_shows_in_the_operations_log(panel: Panel,
                                                                    controller: ControllerProcess) -> None:
    page = _admin(panel, controller)
    panel.goto("/settings")
    card = page.get_by_test_id("two-factor")
    expect(card.locator("h2 .badge")).to_have_text("Off")
    card.get_by_role("button", name="Turn on").click()
    secret = card.get_by_test_id("totp-secret").inner_text().strip()
    card.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    card.get_by_role("button", name="Turn on 2FA").click()

    codes = page.get_by_test_id("recovery-code-list").locator("li")
    expect(codes).to_have_count(10)
    assert all(len(c.strip()) >= 8 for c in codes.all_inner_texts())
    page.get_by_test_id("recovery-codes").get_by_role("button", name="I have saved them").click()
    expect(card.locator("h2 .badge")).to_have_text("On")
    assert _ok(controller.api.get("/api/v1/users", params={"search": "admin"}))["items"][0]["two_factor_enabled"]

    # new recovery codes need a current code: the next window's (this one was used to turn 2FA on)
    card.get_by_role("button", name="New recovery codes").click()
    card.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    card.get_by_role("button", name="Make new codes").click()
    expect(page.get_by_test_id("recovery-code-list").locator("li")).to_have_count(10)
    page.get_by_test_id("recovery-codes").get_by_role("button", name="I have saved them").click()

    # the fleet's agent settings are saved through the panel
    fleet = page.get_by_test_id("fleet-settings")
    fleet.get_by_label("Metrics interval (seconds)").fill("7")
    fleet.get_by_role("button", name="Save").click()
    expect(fleet.get_by_role("status")).to_have_text("Saved.")
    assert _ok(controller.api.get("/api/v1/fleet/agent-settings"))["metrics_interval_seconds"] == 7
    expect(page.get_by_test_id("version")).to_contain_text(_ok(controller.api.get("/api/v1/version"))["version"])

    # the operations log, filtered in the form: the filters go to the hash and to the API
    panel.goto("/operations")
    page.get_by_label("Actor").fill("admin")
    page.get_by_label("Action").fill("2fa")
    page.get_by_role("button", name="Apply filters").click()
    wait_for(lambda: "actor=admin" in page.url and "action=2fa" in page.url, 10, message="filters in the hash")
    rows = page.locator("table[data-testid=operations] tbody tr")
    for action in ("auth.2fa_enabled", "auth.2fa_recovery_codes"):
        row = rows.filter(has=page.locator("[data-col=action]", has_text=action)).first
        expect(row.locator("[data-col=actor]")).to_have_text("admin")
        expect(row).to_contain_text("Success")
    # the API filtered: every row is admin's and a 2FA action (the agent settings saved above are not among them)
    shown = rows.count()
    assert all(a == "admin" for a in rows.locator("[data-col=actor]").all_inner_texts())
    assert all("2fa" in a for a in rows.locator("[data-col=action]").all_inner_texts())
    # a reload of the filtered view shows the same (the query is the hash's)
    page.reload()
    expect(page.locator("table[data-testid=operations] tbody tr")).to_have_count(shown)
    expect(page.get_by_label("Actor")).to_have_value("admin")


def test_admin_screens_are_accessible_and_translated(panel: Panel, controller: ControllerProcess) -> None:
    _ok(controller.api.post("/api/v1/auth/api-keys", json={"name": "walk-key"}), 201)
    _ok(controller.api.post("/api/v1/users", json={"username": "walker", "password": VIEWER_PASSWORD,
                                                   "role": "manager", "email": "walker@example.org"}), 201)
    _wireguard_server(controller)
    _admin(panel, controller)
    for fragment, ready in (("/keys", "tr[data-key]"), ("/accounts", "tr[data-account='walker']"),
                            ("/operations", "tr[data-operation]"), ("/settings", "[data-testid=version] dl"),
                            ("/wireguard", "tr[data-server]")):
        _check_screen(panel, fragment, ready)
    # an account's role changed and its password reset through the dialogs
    page = panel.goto("/accounts")
    row = page.locator("tr[data-account='walker']")
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_test_id("account-edit")
    edit.get_by_label("Role", exact=True).select_option("viewer")
    assert panel.axe() == [], dump(panel.axe())
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_be_hidden()
    expect(row).to_contain_text("Viewer")
    row.get_by_role("button", name="Reset password").click()
    reset = page.get_by_test_id("account-reset")
    expect(reset.get_by_label("Must choose a new password at the next sign-in")).to_be_checked()
    reset.get_by_label("New password", exact=True).fill("Another-horse-battery-3")
    reset.get_by_role("button", name="Reset").click()
    expect(row).to_contain_text("Must change password")
    walker = _ok(controller.api.get("/api/v1/users", params={"search": "walker"}))["items"][0]
    assert walker["role"] == "viewer" and walker["must_change_password"]
    # the dialogs too: the forms in every language
    page = panel.goto("/keys")
    for language in ("zh", "ru"):
        page.select_option("[data-testid=language]", language)
        page.locator(".screen-head .actions button.primary").click()
        expect(page.get_by_test_id("key-form")).to_be_visible()
        assert untranslated(page) == [], language
        assert panel.axe() == [], dump(panel.axe())
        page.keyboard.press("Escape")
        expect(page.get_by_test_id("key-form")).to_be_hidden()
