"""Notifiable-disease counts per district and week, and rates per 100,000, on known tables.

The named query runs on a real analytic store (SQLite vault, encrypted
Parquet, DuckDB); only the policy and the broker are stand-ins, so that the
disclosure control, the rates and the audit event can be checked cell by cell.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.adapters.auth import Caller
from services.contracts import errors
from services.contracts.events import AuditEvent
from services.contracts.policy import Decision, PolicyInput
from services.records.access import Authority, Denied
from services.records.analytics import notifiable, rates
from services.records.analytics import query as q
from services.records.analytics.ledger import ReleaseLedger
from services.records.analytics.service import Analytics
from services.records.gate import Gate
from tests.unit.records.analytics_support import DIABETES, ICD10, Vaulted, condition, patient, population

TB = "56717001"
TODAY = date(2024, 3, 20)  # a Wednesday of 2024-W12


@dataclass
class Log:
    events: list[AuditEvent] = field(default_factory=list)

    def publish(self, event: AuditEvent, together: Any = ()) -> str:
        self.events.append(event)
        return event.event_id


@dataclass
class Policy:
    allow: bool = True
    asked: list[PolicyInput] = field(default_factory=list)

    def decide(self, pin: PolicyInput) -> Decision:
        self.asked.append(pin)
        return Decision(allow=self.allow, reasons=["public_health_analytics" if self.allow else "no_matching_rule"])


CDC = Caller(id="epi-1", org="gy-cdc", org_type="public_health", role="epidemiologist", purpose="PUBHLTH")


@pytest.fixture(scope="module")
def vaulted(tmp_path_factory: pytest.TempPathFactory) -> Vaulted:
    v = Vaulted(Path(tmp_path_factory.mktemp("notifiable")))
    population(v, 12, code=TB, district="Nanming", onset="2024-03-12")  # 2024-W11
    population(v, 3, code=TB, district="Yunyan", onset="2024-03-13")  # 2024-W11: too few to show
    population(v, 10, code=TB, district="Xiuwen", onset="2024-03-18")  # 2024-W12, SNOMED CT
    for i in range(10):  # 2024-W12, ICD-10: the value set matches either system
        pid = f"icd-{i}"
        v.put(pid, patient(pid, district="Xiuwen"), condition(pid, "A15.0", "2024-03-19", system=ICD10))
    population(v, 9, code=DIABETES, district="Xiuwen", onset="2024-03-19")  # not notifiable
    population(v, 30, code=TB, district="Xiuwen", onset="2023-06-01")  # outside the period asked
    return v


def analytics(v: Vaulted, policy: Policy | None = None) -> tuple[Analytics, Log]:
    log = Log()
    return Analytics(store=v.store, policy=policy or Policy(), gate=Gate(log=log), projects=None,  # type: ignore[arg-type]
                     ledger=ReleaseLedger(v.engine, bytes(32))), log


def ask(a: Analytics, **params: str) -> dict[str, Any]:
    answer = a.ask_notifiable(CDC, Authority(purpose="PUBHLTH"), {k: [v] for k, v in params.items()}, today=TODAY)
    return orjson.loads(answer.body)


def by_disease(body: dict[str, Any], disease: str) -> dict[str, Any]:
    return next(d for d in body["diseases"] if d["id"] == disease)


def test_the_shipped_value_sets_load_and_name_each_disease_in_chinese() -> None:
    diseases = notifiable.load()
    assert list(diseases) == ["tuberculosis", "hepatitis-b", "measles", "influenza", "covid-19"]
    assert diseases["tuberculosis"].name == {"en": "Tuberculosis", "zh_CN": "肺结核"}
    systems = {c.system for d in diseases.values() for c in d.codes}
    assert systems == {"http://snomed.info/sct", ICD10}
    assert "840539006" in diseases["covid-19"].codes[0].codes


@pytest.mark.parametrize("doc", [b"not json", b'{"diseases": []}', b'{"diseases": [{"id": "x", "name": {}}]}',
                                 b'{"diseases": [{"id": "x", "name": {"en": "X"}, "codes": '
                                 b'[{"system": "not a uri", "codes": ["1"]}]}]}'])
def test_a_bad_disease_file_stops_records_with_a_clear_error(tmp_path: Path, doc: bytes) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(doc)
    with pytest.raises(notifiable.DiseaseFileError, match=r"d\.json"):
        notifiable.load(path)


def test_the_request_is_whole_iso_weeks_twelve_by_default() -> None:
    diseases = notifiable.load()
    r = notifiable.parse({}, diseases, TODAY)
    assert (r.since, r.until) == (date(2024, 1, 1), date(2024, 3, 24))  # Monday .. Sunday
    assert len(r.weeks()) == 12 and r.weeks()[0] == "2024-W01" and r.weeks()[-1] == "2024-W12"
    across = notifiable.parse({"since": ["2020-12-30"], "until": ["2021-01-05"]}, diseases, TODAY)
    assert across.weeks() == ["2020-W53", "2021-W01"]  # the ISO week-numbering year, as the store labels weeks
    picked = notifiable.parse({"disease": ["measles,tuberculosis"], "district": ["Yunyan", "Nanming"]}, diseases,
                              TODAY)
    assert picked.diseases == ["tuberculosis", "measles"] and picked.districts == ["Nanming", "Yunyan"]


@pytest.mark.parametrize(("params", "says"), [
    ({"since": ["2024-13-01"]}, "YYYY-MM-DD"),
    ({"since": ["2024-03-01"], "until": ["2024-02-01"]}, "after"),
    ({"since": ["2020-01-01"], "until": ["2024-01-01"]}, "at most 106 weeks"),
    ({"disease": ["plague"]}, "unknown disease"),
    ({"district": ["<script>"]}, "district"),
    ({"cohort": ["x"]}, "unknown parameters"),
    ({"until": ["2024-01-01", "2024-02-01"]}, "once"),
])
def test_bad_requests_are_refused_saying_why(params: dict[str, list[str]], says: str) -> None:
    with pytest.raises(errors.Invalid, match=says):
        notifiable.parse(params, notifiable.load(), TODAY)


def test_counts_per_week_and_district_are_protected_rated_and_audited(vaulted: Vaulted) -> None:
    a, log = analytics(vaulted)
    answer = a.ask_notifiable(CDC, Authority(purpose="PUBHLTH"), {"since": ["2024-03-11"], "until": ["2024-03-24"],
                                                                  "disease": ["tuberculosis", "measles"]},
                              today=TODAY)
    body = orjson.loads(answer.body)
    assert body["weeks"] == ["2024-W11", "2024-W12"] and body["named"] == "notifiable_diseases"
    tb = by_disease(body, "tuberculosis")
    cells = {(r["week"], r["district"]): (r["count"], r["suppressed"], r["rate_per_100000"], r["rate_suppressed"])
             for r in tb["rows"]}
    assert cells == {
        ("2024-W11", "Yunyan"): (None, "small_count", None, "small_count"),  # 3 people
        ("2024-W11", "Nanming"): (None, "protects_suppressed_cell", None, "protects_suppressed_cell"),
        # 10 SNOMED CT + 10 ICD-10 cases; 20 per 300,000 (the illustrative Xiuwen population)
        ("2024-W12", "Xiuwen"): (20, None, 6.67, None),
    }
    assert tb["total"] == {"count": 35, "suppressed": None}
    assert by_disease(body, "measles") == {**by_disease(body, "measles"), "rows": [],
                                           "total": {"count": None, "suppressed": "small_count"}}
    assert body["population"]["illustrative"] is True and body["population"]["per"] == 100_000

    [event] = log.events
    assert event.kind == "disclosure" and event.patient is None
    assert event.data_digest == hashlib.sha256(answer.body).hexdigest()
    assert event.details["named"] == "notifiable_diseases" and event.details["cached"] is False
    assert event.details["query"]["diseases"] == ["tuberculosis", "measles"]
    [pin] = a.policy.asked  # type: ignore[attr-defined]
    assert pin.analytics == {"feasibility": False, "grouped": True, "named": "notifiable_diseases"}
    assert pin.action == "analytics_query" and pin.requested_types == ["Condition"]

    again = a.ask_notifiable(CDC, Authority(purpose="PUBHLTH"), {"since": ["2024-03-11"], "until": ["2024-03-24"],
                                                                 "disease": ["tuberculosis", "measles"]}, today=TODAY)
    assert again.cached and again.body == answer.body and len(log.events) == 2  # the same bytes, audited again


def test_a_refusal_is_audited_and_nothing_is_counted(vaulted: Vaulted) -> None:
    a, log = analytics(vaulted, Policy(allow=False))
    with pytest.raises(Denied):
        a.ask_notifiable(CDC, Authority(purpose="PUBHLTH"), {}, today=TODAY)
    [event] = log.events
    assert event.kind == "denial" and event.details["named"] == "notifiable_diseases"


def test_the_districts_asked_for_are_the_only_ones_counted(vaulted: Vaulted) -> None:
    a, _ = analytics(vaulted)
    body = ask(a, since="2024-03-11", until="2024-03-24", disease="tuberculosis", district="Xiuwen")
    assert [(r["week"], r["district"], r["count"]) for r in by_disease(body, "tuberculosis")["rows"]] == [
        ("2024-W12", "Xiuwen", 20)]
    assert body["districts"] == ["Xiuwen"]


# ------------------------------------------------------------------------------------------------- rates

POPS = rates.Populations(districts={"Nanming": 1_170_000, "Xiuwen": 300_000}, source="test", year=2024,
                         illustrative=True)


@pytest.mark.parametrize(("count", "population", "expected"), [
    (10, 300_000, 3.33), (20, 300_000, 6.67), (35, 1_170_000, 2.99), (100_000, 100_000, 100_000.0),
    (None, 300_000, None), (10, None, None),
])
def test_rate_per_100000_on_known_values(count: int | None, population: int | None, expected: float | None) -> None:
    assert rates.rate(count, population) == expected


def test_rates_come_from_released_counts_and_say_why_when_missing() -> None:
    rows = [{"district": "Xiuwen", "count": 10, "suppressed": None},  # released 10 (the raw count may be 12)
            {"district": "Nanming", "count": None, "suppressed": "small_count"},
            {"district": "Atlantis", "count": 15, "suppressed": None}]
    assert [(r["rate_per_100000"], r["rate_suppressed"]) for r in rates.add_rates(rows, POPS)] == [
        (3.33, None), (None, "small_count"), (None, "no_population")]


def test_the_rate_reveals_no_more_than_the_rounded_count(vaulted: Vaulted) -> None:
    """12 people in Nanming are released as 10: the rate is 10's, else dividing it back would give 12 away."""
    a, _ = analytics(vaulted)
    query = q.parse({"cohort": {"types": ["Condition"], "include": [{"system": "http://snomed.info/sct",
                                                                      "codes": [TB]}],
                                "districts": ["Nanming"], "period": {"start": "2024-03-11"}},
                     "measure": {"by": ["district"], "rate": "per_100000"}})
    a.store.update()
    body, _ = a._released(query, False, a.store.version(), None)
    [row] = orjson.loads(body)["rows"]
    assert row["count"] == 10 and row["rate_per_100000"] == round(10 * 100_000 / 1_170_000, 2)  # 12 people: 10


def test_a_rate_needs_a_district_grouping() -> None:
    with pytest.raises(errors.Invalid, match="district"):
        q.parse({"cohort": {"types": ["Condition"]}, "measure": {"by": ["month"], "rate": "per_100000"}})


@pytest.mark.parametrize("doc", [b"[]", b'{"districts": {}}', b'{"districts": {"Nanming": -1}}',
                                 b'{"districts": {"Nanming": "many"}}', b'{"districts": {"Nan<ming": 5}}'])
def test_a_bad_population_file_is_refused(tmp_path: Path, doc: bytes) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(doc)
    with pytest.raises(rates.PopulationFileError):
        rates.load(path)


def test_the_shipped_populations_say_they_are_illustrative() -> None:
    shipped = rates.load()
    assert shipped.illustrative and shipped.districts["Nanming"] > 0 and len(shipped.districts) == 10
