# Shared fixtures for the access policy tests: a registry (the demo one plus
# a few awkward entries), one well-formed input per kind of caller, and
# helpers to evaluate and assert decisions.
package healthgov.access_test

import data.healthgov.access

registry := {"orgs": {
	"gy-hosp-001": {"type": "hospital", "name": "First", "suspended": false},
	"gy-hosp-002": {"type": "hospital", "name": "Provincial", "suspended": false},
	"gy-hosp-003": {"type": "hospital", "name": "Maternal", "suspended": false},
	"gy-hosp-099": {"type": "hospital", "name": "Suspended", "suspended": true},
	"gy-hosp-nf": {"type": "hospital", "name": "No suspended flag"},
	"gy-cdc": {"type": "public_health", "name": "CDC", "suspended": false},
	"gy-police": {"type": "law_enforcement", "name": "Police", "suspended": false},
	"gz-nhc": {"type": "regulator", "name": "Health Commission", "suspended": false},
	"gz-uni-research": {"type": "research", "name": "University", "suspended": false},
	"gz-insurer-1": {"type": "insurer", "name": "Insurer 1", "suspended": false},
	"gz-insurer-2": {"type": "insurer", "name": "Insurer 2", "suspended": false},
	"gy-datamart": {"type": "commercial", "name": "Data Mart", "suspended": false},
	"healthgov-portal": {"type": "patient", "name": "Portal", "suspended": false},
	"odd-org": {"type": "astrologer", "name": "Not an org type", "suspended": false},
	"gy-intermediate-court": {"type": "court", "name": "Intermediate Court", "suspended": false},
	"gy-closed-court": {"type": "court", "name": "Suspended Court", "suspended": true},
	"gz-med-univ-irb": {"type": "ethics_board", "name": "Ethics Committee", "suspended": false},
}}

now := "2026-11-22T10:00:00Z"

future := "2027-01-01T00:00:00Z"

past := "2026-01-01T00:00:00Z"

# A clinician of gy-hosp-001 reading a record written by gy-hosp-002.
clinician := {
	"subject": {"id": "dr-wang", "org": "gy-hosp-001", "org_type": "hospital", "role": "clinician", "patient": null},
	"action": "read",
	"purpose": "TREAT",
	"resource": {"patient": "p1", "type": "Condition", "labels": [], "hospital": "gy-hosp-002"},
	"relationship": {"care": true},
	"consents": [],
	"legal": {"warrant": null, "ethics_approval": null},
	"break_glass": null,
	"now": now,
}

# `base` with fields replaced (objects merge recursively; arrays are replaced).
with_fields(base, fields) := object.union(base, fields)

# A caller of another kind: same request, different subject and purpose.
as_caller(org, org_type, role, purpose) := with_fields(clinician, {
	"subject": {"id": "someone", "org": org, "org_type": org_type, "role": role},
	"purpose": purpose,
	"relationship": {"care": false},
})

patient := with_fields(as_caller("healthgov-portal", "patient", "patient", "PATRQT"), {"subject": {"patient": "p1"}})

public_health := as_caller("gy-cdc", "public_health", "epidemiologist", "PUBHLTH")

# A warrant as records hands it to the policy once its signature is verified.
valid_warrant := {
	"id": "w1", "issuer": "gy-intermediate-court", "org": "gy-police", "purpose": "HLEGAL", "patient": "p1",
	"issued": past, "expires": future, "labels": ["HIV"], "sealed_until": null, "verified": true,
}

police := with_fields(as_caller("gy-police", "law_enforcement", "investigator", "HLEGAL"), {"legal": {"warrant": valid_warrant}})

regulator := as_caller("gz-nhc", "regulator", "inspector", "HCOMPL")

valid_ethics := {
	"id": "e1", "issuer": "gz-med-univ-irb", "org": "gz-uni-research", "purpose": "HRESCH",
	"project": "cohort", "issued": past, "expires": future, "verified": true,
}

researcher := with_fields(as_caller("gz-uni-research", "research", "researcher", "HRESCH"), {"legal": {"ethics_approval": valid_ethics}})

# A permit consent from patient p1 to `grantee` for `purpose`, all types, no labels.
permit(grantee, purpose) := {
	"id": "c-permit", "grantee": grantee, "purpose": purpose, "decision": "permit",
	"types": [], "labels": [], "expires": future,
}

# An indefinite opt-out from `purpose` ("*" for everything) for everybody.
opt_out(purpose) := {
	"id": "c-optout", "grantee": "*", "purpose": purpose, "decision": "deny",
	"types": [], "labels": [], "expires": null,
}

insurer := with_fields(as_caller("gz-insurer-1", "insurer", "claims", "HPAYMT"), {"consents": [permit("gz-insurer-1", "HPAYMT")]})

commercial := with_fields(as_caller("gy-datamart", "commercial", "analyst", "HMARKT"), {"consents": [permit("gy-datamart", "HMARKT")]})

# The decision for `request` against the test registry.
decide(request) := d if {
	d := access.decision with input as request with data.healthgov.registry as registry
}

# `d` allows, naming exactly `rule`.
allowed_by(d, rule) if {
	d.allow == true
	d.reasons == [rule]
}

# `d` denies, and `reason` is among its reasons.
denied_for(d, reason) if {
	d.allow == false
	reason in d.reasons
}

no_obligations := {
	"deidentify": "none",
	"redact_labels": [],
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}
