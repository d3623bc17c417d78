"""The portal's calls to records and audit, on behalf of the signed-in person.

Patients: the portal signs with its own organisation key and a ``patient``
claim (only the portal's key may carry one, docs/architecture.md §5). Regulators: in dev and
test the portal signs as the demo regulator; in production a regulator's own
identity provider issues that token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from services.adapters.auth import issue_token
from services.adapters.keys import PlatformKeys
from services.portal.accounts import Principal
from services.portal.config import PortalSettings

# The portal's patient-side principals and the purpose of use each one's token carries.
PATIENT_SIDE = {"patient": "PATRQT", "guardian": "PWATRNY"}


class Upstream(Exception):
    """Records or audit answered with an error the person should see."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class PortalClients:
    def __init__(self, settings: PortalSettings, keys: PlatformKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.http = httpx.Client(timeout=30)

    def _token(self, who: Principal, audience: str) -> str:
        if who.role in PATIENT_SIDE:
            # A guardian's token names the child (``proxies.py`` decided that this account acts for them) and says
            # so twice: role ``guardian`` and the purpose PWATRNY, so the child's trail shows who acted for them.
            private, _ = self.keys.org_signer(self.settings.portal_org)
            return issue_token(org=self.settings.portal_org, private_key=private, subject=who.username,
                               audience=audience, role=who.role, patient=who.subject,
                               purpose=PATIENT_SIDE[who.role])
        if not self.settings.dev_mode:
            raise Upstream(501, "regulators sign in through their organisation's identity provider")
        private, _ = self.keys.org_signer(self.settings.regulator_org)
        return issue_token(org=self.settings.regulator_org, private_key=private, subject=who.username,
                           audience=audience, role="regulator", purpose="HCOMPL")

    def _send(self, who: Principal, method: str, service: str, path: str, *, body: Any = None,
              params: dict[str, Any] | None = None, extra: dict[str, str] | None = None) -> httpx.Response:
        base = {"records": self.settings.records_url, "oversight": self.settings.oversight_url}.get(
            service, self.settings.audit_url)
        headers = {"Authorization": f"Bearer {self._token(who, service)}", **(extra or {})}
        if body is not None and service == "oversight":
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/fhir+json"
        try:
            resp = self.http.request(method, base + path, json=body, headers=headers,
                                     params={k: v for k, v in (params or {}).items() if v is not None})
        except httpx.HTTPError as exc:
            raise Upstream(503, f"{service} is unavailable") from exc
        if resp.status_code >= 400:
            raise Upstream(resp.status_code, _detail(resp))
        return resp

    def _get(self, who: Principal, service: str, path: str, **params: Any) -> httpx.Response:
        return self._send(who, "GET", service, path, params=params)

    def my_records(self, who: Principal) -> dict[str, Any]:
        """The patient's whole record, read as one look at their own records (the trail counts these)."""
        return self._get(who, "records", f"/fhir/Patient/{who.subject}/$everything").json()

    def my_record_copy(self, who: Principal, fmt: str) -> bytes:
        """The whole record as records released it, for a copy the patient takes away as ``fmt`` (fhir, pdf).

        Records audits it as a ``download`` of its own, which the patient's trail lists.
        """
        return self._send(who, "GET", "records", f"/fhir/Patient/{who.subject}/$everything",
                          extra={"X-Healthgov-Download": fmt}).content

    # A patient's consents and erasure: the token's patient claim is the signed-in patient, so records
    # refuses anything about somebody else; the portal checks ids against the patient's own list first.

    def my_consents(self, who: Principal) -> dict[str, Any]:
        """The newest version of each of the patient's consents, withdrawn ones included."""
        return self._get(who, "records", "/fhir/Consent", patient=who.subject).json()

    def grant_consent(self, who: Principal, consent: dict[str, Any]) -> bool:
        """Send a new Consent; True once it is in force, False if records accepted it but is still applying it."""
        return self._send(who, "POST", "records", "/fhir/Consent", body=consent).status_code == 201

    def revoke_consent(self, who: Principal, consent_id: str) -> bool:
        """Withdraw one consent; True once the withdrawal is in force."""
        return self._send(who, "DELETE", "records", f"/fhir/Consent/{quote(consent_id, safe='')}").status_code == 200

    def confirm_consent(self, who: Principal, consent_id: str) -> bool:
        """Confirm a permit a hospital recorded on the patient's behalf; True once it is in force."""
        return self._send(who, "POST", "records",
                          f"/fhir/Consent/{quote(consent_id, safe='')}/$confirm").status_code == 200

    def my_notices(self, who: Principal) -> list[dict[str, Any]]:
        """What the platform owes the patient: first access by a hospital, break-glass, access by the state."""
        return list(self._get(who, "records", "/notices").json()["notices"])

    def grant_care(self, who: Principal, hospital: str) -> None:
        """The patient's own grant: ``hospital`` may treat them (a care relationship that expires)."""
        body = {"resourceType": "Parameters",
                "parameter": [{"name": "organization", "valueReference": {"reference": f"Organization/{hospital}"}}]}
        self._send(who, "POST", "records", f"/fhir/Patient/{who.subject}/$refer", body=body)

    def erase_me(self, who: Principal) -> None:
        """Crypto-shred the signed-in patient's records (records answers 410 for them afterwards)."""
        self._send(who, "DELETE", "records", f"/fhir/Patient/{who.subject}")

    def my_access(self, who: Principal, cursor: int = 0) -> dict[str, Any]:
        return self._get(who, "audit", "/events", cursor=cursor, limit=200).json()

    def my_trail(self, who: Principal, **params: Any) -> dict[str, Any]:
        """One page of the patient's own trail, newest first, with totals (audit's ``/trail``)."""
        return self._get(who, "audit", "/trail", **params).json()

    def events(self, who: Principal, **filters: Any) -> dict[str, Any]:
        return self._get(who, "audit", "/events", **filters).json()

    def receipt(self, who: Principal, event_id: str) -> dict[str, Any]:
        return self._get(who, "audit", f"/receipts/{event_id}").json()

    def file_complaint(self, who: Principal, event_id: str, reason: str) -> dict[str, Any]:
        """Report one access of the patient's own trail to the regulator (oversight checks it is theirs)."""
        return self._send(who, "POST", "oversight", "/complaints",
                          body={"event_id": event_id, "reason": reason}).json()

    def my_complaints(self, who: Principal) -> list[dict[str, Any]]:
        """The patient's own reports and their state (open, answered), newest first."""
        return list(self._get(who, "oversight", "/complaints/mine").json()["complaints"])

    def notifiable(self, who: Principal, params: dict[str, Any]) -> httpx.Response:
        """Notifiable-disease counts per district and week: records asks OPA, protects every cell and audits."""
        return self._send(who, "GET", "records", "/analytics/notifiable", params=params)

    def token_for(self, who: Principal, audience: str) -> str:
        return self._token(who, audience)

    def public(self, path: str, **params: Any) -> httpx.Response:
        try:
            resp = self.http.get(self.settings.audit_url + path, params=params)
        except httpx.HTTPError as exc:
            raise Upstream(503, "audit is unavailable") from exc
        if resp.status_code >= 400:
            raise Upstream(resp.status_code, _detail(resp))
        return resp


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(i.get("diagnostics", "") for i in body.get("issue", []))
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:300]
