"""A small, real gRPC server that speaks the Vertex AI RPCs the model-deployment provider calls.

Vertex AI's model and endpoint services have no emulator, so this implements the few methods
the provider uses on the wire, with the request/response messages ``google-cloud-aiplatform``
ships (its proto-plus types (de)serialize the exact protobuf wire format): the real GAPIC clients
talk to it over a real channel. State lives in memory; every call is recorded so tests can
assert on the order of RPCs.

Implemented: ``ModelService/{UploadModel,GetModel,UpdateModel,DeleteModel}``,
``EndpointService/{GetEndpoint,DeployModel,UndeployModel,MutateDeployedModel,UpdateEndpoint}``
``PredictionService/Predict`` (answers the canned :attr:`FakeVertex.predictions`),
``JobService/{CreateBatchPredictionJob,GetBatchPredictionJob}`` (a job is ``JOB_STATE_PENDING`` when
created; :attr:`FakeVertex.run_batch_job` plays the engine on its first Get)
and ``google.longrunning.Operations/GetOperation``. Operations finish (and only then change
state) after ``polls_until_done`` GetOperation calls. Failure knobs: :attr:`FakeVertex.upload_error`
(the upload operation ends with that status), :attr:`FakeVertex.deploy_never_completes`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import aiplatform_v1
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, json_format, struct_pb2
from google.rpc import status_pb2

from tests.infra.grpc_loopback import serve_on_loopback

PROJECT = "demo-project"
REGION = "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{REGION}"


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Operation:
    name: str
    polls_left: int
    finish: Callable[[], Any] | None
    """Applies the operation's effect and returns its response message (proto-plus), or ``None``."""
    error: status_pb2.Status | None = None
    never: bool = False
    done: bool = False
    response: any_pb2.Any | None = None


