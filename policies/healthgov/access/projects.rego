# Data-use projects (research): applying for one, the regulator's review of
# it, and each bulk export made under it. A project is a governed object kept
# by records; the policy sees its facts in `input.project`:
#
#   {"id", "org", "status": "applied|approved|suspended|revoked",
#    "purpose": "HRESCH", "types": [...], "elements": {type: [element, ...]},
#    "deidentify": "pseudonymize|safe_harbor", "expires": RFC 3339}
#
# and the types an export asks for in `input.requested_types`, the elements
# its `_elements` names (as "Type.element") in `input.requested_elements`. Whether each
# patient is included is a separate `read` decision per patient (read.rego),
# made with the project's verified ethics approval.
package healthgov.access

project := input.project

project_present if is_object(project)

project_of_this_org if project.org == input.subject.org

project_approved if project.status == "approved"

project_unexpired if in_future(project.expires)

project_for_research if project.purpose == "HRESCH"

# Every type asked for is one the agreement names (an export asking for none
# asks for all of the agreement's types, which the service fills in).
project_covers_types if {
	count(input.requested_types) > 0
	every t in input.requested_types {
		t in project.types
	}
}

# Every element `_elements` names is within the agreement: of a type the
# agreement covers and, where the agreement lists that type's elements, one of
# them. `_elements` narrows an export; it never widens what was approved.
project_covers_elements if {
	every e in object.get(input, "requested_elements", []) {
		element_in_agreement(e)
	}
}

agreement_elements(t) := object.get(object.get(project, "elements", {}), t, null)

element_in_agreement(e) if {
	[t, _] := split(e, ".")
	t in project.types
	agreement_elements(t) == null
}

element_in_agreement(e) if {
	[t, name] := split(e, ".")
	t in project.types
	name in agreement_elements(t)
}

project_levels := {"pseudonymize", "safe_harbor"}

# ------------------------------------------------------------------ export

grants contains grant("research_project_export", {
	"deidentify": project.deidentify,
	"redact_labels": [],
	"notify_patient": true,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "export"
	input.subject.org_type == "research"
	input.purpose == "HRESCH"
	org_type_confirmed
	project_present
	project_of_this_org
	project_approved
	project_unexpired
	project_for_research
	project_covers_types
	project_covers_elements
	project.deidentify in project_levels
}

deny contains "export_requires_research_org" if {
	input.action == "export"
	input.subject.org_type != "research"
}

deny contains "project_missing" if {
	input.action == "export"
	not project_present
}

deny contains "project_not_for_this_org" if {
	input.action == "export"
	project_present
	not project_of_this_org
}

deny contains "project_not_approved" if {
	input.action == "export"
	project_present
	not project_approved
}

deny contains "project_expired" if {
	input.action == "export"
	project_present
	not project_unexpired
}

deny contains "project_purpose_not_research" if {
	input.action == "export"
	project_present
	not project_for_research
}

deny contains "export_type_not_in_agreement" if {
	input.action == "export"
	project_present
	not project_covers_types
}

deny contains "export_element_not_in_agreement" if {
	input.action == "export"
	project_present
	not project_covers_elements
}

deny contains "project_deidentification_invalid" if {
	input.action == "export"
	project_present
	not project.deidentify in project_levels
}

# ------------------------------------------------------ applying, reviewing
# A research organisation applies for its own projects; the regulator alone
# approves, suspends or revokes them.

grants contains grant("research_applies_for_project", plain_obligations) if {
	input.action == "project_apply"
	input.subject.org_type == "research"
	input.purpose == "HRESCH"
	org_type_confirmed
	project_present
	project_of_this_org
}

deny contains "project_apply_requires_research_org" if {
	input.action == "project_apply"
	input.subject.org_type != "research"
}

deny contains "project_not_for_this_org" if {
	input.action == "project_apply"
	project_present
	not project_of_this_org
}

grants contains grant("regulator_reviews_project", plain_obligations) if {
	input.action == "project_review"
	input.subject.org_type == "regulator"
	input.purpose == "HCOMPL"
	org_type_confirmed
	project_present
}

deny contains "project_review_requires_regulator" if {
	input.action == "project_review"
	input.subject.org_type != "regulator"
}
