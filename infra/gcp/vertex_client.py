"""A small typed wrapper over Vertex AI's model and endpoint services (the GAPIC ``aiplatform_v1`` clients).

Only the calls the model-deployment provider makes (:mod:`infra.gcp.vertex_provider`): upload, get,
relabel and delete a model; get an endpoint, deploy, mutate and undeploy a model on it, and set
its traffic split. What ``GetModel`` and ``GetEndpoint`` return is read back into the same specs
the provider writes (:meth:`ModelSpec.of_model`, :meth:`DeploySpec.of_deployed_model`), which is
how refresh notices drift and how an existing deployment is imported. Long-running operations
are waited on with an explicit timeout and poll interval. Every failure surfaces as a
:class:`VertexError` with a one-line message.

The high-level ``google.cloud.aiplatform`` SDK is deliberately not used: it hides the RPCs behind
global state (``aiplatform.init``) and cannot be pointed at a plain-text local server, which is
how the tests run the real client against a fake Vertex (``tests/infra/fake_vertex.py``).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import grpc  # type: ignore[import-untyped]  # grpcio ships no stubs
from google.api_core import exceptions
from google.api_core.future import polling
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1.services.endpoint_service.transports.grpc import EndpointServiceGrpcTransport
from google.cloud.aiplatform_v1.services.model_service.transports.grpc import ModelServiceGrpcTransport
from google.protobuf import field_mask_pb2

from infra.loopback import gapic_client

CPU_UTILIZATION_METRIC: Final = "aiplatform.googleapis.com/prediction/online/cpu/utilization"
ACCELERATOR_DUTY_CYCLE_METRIC: Final = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle"
#: A unary call (not an operation) that takes longer than this is treated as failed.
RPC_TIMEOUT_SECONDS: Final = 60.0
#: The key DeployModel's traffic split uses for the model being deployed.
NEW_DEPLOYED_MODEL: Final = "0"
#: The autoscaling target Vertex applies to a metric without an explicit one
#: (``DedicatedResources.autoscaling_metric_specs``, google/cloud/aiplatform/v1/machine_resources.proto:
#: "The default target value is 60 for both metrics").
DEFAULT_AUTOSCALING_TARGET: Final = 60


class VertexError(Exception):
    """A Vertex AI call failed; the message is one line naming the call and the reason."""


class VertexNotFound(VertexError):
    """The model, endpoint or deployed model does not exist."""


class VertexTimeout(VertexError):
    """A long-running operation did not finish within the configured timeout."""


class VertexOperationFailed(VertexError):
    """A long-running operation finished with an error status."""


def default_api_endpoint(region: str) -> str:
    """The regional Vertex AI endpoint (Vertex serves each region from its own host)."""
    return f"{region}-aiplatform.googleapis.com"


@dataclass(frozen=True)
class ContainerSpec:
    """The serving container of an uploaded model."""

    image_uri: str
    ports: tuple[int, ...] = (8080,)
    health_route: str = "/health"
    predict_route: str = "/predict"
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """Everything UploadModel needs."""

    display_name: str
    artifact_uri: str
    container: ContainerSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None

    @classmethod
    def of_model(cls, model: aiplatform_v1.Model) -> ModelSpec:
        """What ``model`` (a ``GetModel`` answer) was uploaded with, as :meth:`VertexClient.upload_model` sets it."""
        spec = model.container_spec
        return cls(
            display_name=model.display_name,
            artifact_uri=model.artifact_uri,
            container=ContainerSpec(
                image_uri=spec.image_uri,
                ports=tuple(port.container_port for port in spec.ports),
                health_route=spec.health_route,
                predict_route=spec.predict_route,
                env={variable.name: variable.value for variable in spec.env},
            ),
            labels=dict(model.labels),
            kms_key_name=model.encryption_spec.kms_key_name or None,
        )


@dataclass(frozen=True)
class DeploySpec:
    """Where and how a model runs on an endpoint (DeployModel's ``dedicated_resources`` and identity)."""

    display_name: str
    machine_type: str
    min_replicas: int
    max_replicas: int
    accelerator_type: str | None = None
    accelerator_count: int = 0
    cpu_utilization_target: int | None = None
    accelerator_duty_cycle_target: int | None = None
    service_account: str | None = None

    @classmethod
    def of_deployed_model(cls, deployed: aiplatform_v1.DeployedModel) -> DeploySpec | None:
        """What ``deployed`` runs on, in the fields :meth:`VertexClient.deploy_model` sets.

        ``None`` when it is not on dedicated resources (``automatic_resources`` or a shared pool:
        the ``prediction_resources`` oneof of ``DeployedModel`` in
        google/cloud/aiplatform/v1/endpoint.proto), which this provider never deploys.
        """
        if aiplatform_v1.DeployedModel.pb(deployed).WhichOneof("prediction_resources") != "dedicated_resources":
            return None
        resources = deployed.dedicated_resources
        machine = resources.machine_spec
        targets = {spec.metric_name: int(spec.target) for spec in resources.autoscaling_metric_specs}
        accelerator = aiplatform_v1.AcceleratorType(machine.accelerator_type)
        return cls(
            display_name=deployed.display_name,
            machine_type=machine.machine_type,
            min_replicas=resources.min_replica_count,
            max_replicas=resources.max_replica_count,
            accelerator_type=(
                None if accelerator == aiplatform_v1.AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED else accelerator.name
            ),
            accelerator_count=machine.accelerator_count,
            cpu_utilization_target=targets.get(CPU_UTILIZATION_METRIC),
            accelerator_duty_cycle_target=targets.get(ACCELERATOR_DUTY_CYCLE_METRIC),
            service_account=deployed.service_account or None,
        )

    def dedicated_resources(self) -> aiplatform_v1.DedicatedResources:
        """The machine, the replica bounds and the autoscaling targets."""
        machine = aiplatform_v1.MachineSpec(machine_type=self.machine_type)
        if self.accelerator_type:
            machine.accelerator_type = getattr(aiplatform_v1.AcceleratorType, self.accelerator_type)
            machine.accelerator_count = self.accelerator_count
        return aiplatform_v1.DedicatedResources(
            machine_spec=machine,
            min_replica_count=self.min_replicas,
            max_replica_count=self.max_replicas,
            autoscaling_metric_specs=self.autoscaling_metric_specs(),
        )

    def autoscaling_metric_specs(self) -> list[aiplatform_v1.AutoscalingMetricSpec]:
        """The targets Vertex scales replicas on (none: its default, 60 % CPU)."""
        specs = []
        if self.cpu_utilization_target is not None:
            specs.append(
                aiplatform_v1.AutoscalingMetricSpec(
                    metric_name=CPU_UTILIZATION_METRIC, target=self.cpu_utilization_target
                )
            )
        if self.accelerator_duty_cycle_target is not None and self.accelerator_type:
            specs.append(
                aiplatform_v1.AutoscalingMetricSpec(
                    metric_name=ACCELERATOR_DUTY_CYCLE_METRIC, target=self.accelerator_duty_cycle_target
                )
            )
        return specs


@dataclass(frozen=True)
class DeployedModelInfo:
    """One model deployed on an endpoint, and what it runs on (``None``: not on dedicated resources)."""

    id: str
    model: str
    deploy: DeploySpec | None = None


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint's deployed models and how its traffic is split between them (deployed model id -> %)."""

    name: str
    deployed_models: tuple[DeployedModelInfo, ...]
    traffic_split: dict[str, int]

    def deployed(self, deployed_model_id: str) -> DeployedModelInfo | None:
        """The deployed model ``deployed_model_id``, if it is still on the endpoint."""
        return next((model for model in self.deployed_models if model.id == deployed_model_id), None)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _status(error: exceptions.GoogleAPICallError) -> str:
    """The gRPC status name (``INVALID_ARGUMENT``), which the Vertex docs use, else the HTTP code."""
    code = error.grpc_status_code
    return code.name if code is not None else str(error.code)


class VertexClient:
    """The model and endpoint services of one project and region, with operation timeouts.

    ``api_endpoint`` defaults to the regional host; a loopback ``host:port`` (a local test
    server) is spoken to in plain text with anonymous credentials, never a remote one.
    """

    def __init__(
        self,
        project: str,
        region: str,
        *,
        api_endpoint: str | None = None,
        timeout_seconds: float = 1800.0,
        poll_interval_seconds: float = 10.0,
    ) -> None:
        """Connect to Vertex AI in ``project``/``region``; operations fail after ``timeout_seconds``."""
        self.project = project
        self.region = region
        self.api_endpoint = api_endpoint or default_api_endpoint(region)
        self.timeout_seconds = timeout_seconds
        self._polling = polling.DEFAULT_POLLING.with_delay(
            initial=poll_interval_seconds, maximum=max(poll_interval_seconds, poll_interval_seconds * 4), multiplier=1.5
        )
        models, model_channel = gapic_client(
            aiplatform_v1.ModelServiceClient, ModelServiceGrpcTransport, self.api_endpoint
        )
        endpoints, endpoint_channel = gapic_client(
            aiplatform_v1.EndpointServiceClient, EndpointServiceGrpcTransport, self.api_endpoint
        )
        self.models: aiplatform_v1.ModelServiceClient = models
        self.endpoints: aiplatform_v1.EndpointServiceClient = endpoints
        self._channels: list[grpc.Channel] = [c for c in (model_channel, endpoint_channel) if c is not None]

    @property
    def parent(self) -> str:
        """``projects/<project>/locations/<region>``: where models are uploaded."""
        return f"projects/{self.project}/locations/{self.region}"

    def close(self) -> None:
        """Close the channels this client opened."""
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> VertexClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- error mapping -------------------------------------------------------------------------

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except exceptions.NotFound as error:
            raise VertexNotFound(f"{what}: not found ({_one_line(str(error.message))})") from error
        except exceptions.GoogleAPICallError as error:
            raise VertexError(f"{what} failed with status {_status(error)}: {_one_line(str(error.message))}") from error

    def _wait(self, operation: Any, what: str) -> Any:
        """The result of long-running ``operation``; failure and timeout as one-line errors."""
        try:
            return operation.result(timeout=self.timeout_seconds, polling=self._polling)
        except concurrent.futures.TimeoutError as error:
            raise VertexTimeout(
                f"{what}: operation {operation.operation.name} did not finish within {self.timeout_seconds:g} s; "
                "check it in the Vertex AI console, or raise the deploy timeout"
            ) from error
        except exceptions.GoogleAPICallError as error:
            raise VertexOperationFailed(
                f"{what}: operation {operation.operation.name} failed with status "
                f"{_status(error)}: {_one_line(str(error.message))}"
            ) from error

    # --- models --------------------------------------------------------------------------------

    def upload_model(self, spec: ModelSpec) -> str:
        """Upload ``spec`` as a new model and wait for it; returns the model's resource name."""
        container = spec.container
        model = aiplatform_v1.Model(
            display_name=spec.display_name,
            artifact_uri=spec.artifact_uri,
            labels=dict(spec.labels),
            container_spec=aiplatform_v1.ModelContainerSpec(
                image_uri=container.image_uri,
                ports=[aiplatform_v1.Port(container_port=port) for port in container.ports],
                health_route=container.health_route,
                predict_route=container.predict_route,
                env=[aiplatform_v1.EnvVar(name=name, value=value) for name, value in sorted(container.env.items())],
            ),
        )
        if spec.kms_key_name:
            model.encryption_spec = aiplatform_v1.EncryptionSpec(kms_key_name=spec.kms_key_name)
        what = f"uploading model {spec.display_name!r} to {self.parent}"
        with self._call(what):
            operation = self.models.upload_model(parent=self.parent, model=model, timeout=RPC_TIMEOUT_SECONDS)
        response: aiplatform_v1.UploadModelResponse = self._wait(operation, what)
        return str(response.model)

    def get_model(self, name: str) -> aiplatform_v1.Model:
        """The model ``name`` (``projects/…/models/<id>``)."""
        with self._call(f"getting model {name}"):
            return self.models.get_model(name=name, timeout=RPC_TIMEOUT_SECONDS)

    def find_model(self, name: str) -> ModelSpec | None:
        """What model ``name`` was uploaded with; ``None`` if it no longer exists."""
        try:
            return ModelSpec.of_model(self.get_model(name))
        except VertexNotFound:
            return None

    def set_model_labels(self, name: str, labels: Mapping[str, str]) -> None:
        """Replace model ``name``'s labels (labels are metadata: no new upload)."""
        with self._call(f"relabelling model {name}"):
            self.models.update_model(
                model=aiplatform_v1.Model(name=name, labels=dict(labels)),
                update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
                timeout=RPC_TIMEOUT_SECONDS,
            )

    def delete_model(self, name: str) -> bool:
        """Delete model ``name`` and wait; ``False`` if it was already gone."""
        what = f"deleting model {name}"
        try:
            with self._call(what):
                operation = self.models.delete_model(name=name, timeout=RPC_TIMEOUT_SECONDS)
            self._wait(operation, what)
        except VertexNotFound:
            return False
        return True

    # --- endpoints -----------------------------------------------------------------------------

    def get_endpoint(self, name: str) -> EndpointInfo:
        """Endpoint ``name``'s deployed models and traffic split."""
        with self._call(f"getting endpoint {name}"):
            endpoint = self.endpoints.get_endpoint(name=name, timeout=RPC_TIMEOUT_SECONDS)
        return EndpointInfo(
            name=endpoint.name,
            deployed_models=tuple(
                DeployedModelInfo(id=model.id, model=model.model, deploy=DeploySpec.of_deployed_model(model))
                for model in endpoint.deployed_models
            ),
            traffic_split={key: int(value) for key, value in endpoint.traffic_split.items()},
        )

    def deploy_model(self, endpoint: str, model: str, spec: DeploySpec, traffic_split: Mapping[str, int]) -> str:
        """Deploy ``model`` on ``endpoint`` and wait; returns the deployed model id.

        ``traffic_split`` is the endpoint's whole split once the model is up, the new model under
        :data:`NEW_DEPLOYED_MODEL`: shifting traffic is part of the deployment, so it moves only
        once the new replicas serve.
        """
        deployed = aiplatform_v1.DeployedModel(
            model=model, display_name=spec.display_name, dedicated_resources=spec.dedicated_resources()
        )
        if spec.service_account:
            deployed.service_account = spec.service_account
        what = f"deploying {model} to {endpoint}"
        with self._call(what):
            operation = self.endpoints.deploy_model(
                endpoint=endpoint,
                deployed_model=deployed,
                traffic_split=dict(traffic_split),
                timeout=RPC_TIMEOUT_SECONDS,
            )
        response: aiplatform_v1.DeployModelResponse = self._wait(operation, what)
        return str(response.deployed_model.id)

    def mutate_deployed_model(self, endpoint: str, deployed_model_id: str, spec: DeploySpec) -> None:
        """Change a deployed model's replica bounds and autoscaling targets in place (no redeploy)."""
        deployed = aiplatform_v1.DeployedModel(id=deployed_model_id, dedicated_resources=spec.dedicated_resources())
        mask = field_mask_pb2.FieldMask(
            paths=[
                "dedicated_resources.min_replica_count",
                "dedicated_resources.max_replica_count",
                "dedicated_resources.autoscaling_metric_specs",
            ]
        )
        what = f"updating deployed model {deployed_model_id} on {endpoint}"
        with self._call(what):
            operation = self.endpoints.mutate_deployed_model(
                endpoint=endpoint, deployed_model=deployed, update_mask=mask, timeout=RPC_TIMEOUT_SECONDS
            )
        self._wait(operation, what)

    def undeploy_model(self, endpoint: str, deployed_model_id: str, traffic_split: Mapping[str, int]) -> None:
        """Undeploy ``deployed_model_id`` and wait; ``traffic_split`` is the split left behind (may be empty)."""
        what = f"undeploying {deployed_model_id} from {endpoint}"
        with self._call(what):
            operation = self.endpoints.undeploy_model(
                endpoint=endpoint,
                deployed_model_id=deployed_model_id,
                traffic_split=dict(traffic_split),
                timeout=RPC_TIMEOUT_SECONDS,
            )
        self._wait(operation, what)

    def set_traffic_split(self, endpoint: str, traffic_split: Mapping[str, int]) -> None:
        """Replace ``endpoint``'s traffic split (deployed model id -> percent, summing to 100)."""
        with self._call(f"setting the traffic split of {endpoint}"):
            self.endpoints.update_endpoint(
                endpoint=aiplatform_v1.Endpoint(name=endpoint, traffic_split=dict(traffic_split)),
                update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
                timeout=RPC_TIMEOUT_SECONDS,
            )
