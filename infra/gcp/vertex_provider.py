"""A Pulumi dynamic resource that uploads the serving model to Vertex AI and deploys it on an endpoint.

Neither Pulumi nor Terraform can upload a custom model or deploy it (hashicorp/terraform-provider-google
#15303, #25152), so :class:`VertexModelDeploymentProvider` does it with the Vertex AI API
(:mod:`infra.gcp.vertex_client`). Its diff is precise, because a needless re-upload or redeploy costs
minutes and a traffic blip:

==========================================  ===================================================
changed inputs                              what ``update`` does
==========================================  ===================================================
project, region, endpoint                   replace (the new deployment is made first)
image, artifact_uri, ports, routes, env,    upload a new model, deploy it with the traffic
display_name, kms_key_name                  shifted to it, undeploy the old one, delete the old model
machine/accelerator, service_account        deploy the *same* model again, shift, undeploy the old one
min/max replicas, autoscaling targets       MutateDeployedModel in place
traffic_percent                             UpdateEndpoint's traffic split
labels                                      UpdateModel's labels
api_endpoint, timeouts, import_id          nothing (how to reach Vertex; what to take over)
(the deployed model was undeployed)         deploy the model again (see refresh below)
==========================================  ===================================================

Traffic moves as part of DeployModel (the split names the new model), so it shifts only once the
new replicas serve; the old deployed model is undeployed after that. ``traffic_percent`` is this
deployment's share; the rest stays with models deployed on the endpoint outside this stack, in
their current proportions (with none, this deployment takes everything).

Refresh (``read``) reads the deployment back from Vertex: the model (``GetModel``) and the deployed
model and traffic split (``GetEndpoint``), in the same inputs the program declares, so drift (a
replica bound, a traffic share or labels changed in the console) shows up as a diff that ``update``
repairs. A deployed model undeployed outside Pulumi reads back with no ``deployed_model_id``, and
the next update deploys the model again; an endpoint that is gone, or a model neither deployed nor
uploaded any more, reads back as no resource, so refresh drops it from the state.

Import: Pulumi's engine cannot import a dynamic resource (its import ``Read`` carries no
properties, so the SDK cannot find the serialized provider: pulumi/pulumi#16175, open, and
``Read`` in ``pulumi/dynamic/__main__.py``). So an existing deployment is taken over with the
``import_id`` input instead (``projects/<p>/locations/<r>/endpoints/<e>/deployedModels/<id>``):
``create`` then reads it with the same code as refresh, changes nothing, and stores what it found;
the next ``pulumi up`` diffs that against the program and updates it like any other change.
``read(import_id, {})`` gives the same state, for an engine that one day passes it through.

Dynamic providers are serialized into the Pulumi engine's provider host, so the provider holds no
state: clients are built inside each method from the resource's own inputs.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

import pulumi
import pulumi.dynamic

from infra.gcp.vertex_client import (
    DEFAULT_AUTOSCALING_TARGET,
    NEW_DEPLOYED_MODEL,
    ContainerSpec,
    DeployedModelInfo,
    DeploySpec,
    EndpointInfo,
    ModelSpec,
    VertexClient,
    VertexError,
    VertexNotFound,
)

logger = logging.getLogger(__name__)

REPLACE_KEYS: Final = ("project", "region", "endpoint")
UPLOAD_KEYS: Final = (
    "display_name",
    "image",
    "artifact_uri",
    "ports",
    "health_route",
    "predict_route",
    "env",
    "kms_key_name",
)
REDEPLOY_KEYS: Final = ("machine_type", "accelerator_type", "accelerator_count", "service_account")
MUTATE_KEYS: Final = ("min_replicas", "max_replicas", "cpu_utilization_target", "accelerator_duty_cycle_target")
TRAFFIC_KEYS: Final = ("traffic_percent",)
LABEL_KEYS: Final = ("labels",)
#: How to reach Vertex, not what runs on it: a change is stored but touches nothing.
CONNECTION_KEYS: Final = ("api_endpoint", "timeout_seconds", "poll_interval_seconds")
#: What ``create`` takes over instead of uploading (see the module docstring): used once, then inert.
IMPORT_KEYS: Final = ("import_id",)
INPUT_KEYS: Final = (
    REPLACE_KEYS + UPLOAD_KEYS + REDEPLOY_KEYS + MUTATE_KEYS + TRAFFIC_KEYS + LABEL_KEYS + CONNECTION_KEYS + IMPORT_KEYS
)
_INT_KEYS: Final = (
    "accelerator_count",
    "min_replicas",
    "max_replicas",
    "cpu_utilization_target",
    "accelerator_duty_cycle_target",
    "traffic_percent",
)

# The update actions, from most to least disruptive; each subsumes those after it.
UPLOAD: Final = "upload"
DEPLOY: Final = "deploy"
REDEPLOY: Final = "redeploy"
MUTATE: Final = "mutate"
TRAFFIC: Final = "traffic"
LABELS: Final = "labels"


def _note(message: str) -> None:
    # pulumi.log reaches the CLI (or stderr outside an engine); logging reaches local callers and tests.
    logger.info(message)
    pulumi.log.info(message)


def _warn(message: str) -> None:
    logger.warning(message)
    pulumi.log.warn(message)


def normalize(props: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of ``props`` in comparable form (the engine hands numbers back as floats)."""
    values: dict[str, Any] = {key: props.get(key) for key in INPUT_KEYS}
    for key in _INT_KEYS:
        if values[key] is not None:
            values[key] = int(values[key])
    values["ports"] = [int(port) for port in values["ports"] or ()]
    values["env"] = dict(values["env"] or {})
    values["labels"] = dict(values["labels"] or {})
    for key in ("accelerator_type", "service_account", "kms_key_name", "api_endpoint", "import_id"):
        values[key] = values[key] or None
    return values


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The inputs that differ between ``olds`` and ``news``."""
    old, new = normalize(olds), normalize(news)
    return [key for key in INPUT_KEYS if old[key] != new[key]]


def is_deployed(olds: Mapping[str, Any]) -> bool:
    """Whether the state says the model is deployed (refresh clears ``deployed_model_id`` when it was undeployed)."""
    return bool(olds.get("deployed_model_id"))


def plan_update(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """What ``update`` will do for this change: ``[]``, ``["upload"]``, a (re)deployment, or in-place steps.

    A new deployment of the same model takes the new machine, replicas and traffic share with it;
    only the model's labels then need their own call.
    """
    changed = set(changed_keys(olds, news))
    if changed & set(UPLOAD_KEYS):
        return [UPLOAD]
    relabel = [LABELS] if changed & set(LABEL_KEYS) else []
    if not is_deployed(olds):
        return [DEPLOY, *relabel]
    if changed & set(REDEPLOY_KEYS):
        return [REDEPLOY, *relabel]
    steps = []
    if changed & set(MUTATE_KEYS):
        steps.append(MUTATE)
    if changed & set(TRAFFIC_KEYS):
        steps.append(TRAFFIC)
    if changed & set(LABEL_KEYS):
        steps.append(LABELS)
    return steps


def traffic_split(
    current: Mapping[str, int], *, ours: str, percent: int, retiring: Collection[str] = ()
) -> dict[str, int]:
    """The endpoint's split with ``ours`` at ``percent`` and ``retiring`` models at nothing.

    The remaining percentage goes to the other deployed models in their current proportions
    (largest remainder, so it sums to exactly 100); with none carrying traffic, ``ours`` takes 100.
    """
    others = {key: value for key, value in current.items() if key != ours and key not in retiring}
    other_total = sum(others.values())
    if other_total == 0:
        return {ours: 100, **dict.fromkeys(others, 0)}
    rest = 100 - percent
    exact = {key: value * rest / other_total for key, value in others.items()}
    shares = {key: int(value) for key, value in exact.items()}
    leftover = rest - sum(shares.values())
    for key in sorted(exact, key=lambda k: exact[k] - shares[k], reverse=True)[:leftover]:
        shares[key] += 1
    return {ours: percent, **shares} if percent else shares


@dataclass(frozen=True)
class _Settings:
    """A deployment's inputs, typed."""

    project: str
    region: str
    endpoint: str
    model: ModelSpec
    deploy: DeploySpec
    traffic_percent: int
    api_endpoint: str | None
    timeout_seconds: float
    poll_interval_seconds: float

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> _Settings:
        values = normalize(props)
        return cls(
            project=values["project"],
            region=values["region"],
            endpoint=values["endpoint"],
            model=ModelSpec(
                display_name=values["display_name"],
                artifact_uri=values["artifact_uri"],
                container=ContainerSpec(
                    image_uri=values["image"],
                    ports=tuple(values["ports"]),
                    health_route=values["health_route"],
                    predict_route=values["predict_route"],
                    env=values["env"],
                ),
                labels=values["labels"],
                kms_key_name=values["kms_key_name"],
            ),
            deploy=DeploySpec(
                display_name=values["display_name"],
                machine_type=values["machine_type"],
                min_replicas=values["min_replicas"],
                max_replicas=values["max_replicas"],
                accelerator_type=values["accelerator_type"],
                accelerator_count=values["accelerator_count"] or 0,
                cpu_utilization_target=values["cpu_utilization_target"],
                accelerator_duty_cycle_target=values["accelerator_duty_cycle_target"],
                service_account=values["service_account"],
            ),
            traffic_percent=values["traffic_percent"] if values["traffic_percent"] is not None else 100,
            api_endpoint=values["api_endpoint"],
            timeout_seconds=float(values["timeout_seconds"] or 1800),
            poll_interval_seconds=float(values["poll_interval_seconds"] or 10),
        )

    def client(self) -> VertexClient:
        return _client(self.project, self.region, self._connection())

    def _connection(self) -> dict[str, Any]:
        return {
            "api_endpoint": self.api_endpoint,
            "timeout_seconds": self.timeout_seconds,
            "poll_interval_seconds": self.poll_interval_seconds,
        }


