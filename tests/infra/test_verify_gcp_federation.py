"""``model-deploy-verify-gcp`` in CI: a private Cloud Run service, credentials from Workload Identity Federation.

The credentials file is exactly what google-github-actions/auth writes (``type: external_account``,
``credential_source.url`` to GitHub's OIDC endpoint, ``service_account_impersonation_url``), its
URLs pointed at loopback stand-ins for GitHub, STS and IAM Credentials; the service is a real
``model-serve`` behind a stand-in for Cloud Run's IAM check (:mod:`tests.infra.fake_google_auth`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.inference.server_fixtures import ServerProcess
from tests.infra.fake_google_auth import ACCOUNT, PRINCIPAL, CloudRunFront, FakeFederation, jwt_claims
from tests.infra.test_verify_gcp import (  # noqa: F401 (module fixtures: the package and its server)
    Published,
    cloud_run_outputs,
    one_line,
    packages,
    run,
    service,
)


@pytest.fixture
def federation() -> Iterator[FakeFederation]:
    fake = FakeFederation().start()
    yield fake
    fake.stop()


@pytest.fixture
def front(federation: FakeFederation, service: ServerProcess) -> Iterator[CloudRunFront]:  # noqa: F811
    proxy = CloudRunFront(federation, service.url).start()
    yield proxy
    proxy.stop()


@dataclass
class Ci:
    """A CI job after google-github-actions/auth: its credentials file in GOOGLE_APPLICATION_CREDENTIALS."""

    federation: FakeFederation
    front: CloudRunFront
    package: Published
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    def verify(self, capsys: pytest.CaptureFixture[str], *, service_account: str | None = ACCOUNT) -> tuple[int, str]:
        """Write the auth action's credentials file, then run the command on the service's outputs."""
        path = self.tmp_path / "gha-creds-1234.json"
        path.write_text(json.dumps(self.federation.credentials_file(service_account=service_account)))
        self.monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
        return run(cloud_run_outputs(self.front.url, self.package), self.tmp_path, capsys)


@pytest.fixture
def ci(
    federation: FakeFederation,
    front: CloudRunFront,
    packages: dict[str, Published],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Ci:
    return Ci(federation, front, packages["mlp"], tmp_path, monkeypatch)


def test_private_cloud_run_is_verified_with_federated_credentials(ci: Ci, capsys: pytest.CaptureFixture[str]) -> None:
    federation, front = ci.federation, ci.front
    code, text = ci.verify(capsys)
    assert code == 0, text
    assert one_line(text).startswith(f"OK: Cloud Run service {front.url} is healthy")
    # The ID token came from generateIdToken for the deploy account, asked with the federated token
    # (the STS exchange of GitHub's token), for the service's URL; Cloud Run's check let both requests in.
    paths = [path for _, path, _ in federation.calls]
    assert "/sts/v1/token" in paths
    minted = [body for _, path, body in federation.calls if path.endswith(f"{ACCOUNT}:generateIdToken")]
    assert minted == [{"audience": front.url, "includeEmail": True}]
    assert len(front.seen_tokens) == 2  # health, then the smoke prediction
    assert all(jwt_claims(token)["aud"] == front.url for token in front.seen_tokens)
    assert {jwt_claims(token)["email"] for token in front.seen_tokens} == {ACCOUNT}


def test_federated_identity_without_the_grant_is_a_credentials_error(
    ci: Ci, capsys: pytest.CaptureFixture[str]
) -> None:
    ci.federation.grants[PRINCIPAL] = set()  # no roles/iam.workloadIdentityUser on the account
    code, text = ci.verify(capsys)
    assert code == 7
    line = one_line(text)
    assert f"IAM Credentials refused an identity token of {ACCOUNT} for {ci.front.url} (HTTP 403" in line
    assert "iam.serviceAccounts.getOpenIdToken" in line
    assert ci.front.seen_tokens == []


def test_federation_without_a_service_account_says_what_to_configure(
    ci: Ci, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = ci.verify(capsys, service_account=None)
    assert code == 7
    assert "give google-github-actions/auth a service_account" in one_line(text)


def test_unreachable_sts_is_unavailable_not_a_credentials_error(ci: Ci, capsys: pytest.CaptureFixture[str]) -> None:
    ci.federation.stop()
    code, text = ci.verify(capsys)
    assert code == 8, text
    assert "cannot reach" in one_line(text)
