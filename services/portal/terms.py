"""A small glossary of common clinical codes in plain words, translated by the portal's catalogue.

Hospitals send codes with an English display (Synthea, most HIS exports) or
with none at all. For the codes a Guiyang patient meets most often (the
demo data's frequent conditions, vaccines, allergies, kinds of visit and
document, and a few everyday tests) the portal has its own plain wording,
marked ``N_`` so the Chinese comes from ``messages.po`` like every other
word. Any other code is named by the resource's own text or display.
"""

from __future__ import annotations

from services.portal.i18n import N_

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CVX = "http://hl7.org/fhir/sid/cvx"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SYSTEM_NAMES = {SNOMED: "SNOMED CT", LOINC: "LOINC", CVX: "CVX", RXNORM: "RxNorm", ACT_CODE: "HL7 v3",
                "http://hl7.org/fhir/sid/icd-10": "ICD-10", "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM"}

GLOSSARY: dict[tuple[str, str], str] = {
    # conditions
    (SNOMED, "38341003"): N_("High blood pressure (hypertension)"),
    (SNOMED, "59621000"): N_("High blood pressure (hypertension)"),
    (SNOMED, "44054006"): N_("Type 2 diabetes"),
    (SNOMED, "15777000"): N_("Prediabetes"),
    (SNOMED, "35489007"): N_("Depression"),
    (SNOMED, "73595000"): N_("Stress"),
    (SNOMED, "195662009"): N_("Acute viral sore throat (pharyngitis)"),
    (SNOMED, "444814009"): N_("Viral sinusitis"),
    (SNOMED, "10509002"): N_("Acute bronchitis"),
    (SNOMED, "233604007"): N_("Pneumonia"),
    (SNOMED, "840539006"): N_("COVID-19"),
    (SNOMED, "195967001"): N_("Asthma"),
    (SNOMED, "162864005"): N_("Obesity (body mass index 30 or more)"),
    (SNOMED, "55822004"): N_("High blood fats (hyperlipidaemia)"),
    (SNOMED, "160903007"): N_("Works full time"),
    (SNOMED, "160904001"): N_("Works part time"),
    # allergies
    (SNOMED, "84489001"): N_("Mould"),
    (SNOMED, "111088007"): N_("Latex"),
    (SNOMED, "264287008"): N_("Animal dander"),
    (SNOMED, "260147004"): N_("House dust mites"),
    (SNOMED, "288328004"): N_("Bee venom"),
    (SNOMED, "782576004"): N_("Tree pollen"),
    (SNOMED, "102263004"): N_("Eggs"),
    (SNOMED, "442571000124108"): N_("Tree nuts"),
    (RXNORM, "1191"): N_("Aspirin"),
    # vaccines
    (CVX, "140"): N_("Flu vaccine (seasonal)"),
    (CVX, "208"): N_("COVID-19 vaccine (mRNA)"),
    (CVX, "207"): N_("COVID-19 vaccine (mRNA)"),
    (CVX, "62"): N_("HPV vaccine"),
    (CVX, "113"): N_("Tetanus and diphtheria vaccine (Td)"),
    (CVX, "115"): N_("Tetanus, diphtheria and whooping cough vaccine (Tdap)"),
    (CVX, "43"): N_("Hepatitis B vaccine"),
    (CVX, "08"): N_("Hepatitis B vaccine"),
    (CVX, "52"): N_("Hepatitis A vaccine"),
    (CVX, "03"): N_("Measles, mumps and rubella vaccine (MMR)"),
    (CVX, "10"): N_("Polio vaccine (IPV)"),
    # kinds of visit
    (SNOMED, "185347001"): N_("Visit for a health problem"),
    (SNOMED, "162673000"): N_("General check-up"),
    (SNOMED, "185349003"): N_("Check-up"),
    (SNOMED, "702927004"): N_("Urgent care visit"),
    (SNOMED, "410620009"): N_("Child health check"),
    (SNOMED, "390906007"): N_("Follow-up visit"),
    (SNOMED, "185345009"): N_("Visit for a symptom"),
    (SNOMED, "424619006"): N_("Pregnancy check-up"),
    (SNOMED, "50849002"): N_("Emergency department visit"),
    (ACT_CODE, "AMB"): N_("Outpatient visit"),
    (ACT_CODE, "EMER"): N_("Emergency department visit"),
    (ACT_CODE, "IMP"): N_("Hospital stay"),
    # documents
    (LOINC, "34117-2"): N_("History and physical examination note"),
    (LOINC, "34111-5"): N_("Emergency department note"),
    (LOINC, "18842-5"): N_("Discharge summary"),
    # everyday tests
    (LOINC, "8480-6"): N_("Blood pressure (upper number)"),
    (LOINC, "8462-4"): N_("Blood pressure (lower number)"),
    (LOINC, "85354-9"): N_("Blood pressure"),
    (LOINC, "4548-4"): N_("Average blood sugar (HbA1c)"),
    (LOINC, "2339-0"): N_("Blood sugar (glucose)"),
    (LOINC, "2345-7"): N_("Blood sugar (glucose)"),
    (LOINC, "29463-7"): N_("Body weight"),
    (LOINC, "8302-2"): N_("Body height"),
    (LOINC, "39156-5"): N_("Body mass index (BMI)"),
    (LOINC, "8867-4"): N_("Heart rate"),
    (LOINC, "2093-3"): N_("Cholesterol"),
}


def lookup(system: object, code: object) -> str | None:
    """The glossary's msgid for a coding, or None."""
    if not isinstance(system, str) or not isinstance(code, str):
        return None
    return GLOSSARY.get((system, code))


def system_name(system: object) -> str:
    """A code system's short name for a code hint ("SNOMED CT"); an unknown system is not named."""
    return SYSTEM_NAMES.get(system, "") if isinstance(system, str) else ""
