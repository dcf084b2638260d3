"""A whole AWS deployment, as the evaluator sees it: the bootstrap's identities and the stacks' resources.

Everything comes from running the real programs under Pulumi's mocks: the bootstrap (its roles'
policies, the state bucket's and the state key's policies) and each committed stack (what it
declares, and so what ``pulumi up``, ``refresh`` and ``destroy`` call, through
:mod:`infra.access.aws_calls`). Nothing here restates a policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.access.aws_calls import (
    COMMAND_OPERATIONS,
    Call,
    Declared,
    Location,
    World,
    resource_calls,
    transform_job_calls,
)
from infra.access.aws_policy import Decision, Principal, Request, ResourcePolicy, evaluate
from infra.bootstrap.aws_policies import PROGRAM_PROJECT, identity_arn
from tests.infra.bootstrap_runs import bootstrap
from tests.infra.mocks import Deployment, RecordingMocks, RecordingMonitor, json_input, run_program

ROOT = Path(__file__).resolve().parents[3]
REPO = "acme/model-deploy"
STATE_BUCKET = "acme-pulumi-state"
PARTITION = "aws"


def committed_aws_stacks() -> dict[str, dict[str, Any]]:
    """``{stack: config values}`` of every ``Pulumi.aws-*.yaml`` at the repository root."""
    return {
        path.name.removeprefix("Pulumi.").removesuffix(".yaml"): yaml.safe_load(path.read_text())["config"]
        for path in sorted(ROOT.glob("Pulumi.aws-*.yaml"))
    }


def stack_account(values: Mapping[str, Any]) -> str:
    """The account a committed stack deploys into: its serving image's registry account."""
    return str(values["model-deploy:package"]["image"]).split(".", 1)[0]


def declared(deployment: Deployment) -> list[Declared]:
    """The provider resources of a run, with inputs and (mock) outputs merged."""
    return [
        Declared(resource.type, resource.name, {**resource.inputs, **resource.state})
        for resource in deployment.resources
        if resource.custom and not resource.type.startswith("pulumi:providers:")
    ]


@dataclass
class Stack:
    """One stack of the main program, run under the mocks in its own account."""

    name: str
    environment: str
    location: Location
    values: Mapping[str, Any]
    deployment: Deployment
    resources: list[Declared] = field(default_factory=list)

    @property
    def world(self) -> World:
        """What the call model may look up about this stack."""
        return World(self.resources, self.location)

    def calls(self, command: str) -> Iterator[Call]:
        """What ``pulumi <command>`` calls on AWS for this stack's resources."""
        for resource in self.resources:
            yield from resource_calls(resource, self.world, COMMAND_OPERATIONS[command])

    def one(self, type_: str) -> Declared:
        """The one resource of ``type_``."""
        (found,) = [resource for resource in self.resources if resource.type == type_]
        return found

    def tags_of(self, arn: str) -> dict[str, str] | None:
        """The tags of this stack's resource ``arn`` (ARNs compare case-insensitively: SageMaker
        lower-cases names in them), ``None`` if the stack declares no such resource."""
        for resource in self.resources:
            if str(resource.get("arn", "")).lower() == arn.lower():
                return {name: str(value) for name, value in (resource.get("tags") or {}).items()}
        return None


def run_stack(name: str, values: Mapping[str, Any], account: str) -> Stack:
    """Run the main program as stack ``name`` in ``account``."""
    region = str(values["aws:region"])
    monitor = RecordingMonitor(RecordingMocks(region=region, account_id=account))
    deployment = run_program(values, stack=name, monitor=monitor)
    stack = Stack(
        name=name,
        environment=str(values["model-deploy:environment"]),
        location=Location(PARTITION, region, account),
        values=values,
        deployment=deployment,
    )
    stack.resources = declared(deployment)
    return stack


@dataclass
class Layout:
    """Where the state lives and where each environment deploys."""

    state_account: str
    environment_accounts: dict[str, str]
    oidc_provider: str = "create"

    def bootstrap_values(self) -> dict[str, Any]:
        """The bootstrap stack config of this layout."""
        separate = {env: account for env, account in self.environment_accounts.items() if account != self.state_account}
        return {
            "githubRepository": REPO,
            "cloud": "aws",
            "aws": {
                "stateBucketName": STATE_BUCKET,
                "environmentAccounts": separate,
                "oidcProvider": self.oidc_provider,
            },
        }


