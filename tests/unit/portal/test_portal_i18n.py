"""The portal's languages: every message translated, the right language chosen, Guiyang's clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from services.contracts import vocabulary
from services.portal import consents, i18n

PORTAL = Path(i18n.__file__).parent
VOCABULARY = Path(vocabulary.__file__)
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The msgids in the code, templates and vocabulary today (what `make messages` extracts)."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(PORTAL / "babel.cfg"), "-k", "N_", "-k", "tr:2",
                                "--no-location", "-o", str(pot), str(PORTAL), str(VOCABULARY)])
    with pot.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


def _catalog() -> dict[str, str]:
    with (PORTAL / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return {m.id: m.string for m in read_po(f, locale="zh_CN") if m.id and not m.fuzzy}


def test_every_message_shown_has_a_chinese_translation(extracted: set[str]) -> None:
    zh = _catalog()
    untranslated = sorted(m for m in extracted if not zh.get(m))
    assert untranslated == [], "run `make messages` and translate these"
    assert sorted(set(zh) - extracted) == [], "the catalogue keeps messages nothing shows any more"


def test_translations_keep_their_placeholders() -> None:
    for msgid, msgstr in _catalog().items():
        assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(msgstr)), msgid


def test_the_words_tables_are_marked_for_translation(extracted: set[str]) -> None:
    for table in (consents.PURPOSES, consents.OTHER_PURPOSES, consents.RECORD_TYPES, consents.ORG_TYPE_WORDS,
                  vocabulary.AUDIT_KINDS, vocabulary.OWN_AUDIT_KINDS, vocabulary.REASONS,
                  vocabulary.DENY_REASONS_TO_PATIENT, vocabulary.SENSITIVE_LABELS):
        assert set(table.values()) <= extracted


@pytest.mark.parametrize(("header", "lang"), [
    ("", "zh_CN"), ("zh-CN,zh;q=0.9", "zh_CN"), ("zh-TW", "zh_CN"), ("en-US,en;q=0.9", "en"),
    ("fr-FR, en;q=0.5", "en"), ("en;q=0.1, zh;q=0.9", "zh_CN"), ("de", "zh_CN"), ("en;q=0, zh;q=0.2", "zh_CN"),
])
def test_accept_language_picks_a_language_we_have(header: str, lang: str) -> None:
    assert i18n.from_accept_language(header) == lang


def test_times_are_guiyang_times_with_the_zone_named() -> None:
    assert i18n.local_time("2026-12-06T17:30:00Z", "zh_CN") == "2026-12-07 01:30 (北京时间)"
    assert i18n.local_time("2026-12-06T17:30:00.123456Z", "en", seconds=True) == "2026-12-07 01:30:00 (Beijing time)"
    assert i18n.local_time(None, "en") == "" and i18n.local_time("yesterday", "en") == ""
    assert i18n.local_date("2026-12-06T20:00:00+00:00") == "2026-12-07"


def test_chinese_is_a_real_catalogue_and_english_the_source() -> None:
    assert i18n.translations("zh_CN").gettext("Sign out") == "退出登录"
    assert i18n.translations("en").gettext("Sign out") == "Sign out"