@dataclass
class FakeVertex:
    """In-memory Vertex AI state behind a loopback gRPC server (start with :meth:`start`)."""

    polls_until_done: int = 1
    upload_error: tuple[int, str] | None = None
    """``(google.rpc.Code, message)``: the UploadModel operation ends with this error."""
    deploy_never_completes: bool = False
    predictions: list[Any] | None = None
    """What ``Predict`` answers (JSON values, one per instance); ``None``: it fails with UNIMPLEMENTED."""
    predict_error: tuple[grpc.StatusCode, str] | None = None
    """``Predict`` fails with this status instead of answering."""
    run_batch_job: Callable[[aiplatform_v1.BatchPredictionJob], None] | None = None
    """What the batch engine does with a job on its first ``GetBatchPredictionJob``: write its output,
    set its ``state``, ``error``, ``output_info`` (``None``: the job stays pending)."""
    batch_jobs: dict[str, aiplatform_v1.BatchPredictionJob] = field(default_factory=dict)
    models: dict[str, aiplatform_v1.Model] = field(default_factory=dict)
    endpoints: dict[str, aiplatform_v1.Endpoint] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    """Every RPC as ``Service.Method`` (GetOperation polls excluded), in arrival order."""
    requests: list[tuple[str, Any]] = field(default_factory=list)
    operations: dict[str, _Operation] = field(default_factory=dict)
    address: str = ""
    _server: grpc.Server | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeVertex:
        """Serve on ``127.0.0.1:<free port>``; :attr:`address` is where."""
        self._server, self.address = serve_on_loopback(self._handlers(), threads=8)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop(grace=None)

    def add_endpoint(self, endpoint_id: str = "1234") -> str:
        """An empty endpoint; returns its resource name."""
        name = f"{PARENT}/endpoints/{endpoint_id}"
        self.endpoints[name] = aiplatform_v1.Endpoint(name=name, display_name=endpoint_id)
        return name

    def methods(self, *names: str) -> list[str]:
        """The recorded calls whose method is one of ``names`` (all calls when none given)."""
        return [call for call in self.calls if not names or call.split("/")[-1] in names]

    # --- plumbing --------------------------------------------------------------------------

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        a = aiplatform_v1
        op = operations_pb2.Operation.SerializeToString
        model_service = {
            "UploadModel": (self._upload_model, a.UploadModelRequest.deserialize, op),
            "GetModel": (self._get_model, a.GetModelRequest.deserialize, a.Model.serialize),
            "UpdateModel": (self._update_model, a.UpdateModelRequest.deserialize, a.Model.serialize),
            "DeleteModel": (self._delete_model, a.DeleteModelRequest.deserialize, op),
        }
        endpoint_service = {
            "GetEndpoint": (self._get_endpoint, a.GetEndpointRequest.deserialize, a.Endpoint.serialize),
            "DeployModel": (self._deploy_model, a.DeployModelRequest.deserialize, op),
            "UndeployModel": (self._undeploy_model, a.UndeployModelRequest.deserialize, op),
            "MutateDeployedModel": (self._mutate_deployed_model, a.MutateDeployedModelRequest.deserialize, op),
            "UpdateEndpoint": (self._update_endpoint, a.UpdateEndpointRequest.deserialize, a.Endpoint.serialize),
        }
        operations = {
            "GetOperation": (
                self._get_operation,
                operations_pb2.GetOperationRequest.FromString,
                op,
            ),
        }
        prediction_service = {
            "Predict": (self._predict, a.PredictRequest.deserialize, a.PredictResponse.serialize),
        }
        job_service = {
            "CreateBatchPredictionJob": (
                self._create_batch_job,
                a.CreateBatchPredictionJobRequest.deserialize,
                a.BatchPredictionJob.serialize,
            ),
            "GetBatchPredictionJob": (
                self._get_batch_job,
                a.GetBatchPredictionJobRequest.deserialize,
                a.BatchPredictionJob.serialize,
            ),
        }
        services = {
            "google.cloud.aiplatform.v1.JobService": job_service,
            "google.cloud.aiplatform.v1.ModelService": model_service,
            "google.cloud.aiplatform.v1.EndpointService": endpoint_service,
            "google.cloud.aiplatform.v1.PredictionService": prediction_service,
            "google.longrunning.Operations": operations,
        }
        return tuple(
            grpc.method_handlers_generic_handler(
                service,
                {
                    method: grpc.unary_unary_rpc_method_handler(
                        self._wrap(f"{service.rsplit('.', 1)[-1]}/{method}", handler),
                        request_deserializer=deserialize,
                        response_serializer=serialize,
                    )
                    for method, (handler, deserialize, serialize) in methods.items()
                },
            )
            for service, methods in services.items()
        )

    def _wrap(self, call: str, handler: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def method(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                if not call.endswith("GetOperation"):
                    self.calls.append(call)
                    self.requests.append((call, request))
                try:
                    return handler(request)
                except _Abort as abort:
                    context.abort(abort.code, abort.message)

        return method

    def _operation(self, finish: Callable[[], Any] | None, *, error: tuple[int, str] | None = None) -> Any:
        name = f"{PARENT}/operations/{next(self._ids)}"
        operation = _Operation(
            name=name,
            polls_left=self.polls_until_done,
            finish=finish,
            error=status_pb2.Status(code=error[0], message=error[1]) if error else None,
        )
        self.operations[name] = operation
        return self._advance(operation, poll=False)

    def _advance(self, operation: _Operation, *, poll: bool) -> operations_pb2.Operation:
        if poll and not operation.done and not operation.never:
            operation.polls_left -= 1
        if not operation.done and not operation.never and operation.polls_left <= 0:
            operation.done = True
            if operation.error is None and operation.finish is not None:
                result = operation.finish()
                if result is not None:
                    packed = any_pb2.Any()
                    packed.Pack(type(result).pb(result))
                    operation.response = packed
        message = operations_pb2.Operation(name=operation.name, done=operation.done)
        if operation.done:
            if operation.error is not None:
                message.error.CopyFrom(operation.error)
            elif operation.response is not None:
                message.response.CopyFrom(operation.response)
            else:
                message.response.Pack(empty_pb2.Empty())  # DeleteModel's response type
        return message

    def _get_operation(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        operation = self.operations.get(request.name)
        if operation is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"operation {request.name} not found")
        return self._advance(operation, poll=True)

    def _endpoint(self, name: str) -> aiplatform_v1.Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Endpoint {name} not found.")
        return endpoint

    def _model(self, name: str) -> aiplatform_v1.Model:
        model = self.models.get(name)
        if model is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Model {name} not found.")
        return model

    @staticmethod
    def _check_split(endpoint: aiplatform_v1.Endpoint, split: dict[str, int], extra: set[str]) -> None:
        known = {model.id for model in endpoint.deployed_models} | extra
        if split and sum(split.values()) != 100:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"traffic split {split} does not add up to 100")
        if set(split) - known:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"traffic split names unknown models {set(split) - known}")

    # --- ModelService ----------------------------------------------------------------------

    def _upload_model(self, request: aiplatform_v1.UploadModelRequest) -> operations_pb2.Operation:
        name = f"{request.parent}/models/{next(self._ids)}"

        def finish() -> aiplatform_v1.UploadModelResponse:
            model = aiplatform_v1.Model(request.model)
            model.name = name
            self.models[name] = model
            return aiplatform_v1.UploadModelResponse(model=name)

        return self._operation(finish, error=self.upload_error)

    def _get_model(self, request: aiplatform_v1.GetModelRequest) -> aiplatform_v1.Model:
        return self._model(request.name)

    def _update_model(self, request: aiplatform_v1.UpdateModelRequest) -> aiplatform_v1.Model:
        model = self._model(request.model.name)
        if "labels" in request.update_mask.paths:
            model.labels = dict(request.model.labels)
        return model

    def _delete_model(self, request: aiplatform_v1.DeleteModelRequest) -> operations_pb2.Operation:
        self._model(request.name)
        for endpoint in self.endpoints.values():
            if any(deployed.model == request.name for deployed in endpoint.deployed_models):
                raise _Abort(
                    grpc.StatusCode.FAILED_PRECONDITION, f"Model {request.name} is deployed on {endpoint.name}."
                )
        return self._operation(lambda: self.models.pop(request.name, None) and None)

    # --- EndpointService -------------------------------------------------------------------

    def _get_endpoint(self, request: aiplatform_v1.GetEndpointRequest) -> aiplatform_v1.Endpoint:
        return self._endpoint(request.name)

    def _deploy_model(self, request: aiplatform_v1.DeployModelRequest) -> operations_pb2.Operation:
        endpoint = self._endpoint(request.endpoint)
        self._model(request.deployed_model.model)
        split = dict(request.traffic_split)
        self._check_split(endpoint, split, {"0"})
        deployed_id = str(next(self._ids))

        def finish() -> aiplatform_v1.DeployModelResponse:
            deployed = aiplatform_v1.DeployedModel(request.deployed_model)
            deployed.id = deployed_id
            endpoint.deployed_models.append(deployed)
            if split:
                endpoint.traffic_split = {deployed_id if key == "0" else key: value for key, value in split.items()}
            elif len(endpoint.deployed_models) == 1:
                endpoint.traffic_split = {deployed_id: 100}
            return aiplatform_v1.DeployModelResponse(deployed_model=deployed)

        operation = self._operation(finish)
        if self.deploy_never_completes:
            self.operations[operation.name].never = True
        return operation

    def _undeploy_model(self, request: aiplatform_v1.UndeployModelRequest) -> operations_pb2.Operation:
        endpoint = self._endpoint(request.endpoint)
        if request.deployed_model_id not in {model.id for model in endpoint.deployed_models}:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"DeployedModel {request.deployed_model_id} not found.")
        split = dict(request.traffic_split)
        remaining = len(endpoint.deployed_models) - 1
        if remaining and not split and endpoint.traffic_split.get(request.deployed_model_id, 0):
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, "the deployed model still has traffic assigned")
        self._check_split(endpoint, split, set())
        if split.get(request.deployed_model_id):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "the split keeps traffic on the undeployed model")

        def finish() -> aiplatform_v1.UndeployModelResponse:
            kept = [model for model in endpoint.deployed_models if model.id != request.deployed_model_id]
            endpoint.deployed_models = kept
            if not kept:
                endpoint.traffic_split = {}
            elif split:
                endpoint.traffic_split = split
            else:
                endpoint.traffic_split = {
                    key: value for key, value in endpoint.traffic_split.items() if key != request.deployed_model_id
                }
            return aiplatform_v1.UndeployModelResponse()

        return self._operation(finish)

    def _mutate_deployed_model(self, request: aiplatform_v1.MutateDeployedModelRequest) -> operations_pb2.Operation:
        endpoint = self._endpoint(request.endpoint)
        target = next((m for m in endpoint.deployed_models if m.id == request.deployed_model.id), None)
        if target is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"DeployedModel {request.deployed_model.id} not found.")
        allowed = {
            "dedicated_resources.min_replica_count",
            "dedicated_resources.max_replica_count",
            "dedicated_resources.autoscaling_metric_specs",
        }
        if set(request.update_mask.paths) - allowed:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot mutate {set(request.update_mask.paths) - allowed}")
        wanted = request.deployed_model.dedicated_resources

        def finish() -> aiplatform_v1.MutateDeployedModelResponse:
            for deployed in endpoint.deployed_models:
                if deployed.id == target.id:
                    resources = deployed.dedicated_resources
                    resources.min_replica_count = wanted.min_replica_count
                    resources.max_replica_count = wanted.max_replica_count
                    resources.autoscaling_metric_specs = list(wanted.autoscaling_metric_specs)
                    deployed.dedicated_resources = resources
            return aiplatform_v1.MutateDeployedModelResponse()

        return self._operation(finish)

    def _update_endpoint(self, request: aiplatform_v1.UpdateEndpointRequest) -> aiplatform_v1.Endpoint:
        endpoint = self._endpoint(request.endpoint.name)
        if "traffic_split" in request.update_mask.paths:
            split = dict(request.endpoint.traffic_split)
            self._check_split(endpoint, split, set())
            endpoint.traffic_split = split
        return endpoint

    # --- PredictionService -----------------------------------------------------------------

    def _predict(self, request: aiplatform_v1.PredictRequest) -> aiplatform_v1.PredictResponse:
        endpoint = self._endpoint(request.endpoint)
        if self.predict_error is not None:
            raise _Abort(*self.predict_error)
        if not endpoint.deployed_models:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"Endpoint {endpoint.name} has no deployed model.")
        if self.predictions is None:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "the fake has no canned predictions (set .predictions)")
        # The deployed model with the largest traffic share answers (Vertex picks one by the split).
        deployed = max(endpoint.deployed_models, key=lambda model: endpoint.traffic_split.get(model.id, 0))
        values = [json_format.ParseDict(value, struct_pb2.Value()) for value in self.predictions]
        # Built as protobuf: proto-plus cannot marshal a list of Values into a repeated Value field.
        response = aiplatform_v1.PredictResponse.pb()(
            predictions=values, deployed_model_id=deployed.id, model=deployed.model
        )
        return aiplatform_v1.PredictResponse.wrap(response)

    # --- JobService ------------------------------------------------------------------------

    def _create_batch_job(
        self, request: aiplatform_v1.CreateBatchPredictionJobRequest
    ) -> aiplatform_v1.BatchPredictionJob:
        job = aiplatform_v1.BatchPredictionJob(request.batch_prediction_job)
        if job.model not in self.models:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Model {job.model} not found.")
        job.name = f"{request.parent}/batchPredictionJobs/{next(self._ids)}"
        job.state = aiplatform_v1.JobState.JOB_STATE_PENDING
        self.batch_jobs[job.name] = job
        return job

    def _get_batch_job(self, request: aiplatform_v1.GetBatchPredictionJobRequest) -> aiplatform_v1.BatchPredictionJob:
        job = self.batch_jobs.get(request.name)
        if job is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"BatchPredictionJob {request.name} not found.")
        if job.state == aiplatform_v1.JobState.JOB_STATE_PENDING and self.run_batch_job is not None:
            job.state = aiplatform_v1.JobState.JOB_STATE_RUNNING
            answer = aiplatform_v1.BatchPredictionJob(job)
            self.run_batch_job(job)  # the next Get sees what the engine did
            return answer
        return job
