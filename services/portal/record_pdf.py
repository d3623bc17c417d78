"""The patient's record as a printable PDF, in their language, with Chinese text that stays text.

fpdf2 lays it out and embeds a subset of a CJK TrueType font
(``HEALTHGOV_CJK_FONT``, by default Debian's WenQuanYi Zen Hei, installed by
``deploy/setup.sh``). A TrueType font, not Noto CJK: the subsets fpdf2 makes
of Noto's CFF outlines lose their text mapping, so the PDF would print but
could not be searched, copied or read aloud. The words and grouping are
those of the page (``readable.py``), so the paper and the screen agree.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF

from services.portal import i18n, readable, words

DEFAULT_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
FAMILY = "cjk"


class FontMissing(RuntimeError):
    """The CJK font is not installed (run deploy/setup.sh): no PDF rather than one with missing characters."""


def font_path() -> Path:
    return Path(os.environ.get("HEALTHGOV_CJK_FONT", DEFAULT_FONT))


def patient_name(bundle: dict[str, Any]) -> tuple[str, str]:
    """(the patient's name, birth date) from the Patient resource in their own Bundle; '' when absent."""
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            name = next((n for n in res.get("name") or [] if isinstance(n, dict)), {})
            text = name.get("text") or " ".join([*[g for g in name.get("given") or [] if isinstance(g, str)],
                                                 str(name.get("family") or "")]).strip()
            return str(text), str(res.get("birthDate") or "")
    return "", ""


class _Doc(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self.footer_text = footer_text

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FAMILY, size=8)
        self.cell(0, 6, f"{self.footer_text} · {self.page_no()}/{{nb}}", align="C")


def render(bundle: dict[str, Any], *, lang: str, registry: dict[str, Any], now: datetime | None = None) -> bytes:
    """The PDF bytes of ``bundle`` (what records released for this download) in ``lang``."""
    font = font_path()
    if not font.is_file():
        raise FontMissing(f"{font} is not installed")
    _ = i18n.translations(lang).gettext  # the name Babel extracts
    sections = readable.readable_record(bundle)
    made = i18n.local_time((now or datetime.now(UTC)).isoformat(), lang)
    doc = _Doc(_("healthgov: my health record, printed %(when)s") % {"when": made})
    doc.add_font(FAMILY, fname=str(font))
    doc.set_title(_("My health record"))
    doc.set_lang(i18n.HTML_LANG[lang])
    doc.set_creator("healthgov")
    doc.set_auto_page_break(auto=True, margin=16)
    doc.alias_nb_pages()
    doc.add_page()

    def line(text: str, size: float = 10, height: float = 5.5, gray: int = 0) -> None:
        doc.set_font(FAMILY, size=size)
        doc.set_text_color(gray)
        doc.multi_cell(0, height, text, new_x="LMARGIN", new_y="NEXT")
        doc.set_text_color(0)

    name, born = patient_name(bundle)
    line(_("My health record"), size=18, height=9)
    if name:
        born_words = _("born %(date)s") % {"date": born} if born else ""
        line(" · ".join(w for w in (_("Patient: %(name)s") % {"name": name}, born_words) if w))
    line(_("Printed %(when)s from healthgov. This copy is recorded in your access history.") % {"when": made},
         size=9, gray=90)
    hospitals = readable.hospitals_of(sections)
    if hospitals:
        names = ", ".join(words.org_name(registry, h, lang) for h in hospitals)
        line(_("Records from: %(hospitals)s") % {"hospitals": names}, size=9, gray=90)

    def item_text(item: readable.Item) -> tuple[str, str]:
        title = _(item.name) if item.name_is_msgid else item.name
        marks = [_(readable.STATUS_WORDS.get(item.status, item.status)) if item.status else "",
                 _(readable.INTERPRETATION_WORDS[item.flag]) if item.flag in readable.INTERPRETATION_WORDS else "",
                 _(readable.CRITICALITY_WORDS[item.flag]) if item.flag in readable.CRITICALITY_WORDS else ""]
        marks = [m for m in marks if m]
        if marks:
            title += f" ({', '.join(marks)})"
        when = (_("%(start)s to %(end)s") % {"start": item.date, "end": item.end}
                if item.end and item.end != item.date else item.date) or _("date not recorded")
        facts = [when, words.org_name(registry, item.hospital, lang) if item.hospital else "", item.detail,
                 item.code_hint]
        return title, " · ".join(f for f in facts if f)

    for section in sections:
        doc.ln(3)
        line(_(section.title), size=14, height=8)
        if section.empty:
            line(_("Nothing recorded."), gray=90)
            continue
        for heading, items in ((_(section.current_title), section.current),
                               (_("Earlier (%(n)s)") % {"n": len(section.past)}, section.past)):
            if not items:
                continue
            line(heading, size=11, height=6.5, gray=60)
            for item in items:
                title, facts = item_text(item)
                line(title, size=10.5)
                line(facts, size=9, height=5, gray=90)
    return bytes(doc.output())
