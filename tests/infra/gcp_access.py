"""The GCP world the pipelines act in, as declared: the bootstrap and every committed GCP stack, run under the mocks.

:func:`gcp_world` runs ``infra/bootstrap`` (cloud gcp, one project per environment, the projects the
committed ``Pulumi.gcp-*.yaml`` name) and ``infra/__main__.py`` for each committed GCP stack, and
reads every IAM binding and custom role they declare into one
:class:`~infra.access.gcp_policy.Policies`. Nothing is listed by hand: what the stacks declare is
what the program declares for them.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.access.gcp_calls import Declared
from infra.access.gcp_declared import add_declared
from infra.access.gcp_policy import Policies, Principal, WorkloadIdentityProvider
from tests.infra.mocks import Deployment, Registered, run_program
from tests.infra.test_bootstrap import POOL, REPO, bootstrap

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_PROJECT = "acme-ml-ops"
STATE_BUCKET = "acme-ml-pulumi-state"


@dataclass(frozen=True)
class Stack:
    """One committed GCP stack, as the program declares it."""

    name: str
    environment: str
    project: str
    config: dict[str, Any]
    resources: list[Declared]


@dataclass(frozen=True)
class GcpWorld:
    """The bootstrap's and the stacks' declarations, and the policies they add up to."""

    stacks: dict[str, Stack]
    bootstrap: list[Declared]
    bootstrap_outputs: dict[str, Any]
    policies: Policies
    provider: WorkloadIdentityProvider

    def deploy_identity(self, environment: str) -> Principal:
        return Principal.service_account(self.bootstrap_outputs[f"GCP_SERVICE_ACCOUNT_{environment.upper()}"])

    @property
    def readonly(self) -> Principal:
        return Principal.service_account(self.bootstrap_outputs["GCP_SERVICE_ACCOUNT_READONLY"])

    def secrets_key(self) -> str:
        return str(self.bootstrap_outputs["PULUMI_SECRETS_PROVIDER_GCP"]).removeprefix("gcpkms://")


def declared(deployment: Deployment) -> list[Declared]:
    """The provider-managed resources of a run, with their inputs and (mock-resolved) state."""
    return [_declared(resource) for resource in deployment.custom()]


def _declared(resource: Registered) -> Declared:
    return Declared(resource.type, resource.name, dict(resource.inputs), dict(resource.state))


def committed_gcp_stacks() -> dict[str, dict[str, Any]]:
    """``Pulumi.gcp-*.yaml`` at the repository root, by stack name: their ``config`` sections."""
    return {
        path.name.removeprefix("Pulumi.").removesuffix(".yaml"): yaml.safe_load(path.read_text())["config"]
        for path in sorted(ROOT.glob("Pulumi.gcp-*.yaml"))
    }


def bootstrap_values(environment_projects: dict[str, str]) -> dict[str, Any]:
    return {
        "githubRepository": REPO,
        "cloud": "gcp",
        "gcp": {
            "project": BOOTSTRAP_PROJECT,
            "stateBucketName": STATE_BUCKET,
            "environmentProjects": environment_projects,
        },
    }


def build_world(stack_configs: dict[str, dict[str, Any]], bootstrap_run: Deployment | None = None) -> GcpWorld:
    """Run the program for each stack config and the bootstrap for their projects; gather the policies."""
    stacks: dict[str, Stack] = {}
    for name, config in stack_configs.items():
        run = run_program(config, stack=name)
        environment = str(config["model-deploy:environment"])
        stacks[name] = Stack(name, environment, str(config["model-deploy:gcp"]["project"]), config, declared(run))
    if bootstrap_run is None:
        bootstrap_run = bootstrap(bootstrap_values({s.environment: s.project for s in stacks.values()}))
    resources = declared(bootstrap_run)
    policies = Policies()
    # The state bucket's project: the bootstrap declares the bucket, so add_declared records it.
    add_declared(policies, resources)
    for stack in stacks.values():
        add_declared(policies, stack.resources)
    provider = next(
        r for r in resources if r.type.endswith("workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
    )
    wif = WorkloadIdentityProvider(
        POOL, dict(provider.value("attributeMapping")), str(provider.value("attributeCondition"))
    )
    return GcpWorld(stacks, resources, dict(bootstrap_run.outputs), policies, wif)


@functools.cache
def gcp_world() -> GcpWorld:
    """The world of the committed stacks (cached: the runs take seconds)."""
    return build_world(committed_gcp_stacks())


def vertex_variants(configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The same stacks with a Vertex AI endpoint instead of Cloud Run (no committed stack uses Vertex yet)."""
    variants = {}
    for name, config in configs.items():
        variant = copy.deepcopy(config)
        environment = variant["model-deploy:environment"]
        settings = variant["model-deploy:gcp"]
        settings["target"] = "vertex"
        settings.pop("cloudRun", None)
        settings["vertex"] = {"endpointName": f"digits {environment}", "machineType": "n1-standard-4"}
        if environment == "dev":
            settings["vertex"]["batchJobs"] = True  # model-deploy-batch's permissions, proven on dev
        if environment == "prod":
            settings["vertex"].update(minReplicas=2, maxReplicas=4)
        variants[name] = variant
    return variants


@functools.cache
def vertex_world() -> GcpWorld:
    """The world of the committed stacks' Vertex AI variants."""
    return build_world(vertex_variants(committed_gcp_stacks()))


def github_claims(subject_suffix: str, **claims: str) -> dict[str, str]:
    """The claims of a GitHub Actions OIDC token of this repository (``sub`` = ``repo:<repo>:<suffix>``)."""
    return {"sub": f"repo:{REPO}:{subject_suffix}", "repository": REPO, **claims}