def _client(project: str, region: str, values: Mapping[str, Any]) -> VertexClient:
    """A client for ``project``/``region`` with the connection settings in ``values`` (defaults where ``None``)."""
    return VertexClient(
        project,
        region,
        api_endpoint=values["api_endpoint"],
        timeout_seconds=float(values["timeout_seconds"] or 1800),
        poll_interval_seconds=float(values["poll_interval_seconds"] or 10),
    )


# --- reading a deployment back (refresh and import) ------------------------------------------------

#: ``DeployedModel.id`` is digits (google/cloud/aiplatform/v1/endpoint.proto: "valid characters are
#: /[0-9]/"; the 1-10 length it gives is for ids the caller chooses, so generated ones are not held
#: to it). A deployed model has no resource name of its own: an import id is its endpoint's name plus that id.
IMPORT_ID_RE: Final = re.compile(
    r"^(?P<endpoint>projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/endpoints/[^/]+)"
    r"/deployedModels/(?P<deployed_model_id>[0-9]+)$"
)
IMPORT_ID_FORMAT: Final = (
    "projects/<project>/locations/<region>/endpoints/<endpoint id>/deployedModels/<deployed model id>"
)


class ImportIdError(ValueError):
    """An import id that does not name a deployed model, or names one the stack does not declare."""


