"""FHIR transaction, batch and document Bundles: entries, ids, references, and the answer.

A transaction is all-or-nothing: one bad entry (invalid element, broken
reference, unsupported method) rejects the Bundle with every problem named,
and nothing is stored. A batch is per entry: good entries are stored, bad ones
are answered with their own OperationOutcome. A document (an International
Patient Summary, a discharge summary) is checked whole against the
specification's document rules, then unpacked and stored as a transaction:
see ``document_entries`` for why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.contracts.ids import RULE, is_fhir_id
from services.fhir.validation import InvalidSubmission, Issue, check_resource
from services.ingest import references

SUPPORTED_METHODS = ("POST", "PUT")
# How an entry's answer names its status; 413 is an entry too large to store (issue code ``too-costly``).
STATUS_LINES = {400: "400 Bad Request", 413: "413 Content Too Large"}


@dataclass
class Entry:
    """One Bundle entry and what is wrong with it."""

    index: int
    resource: dict[str, Any] | None
    full_url: str | None = None
    method: str = "POST"
    issues: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)  # an accepted entry's warnings, answered beside it

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def location(self) -> str:
        res = self.resource or {}
        return f"{res.get('resourceType', '')}/{res.get('id', '')}"


@dataclass
class ParsedBundle:
    kind: str  # "transaction" | "batch"
    entries: list[Entry]
    identifier: str | None = None

    @property
    def good(self) -> list[Entry]:
        return [e for e in self.entries if not e.issues]

    def all_issues(self) -> list[Issue]:
        return [i for e in self.entries for i in e.issues]


def _identifier(doc: dict[str, Any]) -> str | None:
    ident = doc.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        return f"{ident.get('system', '')}|{ident['value']}"
    return None


def read_entries(doc: Any, max_entries: int) -> ParsedBundle:
    """The Bundle's shape: type, size, each entry's request (before validation)."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise InvalidSubmission([Issue("expected a Bundle resource at /fhir", "resourceType", "invalid")])
    kind = doc.get("type")
    if kind == "document":
        kind, doc = "transaction", document_entries(doc)
    if kind not in ("transaction", "batch"):
        raise InvalidSubmission([Issue("Bundle.type must be transaction, batch or document", "Bundle.type",
                                       "not-supported")])
    raw = doc.get("entry") or []
    if not isinstance(raw, list):
        raise InvalidSubmission([Issue("Bundle.entry must be an array", "Bundle.entry", "structure")])
    if len(raw) > max_entries:
        raise InvalidSubmission([Issue(f"Bundle has {len(raw)} entries; the limit is {max_entries}",
                                       "Bundle.entry", "too-costly")], status=413)
    entries: list[Entry] = []
    for i, item in enumerate(raw):
        entry = Entry(index=i, resource=None)
        entries.append(entry)
        if not isinstance(item, dict) or not isinstance(item.get("resource"), dict):
            entry.issues.append(Issue(f"{entry.where}: entry has no resource", f"{entry.where}.resource", "required"))
            continue
        entry.resource = item["resource"]
        entry.full_url = item.get("fullUrl") if isinstance(item.get("fullUrl"), str) else None
        request = item.get("request") if isinstance(item.get("request"), dict) else {}
        entry.method = str(request.get("method") or "POST").upper()
        if entry.method not in SUPPORTED_METHODS:
            entry.issues.append(Issue(f"{entry.where}.request.method: only POST and PUT are accepted at ingest",
                                      f"{entry.where}.request.method", "not-supported"))
        elif entry.method == "PUT":
            _check_put(entry, str(request.get("url") or ""))
    return ParsedBundle(kind=kind, entries=entries, identifier=_identifier(doc))


def document_entries(doc: dict[str, Any]) -> dict[str, Any]:
    """A document Bundle, checked whole, as the transaction that stores its resources.

    Why unpack rather than store the Bundle as one resource: the platform files,
    authorises and labels every record by its patient compartment and its own
    codes (consent, sensitivity, break-glass, erasure all work per resource),
    and a Bundle is in no compartment: stored whole, a patient summary would be
    directory data, or would need a second access model beside the one every
    other record goes through. Unpacked as a transaction it is stored
    atomically, its ``urn:uuid:`` references are resolved against its own
    entries' ``fullUrl`` as a transaction's are, the Composition keeps the
    document's structure (its sections name the stored resources), and the
    document's identifier becomes the submission's idempotency key, so sending
    the same document twice stores it once.

    The document rules are checked before unpacking, on the Bundle as sent:
    the specification's invariants (``bdl-9`` identifier, ``bdl-10`` date,
    ``bdl-11`` a Composition first, ``bdl-7`` unique fullUrls) and every
    entry's own rules; any error rejects the document whole.
    """
    verdict = check_resource(doc, "Bundle")
    if verdict.errors:
        raise InvalidSubmission(verdict.errors)
    entries = [{"fullUrl": e.get("fullUrl"), "resource": e.get("resource"),
                "request": {"method": "POST", "url": str((e.get("resource") or {}).get("resourceType", ""))}}
               if isinstance(e, dict) else e for e in doc.get("entry") or []]
    return {"resourceType": "Bundle", "type": "transaction", "identifier": doc.get("identifier"), "entry": entries}