@dataclass
class AwsWorld:
    """The bootstrap's identities and policies plus every stack, for evaluating requests."""

    layout: Layout
    bootstrap: Deployment
    stacks: dict[str, Stack]

    @property
    def state_bucket_arn(self) -> str:
        return f"arn:{PARTITION}:s3:::{STATE_BUCKET}"

    @property
    def state_key_arn(self) -> str:
        return str(self.bootstrap.outputs["stateKeyArn"])

    def deploy_role(self, environment: str) -> Principal:
        """The deploy role of ``environment``, in its account."""
        return Principal(identity_arn(PARTITION, self.layout.environment_accounts[environment], environment))

    def readonly_role(self, environment: str) -> Principal:
        """The read-only role of ``environment``'s account."""
        return Principal(identity_arn(PARTITION, self.layout.environment_accounts[environment], "readonly"))

    def identity_policies(self, principal: Principal) -> dict[str, Any]:
        """The inline policies the bootstrap attached to ``principal``'s role (found by role name and account)."""
        name = principal.role_name.removeprefix("github-model-deploy-")
        account_suffix = "" if principal.account == self.layout.state_account else f"-{principal.account}"
        wanted = f"{name}-policy{account_suffix}"  # exactly: "readonly-policy" is part of "readonly-policy-<account>"
        (policy,) = [p for p in self.bootstrap.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == wanted]
        return {policy.name: json_input(policy, "policy")}

    def resource_policy(self, resource: str, owner: str) -> tuple[ResourcePolicy | None, str]:
        """The resource-based policy on ``resource`` (if any) and the resource's account."""
        if resource.startswith(f"{self.state_bucket_arn}/") or resource == self.state_bucket_arn:
            document = json_input(
                self.bootstrap.one("aws:s3/bucketPolicy:BucketPolicy", "state-bucket-policy"), "policy"
            )
            return ResourcePolicy(document, self.layout.state_account, "s3"), self.layout.state_account
        if resource == self.state_key_arn:
            document = json_input(self.bootstrap.one("aws:kms/keyPolicy:KeyPolicy", "state-key-policy"), "policy")
            return ResourcePolicy(document, self.layout.state_account, "kms"), self.layout.state_account
        for stack in self.stacks.values():
            for declared_resource in stack.resources:
                if declared_resource.type == "aws:s3/bucketPolicy:BucketPolicy":
                    bucket_arn = f"arn:{PARTITION}:s3:::{declared_resource.get('bucket')}"
                    if resource == bucket_arn or resource.startswith(f"{bucket_arn}/"):
                        document = json.loads(str(declared_resource.get("policy")))
                        return ResourcePolicy(document, stack.location.account, "s3"), stack.location.account
                if declared_resource.type == "aws:kms/key:Key" and declared_resource.get("arn") == resource:
                    document = json.loads(str(declared_resource.get("policy")))
                    return ResourcePolicy(document, stack.location.account, "kms"), stack.location.account
        parts = resource.split(":")
        account = parts[4] if len(parts) > 4 and parts[4] else owner
        return None, account

    def tags_of(self, arn: str) -> dict[str, str]:
        """The tags of whichever stack's resource ``arn`` is (none for resources no stack declares)."""
        for stack in self.stacks.values():
            tags = stack.tags_of(arn)
            if tags is not None:
                return tags
        return {}

    def decide(self, principal: Principal, call: Call, owner: str) -> Decision:
        """Whether AWS would allow ``principal`` to make ``call`` (on a resource of account ``owner``)."""
        policy, account = self.resource_policy(call.resource, owner)
        context = dict(call.context)
        if not call.creates:  # an existing resource carries its tags (aws:ResourceTag/<key>)
            context.update({f"aws:ResourceTag/{name}": value for name, value in self.tags_of(call.resource).items()})
        request = Request(principal, call.action, call.resource, context)
        return evaluate(request, self.identity_policies(principal), policy, resource_account=account)


