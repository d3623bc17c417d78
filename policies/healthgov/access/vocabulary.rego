# The closed vocabularies of docs/architecture.md §5. Anything outside these sets is denied
# by name ("unknown_purpose", "unknown_action"), never guessed at.
package healthgov.access

# HL7 v3 PurposeOfUse (v3-ActReason) codes the platform understands.
known_purposes := {
	"PATRQT", # the patient's own request
	"TREAT", # treatment
	"ETREAT", # emergency treatment (break-glass)
	"PUBHLTH", # public health
	"HLEGAL", # law enforcement / legal
	"HCOMPL", # regulatory compliance
	"HRESCH", # research
	"HPAYMT", # payment
	"HMARKT", # marketing
}

known_actions := {
	"read", "write", "audit_read", "consent_write", "consent_confirm", "erase", "refer",
	"oversight_review",
}

# The purposes each kind of organisation may claim. A caller cannot borrow a
# purpose that belongs to another kind of organisation (an insurer asking for
# TREAT gets "purpose_not_permitted_for_org_type").
purposes_by_org_type := {
	"patient": {"PATRQT"},
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
third_party_org_types := {"research", "insurer", "commercial"}

# HL7 v3 confidentiality codes plus our NOTIFIABLE (docs/architecture.md §4).
sensitive_labels := {"HIV", "PSY", "ETH", "SDV", "SEX", "STD", "GDIS", "NOTIFIABLE"}

# Resources that describe the health system, not a patient.
directory_types := {"Organization", "Location", "Practitioner", "PractitionerRole"}

# Who may look up directory resources (purpose still has to fit the org type).
directory_reader_org_types := {"hospital", "public_health", "regulator"}
