"""Every screen of the panel, walked in a real browser over a seeded fleet, in English, Chinese and Russian:
nothing untranslated, no serious axe-core violation in light or dark, no sideways scrolling at phone width,
Tab reaches the navigation and the screen's actions, no console errors. The walk reads the screens from the
page's own navigation (plus the detail screens), so a new screen is walked without editing this file.

A walk does not stop at the first failure: it collects every (screen, language, check) that failed and
asserts once, with the whole list, so one run tells each screen's author what to fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.panel import PHONE, Panel, untranslated
from tests.browser.seed import Account, Fleet, seed
from tests.controller_process import ControllerProcess, wait_for

LANGUAGES = {"en": "en-US", "zh": "zh-CN", "ru": "ru-RU"}
#: Tab presses a walk allows to get from the top bar to the screen's first control
TAB_BUDGET = 45
#: a screen still loading after this long is reported, and later passes wait far less for it
SETTLE_MS, SETTLE_AGAIN_MS = 5_000, 500
#: a walk opens each screen 3 times and runs axe on it twice: minutes on 2 shared cores, not seconds
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def fleet_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for the module's walks: they only read, so they share it and its seed."""
    ctl = ControllerProcess(Path(tmp_path_factory.mktemp("every-screen")) / "data")
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()


@pytest.fixture(scope="module")
def fleet(fleet_controller: ControllerProcess) -> Fleet:
    return seed(fleet_controller)


@dataclass
class Findings:
    """Failed checks, each as "<screen> [<language> <variant>] <check>: <what was seen>"."""

    items: list[str] = field(default_factory=list)
    slow: set[str] = field(default_factory=set)

    def add(self, screen: str, where: str, check: str, detail: Any) -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
        self.items.append(f"{screen} [{where}] {check}: {text}")

    def assert_none(self, walked: list[str]) -> None:
        if self.items:  # the list itself, without pytest's rendering of the expression around it
            pytest.fail(f"{len(self.items)} failed checks over {len(walked)} screens ({', '.join(walked)}):\n"
                        + "\n".join(f"- {i}" for i in self.items), pytrace=False)


def detail_screens(fleet: Fleet) -> list[str]:
    return [f"/nodes/{fleet.running_node}", "/nodes/new", f"/subscribers/{fleet.limited['id']}",
            f"/wireguard/{fleet.wireguard_server}"]


def signed_in(browser: Browser, ctl: ControllerProcess, who: Account, language: str, *,
              color_scheme: str = "light", viewport: dict[str, int] | None = None) -> Panel:
    """A fresh context whose browser prefers `language` (the panel picks it up from navigator.languages)."""
    panel = Panel.open(browser, ctl.url, locale=LANGUAGES[language], color_scheme=color_scheme, viewport=viewport)
    panel.sign_in(who.username, who.password)
    assert panel.page.evaluate("document.documentElement.lang").startswith(language), "the panel ignored the " \
        f"browser's language {LANGUAGES[language]}"
    return panel


def visit(panel: Panel, path: str, where: str, found: Findings) -> bool:
    """Open one screen; report it if it stays loading or logged errors. False: it did not open at all."""
    try:
        settled = panel.show(path, SETTLE_AGAIN_MS if path in found.slow else SETTLE_MS)
    except Exception as e:  # noqa: BLE001 — the walk goes on to the next screen and reports this one
        found.add(path, where, "opens", f"no heading in <main>: {str(e).splitlines()[0]}")
        return False
    if not settled and path not in found.slow:
        found.slow.add(path)
        found.add(path, where, "loads", f"still shows Loading… after {SETTLE_MS / 1000:.0f} s")
    for problem in panel.take_problems():
        found.add(path, where, "console", problem)
    return True


def check_language(panel: Panel, path: str, where: str, language: str, found: Findings) -> None:
    if language != "en" and (left := untranslated(panel.page)):
        found.add(path, where, "untranslated", left[:12])


def check_axe(panel: Panel, path: str, where: str, found: Findings) -> None:
    if violations := panel.axe():
        found.add(path, where, "axe", [f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes']}"
                                       for v in violations])


#: elements sticking out past the viewport's right edge that are not inside a scrolling box (.table-wrap)
_OVERFLOW_JS = """() => {
    const out = [];
    const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) {
        const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
        return false; };
    for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.width && r.right > innerWidth + 1 && !scrolls(el)) {
            out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className && typeof el.className === 'string'
                      ? '.' + el.className.trim().split(/\\s+/).join('.') : ''} (right edge ${Math.round(r.right)})`);
        }
    }
    return {scroll: document.documentElement.scrollWidth, width: innerWidth, culprits: out.slice(0, 4)};
}"""


