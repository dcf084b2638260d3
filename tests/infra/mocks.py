"""Pulumi mocks that record what a program declares, and a runner for the real ``infra/__main__.py``.

:class:`RecordingMocks` answers like the engine, AWS and GCP would (auto-names, ARNs, the
account, Google service agents), and :class:`RecordingMonitor` keeps what only the resource
monitor sees: parents, dependency edges, property dependencies and resource options. Tests
assert on those records.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
from google.protobuf import json_format
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.mocks import MockMonitor

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
#: The random part of a Cloud Run URL, as the mocks make it.
GCP_PROJECT_HASH = "abcdefghij-ew"
#: GCP project numbers as the mocks answer (they name the Google service agents); others are derived.
GCP_PROJECT_NUMBERS: Mapping[str, str] = {"acme-ml": "123456789012"}
#: Google service agents' email domains, per service (https://cloud.google.com/iam/docs/service-agents).
_SERVICE_AGENT_DOMAINS: Mapping[str, str] = {"aiplatform.googleapis.com": "gcp-sa-aiplatform.iam.gserviceaccount.com"}
MAIN = Path(__file__).resolve().parents[2] / "infra" / "__main__.py"

# Types whose name the engine generates (Pulumi auto-naming) when the program gives none.
_AUTONAMED: Mapping[str, str] = {
    "aws:iam/role:Role": "name",
    "aws:iam/rolePolicy:RolePolicy": "name",
    "aws:sagemaker/model:Model": "name",
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": "name",
    "aws:s3/bucket:Bucket": "bucket",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "name",
    "aws:cloudwatch/logGroup:LogGroup": "name",
    "aws:ecr/repository:Repository": "name",
}


def gcp_project_number(project: str) -> str:
    """The mocks' number of GCP project ``project``: distinct projects, distinct service agents."""
    return GCP_PROJECT_NUMBERS.get(project) or str(int(hashlib.sha256(project.encode()).hexdigest(), 16))[:12]


@dataclass
class Registered:
    """One resource as the program registered it."""

    type: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    delete_before_replace: bool = False
    protect: bool = False
    retain_on_delete: bool = False
    import_id: str = ""
    ignore_changes: list[str] = field(default_factory=list)
    replacement_trigger: Any = None

    def depends_on(self, other: Registered) -> bool:
        """Whether ``other`` is among this resource's dependencies (explicit or through an input)."""
        return other.urn in self.dependencies

    def property_depends_on(self, key: str, other: Registered) -> bool:
        """Whether input ``key`` was computed from ``other``'s outputs."""
        return other.urn in self.property_dependencies.get(key, [])


class RecordingMocks(pulumi.runtime.Mocks):
    """Plausible ids, names and ARNs for every resource; the account for ``getCallerIdentity``.

    A GCP project's service agents are named after :func:`gcp_project_number`.
    """

    def __init__(self, *, region: str = REGION, account_id: str = ACCOUNT_ID) -> None:
        self.region = region
        self.account_id = account_id
        self.calls: list[str] = []
        self.states: dict[tuple[str, str], dict[str, Any]] = {}

    def _autoname(self, name: str) -> str:
        return f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        state: dict[str, Any] = dict(args.inputs)
        key = _AUTONAMED.get(args.typ)
        if key and not state.get(key):
            state[key] = self._autoname(args.name)
        region, account = self.region, self.account_id
        physical = str(state.get("name") or args.name)
        arns: dict[str, str] = {
            # Key ids are random in AWS: distinct per stack, so stacks sharing an account never share one.
            "aws:kms/key:Key": (
                f"arn:aws:kms:{region}:{account}:key/"
                f"{hashlib.md5(f'{pulumi.get_stack()}/{args.name}'.encode()).hexdigest()}"
            ),
            "aws:s3/bucket:Bucket": f"arn:aws:s3:::{state.get('bucket')}",
            "aws:ecr/repository:Repository": f"arn:aws:ecr:{region}:{account}:repository/{physical}",
            "aws:iam/role:Role": f"arn:aws:iam::{account}:role{state.get('path') or '/'}{physical}",
            "aws:cloudwatch/logGroup:LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{physical}",
            "aws:cloudwatch/metricAlarm:MetricAlarm": f"arn:aws:cloudwatch:{region}:{account}:alarm:{physical}",
            "aws:cloudwatch/compositeAlarm:CompositeAlarm": (
                f"arn:aws:cloudwatch:{region}:{account}:alarm:{state.get('alarmName')}"
            ),
            "aws:sagemaker/model:Model": f"arn:aws:sagemaker:{region}:{account}:model/{physical}",
            "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
                f"arn:aws:sagemaker:{region}:{account}:endpoint-config/{physical}"
            ),
            "aws:sagemaker/endpoint:Endpoint": f"arn:aws:sagemaker:{region}:{account}:endpoint/{physical}",
            # AWS assigns scalable targets a random id; distinct per stack and resource, as there.
            "aws:appautoscaling/target:Target": (
                f"arn:aws:application-autoscaling:{region}:{account}:scalable-target/"
                f"{hashlib.md5(f'{pulumi.get_stack()}/{args.name}'.encode()).hexdigest()}"
            ),
        }
        if args.typ in arns:
            state["arn"] = arns[args.typ]
        if args.typ == "aws:kms/key:Key":
            state["keyId"] = state["arn"].rpartition("/")[2]
        elif args.typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"{account}.dkr.ecr.{region}.amazonaws.com/{physical}"
        elif args.typ == "aws:cloudwatch/dashboard:Dashboard":
            state["dashboardArn"] = f"arn:aws:cloudwatch::{account}:dashboard/{state['dashboardName']}"
        elif args.typ == "gcp:serviceaccount/account:Account":
            state["email"] = f"{state['accountId']}@{state['project']}.iam.gserviceaccount.com"
            state["member"] = f"serviceAccount:{state['email']}"
            state["name"] = f"projects/{state['project']}/serviceAccounts/{state['email']}"
        elif args.typ == "gcp:storage/bucket:Bucket":
            state["url"] = f"gs://{state['name']}"
        elif args.typ == "gcp:artifactregistry/repository:Repository":
            state["name"] = state["repositoryId"]
        elif args.typ == "gcp:cloudrunv2/service:Service":
            state["uri"] = f"https://{state['name']}-{GCP_PROJECT_HASH}.a.run.app"
        elif args.typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            number = gcp_project_number(state["project"])
            state["email"] = f"service-{number}@{_SERVICE_AGENT_DOMAINS[state['service']]}"
            state["member"] = f"serviceAccount:{state['email']}"
        elif args.typ == "gcp:vertex/aiEndpoint:AiEndpoint" and not state.get("name"):
            state["name"] = str(int(hashlib.sha256(args.name.encode()).hexdigest()[:12], 16))  # Vertex ids are numeric
        elif args.typ == "pulumi:index:Stash":
            state["output"] = state.get("input")
        resource_id = str(state.get("bucket") or state.get("name") or f"{args.name}-id")
        self.states[(args.typ, args.name)] = state
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account_id,
                "arn": f"arn:aws:iam::{self.account_id}:user/deployer",
                "userId": "AIDAEXAMPLE",
                "id": self.account_id,
            }, []
        if args.token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            project = str(args.args["project"])  # the provider's default project is not the stack's business
            email = f"service-{gcp_project_number(project)}@gs-project-accounts.iam.gserviceaccount.com"
            return {"emailAddress": email, "member": f"serviceAccount:{email}", "project": project, "id": project}, []
        raise NotImplementedError(f"the program called {args.token}, which these mocks do not answer")