@dataclass(frozen=True)
class ImportId:
    """Where the deployed model to import is."""

    project: str
    region: str
    endpoint: str
    deployed_model_id: str

    @classmethod
    def parse(cls, value: str) -> ImportId:
        """``value`` split up; :class:`ImportIdError` naming the expected form if it is not one."""
        match = IMPORT_ID_RE.match(value)
        if match is None:
            raise ImportIdError(f"import id {value!r} is not a deployed model: expected {IMPORT_ID_FORMAT}")
        return cls(**match.groupdict())


#: The read of a deployment that no longer exists: an empty id (the engine's refresh then drops
#: the resource from the state: "If the ID is blank treat this as a delete", RefreshStep.Apply in
#: pulumi/pkg/resource/deploy/step.go), with a dict of outputs, which the SDK's ``Read`` indexes.
def _gone() -> pulumi.dynamic.ReadResult:
    return pulumi.dynamic.ReadResult(id_="", outs={})


def _live_target(live: int | None, prior: Mapping[str, Any], key: str) -> int | None:
    """An autoscaling target read back: Vertex's default where ``prior`` declares none counts as none.

    Without a ``prior`` value at all (an import), the target is reported as Vertex has it.
    """
    declared_none = key in prior and prior[key] is None
    return None if live == DEFAULT_AUTOSCALING_TARGET and declared_none else live


