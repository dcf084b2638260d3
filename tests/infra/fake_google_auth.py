"""Loopback stand-ins for what Workload Identity Federation talks to, and for Cloud Run's IAM check.

:class:`FakeFederation` serves, on one 127.0.0.1 port:

* GitHub's OIDC token endpoint (``GET /github/token?audience=...`` with the runner's request
  token as bearer): ``{"value": <GitHub OIDC JWT>}``, the shape google-github-actions/auth's
  credentials file reads (``credential_source.format``: json, field ``value``);
* STS (``POST /sts/v1/token``, RFC 8693 token exchange, form-encoded as google-auth sends it):
  a federated access token for ``principal://.../subject/<sub>`` when the audience is the
  provider's and the subject token is GitHub's;
* IAM Credentials (``POST /iamcredentials/v1/projects/-/serviceAccounts/<email>:generateAccessToken``
  and ``:generateIdToken``): like Google, they check that the *caller* (the bearer token's
  principal) holds ``iam.serviceAccounts.getAccessToken`` / ``getOpenIdToken`` on the account,
  from :attr:`FakeFederation.grants` (principal -> accounts it holds roles/iam.workloadIdentityUser on).

:class:`CloudRunFront` is the IAM check Cloud Run does before a request reaches the container:
no ``Authorization: Bearer`` identity token whose ``aud`` is the service URL -> 401, a token
this fake federation did not issue -> 403; otherwise the request is forwarded to the container.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GITHUB_REQUEST_TOKEN = "runner-request-token"
GITHUB_OIDC_TOKEN = "github.oidc.jwt"
PROVIDER = "projects/123456/locations/global/workloadIdentityPools/github-model-deploy/providers/github"
SUBJECT = "repo:acme/model-deploy:environment:dev"
PRINCIPAL = f"principal://iam.googleapis.com/{PROVIDER.rsplit('/providers/', 1)[0]}/subject/{SUBJECT}"
ACCOUNT = "github-model-deploy-dev@acme-ml.iam.gserviceaccount.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: Mapping[str, Any]) -> str:
    """An (unsigned) JWT with ``claims``: enough for clients that only decode it."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(dict(claims)).encode())}.{_b64(b'signature')}"


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@dataclass
class FakeFederation:
    """GitHub OIDC + STS + IAM Credentials on loopback, deciding like Google from :attr:`grants`."""

    grants: dict[str, set[str]] = field(default_factory=lambda: {PRINCIPAL: {ACCOUNT}})
    """Principal -> service accounts it may impersonate and mint identity tokens for."""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(method, path, what was asked) of every request, in order."""
    issued_id_tokens: set[str] = field(default_factory=set)
    _tokens: dict[str, str] = field(default_factory=dict)  # access token -> principal
    _server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def credentials_file(self, *, service_account: str | None = ACCOUNT) -> dict[str, Any]:
        """What google-github-actions/auth writes (``createCredentialsFile``), pointed at this fake.

        Shape from google-github-actions/auth ``src/client/workload_identity_federation.ts``.
        """
        data: dict[str, Any] = {
            "type": "external_account",
            "audience": f"//iam.googleapis.com/{PROVIDER}",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": f"{self.url}/sts/v1/token",
            "credential_source": {
                "url": f"{self.url}/github/token?audience=https%3A%2F%2Fiam.googleapis.com%2F{PROVIDER}",
                "headers": {"Authorization": f"Bearer {GITHUB_REQUEST_TOKEN}"},
                "format": {"type": "json", "subject_token_field_name": "value"},
            },
        }
        if service_account:
            data["service_account_impersonation_url"] = (
                f"{self.url}/iamcredentials/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken"
            )
        return data

    def start(self) -> FakeFederation:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                fake.calls.append(("GET", parsed.path, dict(urllib.parse.parse_qsl(parsed.query))))
                if parsed.path != "/github/token":
                    return self._answer(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {GITHUB_REQUEST_TOKEN}":
                    return self._answer(401, {"message": "bad request token"})
                return self._answer(200, {"value": GITHUB_OIDC_TOKEN, "count": 1})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urllib.parse.urlsplit(self.path).path
                if path == "/sts/v1/token":
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                    fake.calls.append(("POST", path, form))
                    return self._answer(*fake._exchange(form))
                if path.startswith("/iamcredentials/v1/projects/-/serviceAccounts/"):
                    body = json.loads(raw or b"{}")
                    fake.calls.append(("POST", path, body))
                    caller = fake._tokens.get(self.headers.get("Authorization", "").removeprefix("Bearer "))
                    account, _, method = path.rsplit("/", 1)[1].partition(":")
                    return self._answer(*fake._credentials(caller, account, method, body))
                self._answer(404, {"error": "not found"})

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _exchange(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        # https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return 400, {"error": "invalid_grant", "error_description": "unsupported grant_type"}
        if form.get("audience") != f"//iam.googleapis.com/{PROVIDER}":
            return 400, {"error": "invalid_target", "error_description": "unknown provider"}
        if form.get("subject_token") != GITHUB_OIDC_TOKEN:
            return 400, {"error": "invalid_grant", "error_description": "the subject token is not GitHub's"}
        token = f"federated-{len(self._tokens)}"
        self._tokens[token] = PRINCIPAL
        return 200, {
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        }

    def _credentials(
        self, caller: str | None, account: str, method: str, body: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if caller is None:
            return 401, {"error": {"code": 401, "message": "Request had invalid authentication credentials."}}
        permission = {"generateAccessToken": "getAccessToken", "generateIdToken": "getOpenIdToken"}.get(method)
        if permission is None:
            return 404, {"error": {"code": 404, "message": f"unknown method {method}"}}
        if account not in self.grants.get(caller, set()):
            message = f"Permission 'iam.serviceAccounts.{permission}' denied on resource (or it may not exist)."
            return 403, {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}
        if method == "generateAccessToken":
            token = f"sa-token-{len(self._tokens)}"
            self._tokens[token] = f"serviceAccount:{account}"
            expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            return 200, {"accessToken": token, "expireTime": expiry}
        now = int(time.time())
        claims = {"aud": body.get("audience"), "iss": "https://accounts.google.com", "sub": "1", "iat": now}
        if body.get("includeEmail"):
            claims["email"] = account
        id_token = make_jwt({**claims, "exp": now + 3600})
        self.issued_id_tokens.add(id_token)
        return 200, {"token": id_token}


@dataclass
class CloudRunFront:
    """Cloud Run's IAM check in front of a container at ``upstream``: valid identity token for this URL, or 401/403."""

    federation: FakeFederation
    upstream: str
    seen_tokens: list[str] = field(default_factory=list)
    _server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CloudRunFront:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                front.seen_tokens.append(token)
                status = front._check(token)
                body = b""
                headers: dict[str, str] = {"Content-Type": "text/plain"}
                if status == 200:
                    data = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                    request = urllib.request.Request(
                        front.upstream + self.path,
                        data=data,
                        method=method,
                        headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")},
                    )
                    try:
                        with urllib.request.urlopen(request, timeout=60) as response:
                            status, body = response.status, response.read()
                            headers["Content-Type"] = response.headers.get("Content-Type", "application/json")
                    except urllib.error.HTTPError as exc:
                        status, body = exc.code, exc.read()
                else:
                    body = b"Unauthorized" if status == 401 else b"Forbidden"
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _check(self, token: str) -> int:
        # Cloud Run: "the audience (aud) field of the token must be the URL of the receiving service"
        # (https://cloud.google.com/run/docs/authenticating/service-to-service).
        if not token:
            return 401
        if token not in self.federation.issued_id_tokens:
            return 403
        return 200 if jwt_claims(token).get("aud") == self.url else 401
