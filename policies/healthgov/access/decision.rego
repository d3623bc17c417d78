# The decision document: data.healthgov.access.decision (docs/architecture.md §5).
#
#   {"allow": bool, "reasons": [...], "policy_version": "...",
#    "obligations": {"deidentify", "redact_labels", "notify_patient",
#                    "notify_after", "review"}}
#
# Default deny. A request is allowed when exactly one rule grants it and no
# reason to deny holds; the allow names that rule. A deny names every reason
# that holds (sorted), so a caller and an auditor can see all that was wrong.
package healthgov.access

# ------------------------------------------------------------- obligations

# What an allowed reader must do with the data: nothing beyond the default.
plain_obligations := {
	"deidentify": "none",
	"redact_labels": [],
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}

# A grant: the rule that allows the request, and what the reader must do.
# Each rule writes its obligations out in full (all five fields), so that what
# a reader must do can be read in one place and no object is merged per request.
grant(rule, obligations) := {"rule": rule, "obligations": obligations}

# ---------------------------------------------------------------- decision

default allow := false

allow if {
	count(deny) == 0
	count(grants) == 1
}

# Two rules granting the same request would be a bug in this policy, and the
# obligations of either could be wrong: refuse rather than pick one.
deny_reasons := sort(deny) if {
	count(deny) > 0
} else := ["conflicting_rules"] if {
	count(grants) > 1
} else := ["no_matching_rule"]

decision := {
	"allow": true,
	"reasons": [g.rule],
	"policy_version": policy_version,
	"obligations": g.obligations,
} if {
	allow
	some g in grants
} else := {
	"allow": false,
	"reasons": deny_reasons,
	"policy_version": policy_version,
	"obligations": plain_obligations,
}

# ---------------------------------------------------------- policy version

# From policies/healthgov/manifest/data.json: the release name plus the first
# 12 hex digits of the SHA-256 digest of the rule files, so that two different
# rule sets can never carry the same version in the audit trail. The digest
# is kept current by tests/unit/policies/test_policy_manifest.py.
# Only the two fields are read: reading data.healthgov.manifest whole would
# copy its per-file digests out of OPA's store on every request.
default policy_version := "unversioned"

policy_version := sprintf("%s+%s", [data.healthgov.manifest.version, substring(data.healthgov.manifest.digest, 0, 12)])

# ------------------------------------------------------ several resources

# data.healthgov.access.decisions: the decision for each of input.resources, in
# order, as if each had been asked alone as input.resource. A read of a whole
# record asks once for every kind of resource in it instead of once per kind;
# every answer is still exactly `decision`.
decisions := [d |
	some r in input.resources
	d := decision with input.resource as r
]
