"""The fleet, create-node and node screens in a real browser against a real controller with real local nodes:
a node created on screen turns online without a reload, a node's log tail shows a new line the agent logs
(pause holds it, the level filter drops it), destructive actions confirm, and the screens pass axe and have
no untranslated text in Chinese and Russian."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.panel import Panel, dump, untranslated
from tests.controller_process import ControllerProcess, wait_for

#: a local node needs a few seconds to boot, enroll and connect; a loaded machine more
ONLINE_MS = 90_000


def _sign_in(panel: Panel, controller: ControllerProcess) -> Page:
    return panel.sign_in("admin", controller.admin_password())


def _running_node(controller: ControllerProcess, name: str) -> dict[str, Any]:
    node = controller.create_node(name=name)
    return controller.wait_running(node["id"], timeout=ONLINE_MS / 1000)


def _new_revision(controller: ControllerProcess, node_id: str, interval: int) -> int:
    """Change the node's agent settings: the agent applies a new revision and logs that it did; its number."""
    r = controller.api.patch(f"/api/v1/nodes/{node_id}", json={"agent_settings": {"metrics_interval_seconds": interval}})
    assert r.status_code == 200, r.text
    return int(r.json()["agent"]["desired_revision"])


def _applied_line(revision: int) -> str:
    return f"applied desired state revision {revision}"


def _controller_has_line(controller: ControllerProcess, node_id: str, message: str) -> None:
    """Wait until the controller holds the agent's line (so it has gone out on every log stream too)."""
    def found() -> bool:
        lines = controller.api.get(f"/api/v1/nodes/{node_id}/logs", params={"search": message}).json()["lines"]
        return any(line["message"] == message for line in lines)
    wait_for(found, ONLINE_MS / 1000, message=f"log line {message!r} on the controller")