def live_props(
    prior: Mapping[str, Any], endpoint: EndpointInfo, deployed: DeployedModelInfo | None, model: str, spec: ModelSpec
) -> dict[str, Any]:
    """The deployment's inputs and outputs as Vertex has them.

    Where and how Vertex is reached (identity, connection settings) stays as ``prior`` says: the
    API may spell a resource name differently (a project number for the id), and what addressed
    the resource is what the program declares. With the model undeployed, its deploy settings
    stay as ``prior`` says, its traffic share is 0 and ``deployed_model_id`` is ``None``.
    """
    values = normalize(prior)
    container = spec.container
    values.update(
        display_name=spec.display_name,
        image=container.image_uri,
        artifact_uri=spec.artifact_uri,
        ports=list(container.ports),
        health_route=container.health_route,
        predict_route=container.predict_route,
        env=dict(container.env),
        labels=dict(spec.labels),
        kms_key_name=spec.kms_key_name,
        traffic_percent=0,
    )
    if deployed is not None:
        deploy = deployed.deploy
        if deploy is None:
            raise VertexError(
                f"deployed model {deployed.id} on {endpoint.name} does not run on dedicated resources "
                "(automatic or shared ones), which this provider does not manage"
            )
        values.update(
            machine_type=deploy.machine_type,
            accelerator_type=deploy.accelerator_type,
            accelerator_count=deploy.accelerator_count,
            min_replicas=deploy.min_replicas,
            max_replicas=deploy.max_replicas,
            cpu_utilization_target=_live_target(deploy.cpu_utilization_target, prior, "cpu_utilization_target"),
            accelerator_duty_cycle_target=_live_target(
                deploy.accelerator_duty_cycle_target, prior, "accelerator_duty_cycle_target"
            ),
            service_account=deploy.service_account,
            traffic_percent=endpoint.traffic_split.get(deployed.id, 0),
        )
    return {**values, "model_resource_name": model, "deployed_model_id": deployed.id if deployed else None}


def _read_result(id_: str, outs: dict[str, Any]) -> pulumi.dynamic.ReadResult:
    # Inputs too: the engine keeps them for later diffs and shows drift as input changes (ReadResult.inputs).
    return pulumi.dynamic.ReadResult(id_=id_, outs=outs, inputs={key: outs[key] for key in INPUT_KEYS})


def _warn_left_behind(client: VertexClient, model: str, why: str) -> None:
    if client.find_model(model) is not None:
        _warn(
            f"{why}; model {model} is left behind and no longer in the stack's state: "
            "delete it in the Vertex AI console (Model Registry) or with `gcloud ai models delete`"
        )


