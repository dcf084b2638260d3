"""An identity token for a Cloud Run URL from whatever Google credentials the caller has, federated ones included.

``google.oauth2.id_token.fetch_id_token`` only knows service-account key files and the metadata
server; it refuses the ``external_account`` file that Workload Identity Federation writes
(google-github-actions/auth, ``gcloud iam workload-identity-pools create-cred-config``), so in CI
it can never authenticate to a private service. Here:

* **external_account with a service account** (what the auth action writes when given
  ``service_account``): exchange the subject token at STS (google-auth does that, reading the
  file's ``token_url`` and ``credential_source``), then call IAM Credentials ``generateIdToken``
  for that service account *with the federated token*. This is exactly what the auth action
  itself does for ``token_format: id_token`` (google-github-actions/auth ``src/main.ts``:
  ``IAMCredentialsClient({authToken: await client.getToken()}).generateIDToken(...)``, where
  ``getToken`` is the STS exchange). The permission checked is ``iam.serviceAccounts.getOpenIdToken``
  on the service account (IAM Credentials REST reference, ``projects.serviceAccounts.generateIdToken``,
  https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateIdToken),
  which ``roles/iam.workloadIdentityUser`` — the binding that lets the workflow use the account at
  all — already contains (https://cloud.google.com/iam/docs/roles-permissions/iam): no new grant.
  Using the *service account's* own access token instead would need the account to hold
  ``getOpenIdToken`` on itself, a self-grant we do not want.
  The ``generateIdToken`` URL is the file's ``service_account_impersonation_url`` with its
  ``:generateAccessToken`` method replaced: the same IAM Credentials endpoint the file names.
* **impersonated_service_account** (``gcloud auth application-default login
  --impersonate-service-account``): google-auth's ``impersonated_credentials.IDTokenCredentials``.
* anything else (a key file, the metadata server): ``fetch_id_token`` as before.
"""

from __future__ import annotations

import json
from typing import Any, Final

#: OAuth scope of the federated token that calls IAM Credentials.
CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
_ACCESS_TOKEN_METHOD: Final = ":generateAccessToken"
_ID_TOKEN_METHOD: Final = ":generateIdToken"


class IdTokenError(Exception):
    """No identity token: :attr:`kind` says whose fault (``credentials`` or ``unavailable``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _one_line(text: str) -> str:
    return " ".join(text.split())


def fetch(audience: str, *, timeout: float = 60.0) -> str:
    """An OIDC identity token whose ``aud`` is ``audience``; raise :class:`IdTokenError` otherwise."""
    import google.auth
    import google.auth.exceptions
    from google.auth import external_account, impersonated_credentials
    from google.auth.transport.requests import Request

    try:
        # No scopes here: with scopes, google.auth.default() looks up the pool's project in Cloud
        # Resource Manager for external accounts (external_account.get_project_id), a call (and a
        # permission) we do not need.
        credentials, _ = google.auth.default()
        if isinstance(credentials, external_account.Credentials):
            return _federated(credentials, audience, timeout=timeout)
        if isinstance(credentials, impersonated_credentials.Credentials):
            id_credentials = impersonated_credentials.IDTokenCredentials(  # type: ignore[no-untyped-call]
                credentials, target_audience=audience, include_email=True
            )
            id_credentials.refresh(Request())
            return str(id_credentials.token)
        import google.oauth2.id_token

        return str(google.oauth2.id_token.fetch_id_token(Request(), audience))  # type: ignore[no-untyped-call]
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise IdTokenError(
            "credentials",
            f"cannot get an identity token for {audience}: {_one_line(str(exc))}; run with a service account "
            "(GOOGLE_APPLICATION_CREDENTIALS: a key, Workload Identity Federation through a service account, or "
            "impersonation; or the metadata server), or pass --no-auth for a public service",
        ) from None
    except google.auth.exceptions.RefreshError as exc:
        raise IdTokenError(
            "credentials", f"Google refused to issue an identity token for {audience}: {_one_line(str(exc))}"
        ) from None
    except google.auth.exceptions.TransportError as exc:
        raise IdTokenError(
            "unavailable", f"cannot reach Google to get an identity token for {audience}: {_one_line(str(exc))}"
        ) from None


def _federated(credentials: Any, audience: str, *, timeout: float) -> str:
    """``generateIdToken`` for the file's service account, authenticated with the federated (STS) token."""
    import requests
    from google.auth.transport.requests import AuthorizedSession

    info: dict[str, Any] = dict(credentials.info)
    impersonation_url = str(info.get("service_account_impersonation_url") or "")
    account = credentials.service_account_email
    if not impersonation_url.endswith(_ACCESS_TOKEN_METHOD) or not account:
        raise IdTokenError(
            "credentials",
            f"cannot get an identity token for {audience}: the Workload Identity Federation credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS) name no service account, and a federated identity cannot hold an "
            "identity token itself; give google-github-actions/auth a service_account",
        )
    url = impersonation_url.removesuffix(_ACCESS_TOKEN_METHOD) + _ID_TOKEN_METHOD
    # The same configuration without impersonation: its token is the STS exchange's, the federated principal's.
    info.pop("service_account_impersonation_url", None)
    info.pop("service_account_impersonation", None)
    federated = type(credentials).from_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
    session = AuthorizedSession(federated)  # type: ignore[no-untyped-call]
    try:
        response = session.post(url, json={"audience": audience, "includeEmail": True}, timeout=timeout)
    except requests.RequestException as exc:
        raise IdTokenError(
            "unavailable", f"cannot reach IAM Credentials at {url} for an identity token: {_one_line(str(exc))}"
        ) from None
    finally:
        session.close()  # type: ignore[no-untyped-call]
    if response.status_code in (401, 403):
        raise IdTokenError(
            "credentials",
            f"IAM Credentials refused an identity token of {account} for {audience} (HTTP {response.status_code}: "
            f"{_google_message(response.text)}): the workflow's federated identity needs "
            f"iam.serviceAccounts.getOpenIdToken on {account} (roles/iam.workloadIdentityUser, which the bootstrap "
            "grants to the account's GitHub environment)",
        )
    if response.status_code != 200:
        raise IdTokenError(
            "unavailable",
            f"IAM Credentials failed to issue an identity token of {account} (HTTP {response.status_code}: "
            f"{_google_message(response.text)})",
        )
    try:
        return str(response.json()["token"])
    except (ValueError, KeyError, TypeError):
        raise IdTokenError("unavailable", f"IAM Credentials answered {url} without a token") from None


def _google_message(body: str) -> str:
    """The ``error.message`` of a Google API error body, else the body itself (shortened)."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body
    return _one_line(str(message))[:300]
