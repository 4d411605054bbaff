#!/usr/bin/env python3
"""The panel's figures: what its first load costs on the wire, and how fast its two biggest screens become
usable with a big fleet, in headless Chromium on this machine.

1. Bundle: every file of the panel's build (controller/panel/dist, or $VPNFLEET_PANEL_DIST) raw and
   gzip-compressed as the controller compresses it, then the first load (index.html + js + css) as a running
   controller actually sends it (Accept-Encoding: gzip), against the 300 KB budget (300,000 bytes) of issue 13.
2. Time to interactive of the fleet overview with --nodes nodes and of the subscriber list with --subscribers
   subscribers: the rows go straight into the database before the controller starts (provider "bench", which
   no driver or sync loop touches; no agents, so nodes are offline), then a signed-in browser opens the
   screen --runs times from a fresh page load. Measured in the page's own clock from navigation start until
   the list's first row is visible and its search box is enabled; then how long a typed key takes to show in
   the search box (a busy main thread would delay it). The assets come from the browser's cache (the sign-in
   loaded them), as on an operator's every visit after the first. JS heap used after a GC, from CDP.

    .venv/bin/python bench/panel.py                       # 1,000 nodes, 10,000 subscribers, 7 runs each
    .venv/bin/python bench/panel.py --nodes 5000 --runs 11 --keep

Only prints: a test never asserts wall-clock time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from bench.figures import log, pct  # noqa: E402
from controller.db import make_engine, make_sessionmaker, prepare_database  # noqa: E402
from controller.models import Node, Subscriber  # noqa: E402
from controller.services.subscribers import new_short_uuid  # noqa: E402
from tests.browser.panel import CHROMIUM, DESKTOP, Panel, launch  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402

BUDGET = 300_000
DIST = Path(os.environ.get("VPNFLEET_PANEL_DIST") or REPO / "controller" / "panel" / "dist")
#: what the fleet has without agents: mostly machines that run (offline: no agent dials in), some stopped,
#: a few failed with a reason
NODE_MIX = (("running", 7), ("stopped", 2), ("error", 1))
SUB_MIX = (("active", 8), ("blocked", 1), ("limited", 1))


# -- the bundle -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class File:
    name: str
    raw: int
    gzipped: int


def dist_files() -> list[File]:
    if not (DIST / "index.html").is_file():
        raise SystemExit(f"no panel build in {DIST}: run `make panel`")
    files = [DIST / "index.html", *sorted((DIST / "assets").iterdir())]
    return [File(str(p.relative_to(DIST)), p.stat().st_size,
                 len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0))) for p in files]


def wire_first_load(ctl: ControllerProcess) -> list[tuple[str, int, str]]:
    """(path, bytes on the wire, Content-Encoding) of /ui/ and the assets it names, as the controller sends them."""
    import re

    out = []
    with ctl.http_client(headers={"Accept-Encoding": "gzip"}, timeout=30) as client:
        index = client.get("/ui/")
        paths = ["/ui/", *re.findall(r'(?:href|src)="(/ui/assets/[^"]+)"', index.text)]
        for path in paths:
            with client.stream("GET", path) as r:
                r.raise_for_status()
                out.append((path, sum(len(c) for c in r.iter_raw()), r.headers.get("content-encoding", "none")))
    return out


def kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


# -- the big fleet ------------------------------------------------------------------------------------------

def _mixed(mix: tuple[tuple[str, int], ...], i: int) -> str:
    weights = [s for s, w in mix for _ in range(w)]
    return weights[i % len(weights)]


async def _seed(db: Path, nodes: int, subscribers: int) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    now = dt.datetime.now(dt.timezone.utc)
    try:
        await prepare_database(engine)
        async with make_sessionmaker(engine)() as s:
            s.add_all([Node(uuid=str(uuid.uuid4()), name=f"bench-node-{i:05d}", region="local", region_name="Local",
                            provider="bench", instance_id=f"bench-{i}", public_ip=f"10.{i // 65536 % 256}."
                            f"{i // 256 % 256}.{i % 256}", status=(st := _mixed(NODE_MIX, i)),
                            status_reason="instance terminated outside vpnfleet" if st == "error" else None,
                            created_at=now - dt.timedelta(minutes=i)) for i in range(nodes)])
            s.add_all([Subscriber(username=f"bench-sub-{i:05d}", credential_uuid=str(uuid.uuid4()),
                                  credential_secret=secrets.token_urlsafe(32), short_uuid=new_short_uuid(),
                                  status=_mixed(SUB_MIX, i), expires_at=now + dt.timedelta(days=1 + i % 365),
                                  data_limit_bytes=(i % 5 + 1) * 10 * 2**30 if i % 3 else None,
                                  used_upload_bytes=i * 1_048_576 % 2**33, used_download_bytes=i * 7_340_032 % 2**34,
                                  note="bench", created_at=now - dt.timedelta(seconds=i))
                       for i in range(subscribers)])
            await s.commit()
    finally:
        await engine.dispose()


def seed_database(data_dir: Path, nodes: int, subscribers: int) -> float:
    """Write the rows into DATA_DIR's database (migrated first); seconds it took."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)  # the controller refuses a database others can read
    t = time.perf_counter()
    try:
        asyncio.run(_seed(data_dir / "vpnfleet.db", nodes, subscribers))
    finally:
        os.umask(old)
    return time.perf_counter() - t


