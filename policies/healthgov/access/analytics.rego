# Population analytics (docs/architecture.md §15): aggregate questions over the
# de-identified analytic store. Every answer is counts only, and records puts
# each through disclosure control (small counts suppressed, the rest rounded,
# differencing blocked) before it leaves. The policy decides who may ask:
#
# - a public-health organisation, for public health (PUBHLTH): any cohort and
#   grouping; a research opt-out never removes a patient from these answers;
# - a research organisation (HRESCH) under its own approved, unexpired project,
#   for the resource types the project's agreement covers (opted-out patients
#   are left out by records);
# - a research organisation without a project: a feasibility count only (one
#   total, no grouping), so that a study can be sized before it applies;
# - the regulator (HCOMPL): the named query of notifiable-disease counts per
#   district and week, and no other question: it oversees the reporting of
#   notifiable diseases, it does not study populations. That named query is
#   public health's and the regulator's alone.
#
# The query's facts are in `input.analytics` ({"feasibility": bool,
# "grouped": bool, "named": the named query or absent}), the project's in
# `input.project` and the types the cohort reads in `input.requested_types`.
package healthgov.access

analytics := object.get(input, "analytics", {})

analytics_feasibility_count if {
	analytics.feasibility == true
	analytics.grouped == false
}

aggregate_obligations := {
	"deidentify": "aggregate_only",
	"redact_labels": [],
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}

analytics_org_types := {"public_health", "research"}

notifiable_counts if analytics.named == "notifiable_diseases"

grants contains grant("public_health_analytics", aggregate_obligations) if {
	input.action == "analytics_query"
	input.subject.org_type == "public_health"
	input.purpose == "PUBHLTH"
	org_type_confirmed
}

grants contains grant("research_project_analytics", aggregate_obligations) if {
	input.action == "analytics_query"
	input.subject.org_type == "research"
	input.purpose == "HRESCH"
	org_type_confirmed
	project_present
	project_of_this_org
	project_approved
	project_unexpired
	project_for_research
	project_covers_types
}

grants contains grant("research_feasibility_count", aggregate_obligations) if {
	input.action == "analytics_query"
	input.subject.org_type == "research"
	input.purpose == "HRESCH"
	org_type_confirmed
	not project_present
	analytics_feasibility_count
}

grants contains grant("regulator_notifiable_disease_counts", aggregate_obligations) if {
	input.action == "analytics_query"
	input.subject.org_type == "regulator"
	input.purpose == "HCOMPL"
	org_type_confirmed
	notifiable_counts
}

# The regulator's one question is not a general permission: any other query
# of the regulator's is refused as anyone else's is.
regulator_notifiable if {
	input.subject.org_type == "regulator"
	notifiable_counts
}

deny contains "analytics_not_permitted_for_org_type" if {
	input.action == "analytics_query"
	not input.subject.org_type in analytics_org_types
	not regulator_notifiable
}

deny contains "notifiable_counts_public_health_and_regulator_only" if {
	input.action == "analytics_query"
	notifiable_counts
	not input.subject.org_type in {"public_health", "regulator"}
}

deny contains "analytics_requires_project" if {
	input.action == "analytics_query"
	input.subject.org_type == "research"
	not project_present
	not analytics_feasibility_count
}

deny contains reason if {
	input.action == "analytics_query"
	input.subject.org_type == "research"
	project_present
	some reason in analytics_project_problems
}

analytics_project_problems contains "project_not_for_this_org" if not project_of_this_org

analytics_project_problems contains "project_not_approved" if not project_approved

analytics_project_problems contains "project_expired" if not project_unexpired

analytics_project_problems contains "project_purpose_not_research" if not project_for_research

analytics_project_problems contains "export_type_not_in_agreement" if not project_covers_types