def refresh(id_: str, props: Mapping[str, Any]) -> pulumi.dynamic.ReadResult:
    """The deployment in the state (``props``) as Vertex has it now; no resource if it is gone."""
    values = normalize(props)
    endpoint_name = str(values["endpoint"])
    model = str(props["model_resource_name"])
    deployed_model_id = props.get("deployed_model_id") or None
    with _client(values["project"], values["region"], values) as client:
        try:
            endpoint = client.get_endpoint(endpoint_name)
        except VertexNotFound:
            _note(f"endpoint {endpoint_name} no longer exists: the deployment is gone")
            _warn_left_behind(client, model, f"endpoint {endpoint_name} no longer exists")
            return _gone()
        deployed = endpoint.deployed(str(deployed_model_id)) if deployed_model_id else None
        spec = client.find_model(model)
        if spec is None and deployed is None:
            _note(f"model {model} is neither deployed on {endpoint_name} nor uploaded any more: the deployment is gone")
            return _gone()
        if spec is None:
            # Vertex refuses to delete a deployed model (ModelService.DeleteModel, model_service.proto).
            raise VertexNotFound(f"model {model} cannot be read, yet {endpoint_name} serves it as {deployed_model_id}")
        if deployed is None:
            _warn(
                f"model {model} is no longer deployed on {endpoint_name} (deployed model {deployed_model_id} "
                "was undeployed outside Pulumi): the next update deploys it again"
            )
    return _read_result(id_, live_props(props, endpoint, deployed, model, spec))


def read_import(import_id: str, props: Mapping[str, Any]) -> pulumi.dynamic.ReadResult:
    """The deployed model ``import_id`` names, as inputs and outputs ``update`` can use; no resource if absent.

    ``props`` may give the connection settings (``api_endpoint``, timeouts); everything else is read.
    """
    where = ImportId.parse(import_id)
    prior = {**props, "project": where.project, "region": where.region, "endpoint": where.endpoint}
    prior["import_id"] = import_id
    values = normalize(prior)
    with _client(where.project, where.region, values) as client:
        try:
            endpoint = client.get_endpoint(where.endpoint)
        except VertexNotFound:
            return _gone()
        deployed = endpoint.deployed(where.deployed_model_id)
        if deployed is None:
            return _gone()
        spec = ModelSpec.of_model(client.get_model(deployed.model))
    return _read_result(import_id, live_props(prior, endpoint, deployed, deployed.model, spec))


def _deploy_with_traffic(
    client: VertexClient, settings: _Settings, model: str, *, retiring: Collection[str] = ()
) -> str:
    """Deploy ``model`` on the endpoint taking its share of traffic from ``retiring`` (which get none)."""
    endpoint = client.get_endpoint(settings.endpoint)
    split = traffic_split(
        endpoint.traffic_split, ours=NEW_DEPLOYED_MODEL, percent=settings.traffic_percent, retiring=retiring
    )
    return client.deploy_model(settings.endpoint, model, settings.deploy, split)


def _deploy_or_discard(client: VertexClient, settings: _Settings, model: str, *, retiring: Collection[str] = ()) -> str:
    """Deploy a freshly uploaded ``model``; if that fails, delete it so no unmanaged model is left behind."""
    try:
        return _deploy_with_traffic(client, settings, model, retiring=retiring)
    except VertexError as error:
        try:
            client.delete_model(model)
        except VertexError as cleanup:
            raise VertexError(
                f"{error}; the uploaded model {model} could not be deleted ({cleanup}): delete it by hand"
            ) from error
        _note(f"deleted model {model} after its deployment failed")
        raise


def _undeploy(client: VertexClient, endpoint_name: str, deployed_model_id: str) -> None:
    """Undeploy ``deployed_model_id``, handing its traffic to the models that stay; gone already is fine."""
    endpoint = client.get_endpoint(endpoint_name)
    if endpoint.deployed(deployed_model_id) is None:
        _note(f"deployed model {deployed_model_id} is no longer on {endpoint_name}; nothing to undeploy")
        return
    remaining = {key: value for key, value in endpoint.traffic_split.items() if key != deployed_model_id}
    total = sum(remaining.values())
    if total == 0:
        remaining = {}  # the last model with traffic goes: the endpoint is left with no split
    elif total != 100:
        remaining = traffic_split(remaining, ours="", percent=0)
    try:
        client.undeploy_model(endpoint_name, deployed_model_id, remaining)
    except VertexNotFound:
        _note(f"deployed model {deployed_model_id} was undeployed from {endpoint_name} meanwhile")


