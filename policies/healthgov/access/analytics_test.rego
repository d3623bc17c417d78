# Who may ask aggregate questions of the analytic store.
package healthgov.access_test

analytics_project := {
	"id": "prj-1", "org": "gz-uni-research", "status": "approved", "purpose": "HRESCH",
	"types": ["Patient", "Condition", "Observation"], "deidentify": "pseudonymize", "expires": future,
}

analytics_query(caller, fields) := with_fields(
	with_fields(caller, {
		"action": "analytics_query",
		"resource": {"patient": null, "type": "Analytics", "labels": [], "hospital": null},
		"analytics": {"feasibility": false, "grouped": true},
		"requested_types": ["Condition"],
	}),
	fields,
)

analytics_researcher := as_caller("gz-uni-research", "research", "researcher", "HRESCH")

test_public_health_asks_grouped_counts if {
	d := decide(analytics_query(public_health, {}))
	allowed_by(d, "public_health_analytics")
	d.obligations.deidentify == "aggregate_only"
}

test_public_health_needs_its_purpose if {
	not decide(analytics_query(as_caller("gy-cdc", "public_health", "epidemiologist", "HRESCH"), {})).allow
}

test_research_under_approved_project if {
	allowed_by(
		decide(analytics_query(analytics_researcher, {"project": analytics_project})),
		"research_project_analytics",
	)
}

test_research_without_project_refused if {
	denied_for(decide(analytics_query(analytics_researcher, {})), "analytics_requires_project")
}

test_research_feasibility_count_without_project if {
	d := decide(analytics_query(analytics_researcher, {"analytics": {"feasibility": true, "grouped": false}}))
	allowed_by(d, "research_feasibility_count")
}

test_grouped_feasibility_is_not_a_feasibility_count if {
	q := analytics_query(analytics_researcher, {"analytics": {"feasibility": true, "grouped": true}})
	denied_for(decide(q), "analytics_requires_project")
}

test_research_suspended_project_refused if {
	p := object.union(analytics_project, {"status": "suspended"})
	denied_for(decide(analytics_query(analytics_researcher, {"project": p})), "project_not_approved")
}

test_research_expired_project_refused if {
	p := object.union(analytics_project, {"expires": past})
	denied_for(decide(analytics_query(analytics_researcher, {"project": p})), "project_expired")
}

test_research_other_orgs_project_refused if {
	p := object.union(analytics_project, {"org": "gz-other-research"})
	denied_for(decide(analytics_query(analytics_researcher, {"project": p})), "project_not_for_this_org")
}

test_research_types_outside_agreement_refused if {
	q := analytics_query(analytics_researcher, {"project": analytics_project, "requested_types": ["Encounter"]})
	denied_for(decide(q), "export_type_not_in_agreement")
}

test_insurer_refused if {
	q := analytics_query(as_caller("gz-insurer-1", "insurer", "analyst", "HPAYMT"), {})
	denied_for(decide(q), "analytics_not_permitted_for_org_type")
}

test_hospital_refused if {
	q := analytics_query(as_caller("gy-hosp-001", "hospital", "clinician", "TREAT"), {})
	denied_for(decide(q), "analytics_not_permitted_for_org_type")
}

test_regulator_refused if {
	q := analytics_query(as_caller("gz-nhc", "regulator", "inspector", "HCOMPL"), {})
	denied_for(decide(q), "analytics_not_permitted_for_org_type")
}

notifiable_query(caller) := analytics_query(caller, {"analytics": {"feasibility": false, "grouped": true, "named": "notifiable_diseases"}})

test_regulator_asks_notifiable_disease_counts if {
	d := decide(notifiable_query(regulator))
	allowed_by(d, "regulator_notifiable_disease_counts")
	d.obligations.deidentify == "aggregate_only"
}

test_regulator_needs_its_purpose_for_notifiable_counts if {
	not decide(notifiable_query(as_caller("gz-nhc", "regulator", "inspector", "PUBHLTH"))).allow
}

test_regulator_other_named_query_refused if {
	q := analytics_query(regulator, {"analytics": {"feasibility": false, "grouped": true, "named": "something_else"}})
	denied_for(decide(q), "analytics_not_permitted_for_org_type")
}

test_public_health_asks_notifiable_disease_counts if {
	allowed_by(decide(notifiable_query(public_health)), "public_health_analytics")
}

test_research_project_refused_notifiable_counts if {
	q := with_fields(notifiable_query(analytics_researcher), {"project": analytics_project})
	denied_for(decide(q), "notifiable_counts_public_health_and_regulator_only")
}

test_hospital_refused_notifiable_counts if {
	d := decide(notifiable_query(as_caller("gy-hosp-001", "hospital", "clinician", "TREAT")))
	denied_for(d, "analytics_not_permitted_for_org_type")
	denied_for(d, "notifiable_counts_public_health_and_regulator_only")
}

test_unconfirmed_regulator_refused_notifiable_counts if {
	q := notifiable_query(as_caller("gy-hosp-001", "regulator", "inspector", "HCOMPL"))
	not decide(q).allow
}
