# Exports under a data-use project, and who may apply for and review projects.
package healthgov.access_test

project := {
	"id": "prj-1", "org": "gz-uni-research", "status": "approved", "purpose": "HRESCH",
	"types": ["Patient", "Condition", "Observation"], "deidentify": "pseudonymize", "expires": future,
}

exporter := with_fields(as_caller("gz-uni-research", "research", "researcher", "HRESCH"), {
	"action": "export",
	"resource": {"patient": null, "type": "Group", "labels": [], "hospital": null},
	"project": project,
	"requested_types": ["Patient", "Condition"],
})

with_project(fields) := with_fields(exporter, {"project": fields})

test_approved_project_exports_at_its_level if {
	d := decide(exporter)
	allowed_by(d, "research_project_export")
	d.obligations.deidentify == "pseudonymize"
	d.obligations.notify_patient == true
}

test_safe_harbor_project_exports_safe_harbor if {
	d := decide(with_project({"deidentify": "safe_harbor"}))
	d.obligations.deidentify == "safe_harbor"
}

test_unknown_deidentification_level_refused if {
	denied_for(decide(with_project({"deidentify": "none"})), "project_deidentification_invalid")
}

test_suspended_project_refused if {
	denied_for(decide(with_project({"status": "suspended"})), "project_not_approved")
}

test_revoked_project_refused if {
	denied_for(decide(with_project({"status": "revoked"})), "project_not_approved")
}

test_applied_project_refused if {
	denied_for(decide(with_project({"status": "applied"})), "project_not_approved")
}

test_expired_project_refused if {
	denied_for(decide(with_project({"expires": past})), "project_expired")
}

test_malformed_expiry_refused if {
	denied_for(decide(with_project({"expires": "soon"})), "project_expired")
}

test_project_of_another_org_refused if {
	denied_for(decide(with_project({"org": "gz-other-research"})), "project_not_for_this_org")
}

test_non_research_purpose_refused if {
	denied_for(decide(with_project({"purpose": "HMARKT"})), "project_purpose_not_research")
}

test_type_outside_agreement_refused if {
	d := decide(with_fields(exporter, {"requested_types": ["Patient", "MedicationRequest"]}))
	denied_for(d, "export_type_not_in_agreement")
}

test_elements_within_an_agreement_without_element_terms_allowed if {
	allowed_by(
		decide(with_fields(exporter, {"requested_elements": ["Condition.code", "Patient.gender"]})),
		"research_project_export",
	)
}

test_elements_within_the_agreements_element_terms_allowed if {
	d := decide(with_fields(exporter, {
		"project": object.union(project, {"elements": {"Condition": ["code", "onset"]}}),
		"requested_elements": ["Condition.code", "Patient.birthDate"],
	}))
	allowed_by(d, "research_project_export")
}

test_element_outside_the_agreements_element_terms_refused if {
	d := decide(with_fields(exporter, {
		"project": object.union(project, {"elements": {"Condition": ["code", "onset"]}}),
		"requested_elements": ["Condition.code", "Condition.note"],
	}))
	denied_for(d, "export_element_not_in_agreement")
}

test_element_of_a_type_outside_the_agreement_refused if {
	d := decide(with_fields(exporter, {"requested_elements": ["MedicationRequest.status"]}))
	denied_for(d, "export_element_not_in_agreement")
}

test_malformed_element_refused if {
	denied_for(decide(with_fields(exporter, {"requested_elements": ["code"]})), "export_element_not_in_agreement")
}

test_no_types_refused if {
	denied_for(decide(with_fields(exporter, {"requested_types": []})), "export_type_not_in_agreement")
}

test_missing_project_refused if {
	denied_for(decide(object.remove(exporter, ["project"])), "project_missing")
}

test_wrong_purpose_refused if {
	denied_for(decide(with_fields(exporter, {"purpose": "TREAT"})), "purpose_not_permitted_for_org_type")
}

test_insurer_cannot_export if {
	d := decide(with_fields(exporter, {"subject": {"org": "gz-insurer-1", "org_type": "insurer"}, "purpose": "HPAYMT"}))
	denied_for(d, "export_requires_research_org")
}

test_research_applies_for_own_project if {
	allowed_by(decide(with_fields(exporter, {"action": "project_apply"})), "research_applies_for_project")
}

test_research_cannot_apply_for_another_org if {
	d := decide(with_fields(exporter, {"action": "project_apply", "project": {"org": "gz-other-research"}}))
	denied_for(d, "project_not_for_this_org")
}

test_hospital_cannot_apply if {
	d := decide(with_fields(clinician, {"action": "project_apply", "project": project}))
	denied_for(d, "project_apply_requires_research_org")
}

test_regulator_reviews if {
	d := decide(with_fields(regulator, {"action": "project_review", "project": project}))
	allowed_by(d, "regulator_reviews_project")
}

test_research_cannot_review_own_project if {
	denied_for(decide(with_fields(exporter, {"action": "project_review"})), "project_review_requires_regulator")
}
