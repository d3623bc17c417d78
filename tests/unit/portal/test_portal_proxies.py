"""Guardian links: found only by the guardian who holds them, sealed at rest, stable when made again."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool

from services.portal.accounts import Principal
from services.portal.clients import PATIENT_SIDE
from services.portal.proxies import GUARDIAN_PURPOSE, GUARDIAN_ROLE, Proxies


def _proxies() -> Proxies:
    engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
    return Proxies(engine, os.urandom(32))


MUM = Principal(username="mum", role="patient", subject="patient-mum")
STRANGER = Principal(username="stranger", role="patient", subject="patient-stranger")


def test_only_the_guardian_holding_a_link_acts_for_the_child() -> None:
    proxies = _proxies()
    link = proxies.link("mum", "patient-child", "Xiaoming")
    acting, child = proxies.acting_for(MUM, link) or (None, None)
    assert acting == Principal(username="mum", role=GUARDIAN_ROLE, subject="patient-child")
    assert child is not None and child.label == "Xiaoming"
    assert proxies.acting_for(STRANGER, link) is None
    assert proxies.acting_for(MUM, "patient-child") is None  # the child's id is not a link
    assert proxies.acting_for(MUM, "") is None
    assert proxies.acting_for(Principal(username="mum", role="regulator", subject="mum"), link) is None
    assert proxies.acting_for(MUM, "x" * 10_000) is None
    assert proxies.acting_for(MUM, "\x00" * 22) is None


def test_linking_again_keeps_the_link_and_children_are_listed_by_name() -> None:
    proxies = _proxies()
    first = proxies.link("mum", "patient-child", "Xiaoming")
    assert proxies.link("mum", "patient-child", "Wang Xiaoming") == first
    second = proxies.link("mum", "patient-baby", "Baby")
    assert [(c.link, c.label) for c in proxies.children("mum")] == [(second, "Baby"), (first, "Wang Xiaoming")]
    assert proxies.children("stranger") == []


def test_the_child_and_their_name_are_sealed_at_rest() -> None:
    proxies = _proxies()
    proxies.link("mum", "patient-child-0042", "Xiaoming")
    with proxies.engine.connect() as conn:
        raw = b"".join(bytes(v) for row in conn.execute(text("SELECT child_sealed, label_sealed FROM portal_proxy"))
                       for v in row)
    assert b"patient-child-0042" not in raw and b"Xiaoming" not in raw


def test_a_guardians_token_says_it_is_a_guardian() -> None:
    assert PATIENT_SIDE[GUARDIAN_ROLE] == GUARDIAN_PURPOSE == "PWATRNY"
    assert PATIENT_SIDE["patient"] == "PATRQT"
