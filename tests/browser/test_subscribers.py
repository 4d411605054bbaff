"""Subscribers in the panel, in a real browser against a real controller whose local node runs V2Ray (so every
subscriber has a working subscription): create one and follow its QR codes to the subscription they carry,
block and unblock it and see both pages change, the list's search and paging going to the server, a `user`
account seeing only what it owns on #/mine, and every one of these screens accessible and translated.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any, Iterator

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from tests.browser.panel import Panel, dump, untranslated
from tests.controller_process import V2RAY_ENV, ControllerProcess, running_controller

pytestmark = pytest.mark.timeout(300)

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for the module (overrides conftest's), with one running V2Ray node: subscribers get
    real share links, so a decoded QR code leads to a subscription an app could import."""
    with running_controller(tmp_path_factory.mktemp("subscribers") / "data", V2RAY_ENV) as ctl:
        ctl.wait_running(ctl.create_node(name="sub-node")["id"], timeout=60)
        yield ctl


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}"
    return r.json()


def _sign_in_admin(panel: Panel, controller: ControllerProcess) -> Page:
    return panel.sign_in("admin", controller.admin_password())


def _qr_text(element: Locator) -> str:
    """The text of the one QR code inside `element`, decoded from a screenshot of it."""
    image = Image.open(io.BytesIO(element.screenshot()))
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, f"expected one QR code, found {[b.text for b in found]}"
    return found[0].text


def _fetch(controller: ControllerProcess, url: str, **headers: str) -> httpx.Response:
    """What an app gets from a subscription URL (verified against the controller's CA)."""
    r = httpx.get(url, verify=controller.verify(), headers={"User-Agent": "v2rayNG/1.8.5", **headers}, timeout=10)
    assert r.status_code == 200, f"{url} -> {r.status_code}: {r.text}"
    return r


def _is_subscription_of(controller: ControllerProcess, response: httpx.Response, sub: dict[str, Any]) -> None:
    """The response is `sub`'s subscription: its title, and the share links its config holds (its credentials)."""
    assert response.headers["profile-title"] == sub["username"]
    config = _ok(controller.api.get(f"/api/v1/clients/{sub['id']}/config"))
    links = base64.b64decode(response.text).decode().split()
    assert links and links == base64.b64decode(config["config_data"]).decode().split()


def _create_in_panel(page: Page, username: str) -> str:
    """Create a subscriber through the form on #/subscribers; the id its screen opens with."""
    page.get_by_role("link", name="Subscribers").click()
    page.get_by_role("button", name="New subscriber").click()
    form = page.get_by_test_id("subscriber-create")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Days").fill("30")
    form.get_by_label("Data limit (GiB)").fill("5")
    form.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"#/subscribers/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_create_then_decode_both_qr_codes_and_block_and_unblock(panel: Panel, controller: ControllerProcess) -> None:
    page = _sign_in_admin(panel, controller)
    client_id = _create_in_panel(page, "alice-panel")
    sub = _ok(controller.api.get(f"/api/v1/clients/{client_id}"))
    assert sub["username"] == "alice-panel" and sub["data_limit_bytes"] == 5 * 1024**3
    status = page.get_by_test_id("subscriber-status")
    expect(status.locator("[data-status]")).to_have_attribute("data-status", "active")

    # the panel's QR code carries the subscription URL, which serves this subscriber's subscription
    panel_qr = page.get_by_test_id("subscription-qr")
    assert _qr_text(panel_qr) == sub["subscription_url"]
    _is_subscription_of(controller, _fetch(controller, sub["subscription_url"]), sub)
    expect(page.get_by_test_id("subscription-url")).to_have_value(sub["subscription_url"])
    v2rayng = page.locator("a[data-app=v2rayNG]")
    expect(v2rayng).to_have_attribute("href", re.compile(r"^v2rayng://install-config\?url="))

    # the subscriber's own page (what their browser gets) has a QR code per format; the first is base64
    sub_page = panel.context.new_page()
    panel.watch(sub_page)
    sub_page.goto(sub["subscription_url"])
    expect(sub_page.locator("#status")).to_have_attribute("data-status", "active")
    first_qr = sub_page.locator("ul.qrs img").first
    carried = _qr_text(first_qr)
    assert carried == sub["subscription_url"] + "?format=base64" == first_qr.get_attribute("data-url")
    _is_subscription_of(controller, _fetch(controller, carried), sub)

    # block in the panel: its page says so at once, the subscription page once reloaded (static HTML)
    page.get_by_role("button", name="Block").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("alice-panel")
    dialog.get_by_role("button", name="Block").click()
    expect(dialog).to_have_count(0)
    expect(status.locator("[data-status]")).to_have_attribute("data-status", "blocked")
    expect(status).to_contain_text("Blocked")
    assert _ok(controller.api.get(f"/api/v1/clients/{client_id}"))["status"] == "blocked"
    sub_page.reload()
    expect(sub_page.locator("#status")).to_have_attribute("data-status", "blocked")

    page.get_by_test_id("unblock").click()
    expect(status.locator("[data-status]")).to_have_attribute("data-status", "active")
    sub_page.reload()
    expect(sub_page.locator("#status")).to_have_attribute("data-status", "active")
    sub_page.close()


