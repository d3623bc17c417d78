"""HL7 v2 (ER7, v2.3-2.5) to FHIR R4: ADT^A01/A04/A08 and ORU^R01, answered with an ACK.

hl7apy parses the message; we map PID to Patient, PV1 to Encounter and each
OBX to an Observation, then the resources go the FHIR way (validated against
the specification's tables, labelled, sealed, published as one atomic transaction). Ids
are derived from the hospital and the message's own identifiers (MRN, visit
number, filler order number, OBX set id), so a resent message updates the
same resources instead of duplicating them.

ACK codes (HL7 v2.5 §2.9.2): AA accepted; AE content error (fix the message,
do not resend as is); AR rejected for a reason unrelated to content (message
type not supported, unparseable, or the platform cannot store it now: resend).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

SUPPORTED = {("ADT", "A01"), ("ADT", "A04"), ("ADT", "A08"), ("ORU", "R01")}
VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
_NS = uuid.UUID("0c6f6a4e-53a1-4b8e-9d0e-6a4b0c2f1d77")
CODE_SYSTEMS = {"LN": "http://loinc.org", "SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct",
                "I10": "http://hl7.org/fhir/sid/icd-10", "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
                "UCUM": "http://unitsofmeasure.org"}
GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
OBS_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "S": "preliminary", "R": "registered",
              "I": "registered", "X": "cancelled", "W": "entered-in-error", "D": "entered-in-error"}
ENC_CLASS = {"I": "IMP", "O": "AMB", "E": "EMER", "P": "PRENC", "R": "AMB", "B": "AMB"}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$")


class Hl7Error(Exception):
    """The message cannot be taken; ``ack`` is AE (content) or AR (reject), ``where`` names the field."""

    def __init__(self, ack: str, text: str, where: str = "") -> None:
        super().__init__(text)
        self.ack = ack
        self.where = where


@dataclass
class Mapped:
    """What one HL7 v2 message became."""

    control_id: str
    message_type: str
    trigger: str
    version: str
    sender: str
    sender_facility: str
    resources: list[dict[str, Any]]


def _v(node: Any) -> str:
    """The ER7 text of a field/component, '' when absent."""
    try:
        return (node.to_er7() or "").strip()
    except (AttributeError, HL7apyException, IndexError):
        return ""


def _segments(msg: Any, name: str) -> list[Any]:
    """Segments present in the message (hl7apy creates a segment on attribute access)."""
    return [c for c in msg.children if c.name == name]


def _comp(field: str, i: int) -> str:
    parts = field.split("~")[0].split("^")
    return parts[i].strip() if i < len(parts) else ""


def timestamp(value: str, tz: str, where: str, date_only: bool = False) -> str:
    """HL7 TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as a FHIR date or dateTime."""
    m = _TS.match(value.strip())
    if not m:
        raise Hl7Error("AE", f"{where}: not an HL7 timestamp", where)
    y, mo, d, h, mi, s, frac, zone = m.groups()
    if date_only or h is None:
        return "-".join(p for p in (y, mo, d) if p)
    zone = zone or tz.replace(":", "")
    try:
        datetime(int(y), int(mo or 1), int(d or 1), int(h), int(mi or 0), int(s or 0))
    except ValueError as exc:
        raise Hl7Error("AE", f"{where}: not a valid date", where) from exc
    return f"{y}-{mo}-{d}T{h}:{mi or '00'}:{s or '00'}{frac or ''}{zone[:3]}:{zone[3:]}"


def _coding(field: str) -> dict[str, Any]:
    code, text, system = _comp(field, 0), _comp(field, 1), _comp(field, 2)
    coding: dict[str, Any] = {"code": code}
    if system:
        coding["system"] = CODE_SYSTEMS.get(system, f"urn:healthgov:hl7v2:codesystem:{system}")
    if text:
        coding["display"] = text
    concept: dict[str, Any] = {"coding": [coding]}
    if text:
        concept["text"] = text
    return concept


def _id(hospital: str, *parts: str) -> str:
    return str(uuid.uuid5(_NS, "|".join((hospital, *parts))))


def parse(er7: str) -> Any:
    text = er7.replace("\r\n", "\r").replace("\n", "\r").strip("\x0b\x1c\r ")
    if not text.startswith("MSH"):
        raise Hl7Error("AR", "not an HL7 v2 ER7 message (must start with MSH)", "MSH")
    try:
        return parse_message(text, find_groups=False)
    except (HL7apyException, ValueError, KeyError, IndexError) as exc:
        raise Hl7Error("AR", f"unparseable HL7 v2 message: {type(exc).__name__}", "MSH") from exc


def header(msg: Any) -> tuple[str, str, str, str, str, str]:
    """(control id, message type, trigger, version, sending application, sending facility)."""
    msh9 = _v(msg.msh.msh_9)
    return (_v(msg.msh.msh_10), _comp(msh9, 0), _comp(msh9, 1), _v(msg.msh.msh_12),
            _v(msg.msh.msh_3), _v(msg.msh.msh_4))


def _patient(msg: Any, hospital: str, tz: str) -> dict[str, Any]:
    found = _segments(msg, "PID")
    if not found:
        raise Hl7Error("AE", "PID segment is required", "PID")
    pid = found[0]
    cx = _v(pid.pid_3)
    mrn, authority = _comp(cx, 0), _comp(cx, 3) or hospital
    if not mrn:
        raise Hl7Error("AE", "PID-3 (patient identifier) is required", "PID-3")
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": _id(hospital, "patient", authority, mrn),
        "identifier": [{"use": "usual", "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": _comp(cx, 4) or "MR"}]},
            "system": f"urn:healthgov:{hospital}:mrn:{authority}", "value": mrn}],
    }
    name = _v(pid.pid_5)
    if _comp(name, 0) or _comp(name, 1):
        res["name"] = [{k: v for k, v in (("family", _comp(name, 0)),
                                          ("given", [g for g in (_comp(name, 1), _comp(name, 2)) if g]))
                        if v}]
    if birth := _v(pid.pid_7):
        res["birthDate"] = timestamp(birth, tz, "PID-7", date_only=True)
    if sex := _v(pid.pid_8):
        res["gender"] = GENDER.get(sex.upper(), "unknown")
    addr = _v(pid.pid_11)
    if any(_comp(addr, i) for i in (0, 2, 4)):
        res["address"] = [{k: v for k, v in (("line", [_comp(addr, 0)] if _comp(addr, 0) else []),
                                             ("city", _comp(addr, 2)), ("postalCode", _comp(addr, 4)),
                                             ("country", _comp(addr, 5))) if v}]
    return res


def _encounter(msg: Any, hospital: str, patient: dict[str, Any], control_id: str, trigger: str,
               tz: str) -> dict[str, Any] | None:
    found = _segments(msg, "PV1")
    if not found:
        return None
    pv1 = found[0]
    visit = _comp(_v(pv1.pv1_19), 0) or control_id
    patient_class = _v(pv1.pv1_2)[:1].upper()
    res: dict[str, Any] = {
        "resourceType": "Encounter", "id": _id(hospital, "encounter", patient["id"], visit),
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                  "code": ENC_CLASS.get(patient_class, "AMB")},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "identifier": [{"system": f"urn:healthgov:{hospital}:visit", "value": visit}],
    }
    period: dict[str, str] = {}
    if admit := _v(pv1.pv1_44):
        period["start"] = timestamp(admit, tz, "PV1-44")
    if discharge := _v(pv1.pv1_45):
        period["end"] = timestamp(discharge, tz, "PV1-45")
        res["status"] = "finished"
    if period:
        res["period"] = period
    return res


def _observations(msg: Any, hospital: str, patient: dict[str, Any], encounter: dict[str, Any] | None,
                  control_id: str, tz: str) -> list[dict[str, Any]]:
    obr = _segments(msg, "OBR")
    order = (_comp(_v(obr[0].obr_3), 0) or _comp(_v(obr[0].obr_2), 0)) if obr else ""
    order = order or control_id
    out = []
    for n, obx in enumerate(_segments(msg, "OBX"), start=1):
        where = f"OBX[{n}]"
        code_field, vtype, value = _v(obx.obx_3), _v(obx.obx_2).upper(), _v(obx.obx_5)
        if not _comp(code_field, 0):
            raise Hl7Error("AE", f"{where}-3 (observation identifier) is required", f"{where}-3")
        res: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _id(hospital, "observation", patient["id"], order, _v(obx.obx_1) or str(n), _comp(code_field, 0)),
            "status": OBS_STATUS.get(_v(obx.obx_11)[:1].upper(), "final"),
            "code": _coding(code_field), "subject": {"reference": f"Patient/{patient['id']}"},
        }
        if encounter:
            res["encounter"] = {"reference": f"Encounter/{encounter['id']}"}
        if value:
            res.update(_value(vtype, value, _v(obx.obx_6), where, tz))
        if rng := _v(obx.obx_7):
            res["referenceRange"] = [{"text": rng}]
        if flag := _v(obx.obx_8):
            res["interpretation"] = [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag}]}]
        if when := _v(obx.obx_14):
            res["effectiveDateTime"] = timestamp(when, tz, f"{where}-14")
        out.append(res)
    return out


def _value(vtype: str, value: str, unit: str, where: str, tz: str) -> dict[str, Any]:
    if vtype == "NM":
        try:
            number = float(value)
        except ValueError as exc:
            raise Hl7Error("AE", f"{where}-5: NM value is not a number", f"{where}-5") from exc
        quantity: dict[str, Any] = {"value": int(number) if number.is_integer() and "." not in value else number}
        if _comp(unit, 0):
            quantity.update(unit=_comp(unit, 0), system="http://unitsofmeasure.org", code=_comp(unit, 0))
        return {"valueQuantity": quantity}
    if vtype in ("CE", "CWE", "CNE"):
        return {"valueCodeableConcept": _coding(value)}
    if vtype in ("DT", "TS", "DTM"):
        return {"valueDateTime": timestamp(value, tz, f"{where}-5")}
    return {"valueString": value.replace("\\.br\\", "\n")}


def to_fhir(er7: str, hospital: str, tz: str = "+08:00") -> Mapped:
    """Parse and map one message; raises ``Hl7Error`` with the ACK code to send."""
    msg = parse(er7)
    control_id, mtype, trigger, version, app, facility = header(msg)
    if not control_id:
        raise Hl7Error("AR", "MSH-10 (message control id) is required", "MSH-10")
    if version not in VERSIONS:
        raise Hl7Error("AR", f"HL7 version {version or '?'} not supported (2.3-2.5)", "MSH-12")
    if (mtype, trigger) not in SUPPORTED:
        raise Hl7Error("AR", f"message type {mtype}^{trigger} not supported", "MSH-9")
    patient = _patient(msg, hospital, tz)
    encounter = _encounter(msg, hospital, patient, control_id, trigger, tz)
    resources = [patient] + ([encounter] if encounter else [])
    if mtype == "ORU":
        observations = _observations(msg, hospital, patient, encounter, control_id, tz)
        if not observations:
            raise Hl7Error("AE", "ORU^R01 without OBX segments", "OBX")
        resources += observations
    return Mapped(control_id, mtype, trigger, version, app, facility, resources)


def _escape(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("~", "\\R\\").replace("&", "\\T\\").replace("\r", " ").replace("\n", " "))


def ack(*, code: str, control_id: str, text: str = "", trigger: str = "", version: str = "2.5",
        receiver: str = "", receiver_facility: str = "", where: str = "") -> str:
    """An ACK (ER7) for the message ``control_id``; ERR says why when not AA."""
    version = version if version in VERSIONS else "2.5"
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    msh = (f"MSH|^~\\&|HEALTHGOV|HEALTHGOV|{_escape(receiver)}|{_escape(receiver_facility)}|{stamp}||"
           f"ACK^{_escape(trigger)}^ACK|{uuid.uuid4().hex[:20]}|P|{version}")
    segments = [msh, f"MSA|{code}|{_escape(control_id)}|{_escape(text)[:80]}"]
    if code != "AA":
        hl7_code = "207" if code == "AR" else "101" if "required" in text else "102"
        if version.startswith("2.5"):
            segments.append(f"ERR||{_escape(where)}|{hl7_code}^{_escape(text)[:80]}^HL70357|E||||{_escape(text)}")
        else:
            segments.append(f"ERR|{_escape(where)}^^^{hl7_code}&{_escape(text)[:80]}&HL70357")
    return "\r".join(segments) + "\r"
