# The actions besides reading a patient's record that the services ask about:
# directory look-ups, ingest writes, audit-trail reads and consent changes.
package healthgov.access

# ------------------------------------------- read of a directory resource
# Organization, Location, Practitioner, PractitionerRole with no patient:
# public facts about the health system, open to the organisations that run it.

grants contains grant("directory_resource", plain_obligations) if {
	input.action == "read"
	directory_read
	input.subject.org_type in directory_reader_org_types
}

deny contains "directory_not_permitted_for_org_type" if {
	input.action == "read"
	directory_read
	not input.subject.org_type in directory_reader_org_types
}

# ----------------------------------------------------------- write (ingest)
# A hospital pushes only the records it produced itself.

writes_own_records if input.resource.hospital == input.subject.org

grants contains grant("hospital_ingest", plain_obligations) if {
	input.action == "write"
	input.subject.org_type == "hospital"
	org_type_confirmed
	writes_own_records
}

deny contains "write_requires_hospital" if {
	input.action == "write"
	input.subject.org_type != "hospital"
}

deny contains "write_only_own_hospital_records" if {
	input.action == "write"
	input.subject.org_type == "hospital"
	org_type_confirmed
	not writes_own_records
}

# -------------------------------------------------------------- audit_read
# Regulators read the whole trail; a patient reads the events about them.

grants contains grant("regulator_audit_trail", plain_obligations) if {
	input.action == "audit_read"
	input.subject.org_type == "regulator"
	org_type_confirmed
}

grants contains grant("patient_own_audit_events", plain_obligations) if {
	input.action == "audit_read"
	input.subject.org_type == "patient"
	org_type_confirmed
	own_records
}

deny contains "not_own_audit_events" if {
	input.action == "audit_read"
	input.subject.org_type == "patient"
	org_type_confirmed
	not own_records
}

deny contains "audit_read_not_permitted" if {
	input.action == "audit_read"
	not input.subject.org_type in {"regulator", "patient"}
}

# -------------------------------------------------------- oversight_review
# Judging a break-glass access (justified or not): the regulator, or the
# privacy officer of the hospital whose staff broke the glass, for that
# hospital's accesses only and never their own. The verdict is an audit event
# and counts in the hospital's oversight score. The oversight service hands
# over the access's hospital and accessor as the resource's (none for an
# access it does not know, which a privacy officer is refused like another
# hospital's: no answer tells them whether it exists).

grants contains grant("regulator_reviews_break_glass", plain_obligations) if {
	input.action == "oversight_review"
	input.subject.org_type == "regulator"
	org_type_confirmed
}

hospital_privacy_officer if {
	input.subject.org_type == "hospital"
	input.subject.role == "privacy_officer"
}

grants contains grant("privacy_officer_reviews_own_hospital", plain_obligations) if {
	input.action == "oversight_review"
	hospital_privacy_officer
	org_type_confirmed
	input.resource.hospital == input.subject.org
	not own_break_glass
}

own_break_glass if input.resource.accessor == input.subject.id

deny contains "oversight_review_not_permitted" if {
	input.action == "oversight_review"
	input.subject.org_type != "regulator"
	not hospital_privacy_officer
}

deny contains "break_glass_of_another_hospital" if {
	input.action == "oversight_review"
	hospital_privacy_officer
	not input.resource.hospital == input.subject.org
}

deny contains "own_break_glass_access" if {
	input.action == "oversight_review"
	hospital_privacy_officer
	input.resource.hospital == input.subject.org
	own_break_glass
}

# ------------------------------------------ complaint_file, complaint_answer
# A patient reports an access to their own records; the regulator answers.
# Whose access it is: the event's patient, which the oversight service hands
# over as the resource's patient (none for an event it does not know).

grants contains grant("patient_reports_own_access", plain_obligations) if {
	input.action == "complaint_file"
	input.subject.org_type == "patient"
	org_type_confirmed
	own_records
}

deny contains "not_own_audit_events" if {
	input.action == "complaint_file"
	input.subject.org_type == "patient"
	not own_records
}

deny contains "complaint_only_by_patient" if {
	input.action == "complaint_file"
	input.subject.org_type != "patient"
}

grants contains grant("regulator_answers_complaints", plain_obligations) if {
	input.action == "complaint_answer"
	input.subject.org_type == "regulator"
	org_type_confirmed
}

deny contains "complaint_answer_not_permitted" if {
	input.action == "complaint_answer"
	input.subject.org_type != "regulator"
}

# ----------------------------------------------------------- consent_write
# The patient manages their own consents; a treating clinician may record one
# on the patient's behalf, and the patient is told.

