"""/sub/<short_uuid> in a browser is the subscriber's page; apps (by User-Agent, ?format= or their Accept) keep
getting their formats from the same URL."""

from __future__ import annotations

import pytest

from tests.controller_process import ControllerProcess

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"}


@pytest.fixture(scope="module")
def ctl(shared_controller: ControllerProcess) -> ControllerProcess:
    return shared_controller


def test_a_browser_gets_the_page_and_apps_their_formats(ctl: ControllerProcess) -> None:
    sub = ctl.api.post("/api/v1/clients", json={"username": "page-alice", "days": 30, "data_limit_gb": 10})
    assert sub.status_code == 201, sub.text
    path = f"/sub/{sub.json()['short_uuid']}"
    page = ctl.get(path, headers={**BROWSER, "Accept-Language": "ru-RU,ru;q=0.9"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "style-src 'sha256-" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and "Accept" in page.headers["vary"]
    assert '<html lang="ru">' in page.text and "page-alice" in page.text and 'data-status="active"' in page.text
    assert "Сейчас нет доступных серверов" in page.text  # no node runs yet: the page says so, apps get a 503
    assert sub.json()["subscription_url"] + "?format=clash" in page.text
    assert '<html lang="zh">' in ctl.get(path + "?lang=zh", headers=BROWSER).text
    # the same URL for apps: a known app's User-Agent, an explicit format, or an Accept without text/html
    for headers, query in (({**BROWSER, "User-Agent": "v2rayNG/1.9.16"}, ""), (BROWSER, "?format=base64"),
                           ({"Accept": "*/*"}, ""), ({**BROWSER, "User-Agent": "SFA/1.11.0 (sing-box 1.11)"}, "")):
        r = ctl.get(path + query, headers=headers)
        assert r.status_code == 503 and not r.headers["content-type"].startswith("text/html"), (headers, query)
    # blocking shows at once on the page
    assert ctl.api.post(f"/api/v1/clients/{sub.json()['id']}/block").status_code == 200
    blocked = ctl.get(path, headers={**BROWSER, "Accept-Language": "en"})
    assert 'data-status="blocked"' in blocked.text and "Blocked by the operator" in blocked.text
    # an unknown or malformed subscription is the same 404 as for apps
    assert ctl.get("/sub/NoSuchSubscription123", headers=BROWSER).status_code == 404