def _retire(client: VertexClient, endpoint: str, deployed_model_id: str | None, model: str | None) -> None:
    """After a rollout: undeploy the old deployed model (and delete its model); a failure only warns.

    The new model already serves at this point, and the stack's state must follow it: failing the
    update would leave Pulumi pointing at the old deployment.
    """
    try:
        if deployed_model_id is not None:
            _undeploy(client, endpoint, deployed_model_id)
        if model is not None and not client.delete_model(model):
            _note(f"model {model} was already deleted")
    except VertexError as error:
        _warn(f"the new model serves, but cleaning up the old one failed ({error}); undeploy/delete it by hand")


class VertexModelDeploymentProvider(pulumi.dynamic.ResourceProvider):
    """Uploads a model to Vertex AI and deploys it on an endpoint (see the module docstring for the rules)."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        """Upload the model, then deploy it with its share of the endpoint's traffic (or import ``import_id``)."""
        import_id = normalize(props)["import_id"]
        if import_id:
            return self._import(str(import_id), props)
        settings = _Settings.of(props)
        with settings.client() as client:
            model = client.upload_model(settings.model)
            _note(f"uploaded {model}")
            deployed_model_id = _deploy_or_discard(client, settings, model)
            _note(f"deployed {model} on {settings.endpoint} as {deployed_model_id}")
        outs = {**props, "model_resource_name": model, "deployed_model_id": deployed_model_id}
        return pulumi.dynamic.CreateResult(id_=uuid.uuid4().hex, outs=outs)

    def _import(self, import_id: str, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        """Take over the deployed model ``import_id`` unchanged; the next update makes it what ``props`` say."""
        where = ImportId.parse(import_id)
        declared = normalize(props)
        for key in REPLACE_KEYS:
            if getattr(where, key) != declared[key]:
                raise ImportIdError(
                    f"import id {import_id!r} is in {key} {getattr(where, key)!r}, but the stack declares "
                    f"{declared[key]!r}: import the deployment of the stack's own endpoint"
                )
        result = read_import(import_id, props)
        if not result.id or result.outs is None:
            raise VertexNotFound(f"importing {import_id}: no such deployed model on {where.endpoint}")
        _note(f"imported {import_id} (model {result.outs['model_resource_name']}); nothing was changed")
        return pulumi.dynamic.CreateResult(id_=import_id, outs=result.outs)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        """The deployment as Vertex has it now: refresh with the state in ``props``, else an import of ``id_``.

        Implements ``pulumi.dynamic.ResourceProvider.read`` (pulumi/dynamic/dynamic.py): an empty
        id means the resource is gone, and the returned inputs are used for later diffs.
        """
        if props.get("model_resource_name"):
            return refresh(id_, props)
        return read_import(id_, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """Which inputs changed, and whether any of them forces a new deployment elsewhere."""
        changed = changed_keys(olds, news)
        replaces = [key for key in changed if key in REPLACE_KEYS]
        stables = [key for key in INPUT_KEYS if key not in changed]
        # An undeployed model (found by refresh) is a change even when every input matches.
        return pulumi.dynamic.DiffResult(
            changes=bool(changed) or not is_deployed(olds),
            replaces=replaces,
            stables=stables,
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        """Apply a change with the least disruptive step that covers it (see :func:`plan_update`)."""
        settings = _Settings.of(news)
        model = str(olds["model_resource_name"])
        old_id = olds.get("deployed_model_id")
        deployed_model_id = str(old_id) if old_id else None
        steps = plan_update(olds, news)
        with settings.client() as client:
            if UPLOAD in steps:
                new_model = client.upload_model(settings.model)
                _note(f"uploaded {new_model} to replace {model}")
                retiring = [deployed_model_id] if deployed_model_id else []
                new_id = _deploy_or_discard(client, settings, new_model, retiring=retiring)
                _note(f"deployed {new_model} as {new_id}; retiring {deployed_model_id or 'no deployment'}")
                _retire(client, settings.endpoint, deployed_model_id, model)
                model, deployed_model_id = new_model, new_id
            elif DEPLOY in steps or deployed_model_id is None:
                deployed_model_id = _deploy_with_traffic(client, settings, model)
                _note(f"deployed {model} again as {deployed_model_id} (it had been undeployed)")
            elif REDEPLOY in steps:
                new_id = _deploy_with_traffic(client, settings, model, retiring=[deployed_model_id])
                _note(f"redeployed {model} as {new_id}; retiring {deployed_model_id}")
                _retire(client, settings.endpoint, deployed_model_id, None)
                deployed_model_id = new_id
            else:
                if MUTATE in steps:
                    client.mutate_deployed_model(settings.endpoint, deployed_model_id, settings.deploy)
                if TRAFFIC in steps:
                    current = client.get_endpoint(settings.endpoint).traffic_split
                    split = traffic_split(current, ours=deployed_model_id, percent=settings.traffic_percent)
                    client.set_traffic_split(settings.endpoint, split)
            # A new upload carries the new labels; any other step leaves the model's labels to this call.
            if LABELS in steps:
                client.set_model_labels(model, settings.model.labels)
        return pulumi.dynamic.UpdateResult(
            outs={**news, "model_resource_name": model, "deployed_model_id": deployed_model_id}
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Undeploy and delete the model; an endpoint or model that is gone already counts as deleted."""
        settings = _Settings.of(props)
        model = str(props["model_resource_name"])
        with settings.client() as client:
            try:
                if props.get("deployed_model_id"):
                    _undeploy(client, settings.endpoint, str(props["deployed_model_id"]))
            except VertexNotFound:
                _note(f"endpoint {settings.endpoint} no longer exists; nothing to undeploy")
            if not client.delete_model(model):
                _note(f"model {model} was already deleted")


@dataclass(frozen=True)
class VertexModelDeploymentArgs:
    """The inputs of a :class:`VertexModelDeployment` (see the module docstring for what each change does)."""

    project: pulumi.Input[str]
    region: str
    endpoint: pulumi.Input[str]
    """The endpoint's resource name, ``projects/<p>/locations/<r>/endpoints/<id>``."""
    display_name: str
    image: str
    artifact_uri: pulumi.Input[str]
    machine_type: str
    min_replicas: int
    max_replicas: int
    ports: list[int] = field(default_factory=lambda: [8080])
    health_route: str = "/health"
    predict_route: str = "/predict"
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: pulumi.Input[str] | None = None
    accelerator_type: str | None = None
    accelerator_count: int = 0
    cpu_utilization_target: int | None = None
    accelerator_duty_cycle_target: int | None = None
    service_account: pulumi.Input[str] | None = None
    traffic_percent: int = 100
    api_endpoint: str | None = None
    timeout_seconds: float = 1800.0
    poll_interval_seconds: float = 10.0
    import_id: str | None = None
    """Take over this existing deployed model instead of uploading one (see the module docstring)."""


class VertexModelDeployment(pulumi.dynamic.Resource):
    """A custom model uploaded to Vertex AI and deployed on an endpoint."""

    model_resource_name: pulumi.Output[str]
    """``projects/<p>/locations/<r>/models/<id>``: the uploaded model."""
    deployed_model_id: pulumi.Output[str]
    """The model's deployment on the endpoint (a new one after a rollout)."""

    def __init__(self, name: str, args: VertexModelDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Upload and deploy ``args``'s model."""
        props: dict[str, Any] = {item.name: getattr(args, item.name) for item in fields(args)}
        props["env"] = dict(args.env)
        props["labels"] = dict(args.labels)
        props["model_resource_name"] = None
        props["deployed_model_id"] = None
        super().__init__(VertexModelDeploymentProvider(), name, props, opts)