def _check_put(entry: Entry, url: str) -> None:
    res = entry.resource or {}
    rtype, _, rid = url.partition("?")[0].partition("/")
    if rtype != res.get("resourceType") or not rid:
        entry.issues.append(Issue(f"{entry.where}.request.url: PUT url must be {{type}}/{{id}} of the resource",
                                  f"{entry.where}.request.url", "invalid"))
    elif res.get("id") not in (None, rid):
        entry.issues.append(Issue(f"{entry.where}.resource.id: does not match request.url",
                                  f"{entry.where}.resource.id", "invalid"))
    else:
        res["id"] = rid


def validate_inline(bundle: ParsedBundle) -> None:
    """Each entry's verdict: errors reject the entry, warnings are answered beside it."""
    for e in bundle.entries:
        if e.resource is not None:
            verdict = check_resource(e.resource, f"{e.where}.resource")
            e.issues.extend(verdict.errors)
            e.warnings.extend(verdict.warnings)


def resolve(bundle: ParsedBundle, hospital: str) -> None:
    """Assign ids, then resolve ``urn:uuid`` and conditional references inside the Bundle."""
    from services.ingest.prepare import ensure_id

    full_urls: dict[str, str] = {}
    for e in bundle.entries:
        if e.resource is None:
            continue
        if not e.resource.get("id") and e.full_url and e.full_url.startswith("urn:uuid:"):
            e.resource["id"] = e.full_url[len("urn:uuid:"):]
        ensure_id(e.resource, hospital)
        if not e.issues and not is_fhir_id(e.resource["id"]):  # e.g. a long urn:uuid fullUrl became the id
            e.issues.append(Issue(f"{e.where}.resource.id: {RULE}", f"{e.where}.resource.id", "value"))
        if e.full_url:
            full_urls[e.full_url] = e.location
    if bundle.kind == "batch":
        full_urls = {}  # batch entries are independent: they may not point at each other
    ids = references.identifier_index([e.resource for e in bundle.entries if e.resource and not e.issues])
    seen: dict[str, int] = {}
    for e in bundle.entries:
        if e.resource is None or e.issues:
            continue
        e.issues.extend(references.rewrite(e.resource, f"{e.where}.resource", full_urls=full_urls, ids=ids))
        if bundle.kind == "transaction":
            if e.location in seen:
                e.issues.append(Issue(f"{e.where}: the same resource appears in entry {seen[e.location]} too",
                                      f"{e.where}.resource.id", "duplicate"))
            seen.setdefault(e.location, e.index)


def require_all_good(bundle: ParsedBundle) -> None:
    """A transaction with any problem is rejected whole."""
    if bundle.kind == "transaction" and (issues := bundle.all_issues()):
        raise InvalidSubmission(issues)
    if not bundle.good:
        raise InvalidSubmission(bundle.all_issues() or [Issue("Bundle has no entries", "Bundle.entry", "required")])


def response(bundle: ParsedBundle, submission_id: str) -> dict[str, Any]:
    """A transaction-response / batch-response Bundle, one entry per request entry, in order."""
    entries = []
    for e in bundle.entries:
        if e.issues:
            status = 413 if any(i.code == "too-costly" for i in e.issues) else 400
            entries.append({"response": {"status": STATUS_LINES[status], "outcome": {
                "resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in e.issues]}}})
        else:
            status = "200 OK" if e.method == "PUT" else "201 Created"
            answer: dict[str, Any] = {"status": status, "location": e.location}
            if e.warnings:
                answer["outcome"] = {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in e.warnings]}
            entries.append({"response": answer})
    return {"resourceType": "Bundle", "type": f"{bundle.kind}-response",
            "meta": {"tag": [{"system": "https://healthgov.example/submission", "code": submission_id}]},
            "entry": entries}
