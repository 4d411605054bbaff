"""Driving the panel in a real browser: Debian's headless Chromium through Playwright (never a downloaded
browser), against a real controller. Used by the browser tests, the screenshots target and bench/panel.py.

Every page a test opens records the console errors and uncaught exceptions it has (a CSP violation is one);
``Panel.assert_clean()`` fails the test on any.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = REPO / "controller" / "panel" / "node_modules" / "axe-core" / "axe.min.js"
#: as root in a closed network: no sandbox (root), no GPU, and none of Chromium's own calls home
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                 "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@dataclass
class Panel:
    """One browser context (its own storage) on a controller's panel."""

    context: BrowserContext
    page: Page
    base_url: str
    problems: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser, base_url: str, *, viewport: dict[str, int] | None = None,
             locale: str = "en-US", color_scheme: str = "light") -> "Panel":
        # the controller's certificate is from its own CA, for 127.0.0.1: Chromium is told to accept it
        context = browser.new_context(ignore_https_errors=True, viewport=viewport or DESKTOP, locale=locale,
                                      color_scheme=color_scheme)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        panel = cls(context, context.new_page(), base_url.rstrip("/"))
        panel.watch(panel.page)
        return panel

    def watch(self, page: Page) -> None:
        page.on("console", lambda m: m.type == "error" and not _expected(m.text) and self.problems.append(
            f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def goto(self, fragment: str = "") -> Page:
        """Open the panel at #<fragment> ("/fleet", "/nodes/<id>") and wait for its first paint."""
        self.page.goto(f"{self.base_url}/ui/{'#' + fragment if fragment else ''}")
        self.page.wait_for_selector("#app > *")
        return self.page

    def sign_in(self, username: str, password: str, totp: str | None = None) -> Page:
        page = self.goto()
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("form button[type=submit]")
        if totp is not None:
            page.fill("input[name=code]", totp)
            page.click("form button[type=submit]")
        page.wait_for_selector("nav#nav", state="attached")  # at phone width it hides behind the menu button
        return page

    def show(self, fragment: str, settle_ms: float = 8_000) -> bool:
        """Open #<fragment> from a fresh page load (as a shared link or a reload does: no state from the screen
        before) and wait for its heading, then up to settle_ms for its data: True once no "Loading…" is left in
        <main>, False if it still shows one (the caller reports it)."""
        self.page.goto("about:blank")
        self.page.goto(f"{self.base_url}/ui/#{fragment}")
        self.page.wait_for_selector("main h1")
        try:
            self.page.wait_for_function(f"() => !{_LOADING_JS}", timeout=settle_ms)
            return True
        except PlaywrightTimeout:
            return False

    def nav_paths(self) -> list[str]:
        """The hash paths of the navigation's links, as the signed-in account sees them ("/fleet", ...)."""
        hrefs = self.page.eval_on_selector_all("nav#nav a[href^='#/']", "as => as.map(a => a.getAttribute('href'))")
        return [h[1:].split("?", 1)[0] for h in hrefs]

    def take_problems(self) -> list[str]:
        """The console errors logged since the last call (so a walk can say which screen logged them)."""
        taken, self.problems[:] = list(self.problems), []
        return taken

    def axe(self, page: Page | None = None) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page as it is now (run through CDP, so the page's
        CSP, which refuses any injected script, does not apply to it)."""
        page = page or self.page
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.evaluate(AXE.read_text() + "\n;0")
        result = page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
        }""")
        return list(result)

    def assert_clean(self) -> None:
        assert not self.problems, "the page logged errors:\n" + "\n".join(self.problems)

    def close(self) -> None:
        self.context.close()


#: a screen still loading: the Loading component (src/ui/feedback.tsx) in <main>, in any of the languages
_LOADING_JS = ("[...document.querySelectorAll('main [role=status][aria-live]')]"
               ".some(e => ['Loading…', '加载中…', 'Загрузка…'].includes(e.textContent.trim()))")


def _expected(text: str) -> bool:
    """Console errors that are answers the test provoked (a refused sign-in is a 401 in the console)."""
    return "Failed to load resource" in text and any(f"status of {s}" in text for s in (401, 403, 404, 409, 422))


def untranslated(page: Page) -> list[str]:
    """Visible text, labels, placeholders and titles of the page written in Latin letters, outside elements
    marked translate="no" (data: names, addresses, figures) and <code>: what a zh or ru page must not show."""
    found = page.evaluate("""() => {
        const latin = /[A-Za-z]{2,}/;
        const out = [];
        const skip = (el) => !el || el.closest('[translate="no"], code, script, style, noscript, svg, .u-legend, .uplot');
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const el = n.parentElement;
            const text = n.textContent.trim();
            if (!text || skip(el) || !latin.test(text)) continue;
            if (el.closest('[hidden], dialog:not([open])')) continue;
            out.push(text);
        }
        for (const el of document.querySelectorAll('[aria-label], [title], [placeholder]')) {
            if (skip(el)) continue;
            for (const a of ['aria-label', 'title', 'placeholder']) {
                const v = el.getAttribute(a);
                if (v && latin.test(v)) out.push(`${a}=${v}`);
            }
        }
        return out;
    }""")
    return [t for t in found if not _allowed(t)]


#: words that are the same in every language of the panel: product and protocol names, units
ALLOWED = {"vpnfleet", "WireGuard", "VMess", "VLESS", "REALITY", "V2Ray", "Xray", "API", "TOTP", "QR", "IPv4",
           "IPv6", "IP", "SSE", "TCP", "UDP", "TLS", "URL", "ID", "EC2", "CPU", "JSON", "YAML", "sing-box", "Clash",
           "mihomo", "v2rayNG", "v2rayN", "Shadowrocket", "Hiddify", "Streisand", "Android", "iOS", "Windows",
           "macOS", "Linux", "NodePass", "gRPC", "mTLS", "HTTPS", "admin", "manager", "viewer", "user", "conf",
           "English", "ms", "KB", "MB", "GB", "TB", "kB", "B", "UUID", "DNS", "MTU", "RAM"}


def _allowed(text: str) -> bool:
    import re
    words = re.findall(r"[A-Za-z][A-Za-z0-9.+-]*", text.split("=", 1)[-1] if text.startswith(("aria-label=", "title=", "placeholder=")) else text)
    return all(w.strip(".-") in ALLOWED or len(w.strip(".-")) < 2 for w in words)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False)