def test_rotate_warns_and_gives_a_new_url_and_qr(panel: Panel, controller: ControllerProcess) -> None:
    sub = _ok(controller.api.post("/api/v1/clients", json={"username": "rotor", "days": 10}), 201)
    page = _sign_in_admin(panel, controller)
    panel.goto(f"/subscribers/{sub['id']}")
    assert _qr_text(page.get_by_test_id("subscription-qr")) == sub["subscription_url"]
    page.get_by_role("button", name="Rotate credentials").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("must import the new URL")
    dialog.get_by_role("button", name="Rotate credentials").click()
    expect(dialog).to_have_count(0)
    rotated = _ok(controller.api.get(f"/api/v1/clients/{sub['id']}"))
    assert rotated["subscription_url"] != sub["subscription_url"]
    expect(page.get_by_test_id("subscription-url")).to_have_value(rotated["subscription_url"])
    assert _qr_text(page.get_by_test_id("subscription-qr")) == rotated["subscription_url"]
    assert httpx.get(sub["subscription_url"], verify=controller.verify(), timeout=10).status_code == 404


def test_the_list_searches_and_pages_on_the_server(panel: Panel, controller: ControllerProcess) -> None:
    for i in range(60):
        _ok(controller.api.post("/api/v1/clients", json={"username": f"bulk-{i:03d}", "days": 30,
                                                        "note": "seeded"}), 201)
    total = _ok(controller.api.get("/api/v1/clients", params={"size": 1}))["total"]
    page = _sign_in_admin(panel, controller)
    asked: list[httpx.URL] = []
    page.on("request", lambda r: asked.append(httpx.URL(r.url)) if httpx.URL(r.url).path == "/api/v1/clients"
            else None)
    panel.goto("/subscribers")
    rows = page.locator("[data-testid=subscriber-table] tbody tr")
    expect(rows).to_have_count(50)

    # typing searches once it pauses: one request, with the search, and the hash keeps it
    page.get_by_test_id("subscriber-search").fill("bulk-042")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-subscriber", "bulk-042")
    assert "search=bulk-042" in page.url
    searches = [u for u in asked if u.params.get("search")]
    assert [u.params["search"] for u in searches] == ["bulk-042"], searches

    # page 2 is the server's page 2, and a reload opens it again from the hash
    page.get_by_test_id("subscriber-search").fill("")
    expect(rows).to_have_count(50)
    page.get_by_role("button", name="Next page").click()
    expected = _ok(controller.api.get("/api/v1/clients", params={"page": 2, "size": 50}))["items"]
    expect(rows).to_have_count(len(expected))
    expect(rows.first).to_have_attribute("data-subscriber", expected[0]["username"])
    assert "page=2" in page.url and "search" not in page.url
    page.reload()
    expect(rows.first).to_have_attribute("data-subscriber", expected[0]["username"])
    expect(page.locator(".pager")).to_contain_text(f"{total} in all")
    # only ever one page at a time, and never the whole list
    assert asked and all(u.params.get("size") == "50" for u in asked), asked

    # a status filter goes to the server too
    page.get_by_label("Status").select_option("blocked")
    expect(page.get_by_text("Nothing here yet.")).to_be_visible()
    assert asked[-1].params.get("status") == "blocked" and "status=blocked" in page.url


def test_a_form_error_shows_the_api_message_on_its_field(panel: Panel, controller: ControllerProcess) -> None:
    page = _sign_in_admin(panel, controller)
    panel.goto("/subscribers")
    page.get_by_role("button", name="New subscriber").click()
    form = page.get_by_test_id("subscriber-create")
    form.get_by_label("Username").fill("no spaces allowed")
    form.get_by_role("button", name="Create").click()
    expect(form.locator(".field.invalid")).to_contain_text("Username")
    expect(form.get_by_role("alert")).to_be_visible()


def _user_with_things(controller: ControllerProcess) -> dict[str, Any]:
    """A `user` account owning two subscribers and one WireGuard peer, beside things it does not own."""
    api = controller.api
    user = _ok(api.post("/api/v1/users", json={"username": "ursula", "password": PASSWORD, "role": "user"}), 201)
    mine = [_ok(api.post("/api/v1/clients", json={"username": name, "days": 30, "owner_id": user["id"],
                                                  **extra}), 201)
            for name, extra in (("ursula-phone", {"data_limit_gb": 2.0}), ("ursula-laptop", {}))]
    _ok(api.post("/api/v1/clients", json={"username": "someone-else", "days": 30}), 201)
    node = next(n for n in _ok(api.get("/api/v1/nodes"))["items"] if n["status"] == "running")
    # not started: nothing here needs the interface up on this machine
    server = _ok(api.post("/api/v1/wireguard/servers", json={
        "node_id": node["id"], "name": "home", "interface": "wgs0", "listen_port": 51833,
        "ipv4_address": "10.77.0.1/24", "ipv6_address": "fd00:77::1/64", "auto_start": False}), 201)
    peer = _ok(api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "ursula-tablet",
                                                          "owner_id": user["id"]}), 201)
    _ok(api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "not-hers"}), 201)
    return {"user": user, "subscribers": mine, "peer": peer}


