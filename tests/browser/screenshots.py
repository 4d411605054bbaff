"""Screenshots of the panel's main screens for a reviewer: `python -m tests.browser.screenshots OUTDIR`
(`make screenshots` writes build/screenshots/).

Starts its own controller (a temporary data dir, removed at the end, local agents killed), seeds the small
fleet of tests/browser/seed.py, signs in in headless Chromium (Debian's, never a downloaded one) and saves
full-page PNGs at desktop (1280x800) and phone (390x844) width, light and dark, in English, plus Chinese
and Russian samples (SAMPLES). Prints each file it made; exits non-zero, naming the screen, if one cannot be shown.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.browser.panel import CHROMIUM, DESKTOP, PHONE, Panel, launch
from tests.browser.seed import Account, Fleet, seed
from tests.controller_process import ControllerProcess

LANGUAGES = {"en": "en-US", "zh": "zh-CN", "ru": "ru-RU"}
SIZES = {"desktop": DESKTOP, "phone": PHONE}


@dataclass(frozen=True)
class Shot:
    name: str
    #: a panel #fragment, or a path of the controller's own (the subscription page); None: the sign-in screen
    path: str | None
    #: who is signed in (a role of the seed's accounts); None: nobody
    who: str | None = "admin"
    panel: bool = True


def shots(fleet: Fleet) -> list[Shot]:
    sub = fleet.limited
    return [
        Shot("sign-in", None, who=None),
        Shot("fleet", "/fleet"),
        Shot("node", f"/nodes/{fleet.running_node}"),
        Shot("node-create", "/nodes/new"),
        Shot("subscribers", "/subscribers"),
        Shot("subscriber", f"/subscribers/{sub['id']}"),
        Shot("subscription-page", f"/sub/{sub['short_uuid']}", who=None, panel=False),
        Shot("wireguard", f"/wireguard/{fleet.wireguard_server}"),
        Shot("operations", "/operations"),
        Shot("accounts", "/accounts"),
        Shot("api-keys", "/keys"),
        Shot("settings", "/settings"),
        Shot("mine", "/mine", who="user"),
    ]


#: the screens shot in Chinese and Russian too (at desktop width, light): the densest ones
SAMPLES = ("fleet", "subscriber", "subscription-page")


def take(browser: Browser, ctl: ControllerProcess, fleet: Fleet, plan: list[Shot], language: str, size: str,
         scheme: str, out: Path) -> list[Path]:
    """The shots of `plan` in one look (language, size, scheme): one browser context per account, signed in
    once."""
    made: list[Path] = []
    for who in dict.fromkeys(s.who for s in plan):
        panel = Panel.open(browser, ctl.url, viewport=SIZES[size], locale=LANGUAGES[language], color_scheme=scheme)
        try:
            if who is not None:
                account: Account = fleet.accounts[who]
                panel.sign_in(account.username, account.password)
            for shot in (s for s in plan if s.who == who):
                made.append(_shoot(panel, ctl, shot, out / f"{shot.name}-{size}-{scheme}-{language}.png"))
        finally:
            panel.close()
    return made


def _shoot(panel: Panel, ctl: ControllerProcess, shot: Shot, path: Path) -> Path:
    page = panel.page
    if not shot.panel:  # the page a subscriber's browser gets, in the language its Accept-Language asks for
        page.goto(f"{ctl.url}{shot.path}")
    elif shot.path is None:
        panel.goto()
    elif not panel.show(shot.path):
        print(f"warning: {shot.name} was still loading when shot", file=sys.stderr)
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    for problem in panel.take_problems():
        print(f"warning: {shot.name} ({path.stem}): {problem}", file=sys.stderr)
    return path


def run(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="vpnfleet-screenshots-"))
    ctl = ControllerProcess(data / "data")
    made: list[Path] = []
    try:
        ctl.start()
        fleet = seed(ctl)
        plan = shots(fleet)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                for size in SIZES:
                    for scheme in ("light", "dark"):
                        made += take(browser, ctl, fleet, plan, "en", size, scheme, out)
                for language in ("zh", "ru"):
                    made += take(browser, ctl, fleet, [s for s in plan if s.name in SAMPLES], language, "desktop",
                                 "light", out)
            finally:
                browser.close()
    finally:
        ctl.cleanup()
        shutil.rmtree(data, ignore_errors=True)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="where the PNGs go (made if missing)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: install the Debian package chromium (`make system-deps`)",
              file=sys.stderr)
        return 2
    for path in run(args.outdir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