def check_phone(panel: Panel, path: str, where: str, found: Findings) -> None:
    seen = panel.page.evaluate(_OVERFLOW_JS)
    if seen["scroll"] > seen["width"]:
        found.add(path, where, "scrolls sideways", f"page {seen['scroll']} px wide in a {seen['width']} px "
                                                    f"viewport; sticking out: {seen['culprits']}")


#: what has focus now: where it is, and whether a sighted keyboard user can see it and that it has focus
_FOCUS_JS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    return {
        where: el.closest('nav#nav') ? 'nav' : el.closest('main') ? 'main' : 'other',
        action: !!el.closest('.screen-head .actions'),
        what: `${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') || el.textContent || el.getAttribute('name') || '').trim().slice(0, 30)}"`,
        visible: r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth,
        ring: (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0) || cs.boxShadow !== 'none',
        key: el.outerHTML.slice(0, 120),
    };
}"""
#: what the screen offers a keyboard: its actions (the heading's buttons) and whether it has any control
_TARGETS_JS = """() => {
    const focusable = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), textarea, [tabindex]:not([tabindex="-1"])';
    const shown = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    return {actions: [...document.querySelectorAll(`main .screen-head .actions :is(${focusable})`)].filter(shown).length,
            controls: [...document.querySelectorAll(`main :is(${focusable})`)].filter(shown).length};
}"""


def check_keyboard(panel: Panel, path: str, where: str, found: Findings) -> None:
    """Tab from the top bar: focus must reach a navigation link and then the screen's first control (its
    actions, when it has any), and every element it lands on must be on screen with a visible focus ring."""
    page = panel.page
    targets = page.evaluate(_TARGETS_JS)
    page.click(".topbar .brand")  # the start of sequential focus navigation, before any control
    seen: list[dict[str, Any]] = []
    keys: set[str] = set()
    for _ in range(TAB_BUDGET):
        page.keyboard.press("Tab")
        now = page.evaluate(_FOCUS_JS)
        if now is None or now["key"] in keys:
            break
        keys.add(now["key"])
        seen.append(now)
        if now["where"] == "main" and (now["action"] or not targets["actions"]):
            break
    places = {s["where"] for s in seen}
    if "nav" not in places:
        found.add(path, where, "keyboard", f"Tab never reached the navigation; focus went to "
                                           f"{[s['what'] for s in seen]}")
    if targets["controls"] and "main" not in places:
        found.add(path, where, "keyboard", f"Tab never reached the screen's {targets['controls']} controls "
                                           f"within {TAB_BUDGET} presses")
    elif targets["actions"] and not any(s["action"] for s in seen):
        found.add(path, where, "keyboard", "Tab reached the screen but not its actions before "
                                           f"{[s['what'] for s in seen if s['where'] == 'main'][:5]}")
    for s in seen:
        if not s["visible"] or not s["ring"]:
            found.add(path, where, "keyboard", f"focus on {s['what']} is "
                                               f"{'off screen' if not s['visible'] else 'without a focus ring'}")
    page.keyboard.press("Escape")  # close whatever a focused control may have opened


def walk(browser: Browser, ctl: ControllerProcess, who: Account, language: str, extra: list[str]) -> None:
    """Every screen `who` can reach, in `language`: light and dark at desktop width (axe, translation,
    keyboard), then light at phone width (sideways scrolling)."""
    found = Findings()
    walked: list[str] = []
    for scheme in ("light", "dark"):
        panel = signed_in(browser, ctl, who, language, color_scheme=scheme)
        try:
            screens = walked or [*panel.nav_paths(), *extra]
            assert screens, f"{who.username} sees no screen in the navigation"
            walked = screens
            for path in screens:
                where = f"{language} {scheme}"
                if not visit(panel, path, where, found):
                    continue
                check_axe(panel, path, where, found)
                if scheme == "light":
                    check_language(panel, path, where, language, found)
                    check_keyboard(panel, path, where, found)
                    for problem in panel.take_problems():
                        found.add(path, where, "console", problem)
        finally:
            panel.close()
    phone = signed_in(browser, ctl, who, language, viewport=PHONE)
    try:
        for path in walked:
            where = f"{language} phone"
            if visit(phone, path, where, found):
                check_phone(phone, path, where, found)
                check_language(phone, path, where, language, found)
    finally:
        phone.close()
    found.assert_none(walked)


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_operator_screen(browser: Browser, fleet_controller: ControllerProcess, fleet: Fleet,
                               language: str) -> None:
    walk(browser, fleet_controller, fleet.accounts["admin"], language, detail_screens(fleet))


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_screen_of_a_user_account(browser: Browser, fleet_controller: ControllerProcess, fleet: Fleet,
                                        language: str) -> None:
    walk(browser, fleet_controller, fleet.user, language, [])


def _spaced(text: str) -> str:
    """Intl puts no-break and narrow no-break spaces between a figure and its unit."""
    return re.sub(r"[\u00a0\u202f]", " ", text)


def test_byte_sizes_and_dates_follow_the_language(browser: Browser, fleet_controller: ControllerProcess,
                                                  fleet: Fleet) -> None:
    """The subscriber's 1.5 GiB limit reads "1.5 GB" in English and "1,5 ГБ" in Russian; its expiry date is
    written differently in each language too."""
    seen: dict[str, str] = {}
    for language in ("en", "ru"):
        panel = signed_in(browser, fleet_controller, fleet.accounts["admin"], language)
        try:
            panel.show(f"/subscribers/{fleet.limited['id']}")
            seen[language] = _spaced(panel.page.locator("main").inner_text())
            panel.assert_clean()
        finally:
            panel.close()
    assert "1.5 GB" in seen["en"], f"no '1.5 GB' on alice's screen in English:\n{seen['en'][:1500]}"
    assert "1,5 ГБ" in seen["ru"], f"no '1,5 ГБ' on alice's screen in Russian:\n{seen['ru'][:1500]}"
    en_dates = set(re.findall(r"[A-Z][a-z]{2} \d{1,2}, \d{4}", seen["en"]))
    assert en_dates, f"no date like 'Mar 3, 2026' on alice's screen in English:\n{seen['en'][:1500]}"
    assert not en_dates & set(re.findall(r"[A-Z][a-z]{2} \d{1,2}, \d{4}", seen["ru"])), \
        "the Russian screen writes dates the English way"


def test_the_language_switch_changes_the_page_at_once_and_is_remembered(
        browser: Browser, fleet_controller: ControllerProcess, fleet: Fleet) -> None:
    panel = signed_in(browser, fleet_controller, fleet.accounts["admin"], "en")
    try:
        page = panel.page
        fleet_link = page.locator("nav#nav a[href='#/fleet']")
        expect(fleet_link).to_have_text("Fleet")
        page.select_option("[data-testid=language]", "ru")
        # the same page, changed in place: no navigation happened
        expect(fleet_link).to_have_text("Парк")
        assert page.evaluate("document.documentElement.lang") == "ru"
        page.evaluate("window.__same_page = true")
        page.select_option("[data-testid=language]", "zh")
        expect(fleet_link).to_have_text("集群")
        assert page.evaluate("window.__same_page") is True, "switching the language reloaded the page"
        assert untranslated(page) == []

        page.reload()
        expect(page.locator("nav#nav a[href='#/fleet']")).to_have_text("集群")
        expect(page.locator("[data-testid=language]")).to_have_value("zh")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        panel.assert_clean()
    finally:
        panel.close()


#: the layout shift score of the page so far (buffered: from its load on), kept up to date in window.__cls
_CLS_JS = """() => { window.__cls = 0;
    new PerformanceObserver((list) => { for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value; })
        .observe({type: 'layout-shift', buffered: true}); }"""


def test_fleet_does_not_shift_while_a_live_status_change_arrives(panel: Panel, controller: ControllerProcess) -> None:
    """A node stops while the fleet screen is open: the change arrives over SSE and is shown without the
    layout moving (cumulative layout shift of what the event changes under 0.1)."""
    node = controller.create_node(name="shift-test")
    controller.wait_running(node["id"])
    page = panel.sign_in("admin", controller.admin_password())
    panel.show("/fleet")
    row = page.locator("main").get_by_text("shift-test", exact=True).first
    expect(row, "the fleet screen does not show the node").to_be_visible()
    page.evaluate(_CLS_JS)
    page.wait_for_timeout(0)  # one turn of the event loop: the buffered entries are delivered
    at_load = page.evaluate("window.__cls")
    before = page.locator("main").inner_text()

    r = controller.api.post(f"/api/v1/nodes/{node['id']}/stop")
    assert r.status_code == 202, r.text
    wait_for(lambda: controller.node(node["id"])["status"] == "stopped", 30, message="node stopped")
    # the screen shows the new status without a reload (the stream is the only way it can know)
    page.wait_for_function("(before) => document.querySelector('main').innerText !== before", arg=before)
    expect(page.locator("main")).to_contain_text(re.compile("stopped", re.I))
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shifted = page.evaluate("window.__cls") - at_load
    assert shifted < 0.1, f"layout shift {shifted:.3f} while the status change arrived (at load: {at_load:.3f})"