def build_world(layout: Layout, stacks: Mapping[str, Mapping[str, Any]]) -> AwsWorld:
    """Run the bootstrap for ``layout`` and every stack in its environment's account."""
    run = bootstrap(layout.bootstrap_values(), account_id=layout.state_account)
    ran = {
        name: run_stack(name, values, layout.environment_accounts[str(values["model-deploy:environment"])])
        for name, values in stacks.items()
    }
    return AwsWorld(layout, run, ran)


#: The two supported layouts (README, "AWS accounts"): the state in a tooling account and one account
#: per environment (the committed stacks' own accounts), or everything in one shared account.
LAYOUTS = ("account-per-environment", "shared-account")
TOOLING_ACCOUNT = "999999999999"
SHARED_ACCOUNT = "123456789012"


def retarget(values: Mapping[str, Any], account: str) -> dict[str, Any]:
    """A committed stack moved into ``account`` (its image and topic ARNs name their account)."""
    moved: dict[str, Any] = json.loads(json.dumps(values).replace(stack_account(values), account))
    return moved


def build_layout(layout: str, stacks: Mapping[str, Mapping[str, Any]]) -> AwsWorld:
    """The world of one of :data:`LAYOUTS` for the committed ``stacks``."""
    environments = {str(values["model-deploy:environment"]): values for values in stacks.values()}
    if layout == "account-per-environment":
        return build_world(
            Layout(TOOLING_ACCOUNT, {env: stack_account(values) for env, values in environments.items()}), stacks
        )
    if layout != "shared-account":
        raise ValueError(f"unknown layout {layout!r}: one of {LAYOUTS}")
    return build_world(
        Layout(SHARED_ACCOUNT, dict.fromkeys(environments, SHARED_ACCOUNT)),
        {name: retarget(values, SHARED_ACCOUNT) for name, values in stacks.items()},
    )


# --- calls that are not Pulumi resources -----------------------------------------------------------


def state_calls(world: AwsWorld, stack: str, command: str) -> list[Call]:
    """What the DIY backend does in the state bucket for ``pulumi <command>`` of ``stack``.

    pulumi/pulumi pkg/backend/diy: every command reads ``.pulumi/meta.yaml``, lists the stack's
    prefix and reads its checkpoint and tags; update/refresh/destroy also lock (list, put, delete),
    save checkpoints (copy to ``.bak``, put), and write history and backups. Reading needs
    ``kms:Decrypt`` (SSE-KMS objects, the stack's secrets key), writing ``kms:GenerateDataKey``.
    """
    bucket, key = world.state_bucket_arn, world.state_key_arn
    root = f"{bucket}/.pulumi"
    project = PROGRAM_PROJECT
    reads = [
        Call("s3:ListBucket", bucket),
        Call("s3:GetObject", f"{root}/meta.yaml"),
        Call("s3:GetObject", f"{root}/stacks/{project}/{stack}.json"),
        Call("s3:GetObject", f"{root}/stacks/{project}/{stack}.pulumi-tags"),
        Call("kms:Decrypt", key),
    ]
    if command == "preview":
        return [Call(c.action, c.resource, c.context, f"state {stack} {command}") for c in reads]
    writes = [
        Call("s3:PutObject", f"{root}/locks/organization/{project}/{stack}/0b5c.json"),
        Call("s3:GetObject", f"{root}/locks/organization/{project}/{stack}/0b5c.json"),
        Call("s3:DeleteObject", f"{root}/locks/organization/{project}/{stack}/0b5c.json"),
        Call("s3:PutObject", f"{root}/stacks/{project}/{stack}.json"),
        Call("s3:PutObject", f"{root}/stacks/{project}/{stack}.json.bak"),
        Call("s3:PutObject", f"{root}/history/{project}/{stack}/{stack}-1.history.json"),
        Call("s3:PutObject", f"{root}/history/{project}/{stack}/{stack}-1.checkpoint.json"),
        Call("s3:PutObject", f"{root}/backups/{project}/{stack}/{stack}.1.json"),
        Call("kms:GenerateDataKey", key),
        Call("kms:Encrypt", key),  # the stack's secrets data key, when the stack is created
    ]
    return [Call(c.action, c.resource, c.context, f"state {stack} {command}") for c in reads + writes]