# -- time to interactive ------------------------------------------------------------------------------------

#: true, with the page's clock (ms since navigation start), once a row naming `prefix` is visible in <main>
#: and the screen's search box is enabled
_READY_JS = """(prefix) => {
    const shown = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 && r.top < innerHeight; };
    const row = [...document.querySelectorAll('main tbody tr')].find(tr => tr.textContent.includes(prefix) && shown(tr));
    const box = document.querySelector('main input[type=search]');
    return row && box && !box.disabled && shown(box) ? performance.now() : false;
}"""


@dataclass
class Screen:
    label: str
    fragment: str
    prefix: str
    ready_ms: list[float]
    echo_ms: list[float]
    heap_mib: float = 0.0


def measure(page: Page, panel: Panel, screen: Screen) -> None:
    page.goto("about:blank")
    page.goto(f"{panel.base_url}/ui/#{screen.fragment}")
    ready = page.wait_for_function(_READY_JS, arg=screen.prefix, polling="raf", timeout=120_000).json_value()
    screen.ready_ms.append(float(ready))
    # a key typed into the search box: the time until the box shows it (the main thread answers input)
    box = page.locator("main input[type=search]")
    box.focus()
    t = time.perf_counter()
    page.keyboard.type("b")
    page.wait_for_function("() => document.querySelector('main input[type=search]').value === 'b'", polling="raf")
    screen.echo_ms.append(1000 * (time.perf_counter() - t))


def heap_mib(page: Page) -> float:
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    used = cdp.send("Runtime.getHeapUsage")["usedSize"]
    cdp.detach()
    return used / 2**20


def run(args: argparse.Namespace) -> None:
    files = dist_files()
    tmp = Path(tempfile.mkdtemp(prefix="vpnfleet-bench-panel-"))
    ctl = ControllerProcess(tmp / "data")
    try:
        log(f"seeding {args.nodes} nodes and {args.subscribers} subscribers")
        seeded = seed_database(ctl.data_dir, args.nodes, args.subscribers)
        ctl.start()
        wire = wire_first_load(ctl)
        screens = [Screen(f"fleet overview, {args.nodes:,} nodes", "/fleet", "bench-node-", [], []),
                   Screen(f"subscriber list, {args.subscribers:,} subscribers", "/subscribers", "bench-sub-", [], [])]
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                for screen in screens:
                    panel = Panel.open(browser, ctl.url, viewport=DESKTOP)
                    try:
                        panel.sign_in("admin", ctl.admin_password())
                        for k in range(args.runs):
                            log(f"{screen.label}: run {k + 1}/{args.runs}")
                            measure(panel.page, panel, screen)
                        screen.heap_mib = heap_mib(panel.page)
                        if panel.problems:
                            log(f"{screen.label}: the page logged errors: {panel.problems[:3]}")
                    finally:
                        panel.close()
                version = browser.version
            finally:
                browser.close()
    finally:
        ctl.cleanup()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"panel build: {DIST}")
    print(f"{'file':<34} {'raw':>10} {'gzip -9':>10}")
    for f in files:
        print(f"{f.name:<34} {kb(f.raw):>10} {kb(f.gzipped):>10}")
    total = sum(n for _, n, _ in wire)
    print(f"first load as /ui/ sends it (Accept-Encoding: gzip): "
          + ", ".join(f"{p.rsplit('/', 1)[-1] or 'index.html'} {kb(n)} ({enc})" for p, n, enc in wire))
    print(f"first load total: {kb(total)} of the {kb(BUDGET)} budget: {'within' if total <= BUDGET else 'OVER'} "
          f"({100 * total / BUDGET:.0f} %)")
    print()
    print(f"Chromium {version}, headless, {DESKTOP['width']}x{DESKTOP['height']}; {os.cpu_count()} CPUs shared "
          f"with the controller; rows seeded in {seeded:.1f} s")
    for s in screens:
        print(f"{s.label}: time to interactive ({len(s.ready_ms)} loads) p50 {pct(s.ready_ms, 50):.0f} ms  "
              f"p95 {pct(s.ready_ms, 95):.0f} ms  max {max(s.ready_ms):.0f} ms; "
              f"key echo p50 {pct(s.echo_ms, 50):.0f} ms (max {max(s.echo_ms):.0f}); JS heap {s.heap_mib:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7, help="page loads per screen")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM}: install the Debian package chromium (`make system-deps`)")
    run(args)


if __name__ == "__main__":
    main()