grants contains grant("patient_manages_own_consents", plain_obligations) if {
	input.action == "consent_write"
	input.subject.org_type == "patient"
	org_type_confirmed
	own_records
}

deny contains "not_own_records" if {
	input.action == "consent_write"
	input.subject.org_type == "patient"
	org_type_confirmed
	about_a_patient
	not own_records
}

grants contains grant("clinician_records_consent_for_patient", {
	"deidentify": "none",
	"redact_labels": [],
	"notify_patient": true,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "consent_write"
	input.subject.org_type == "hospital"
	input.purpose == "TREAT"
	org_type_confirmed
	is_clinician
	in_care
}

deny contains "role_not_clinician" if {
	input.action == "consent_write"
	input.subject.org_type == "hospital"
	input.purpose == "TREAT"
	org_type_confirmed
	not is_clinician
}

deny contains "no_care_relationship" if {
	input.action == "consent_write"
	input.subject.org_type == "hospital"
	input.purpose == "TREAT"
	org_type_confirmed
	about_a_patient
	not in_care
}

deny contains "consent_write_not_permitted" if {
	input.action == "consent_write"
	not input.subject.org_type in {"patient", "hospital"}
}

# Break-glass (ETREAT) is for care, not for changing what the patient allowed.
deny contains "consent_write_requires_treat" if {
	input.action == "consent_write"
	input.subject.org_type == "hospital"
	org_type_confirmed
	input.purpose != "TREAT"
}

# --------------------------------------------------------- consent_confirm
# A permit a hospital recorded on the patient's behalf comes into force only
# when the patient confirms it: that confirmation is the patient's alone.

grants contains grant("patient_confirms_own_consent", plain_obligations) if {
	input.action == "consent_confirm"
	input.subject.org_type == "patient"
	org_type_confirmed
	own_records
}

deny contains "not_own_records" if {
	input.action == "consent_confirm"
	input.subject.org_type == "patient"
	org_type_confirmed
	about_a_patient
	not own_records
}

deny contains "confirm_only_by_patient" if {
	input.action == "consent_confirm"
	input.subject.org_type != "patient"
}

# ------------------------------------------------------------------- erase
# Erasure (crypto-shredding: the patient's data key is destroyed, for good) is
# the patient's own decision, asked through the portal. Nobody else may
# destroy a patient's records.

grants contains grant("patient_erases_own_records", plain_obligations) if {
	input.action == "erase"
	input.subject.org_type == "patient"
	org_type_confirmed
	own_records
}

deny contains "not_own_records" if {
	input.action == "erase"
	input.subject.org_type == "patient"
	org_type_confirmed
	about_a_patient
	not own_records
}

deny contains "erase_only_by_patient" if {
	input.action == "erase"
	input.subject.org_type != "patient"
}

# ------------------------------------------------------------------- refer
# A referral gives another hospital (`resource.hospital`) a care relationship
# with the patient. The treating clinician may refer (the patient is told), and
# so may the patient; only to a registered hospital in good standing.

referral_target := data.healthgov.registry.orgs[input.resource.hospital]

referral_target_ok if {
	referral_target.type == "hospital"
	referral_target.suspended == false
}

grants contains grant("clinician_refers_patient", {
	"deidentify": "none",
	"redact_labels": [],
	"notify_patient": true,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "refer"
	input.subject.org_type == "hospital"
	input.purpose == "TREAT"
	org_type_confirmed
	is_clinician
	in_care
	referral_target_ok
}

grants contains grant("patient_refers_self", plain_obligations) if {
	input.action == "refer"
	input.subject.org_type == "patient"
	org_type_confirmed
	own_records
	referral_target_ok
}

deny contains "referral_target_not_a_hospital" if {
	input.action == "refer"
	not referral_target_ok
}

deny contains "not_own_records" if {
	input.action == "refer"
	input.subject.org_type == "patient"
	org_type_confirmed
	about_a_patient
	not own_records
}

deny contains "role_not_clinician" if {
	input.action == "refer"
	input.subject.org_type == "hospital"
	org_type_confirmed
	not is_clinician
}

deny contains "no_care_relationship" if {
	input.action == "refer"
	input.subject.org_type == "hospital"
	org_type_confirmed
	about_a_patient
	not in_care
}

deny contains "referral_requires_treat" if {
	input.action == "refer"
	input.subject.org_type == "hospital"
	org_type_confirmed
	input.purpose != "TREAT"
}

deny contains "refer_not_permitted" if {
	input.action == "refer"
	not input.subject.org_type in {"patient", "hospital"}
}
