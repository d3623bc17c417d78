# The closed vocabularies of docs/architecture.md §5. Anything outside these sets is denied
# by name ("unknown_purpose", "unknown_action"), never guessed at.
package healthgov.access

# The codes are written once, with their wording, in services/contracts/vocabulary.py;
# `healthgov policy manifest` copies them to data.healthgov.vocabulary
# (policies/healthgov/vocabulary/data.json) and a unit test fails when the two disagree.

# HL7 v3 PurposeOfUse (v3-ActReason) codes the platform understands.
known_purposes := {p | some p in data.healthgov.vocabulary.purposes}

known_actions := {a | some a in data.healthgov.vocabulary.actions}

# The purposes each kind of organisation may claim. A caller cannot borrow a
# purpose that belongs to another kind of organisation (an insurer asking for
# TREAT gets "purpose_not_permitted_for_org_type").
purposes_by_org_type := {
	# PWATRNY: a guardian acting for a child through the portal (read only, request.rego).
	"patient": {"PATRQT", "PWATRNY"},
	"hospital": {"TREAT", "ETREAT"},
	"public_health": {"PUBHLTH"},
	"law_enforcement": {"HLEGAL"},
	"regulator": {"HCOMPL"},
	"research": {"HRESCH"},
	"insurer": {"HPAYMT"},
	# policies/README.md: "HMARKT or any". A commercial recipient is bound by an explicit
	# consent for the exact purpose it claims, whatever that purpose is.
	"commercial": known_purposes,
}

# Third parties are the recipients a patient opt-out blocks. State access
# (public health, law enforcement, regulator) is never blocked by an opt-out;
# it is made visible to the patient instead.
third_party_org_types := {t | some t in data.healthgov.vocabulary.third_party_org_types}

# HL7 v3 confidentiality codes plus our NOTIFIABLE (docs/architecture.md §4).
sensitive_labels := {label | some label in data.healthgov.vocabulary.sensitive_labels}

# Resources that describe the health system, not a patient.
directory_types := {"Organization", "Location", "Practitioner", "PractitionerRole"}

# Who may look up directory resources (purpose still has to fit the org type).
directory_reader_org_types := {"hospital", "public_health", "regulator"}
