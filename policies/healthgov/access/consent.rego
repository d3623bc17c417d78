# Patient consents (input.consents): explicit permits to a named recipient,
# and opt-outs. A consent is
#   {"id", "grantee", "purpose", "decision": "permit"|"deny", "types", "labels", "expires"}
# optionally with "status" (FHIR Consent.status) or "revoked": true.
package healthgov.access

# A consent the patient has withdrawn (or never activated) counts for nothing.
consent_withdrawn(c) if c.revoked == true

consent_withdrawn(c) if object.get(c, "status", "active") != "active"

# ------------------------------------------------------------------- permits

# Permits naming the caller's org for exactly the purpose it claims. A
# permit never uses "*": consent to a third party has to be explicit.
permits_to_caller contains c if {
	some c in input.consents
	c.decision == "permit"
	c.grantee == input.subject.org
	c.purpose == input.purpose
}

# A permit is in force when not withdrawn and its `expires` lies after
# input.now. A permit without a valid expiry is not in force.
permit_in_force(c) if {
	not consent_withdrawn(c)
	in_future(c.expires)
}

# `types` is the list of FHIR resource types consented to; an empty list
# means every type. Anything else (missing, null) covers nothing.
covers_resource_type(c) if c.types == []

covers_resource_type(c) if input.resource.type in c.types

# The permits that authorise this very request.
matching_permits contains c if {
	some c in permits_to_caller
	permit_in_force(c)
	covers_resource_type(c)
}

has_matching_permit if count(matching_permits) > 0

# Labels the patient released to this caller. Resource labels outside this
# set are redacted for consent-based access. `labels: []` releases none.
consented_labels contains label if {
	some c in matching_permits
	some label in c.labels
}

# Why no permit authorises the request: the most specific explanation.
consent_problem := "consent_type_not_covered" if {
	some c in permits_to_caller
	permit_in_force(c)
} else := "consent_awaiting_patient" if {
	# recorded on the patient's behalf by a hospital: not in force until the patient confirms it
	some c in permits_to_caller
	object.get(c, "status", "active") == "proposed"
} else := "consent_revoked" if {
	some c in permits_to_caller
	consent_withdrawn(c)
} else := "consent_expired" if {
	some _ in permits_to_caller
} else := "no_consent"

# ------------------------------------------------------------------ opt-outs

# An opt-out is a deny consent for the purpose claimed (or "*"). It applies to
# everybody unless it names one grantee.
opt_out_applies_to_caller(c) if object.get(c, "grantee", null) in {null, "", "*"}

opt_out_applies_to_caller(c) if c.grantee == input.subject.org

# An opt-out stays in force until withdrawn or until an expiry that parses and
# has passed: a missing or malformed expiry never lifts an opt-out (the error
# goes the patient's way).
opt_out_lapsed(c) if time.parse_rfc3339_ns(c.expires) <= now_ns

opt_outs contains c if {
	some c in input.consents
	c.decision == "deny"
	c.purpose in {input.purpose, "*"}
	opt_out_applies_to_caller(c)
	not consent_withdrawn(c)
	not opt_out_lapsed(c)
}

opted_out if count(opt_outs) > 0