def test_a_user_sees_only_their_own_on_mine(panel: Panel, controller: ControllerProcess) -> None:
    things = _user_with_things(controller)
    page = panel.sign_in("ursula", PASSWORD)
    page.locator("nav#nav").get_by_role("link", name="My subscriptions").click()
    cards = page.locator("article[data-subscriber]")
    expect(cards).to_have_count(2)
    assert sorted(cards.evaluate_all("els => els.map(e => e.dataset.subscriber)")) == ["ursula-laptop",
                                                                                       "ursula-phone"]
    peers = page.locator("article[data-peer]")
    expect(peers).to_have_count(1)
    expect(peers.first).to_have_attribute("data-peer", "ursula-tablet")
    # the operator screens are not offered, and not shown when asked for
    expect(page.locator("nav#nav").get_by_role("link", name="Subscribers")).to_have_count(0)
    panel.goto("/subscribers")
    expect(page.get_by_text("Your account has no access to this screen.")).to_be_visible()
    panel.goto("/mine")

    # each subscription as its page shows it: status, import links, a QR code per format
    phone = page.locator("article[data-subscriber=ursula-phone]")
    sub = next(s for s in things["subscribers"] if s["username"] == "ursula-phone")
    expect(phone.locator("[data-status]").first).to_have_attribute("data-status", "active")
    expect(phone.locator("a[data-app]")).to_have_count(6)
    expect(phone.locator("a[data-app=sing-box]")).to_have_attribute(
        "href", re.compile(r"^sing-box://import-remote-profile\?url="))
    sing_box = _qr_text(phone.locator("figure[data-format=sing-box]"))
    assert sing_box == sub["subscription_url"] + "?format=sing-box-tun"
    profile = _fetch(controller, sing_box)
    assert profile.headers["profile-title"] == "ursula-phone" and profile.json()["outbounds"]
    assert _qr_text(phone.get_by_test_id("subscription-qr")) == sub["subscription_url"]

    # the peer's QR code is its wg-quick config, and the download is the API's .conf
    peer = things["peer"]
    config = _qr_text(peers.first.get_by_test_id("peer-qr"))
    assert config == peer["config"] and "[Interface]" in config
    with page.expect_download() as download:
        peers.first.get_by_test_id("peer-download").click()
    assert download.value.suggested_filename == "ursula-tablet.conf"
    saved = download.value.path().read_text()
    assert saved == controller.api.get(f"/api/v1/wireguard/clients/{peer['id']}/config").text
    assert panel.axe() == [], dump(panel.axe())
    for language in ("zh", "ru"):
        page.select_option("[data-testid=language]", language)
        expect(page.locator("main h1")).not_to_have_text("My subscriptions")
        assert untranslated(page) == [], (language, untranslated(page))
        assert panel.axe() == [], (language, dump(panel.axe()))


def test_an_operator_sees_their_own_on_mine(panel: Panel, controller: ControllerProcess) -> None:
    me = _ok(controller.api.get("/api/v1/auth/me"))
    _ok(controller.api.post("/api/v1/clients", json={"username": "admins-own", "days": 30, "owner_id": me["id"]}), 201)
    page = _sign_in_admin(panel, controller)
    panel.goto("/mine")
    cards = page.locator("article[data-subscriber]")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-subscriber", "admins-own")


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_the_screens_are_accessible_and_translated(panel: Panel, controller: ControllerProcess, phone: bool) -> None:
    sub = _ok(controller.api.post("/api/v1/clients", json={"username": f"walker-{int(phone)}", "days": 30,
                                                          "data_limit_gb": 1.5, "note": "walk"}), 201)
    page = _sign_in_admin(panel, controller)
    if phone:
        page.set_viewport_size({"width": 390, "height": 844})
    for fragment, ready in (("/subscribers", "[data-testid=subscriber-table] tbody tr"),
                            (f"/subscribers/{sub['id']}", "a[data-app]")):
        panel.goto(fragment)
        page.wait_for_selector(ready)
        page.wait_for_selector("[role=status]", state="detached")  # every part loaded
        for language in ("en", "zh", "ru"):
            page.select_option("[data-testid=language]", language)
            assert panel.axe() == [], (fragment, language, dump(panel.axe()))
            if language != "en":
                assert untranslated(page) == [], (fragment, language, untranslated(page))
        page.select_option("[data-testid=language]", "en")
        # at phone width nothing but a table's own box scrolls sideways
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], (fragment, width)  # type: ignore[index]