def verify_calls(world: AwsWorld, stack: Stack) -> list[Call]:
    """What ``model-deploy-verify`` calls (infra/verify_aws.py ``verify``) for a real-time endpoint."""
    endpoint = stack.one("aws:sagemaker/endpoint:Endpoint")
    config = stack.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    model = stack.one("aws:sagemaker/model:Model")
    location = stack.location
    package_uri = str(stack.values["model-deploy:package"]["uri"])
    bucket, _, key = package_uri.removeprefix("s3://").partition("/")
    store_key = str(stack.one("aws:kms/key:Key").get("arn"))
    calls = [
        Call("sagemaker:DescribeEndpoint", location.arn("sagemaker", f"endpoint/{str(endpoint.get('name')).lower()}")),
        Call(
            "sagemaker:DescribeEndpointConfig",
            location.arn("sagemaker", f"endpoint-config/{str(config.get('name')).lower()}"),
        ),
        Call("sagemaker:DescribeModel", location.arn("sagemaker", f"model/{str(model.get('name')).lower()}")),
        Call("s3:GetObject", f"arn:{PARTITION}:s3:::{bucket}/{key}"),  # the package's bundled example
        Call("kms:Decrypt", store_key),  # S3 decrypts it with the caller's rights
        Call("sagemaker:InvokeEndpoint", location.arn("sagemaker", f"endpoint/{str(endpoint.get('name')).lower()}")),
    ]
    return [Call(c.action, c.resource, c.context, f"verify {stack.name}") for c in calls]


def batch_enabled(stack: Stack) -> bool:
    """Whether the stack lets ``model-deploy-batch`` run jobs (``model-deploy:aws.endpoint.batchJobs``)."""
    return bool(stack.values["model-deploy:aws"]["endpoint"].get("batchJobs"))


def batch_calls(world: AwsWorld, stack: Stack) -> list[Call]:
    """What ``model-deploy-batch`` calls (infra/batch/aws_jobs.py ``run_aws_job``) with the stack's deploy role.

    It reads the endpoint, its config and model (the pinned package), lists and reads the input and
    output prefixes of the store (``batchInputUri`` / ``batchOutputUri``), which S3 decrypts with the
    caller's rights, and creates, follows (and may stop) the job, tagged like the stack's resources.
    """
    endpoint = str(stack.one("aws:sagemaker/endpoint:Endpoint").get("name"))
    model = stack.one("aws:sagemaker/model:Model")
    bucket = str(stack.deployment.outputs["bucketName"])
    store_key = str(stack.one("aws:kms/key:Key").get("arn"))
    location = stack.location
    tags = {name: str(value) for name, value in (model.get("tags") or {}).items()}
    calls = [
        Call("sagemaker:DescribeEndpoint", location.arn("sagemaker", f"endpoint/{endpoint.lower()}")),
        Call("sagemaker:DescribeModel", location.arn("sagemaker", f"model/{str(model.get('name')).lower()}")),
        Call("s3:ListBucket", f"arn:{PARTITION}:s3:::{bucket}", {"s3:prefix": f"batch/{endpoint}/input/"}),
        Call("s3:ListBucket", f"arn:{PARTITION}:s3:::{bucket}", {"s3:prefix": f"batch/{endpoint}/output/"}),
        Call("s3:GetObject", f"arn:{PARTITION}:s3:::{bucket}/batch/{endpoint}/input/day=1/part-0.jsonl"),
        Call("s3:GetObject", f"arn:{PARTITION}:s3:::{bucket}/batch/{endpoint}/output/day=1/part-0.jsonl.out"),
        Call("kms:Decrypt", store_key),
        # VolumeKmsKeyId: as for an endpoint config's key, SageMaker creates a grant on the key for the
        # job's volumes with the caller's permissions (SageMaker Developer Guide, "Protect data at rest
        # using encryption"); unproven for transform jobs without a real account, so modelled the same way.
        Call("kms:CreateGrant", store_key),
        Call("kms:DescribeKey", store_key),
        *transform_job_calls(location, f"{endpoint}-batch-20261206010203-0123abcd", tags),
    ]
    return [Call(c.action, c.resource, c.context, f"batch {stack.name}", c.creates) for c in calls]
