"""The subscriber's page: every language complete, figures per locale, links and QR codes per format, a page
that runs nothing and loads nothing from elsewhere."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.page_text import LOCALES, TEXT
from controller.subscription_page import CSP, PageFacts, import_links, pick_locale, render_page

URL = "https://vpn.example.test/sub/AbCdEfGh12345678_-xyz"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
FACTS = PageFacts(username="alice", status="active", used_bytes=int(2.5 * 1024**3), limit_bytes=10 * 1024**3,
                  expires_at=dt.datetime(2026, 12, 31, tzinfo=dt.timezone.utc), subscription_url=URL, available=True)


def test_every_language_has_every_text() -> None:
    keys = set(TEXT["en"])
    for locale in LOCALES:
        assert set(TEXT[locale]) == keys, locale
        assert all(v.strip() for v in TEXT[locale].values()), locale


@pytest.mark.parametrize("locale,used,expires", [("en", "2.5 GB", "December 31, 2026"),
                                                 ("zh", "2.5 GB", "2026年12月31日"),
                                                 ("ru", "2,5 ГБ", "31 декабря 2026\u202fг.")])
def test_figures_and_words_follow_the_locale(locale: str, used: str, expires: str) -> None:
    page = render_page(FACTS, locale, now=NOW)
    assert f'<html lang="{locale}">' in page
    assert used in page and expires in page and "30 " + TEXT[locale]["days_left"] in page
    assert TEXT[locale]["status_active"] in page and TEXT[locale]["title"] in page
    # no other language's words leak into the page
    for other in LOCALES:
        if other != locale:
            assert TEXT[other]["how"] not in page


def test_one_qr_code_per_format_and_import_links_carry_the_url() -> None:
    page = render_page(FACTS, "en", now=NOW)
    qrs = re.findall(r'<img src="(data:image/svg\+xml[^"]+)" alt="[^"]+" data-url="([^"]+)"', page)
    assert [u for _, u in qrs] == [f"{URL}?format=base64", f"{URL}?format=sing-box-tun", f"{URL}?format=clash"]
    links = dict(import_links(URL, "alice"))
    assert parse_qs(urlsplit(links["sing-box"]).query)["url"] == [f"{URL}?format=sing-box-tun"]
    assert parse_qs(urlsplit(links["Clash / mihomo"]).query)["url"] == [f"{URL}?format=clash"]
    assert parse_qs(urlsplit(links["v2rayNG"]).query)["url"] == [URL]
    assert base64.urlsafe_b64decode(links["Shadowrocket"].split("sub://")[1].split("?")[0]).decode() == URL
    for app in ("v2rayNG", "sing-box", "Clash / mihomo", "Shadowrocket", "Hiddify", "Streisand"):
        assert f'data-app="{app}"' in page


def test_the_page_runs_nothing_and_its_style_is_the_one_the_policy_allows() -> None:
    page = render_page(FACTS, "ru", now=NOW)
    assert "<script" not in page and "style=" not in page and "http://" not in page
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CSP and "default-src 'none'" in CSP


def test_names_are_escaped() -> None:
    page = render_page(PageFacts(**{**FACTS.__dict__, "username": "<b>x</b>"}), "en", now=NOW)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_unlimited_and_unavailable() -> None:
    page = render_page(PageFacts(**{**FACTS.__dict__, "limit_bytes": None, "available": False}), "zh", now=NOW)
    assert TEXT["zh"]["unlimited"] in page and TEXT["zh"]["unavailable"] in page and "<progress" not in page


@pytest.mark.parametrize("lang,accept,expected", [
    (None, "ru-RU,ru;q=0.9,en;q=0.8", "ru"), (None, "de-DE, zh-CN;q=0.5, en;q=0.4", "zh"),
    ("zh", "ru", "zh"), (None, None, "en"), (None, "fr;q=abc", "en"), ("xx", "en", "en")])
def test_the_language(lang: str | None, accept: str | None, expected: str) -> None:
    assert pick_locale(lang, accept) == expected
