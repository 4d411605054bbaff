"""The subscriber's page: what a browser gets at /sub/<short_uuid> (apps keep getting their formats).

It says the subscriber's status, usage against the limit and expiry, gives one QR code per format and one-tap
import links for the common apps, with short per-platform steps; in English, 简体中文 or Русский (from
``?lang=`` or the browser's Accept-Language), with dates, numbers and sizes formatted per locale (Babel).
Rendering (this module) is kept apart from the route that decides who gets a page (routes/subscription.py).

The page is static HTML: no script, no outside request; its one stylesheet is inline and allowed by its
hash in the page's own Content-Security-Policy; the QR codes are SVG data URLs (segno).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
import segno
from babel.dates import format_date
from babel.numbers import format_percent
from babel.units import format_unit

from controller.page_text import LOCALES, TEXT

_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                                autoescape=True, undefined=jinja2.StrictUndefined)
_STYLE = (Path(__file__).with_name("templates") / "subscription.css").read_text()
#: the page's own policy: nothing runs, nothing loads from elsewhere; the inline stylesheet by its hash
CSP = ("default-src 'none'; style-src 'sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
       + "'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
#: the formats a QR code is shown for (what the common apps import): name -> ?format=
QR_FORMATS = (("base64", "base64"), ("sing-box", "sing-box-tun"), ("clash", "clash"))


@dataclass(frozen=True)
class PageFacts:
    """What the page shows of one subscriber."""

    username: str
    status: str
    used_bytes: int
    limit_bytes: int | None
    expires_at: dt.datetime
    subscription_url: str
    #: a running node serves the subscription now (else the page says so, and apps would get a 503)
    available: bool


def pick_locale(lang: str | None, accept_language: str | None) -> str:
    """``?lang=`` when it is one we have, else the browser's first language we have (by q), else English."""
    if lang and lang.lower()[:2] in LOCALES:
        return lang.lower()[:2]
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()[:2]))
    for _, _, tag in sorted(ranked):
        if tag in LOCALES:
            return tag
    return "en"


def _gib(n: int) -> float:
    return n / 1024**3


def import_links(url: str, name: str) -> list[tuple[str, str]]:
    """(app, link) for one-tap import in the common apps; each gets the format it reads."""
    q = quote
    return [
        ("v2rayNG", f"v2rayng://install-config?{urlencode({'url': url})}"),
        ("sing-box", f"sing-box://import-remote-profile?{urlencode({'url': url + '?format=sing-box-tun'})}#{q(name)}"),
        ("Clash / mihomo", f"clash://install-config?{urlencode({'url': url + '?format=clash', 'name': name})}"),
        ("Shadowrocket", "shadowrocket://add/sub://" + base64.urlsafe_b64encode(url.encode()).decode()
         + f"?remarks={q(name)}"),
        ("Hiddify", f"hiddify://import/{url}#{q(name)}"),
        ("Streisand", f"streisand://import/{url}#{q(name)}"),
    ]


def format_urls(url: str) -> list[tuple[str, str]]:
    """(label, URL) of the subscription in each format a QR code is shown for (QR_FORMATS)."""
    return [(label, f"{url}?format={fmt}") for label, fmt in QR_FORMATS]


def _qr(data: str) -> str:
    return segno.make(data, error="m").svg_data_uri(scale=4, border=2)


def render_page(facts: PageFacts, locale: str, now: dt.datetime | None = None) -> str:
    """The page's HTML in ``locale`` (one of LOCALES)."""
    t = TEXT[locale]
    now = now or dt.datetime.now(dt.timezone.utc)
    days_left = max(0, (facts.expires_at - now).days)
    used = format_unit(round(_gib(facts.used_bytes), 2), "digital-gigabyte", length="short", locale=locale)
    limit = (format_unit(round(_gib(facts.limit_bytes), 2), "digital-gigabyte", length="short", locale=locale)
             if facts.limit_bytes else None)
    share = min(1.0, facts.used_bytes / facts.limit_bytes) if facts.limit_bytes else None
    return _TEMPLATES.get_template("subscription.html").render(
        t=t, locale=locale, locales=LOCALES, style=_STYLE, facts=facts,
        status=t["status_" + facts.status] if "status_" + facts.status in t else facts.status,
        used=used, limit=limit, share=share, share_text=format_percent(share, locale=locale) if share is not None
        else None, expires=format_date(facts.expires_at.date(), format="long", locale=locale), days_left=days_left,
        links=import_links(facts.subscription_url, facts.username),
        qrs=[(label, url, _qr(url)) for label, url in format_urls(facts.subscription_url)])