def test_a_node_created_on_screen_turns_online_without_a_reload(panel: Panel, controller: ControllerProcess) -> None:
    page = _sign_in(panel, controller)
    page.get_by_test_id("create-node").click()
    expect(page.locator("main h1")).to_have_text("Create node")
    page.evaluate("window.__sameDocument = true")

    # the API's 422 shows on the field it names
    page.get_by_label("Name", exact=True).fill("-not a name")
    page.get_by_role("button", name="Create node").click()
    error = page.locator(".field.invalid .field-error")
    expect(error).to_contain_text("pattern")
    expect(page.locator(".field.invalid label")).to_have_text("Name")

    page.get_by_label("Name", exact=True).fill("browser-1")
    page.get_by_test_id("region").select_option("local")
    # record every status the progress shows, from its first render on
    page.evaluate("""() => {
        window.__statuses = [];
        const seen = () => {
            const el = document.querySelector('[data-testid=node-progress] [data-testid=node-status]');
            const s = el && el.dataset.status;
            if (s && window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
        };
        new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    page.get_by_role("button", name="Create node").click()
    progress = page.get_by_test_id("node-progress")
    expect(progress.get_by_test_id("node-status")).to_have_attribute("data-status", "running", timeout=ONLINE_MS)
    expect(progress.get_by_test_id("node-online")).to_have_attribute("data-online", "true", timeout=ONLINE_MS)
    expect(progress.locator("[data-step=applied]")).to_have_attribute("data-done", "true", timeout=ONLINE_MS)
    expect(page.get_by_test_id("progress-title")).to_have_text("Node browser-1 is online.")

    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    statuses = page.evaluate("window.__statuses")
    assert statuses[0] == "pending" and statuses[-1] == "running", statuses
    node_id = progress.get_attribute("data-node-id")
    assert node_id and controller.node(node_id)["agent"]["online"]

    # its link opens its page; the fleet lists it and counts it online
    page.get_by_test_id("open-node").click()
    expect(page.locator("main h1")).to_have_text("Node browser-1")
    page.get_by_role("link", name="Fleet", exact=True).click()
    row = page.locator(f"[data-node-id='{node_id}']")
    expect(row.get_by_test_id("node-status")).to_have_attribute("data-status", "running")
    expect(page.locator("[data-stat=online] .value")).to_have_text("1")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    assert page.evaluate("window.__sameDocument") is True


def test_the_fleet_changes_live_when_a_node_is_created_elsewhere(panel: Panel,
                                                                  controller: ControllerProcess) -> None:
    page = _sign_in(panel, controller)
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    expect(page.locator("[data-stat=total] .value")).to_have_text("0")
    page.evaluate("window.__sameDocument = true")
    node = controller.create_node(name="elsewhere-1")
    row = page.locator(f"[data-node-id='{node['id']}']")
    expect(row).to_be_visible()
    expect(page.locator("[data-stat=total] .value")).to_have_text("1")
    expect(row.get_by_test_id("node-online")).to_have_attribute("data-online", "true", timeout=ONLINE_MS)
    expect(page.locator("[data-region=local] td").first).to_have_text("1")
    # traffic now: the node's samples arrive as metrics events (every second here); a rate needs two of them
    expect(row.locator("td.traffic")).to_contain_text("↓", timeout=ONLINE_MS)
    expect(page.locator("[data-stat=traffic] .value")).not_to_contain_text("—")
    assert page.evaluate("window.__sameDocument") is True


def test_a_node_page_tails_its_logs_with_pause_and_level_filter(panel: Panel, controller: ControllerProcess) -> None:
    node = _running_node(controller, "logs-1")
    nid = node["id"]
    page = _sign_in(panel, controller)
    panel.goto(f"/nodes/{nid}")
    expect(page.locator("main h1")).to_have_text("Node logs-1")
    logs = page.get_by_test_id("log-lines")
    expect(logs.locator(".log-line").first).to_be_visible()  # the recent lines come first
    section = page.locator("section.node-logs")
    expect(section.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")

    # a change the agent applies is a new line, live
    first = _new_revision(controller, nid, 2)
    expect(logs).to_contain_text(_applied_line(first), timeout=ONLINE_MS)

    # paused: new lines are held, not shown, until resumed
    page.get_by_test_id("log-pause").click()
    expect(page.get_by_test_id("log-pause")).to_have_attribute("aria-pressed", "true")
    second = _new_revision(controller, nid, 3)
    _controller_has_line(controller, nid, _applied_line(second))
    expect(page.get_by_test_id("held")).not_to_have_text(re.compile(r"^$|\b0\b"), timeout=ONLINE_MS)
    expect(logs).not_to_contain_text(_applied_line(second))
    page.get_by_test_id("log-pause").click()
    expect(logs).to_contain_text(_applied_line(second))

    # the level filter is the server's: at "error" the info lines go, new ones do not come
    page.get_by_test_id("log-level").select_option("error")
    expect(logs.locator(".log-line[data-level=info]")).to_have_count(0)
    expect(section.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    third = _new_revision(controller, nid, 4)
    _controller_has_line(controller, nid, _applied_line(third))
    expect(logs.locator(".log-line[data-level=info]")).to_have_count(0)
    # back at "info" the stream reopens with the recent lines, that one among them
    page.get_by_test_id("log-level").select_option("info")
    expect(logs).to_contain_text(_applied_line(third))

    # search narrows to matching lines
    page.get_by_test_id("log-search").fill(_applied_line(second))
    page.get_by_test_id("log-search").press("Enter")
    expect(logs.locator(".log-line")).to_have_count(1)
    expect(logs).to_contain_text(_applied_line(second))


def test_destructive_actions_ask_first(panel: Panel, controller: ControllerProcess) -> None:
    node = _running_node(controller, "doomed-1")
    nid = node["id"]
    page = _sign_in(panel, controller)
    panel.goto(f"/nodes/{nid}")
    status = page.get_by_test_id("node-facts").get_by_test_id("node-status")
    expect(status).to_have_attribute("data-status", "running")

    # cancel leaves the node as it was
    page.get_by_role("button", name="Stop", exact=True).click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading")).to_have_text("Stop node doomed-1?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator("dialog[open]")).to_have_count(0)
    assert controller.node(nid)["status"] == "running"

    # confirmed, it stops, and the page follows live
    page.get_by_role("button", name="Stop", exact=True).click()
    page.locator("dialog[open]").get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(status).to_have_attribute("data-status", "stopped", timeout=ONLINE_MS)
    assert controller.node(nid)["status"] == "stopped"

    # delete: cancel, then confirm goes back to the fleet
    page.get_by_role("button", name="Delete", exact=True).click()
    page.locator("dialog[open]").get_by_role("button", name="Cancel").click()
    assert controller.node(nid)["status"] == "stopped"
    page.get_by_role("button", name="Delete", exact=True).click()
    page.locator("dialog[open]").get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(re.compile(r"#/fleet$"))
    expect(page.locator("main h1")).to_have_text("Fleet")
    assert controller.node(nid)["status"] in ("deleting", "deleted")


def _check(panel: Panel, page: Page, where: str) -> None:
    for language in ("en", "zh", "ru"):
        page.select_option("[data-testid=language]", language)
        violations = panel.axe()
        assert violations == [], f"{where} in {language}: {dump(violations)}"
        if language != "en":
            left = untranslated(page)
            assert left == [], f"{where} in {language}: {left}"
    page.select_option("[data-testid=language]", "en")


def test_node_screens_are_accessible_and_translated(panel: Panel, controller: ControllerProcess) -> None:
    node = _running_node(controller, "a11y-1")
    nid = node["id"]
    page = _sign_in(panel, controller)
    expect(page.locator(f"[data-node-id='{nid}'] [data-testid=node-online]")).to_have_attribute("data-online", "true")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    _check(panel, page, "fleet")

    panel.goto("/nodes/new")
    expect(page.get_by_test_id("region")).to_be_visible()
    _check(panel, page, "create node")

    panel.goto(f"/nodes/{nid}")
    expect(page.get_by_test_id("node-info")).to_be_visible()
    expect(page.get_by_test_id("log-lines").locator(".log-line").first).to_be_visible()
    _check(panel, page, "node")
