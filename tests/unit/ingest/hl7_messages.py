"""HL7 v2 sample messages (ER7) used by the unit and end-to-end tests."""

from __future__ import annotations


def adt(trigger: str = "A01", control: str = "MSG00001", mrn: str = "MRN12345", version: str = "2.5",
        pid_extra: str = "", birth: str = "19800102") -> str:
    return "\r".join([
        f"MSH|^~\\&|HIS|GYH1|HEALTHGOV|HG|20261122093000||ADT^{trigger}^ADT_A01|{control}|P|{version}",
        f"EVN|{trigger}|20261122093000",
        f"PID|1||{mrn}^^^GYH1^MR||Wang^Li^Mei||{birth}|F|||12 Zhonghua Rd^^Guiyang^^550001^CN{pid_extra}",
        "PV1|1|I|W3^301^1||||1234^Zhang^Wei|||MED|||||||||V778899^^^GYH1^VN" + "|" * 25 + "20261122080000",
    ]) + "\r"


def oru(control: str = "LAB00001", mrn: str = "MRN12345", version: str = "2.4", value: str = "6.1") -> str:
    return "\r".join([
        f"MSH|^~\\&|LIS|GYH1|HEALTHGOV|HG|20261122100000||ORU^R01^ORU_R01|{control}|P|{version}",
        f"PID|1||{mrn}^^^GYH1^MR||Wang^Li||19800102|F",
        "OBR|1|ORD555|FIL777|4548-4^Hemoglobin A1c^LN|||20261122090000",
        f"OBX|1|NM|4548-4^Hemoglobin A1c^LN||{value}|%^percent^UCUM|4.0-6.0|H|||F|||20261122090000",
        "OBX|2|CE|75622-1^HIV 1 and 2 tests^LN||260385009^Negative^SCT||||||F",
        "OBX|3|ST|8251-1^Service comment^LN||Fasting sample||||||F",
    ]) + "\r"
