"""The demo hospitals' feeds: their own ids, recent clinical times, spoiled codes where asked."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

from services.cli.oversight_demo import PROFILES, feed, reidentify
from services.ingest.report import RECOGNISED_SYSTEMS, clinical_time

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_each_hospital_gets_its_own_ids_and_references() -> None:
    one, two = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
    raw = orjson.dumps({"id": one, "subject": {"reference": f"Patient/{two}"}, "other": "Practitioner/x"})
    a, b = reidentify("h1", raw, {one, two}), reidentify("h2", raw, {one, two})
    assert a != b and one.encode() not in a and two.encode() not in a
    patient = orjson.loads(reidentify("h1", orjson.dumps({"id": two}), {two}))["id"]
    assert orjson.loads(a)["subject"]["reference"] == f"Patient/{patient}"  # the reference follows the id
    assert orjson.loads(a)["other"] == "Practitioner/x"


def test_a_late_hospital_is_late_and_a_poor_coder_codes_poorly() -> None:
    late, patients = feed("gy-hosp-003", PROFILES["gy-hosp-003"], NOW, random.Random(1))
    assert len(patients) >= 10
    lags = [(NOW - t) for ln in late["Encounter"] if (t := clinical_time(orjson.loads(ln))) is not None]
    assert lags and all(timedelta(hours=71) < lag < timedelta(hours=481) for lag in lags)
    poor, _ = feed("gy-hosp-004", PROFILES["gy-hosp-004"], NOW, random.Random(1))
    systems = [c["system"] for ln in poor["Condition"] for c in orjson.loads(ln)["code"]["coding"]]
    local = sum(1 for s in systems if s not in RECOGNISED_SYSTEMS)
    assert 0.5 < local / len(systems) < 0.9
    good, _ = feed("gy-hosp-002", PROFILES["gy-hosp-002"], NOW, random.Random(1))
    codings = [c for ln in good["Condition"] for c in orjson.loads(ln)["code"]["coding"]]
    assert all(c["system"] in RECOGNISED_SYSTEMS for c in codings)
