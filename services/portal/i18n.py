"""The portal's languages: Simplified Chinese first, English second, by gettext catalogues (Babel).

Messages are written in English in the code and the templates (``_()``,
``{% trans %}``, ``N_()`` for words kept in tables) and translated by the
catalogue ``locale/<lang>/LC_MESSAGES/messages.po``. Only the ``.po`` source
is kept: it is compiled in memory when the portal starts, so a compiled
``.mo`` can never be older than its source and nothing is written next to the
code (the package may be read-only in a container).

Which language: the ``healthgov_lang`` cookie the language switch sets, else
the browser's Accept-Language, else Chinese (the people this portal serves in
Guiyang). Times are shown in Asia/Shanghai, with the zone named.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.core import negotiate_locale
from babel.dates import format_datetime, get_timezone
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from starlette.requests import Request

from services.contracts import vocabulary

LOCALES = ("zh_CN", "en")
DEFAULT = "zh_CN"
COOKIE = "healthgov_lang"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
TIMEZONE = get_timezone("Asia/Shanghai")
LOCALE_DIR = Path(__file__).with_name("locale")


# The one gettext_noop marker: the vocabulary's wording and the portal's tables are extracted alike.
N_ = vocabulary.N_


@cache
def translations(lang: str) -> NullTranslations:
    """The catalogue of ``lang``, compiled from its ``.po`` once per process; English is the source itself."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang not in LOCALES or not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def negotiate(request: Request) -> str:
    """The language this request is answered in: the switch's cookie, then Accept-Language, then Chinese."""
    chosen = request.cookies.get(COOKIE)
    if chosen in LOCALES:
        return chosen
    return from_accept_language(request.headers.get("accept-language", ""))


def from_accept_language(header: str) -> str:
    """The best of our languages for an Accept-Language header (quality values honoured)."""
    wanted: list[tuple[float, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        if not tag or tag == "*":
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if q > 0:
            wanted.append((-q + i * 1e-6, tag.replace("-", "_")))
    preferred = [tag for _, tag in sorted(wanted)]
    # "zh", "zh-Hans", "zh-TW" all read Chinese characters; Simplified is the one we have.
    preferred = ["zh_CN" if t.lower().startswith("zh") else t for t in preferred]
    return negotiate_locale(preferred, list(LOCALES), sep="_") or DEFAULT


def local_time(value: Any, lang: str, *, seconds: bool = False) -> str:
    """An RFC 3339 instant as a Guiyang reader's clock shows it, with the zone named; '' if unreadable."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    pattern = "yyyy-MM-dd HH:mm:ss" if seconds else "yyyy-MM-dd HH:mm"
    zone = translations(lang).gettext("Beijing time")
    return f"{format_datetime(moment, pattern, tzinfo=TIMEZONE, locale=Locale.parse(lang))} ({zone})"


def local_date(value: Any) -> str:
    """A FHIR date or dateTime as the Guiyang calendar date (a bare date is already one)."""
    text = str(value or "")
    if len(text) <= 10:
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:10]
    if moment.tzinfo is None:
        return text[:10]
    return moment.astimezone(TIMEZONE).date().isoformat()
