"""Bootstrap resources: Pulumi state backend, GitHub OIDC federation and per-environment deploy identities.

What each workflow variable (``.github/workflows/pulumi-stack.yml``) needs, and nothing more:

* ``PULUMI_BACKEND_URL_AWS`` / ``PULUMI_BACKEND_URL_GCP``: a versioned, private, encrypted bucket.
* ``AWS_ROLE_ARN_<ENV>``: a role that only a job of this repository running in the GitHub
  environment ``<env>`` can assume (``sub`` = ``repo:<owner/name>:environment:<env>``).
* ``AWS_ROLE_ARN_READONLY``: a role for pull-request previews and drift checks on ``main``.
* ``GCP_WORKLOAD_IDENTITY_PROVIDER`` and ``GCP_SERVICE_ACCOUNT_<ENV>`` / ``..._READONLY``: the
  same split on GCP, through a Workload Identity pool that accepts only this repository's tokens.
* ``PULUMI_SECRETS_PROVIDER_AWS`` / ``PULUMI_SECRETS_PROVIDER_GCP``: the KMS key that encrypts the
  stacks' secrets (``awskms://…`` / ``gcpkms://…``), usable by the deploy identities and, to
  decrypt only, by the read-only one.

On GCP it also enables the APIs that the main program and the pipelines call (:data:`GCP_SERVICES`)
and never disables them on destroy. With ``gcp.environmentProjects`` each environment deploys into
its own project (APIs enabled and the deploy account's roles granted there, the read-only account
reading all of them); the state bucket, key, pool and service accounts stay in ``gcp.project``.

The config is read once (:func:`from_pulumi`); a bad value raises :class:`~infra.config.ConfigError`
with one line naming the key (``model-deploy-bootstrap:aws.stateBucketName: ...``).
"""

from __future__ import annotations

import pulumi

from infra.bootstrap.aws import deploy_aws
from infra.bootstrap.config import BootstrapConfig
from infra.bootstrap.gcp import deploy_gcp


def deploy(config: BootstrapConfig) -> dict[str, pulumi.Input[str]]:
    """Declare the cloud's bootstrap resources; returns the outputs, named like the repository variables."""
    return deploy_gcp(config) if config.cloud == "gcp" else deploy_aws(config)