class RecordingMonitor(MockMonitor):
    """The mock resource monitor, keeping each registration's options and dependency edges."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording_mocks = mocks
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        state = self.recording_mocks.states.get((request.type, request.name), {})
        trigger = (
            json_format.MessageToDict(request.replacement_trigger) if request.HasField("replacement_trigger") else None
        )
        self.registered.append(
            Registered(
                type=request.type,
                name=request.name,
                urn=response.urn,
                custom=bool(request.custom),
                inputs=dict(pulumi.runtime.rpc.deserialize_properties(request.object)),
                state=state,
                parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={key: list(value.urns) for key, value in request.propertyDependencies.items()},
                delete_before_replace=bool(request.deleteBeforeReplace),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                import_id=request.importId,
                ignore_changes=list(request.ignoreChanges),
                replacement_trigger=trigger,
            )
        )
        return response


@dataclass
class Deployment:
    """Everything one run of the program declared, and its stack outputs."""

    resources: list[Registered]
    outputs: dict[str, Any]
    calls: list[str]

    def of_type(self, type_: str) -> list[Registered]:
        """Every resource of ``type_`` (a Pulumi type token)."""
        return [resource for resource in self.resources if resource.type == type_]

    def one(self, type_: str, name_part: str = "") -> Registered:
        """The one resource of ``type_`` whose logical name contains ``name_part``."""
        found = [resource for resource in self.of_type(type_) if name_part in resource.name]
        assert len(found) == 1, f"expected one {type_} named *{name_part}*, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        """The resource registered as ``urn``."""
        return next(resource for resource in self.resources if resource.urn == urn)

    def custom(self) -> Iterator[Registered]:
        """Every provider-managed resource (not components)."""
        return (resource for resource in self.resources if resource.custom)


def json_input(resource: Registered, key: str) -> Any:
    """An input that holds a JSON document (policies, dashboard bodies), parsed."""
    value = resource.inputs[key]
    return json.loads(value) if isinstance(value, str) else value


def config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Stack config as the engine hands it to a program: strings, objects JSON-encoded."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def ensure_event_loop() -> None:
    """Give Pulumi's runtime a current event loop.

    Pulumi's mocks schedule work on ``asyncio.get_event_loop()``; any earlier ``asyncio.run()``
    in the same process (the batcher and batch-scoring tests use it) leaves the main thread with
    none, and every mock-driven program would then fail with "There is no current event loop".
    """
    policy = asyncio.get_event_loop_policy()
    try:
        missing = policy.get_event_loop().is_closed()
    except RuntimeError:
        missing = True
    if missing:
        policy.set_event_loop(policy.new_event_loop())


def run_program(
    values: Mapping[str, Any],
    *,
    stack: str,
    program: Callable[[], None] | None = None,
    monitor: RecordingMonitor | None = None,
) -> Deployment:
    """Run ``infra/__main__.py`` (or ``program``) as stack ``stack`` with config ``values`` under the mocks.

    Pass ``monitor`` to inspect what was registered even when the program fails.
    """
    if monitor is None:
        monitor = RecordingMonitor(RecordingMocks(region=str(values.get("aws:region", REGION))))
    mocks = monitor.recording_mocks
    # Module-scoped fixtures run programs before any function-scoped fixture could set a loop.
    ensure_event_loop()
    # A fresh root stack per run, so exports of one run never leak into the next.
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="model-deploy", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config_strings(values))
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[Any]:
        if program is None:
            runpy.run_path(str(MAIN), run_name="__main__")
        else:
            program()
        root = pulumi.runtime.get_root_resource()
        exports: dict[str, Any] = dict(getattr(root, "outputs", {}))
        return pulumi.Output.all(**exports).apply(outputs.update) if exports else pulumi.Output.from_input(None)

    try:
        run()
    finally:
        pulumi.runtime.set_all_config({})
    return Deployment(resources=list(monitor.registered), outputs=outputs, calls=list(mocks.calls))
