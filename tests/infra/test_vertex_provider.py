"""The Vertex AI model-deployment provider against a local gRPC Vertex, and the VertexEndpoint component."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from google.cloud import aiplatform_v1
from google.rpc import code_pb2

from infra.config import ConfigError, load_stack_config
from infra.gcp.vertex import VertexEndpoint
from infra.gcp.vertex_client import (
    ACCELERATOR_DUTY_CYCLE_METRIC,
    CPU_UTILIZATION_METRIC,
    ContainerSpec,
    DeploySpec,
    ModelSpec,
    VertexClient,
    VertexOperationFailed,
    VertexTimeout,
)
from infra.gcp.vertex_provider import (
    INPUT_KEYS,
    ImportIdError,
    VertexModelDeploymentProvider,
    normalize,
    plan_update,
    traffic_split,
)
from tests.infra.fake_vertex import PARENT, PROJECT, REGION, FakeVertex
from tests.infra.mocks import RecordingMocks, RecordingMonitor, run_program

IMAGE = "europe-west4-docker.pkg.dev/acme/serve/serve@sha256:" + "a" * 64
NEW_IMAGE = "europe-west4-docker.pkg.dev/acme/serve/serve@sha256:" + "b" * 64


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    fake = FakeVertex().start()
    yield fake
    fake.stop()


@pytest.fixture
def provider() -> VertexModelDeploymentProvider:
    return VertexModelDeploymentProvider()


def props(vertex: FakeVertex, endpoint: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "project": PROJECT,
        "region": REGION,
        "endpoint": endpoint,
        "display_name": "digits-3d439c53e4a5",
        "image": IMAGE,
        "artifact_uri": "gs://acme-models/models/digits/3d43/",
        "ports": [8080],
        "health_route": "/health",
        "predict_route": "/predict",
        "env": {"MODEL_PACKAGE_DIGEST": "3d43"},
        "labels": {"environment": "dev"},
        "kms_key_name": None,
        "machine_type": "n1-standard-4",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
        "min_replicas": 1,
        "max_replicas": 3,
        "cpu_utilization_target": 60,
        "accelerator_duty_cycle_target": 70,
        "service_account": "vertex-serve@demo-project.iam.gserviceaccount.com",
        "traffic_percent": 100,
        "api_endpoint": vertex.address,
        "timeout_seconds": 5.0,
        "poll_interval_seconds": 0.01,
    }
    values.update(changes)
    return values


def deployed(vertex: FakeVertex, endpoint: str) -> list[aiplatform_v1.DeployedModel]:
    return list(vertex.endpoints[endpoint].deployed_models)


# --- create ------------------------------------------------------------------------------------


def test_create_uploads_the_container_and_deploys_it_with_all_traffic(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    result = provider.create(props(vertex, endpoint))
    outs = result.outs or {}

    assert vertex.methods() == [
        "ModelService/UploadModel",
        "EndpointService/GetEndpoint",
        "EndpointService/DeployModel",
    ]
    model = vertex.models[outs["model_resource_name"]]
    assert outs["model_resource_name"].startswith(f"{PARENT}/models/")
    spec = model.container_spec
    assert spec.image_uri == IMAGE
    assert [port.container_port for port in spec.ports] == [8080]
    assert (spec.health_route, spec.predict_route) == ("/health", "/predict")
    assert {env.name: env.value for env in spec.env} == {"MODEL_PACKAGE_DIGEST": "3d43"}
    assert model.artifact_uri == "gs://acme-models/models/digits/3d43/"
    assert dict(model.labels) == {"environment": "dev"}

    (on_endpoint,) = deployed(vertex, endpoint)
    assert on_endpoint.id == outs["deployed_model_id"]
    assert on_endpoint.model == outs["model_resource_name"]
    assert on_endpoint.service_account == "vertex-serve@demo-project.iam.gserviceaccount.com"
    resources = on_endpoint.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-standard-4"
    assert resources.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_T4
    assert resources.machine_spec.accelerator_count == 1
    assert (resources.min_replica_count, resources.max_replica_count) == (1, 3)
    assert {(m.metric_name, m.target) for m in resources.autoscaling_metric_specs} == {
        (CPU_UTILIZATION_METRIC, 60),
        (ACCELERATOR_DUTY_CYCLE_METRIC, 70),
    }
    assert dict(vertex.endpoints[endpoint].traffic_split) == {on_endpoint.id: 100}


def test_create_takes_only_its_share_next_to_models_deployed_outside_the_stack(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    other = provider.create(props(vertex, endpoint, display_name="other")).outs or {}
    outs = provider.create(props(vertex, endpoint, traffic_percent=25)).outs or {}
    assert dict(vertex.endpoints[endpoint].traffic_split) == {
        outs["deployed_model_id"]: 25,
        other["deployed_model_id"]: 75,
    }


# --- diff and update ---------------------------------------------------------------------------


def test_a_replica_only_change_is_an_in_place_update_without_upload(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    olds = provider.create(props(vertex, endpoint)).outs or {}
    # The engine hands numbers back as floats: that alone is no change.
    news = props(vertex, endpoint, min_replicas=2.0, max_replicas=5, accelerator_count=1.0)

    diff = provider.diff("id", olds, news)
    assert diff.changes is True
    assert diff.replaces == []
    assert plan_update(olds, news) == ["mutate"]

    vertex.calls.clear()
    outs = provider.update("id", olds, news).outs or {}
    assert vertex.methods() == ["EndpointService/MutateDeployedModel"]
    assert outs["model_resource_name"] == olds["model_resource_name"]
    assert outs["deployed_model_id"] == olds["deployed_model_id"]
    (on_endpoint,) = deployed(vertex, endpoint)
    assert (on_endpoint.dedicated_resources.min_replica_count, on_endpoint.dedicated_resources.max_replica_count) == (
        2,
        5,
    )


def test_no_change_and_connection_settings_do_not_touch_vertex(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    olds = provider.create(props(vertex, endpoint)).outs or {}
    assert provider.diff("id", olds, props(vertex, endpoint)).changes is False
    assert plan_update(olds, props(vertex, endpoint, timeout_seconds=60)) == []


def test_moving_to_another_endpoint_or_project_replaces(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    olds = props(vertex, endpoint)
    diff = provider.diff("id", olds, props(vertex, f"{PARENT}/endpoints/99", project="other", image=NEW_IMAGE))
    assert sorted(diff.replaces or []) == ["endpoint", "project"]
    assert diff.delete_before_replace is False


def test_labels_and_traffic_change_in_place(vertex: FakeVertex, provider: VertexModelDeploymentProvider) -> None:
    endpoint = vertex.add_endpoint()
    other = provider.create(props(vertex, endpoint, display_name="other")).outs or {}
    olds = provider.create(props(vertex, endpoint, traffic_percent=50)).outs or {}
    news = props(vertex, endpoint, traffic_percent=80, labels={"environment": "dev", "git-revision": "abc"})
    assert plan_update(olds, news) == ["traffic", "labels"]

    vertex.calls.clear()
    provider.update("id", olds, news)
    assert vertex.methods() == [
        "EndpointService/GetEndpoint",
        "EndpointService/UpdateEndpoint",
        "ModelService/UpdateModel",
    ]
    assert dict(vertex.endpoints[endpoint].traffic_split) == {
        olds["deployed_model_id"]: 80,
        other["deployed_model_id"]: 20,
    }
    assert dict(vertex.models[olds["model_resource_name"]].labels)["git-revision"] == "abc"


def test_a_machine_change_redeploys_the_same_model(vertex: FakeVertex, provider: VertexModelDeploymentProvider) -> None:
    endpoint = vertex.add_endpoint()
    olds = provider.create(props(vertex, endpoint)).outs or {}
    news = props(vertex, endpoint, machine_type="g2-standard-8", accelerator_type="NVIDIA_L4")
    assert plan_update(olds, news) == ["redeploy"]

    vertex.calls.clear()
    outs = provider.update("id", olds, news).outs or {}
    assert "ModelService/UploadModel" not in vertex.calls
    assert vertex.methods("DeployModel", "UndeployModel", "DeleteModel") == [
        "EndpointService/DeployModel",
        "EndpointService/UndeployModel",
    ]
    assert outs["model_resource_name"] == olds["model_resource_name"]
    (on_endpoint,) = deployed(vertex, endpoint)
    assert on_endpoint.id == outs["deployed_model_id"] != olds["deployed_model_id"]
    assert on_endpoint.dedicated_resources.machine_spec.machine_type == "g2-standard-8"


def test_a_new_image_rolls_out_a_new_model_then_retires_the_old_one(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    olds = provider.create(props(vertex, endpoint)).outs or {}
    news = props(vertex, endpoint, image=NEW_IMAGE)
    assert provider.diff("id", olds, news).replaces == []
    assert plan_update(olds, news) == ["upload"]

    vertex.calls.clear()
    vertex.requests.clear()
    outs = provider.update("id", olds, news).outs or {}

    assert vertex.methods("UploadModel", "DeployModel", "UndeployModel", "DeleteModel") == [
        "ModelService/UploadModel",
        "EndpointService/DeployModel",
        "EndpointService/UndeployModel",
        "ModelService/DeleteModel",
    ]
    requests = dict(vertex.requests)
    # Traffic moves to the new model as part of its deployment, before the old one is undeployed.
    assert dict(requests["EndpointService/DeployModel"].traffic_split) == {"0": 100}
    assert requests["EndpointService/UndeployModel"].deployed_model_id == olds["deployed_model_id"]
    assert requests["ModelService/DeleteModel"].name == olds["model_resource_name"]
    assert list(vertex.models) == [outs["model_resource_name"]]
    assert vertex.models[outs["model_resource_name"]].container_spec.image_uri == NEW_IMAGE
    (on_endpoint,) = deployed(vertex, endpoint)
    assert dict(vertex.endpoints[endpoint].traffic_split) == {on_endpoint.id: 100}
    assert on_endpoint.id == outs["deployed_model_id"]


def test_traffic_split_hands_the_rest_to_other_models_in_proportion() -> None:
    assert traffic_split({"a": 60, "b": 40}, ours="0", percent=10) == {"0": 10, "a": 54, "b": 36}
    assert traffic_split({"a": 1, "b": 1, "c": 1}, ours="0", percent=0) == {"a": 34, "b": 33, "c": 33}
    assert traffic_split({"old": 100}, ours="0", percent=30, retiring=["old"]) == {"0": 100}


# --- delete ------------------------------------------------------------------------------------


def test_delete_undeploys_then_deletes_the_model(vertex: FakeVertex, provider: VertexModelDeploymentProvider) -> None:
    endpoint = vertex.add_endpoint()
    outs = provider.create(props(vertex, endpoint)).outs or {}
    vertex.calls.clear()
    provider.delete("id", outs)
    assert vertex.methods("UndeployModel", "DeleteModel") == [
        "EndpointService/UndeployModel",
        "ModelService/DeleteModel",
    ]
    assert vertex.models == {}
    assert deployed(vertex, endpoint) == []


def test_delete_with_the_endpoint_gone_still_deletes_the_model_and_says_so(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = vertex.add_endpoint()
    outs = provider.create(props(vertex, endpoint)).outs or {}
    del vertex.endpoints[endpoint]  # deleted out of band, models and all
    caplog.set_level(logging.INFO, logger="infra.gcp.vertex_provider")

    provider.delete("id", outs)

    assert f"endpoint {endpoint} no longer exists; nothing to undeploy" in caplog.messages
    assert vertex.models == {}


# --- refresh (read) -----------------------------------------------------------------------------


def client_for(vertex: FakeVertex) -> VertexClient:
    """A client of the fake, as another tool (the console, gcloud) would change things outside Pulumi."""
    return VertexClient(PROJECT, REGION, api_endpoint=vertex.address, timeout_seconds=5, poll_interval_seconds=0.01)


def deploy_spec(**changes: Any) -> DeploySpec:
    values: dict[str, Any] = {
        "display_name": "digits-3d439c53e4a5",
        "machine_type": "n1-standard-4",
        "min_replicas": 1,
        "max_replicas": 3,
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
        "cpu_utilization_target": 60,
        "accelerator_duty_cycle_target": 70,
        "service_account": "vertex-serve@demo-project.iam.gserviceaccount.com",
    }
    values.update(changes)
    return DeploySpec(**values)


def test_refresh_of_an_untouched_deployment_reads_back_what_was_declared(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    declared = props(vertex, endpoint)
    outs = provider.create(declared).outs or {}

    result = provider.read("id", {**outs, "__provider": "serialized"})

    assert result.id == "id"
    assert result.inputs == {key: normalize(declared)[key] for key in INPUT_KEYS}
    assert (result.outs or {})["model_resource_name"] == outs["model_resource_name"]
    assert (result.outs or {})["deployed_model_id"] == outs["deployed_model_id"]
    assert provider.diff("id", result.outs or {}, declared).changes is False


def test_refresh_shows_replicas_and_traffic_changed_outside_pulumi_and_update_repairs_them(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    declared = props(vertex, endpoint)
    other = provider.create(props(vertex, endpoint, display_name="other")).outs or {}
    outs = provider.create(declared).outs or {}
    ours = outs["deployed_model_id"]
    with client_for(vertex) as console:
        console.mutate_deployed_model(endpoint, ours, deploy_spec(min_replicas=2, max_replicas=8))
        console.set_traffic_split(endpoint, {ours: 40, other["deployed_model_id"]: 60})

    refreshed = provider.read("id", outs).outs or {}
    assert (refreshed["min_replicas"], refreshed["max_replicas"], refreshed["traffic_percent"]) == (2, 8, 40)
    assert provider.diff("id", refreshed, declared).changes is True
    assert plan_update(refreshed, declared) == ["mutate", "traffic"]

    provider.update("id", refreshed, declared)
    (on_endpoint,) = [model for model in deployed(vertex, endpoint) if model.id == ours]
    resources = on_endpoint.dedicated_resources
    assert (resources.min_replica_count, resources.max_replica_count) == (1, 3)
    assert dict(vertex.endpoints[endpoint].traffic_split)[ours] == 100


def test_refresh_notices_an_undeployed_model_and_update_deploys_it_again(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = vertex.add_endpoint()
    declared = props(vertex, endpoint)
    outs = provider.create(declared).outs or {}
    with client_for(vertex) as console:
        console.undeploy_model(endpoint, outs["deployed_model_id"], {})
    caplog.set_level(logging.INFO, logger="infra.gcp.vertex_provider")

    result = provider.read("id", outs)

    assert result.id == "id"
    refreshed = result.outs or {}
    assert refreshed["deployed_model_id"] is None
    assert refreshed["model_resource_name"] == outs["model_resource_name"]
    assert (result.inputs or {})["traffic_percent"] == 0  # what the preview shows changing back to 100
    assert any("is no longer deployed" in message for message in caplog.messages)
    assert provider.diff("id", refreshed, declared).changes is True
    assert plan_update(refreshed, declared) == ["deploy"]

    vertex.calls.clear()
    updated = provider.update("id", refreshed, declared).outs or {}
    assert "ModelService/UploadModel" not in vertex.calls
    assert "EndpointService/UndeployModel" not in vertex.calls
    (on_endpoint,) = deployed(vertex, endpoint)
    assert on_endpoint.model == outs["model_resource_name"]
    assert on_endpoint.id == updated["deployed_model_id"]
    assert dict(vertex.endpoints[endpoint].traffic_split) == {on_endpoint.id: 100}
    assert provider.diff("id", provider.read("id", updated).outs or {}, declared).changes is False


def test_an_undeployed_model_with_a_new_image_uploads_and_deletes_the_old_model(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    outs = provider.create(props(vertex, endpoint)).outs or {}
    with client_for(vertex) as console:
        console.undeploy_model(endpoint, outs["deployed_model_id"], {})
    refreshed = provider.read("id", outs).outs or {}
    assert refreshed["deployed_model_id"] is None
    news = props(vertex, endpoint, image=NEW_IMAGE)
    assert plan_update(refreshed, news) == ["upload"]

    updated = provider.update("id", refreshed, news).outs or {}
    assert list(vertex.models) == [updated["model_resource_name"]]
    (on_endpoint,) = deployed(vertex, endpoint)
    assert on_endpoint.id == updated["deployed_model_id"]


def test_refresh_with_the_endpoint_deleted_returns_no_resource_and_names_the_model_left_behind(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = vertex.add_endpoint()
    outs = provider.create(props(vertex, endpoint)).outs or {}
    del vertex.endpoints[endpoint]  # deleted out of band, deployments and all
    caplog.set_level(logging.INFO, logger="infra.gcp.vertex_provider")

    result = provider.read("id", outs)

    # An empty id is how a read says "gone"; the SDK's Read adds __provider to outs, so it is a dict.
    assert result.id == ""
    assert result.outs == {}
    assert any(
        f"model {outs['model_resource_name']} is left behind" in message and "gcloud ai models delete" in message
        for message in caplog.messages
    )


def test_refresh_with_the_model_undeployed_and_deleted_returns_no_resource(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    outs = provider.create(props(vertex, endpoint)).outs or {}
    with client_for(vertex) as console:
        console.undeploy_model(endpoint, outs["deployed_model_id"], {})
        console.delete_model(outs["model_resource_name"])

    assert provider.read("id", outs).id == ""


def test_refresh_does_not_report_vertex_default_autoscaling_target_as_drift(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    declared = props(vertex, endpoint, cpu_utilization_target=None)
    outs = provider.create(declared).outs or {}
    with client_for(vertex) as console:  # the documented default written out, as Vertex may report it
        console.mutate_deployed_model(endpoint, outs["deployed_model_id"], deploy_spec(cpu_utilization_target=60))
        refreshed = provider.read("id", outs).outs or {}
        assert refreshed["cpu_utilization_target"] is None
        console.mutate_deployed_model(endpoint, outs["deployed_model_id"], deploy_spec(cpu_utilization_target=75))
    assert (provider.read("id", outs).outs or {})["cpu_utilization_target"] == 75


# --- import --------------------------------------------------------------------------------------


def deploy_outside_the_stack(vertex: FakeVertex, endpoint: str) -> tuple[str, str]:
    """A model uploaded and deployed by another tool; returns (model, import id)."""
    container = ContainerSpec(
        image_uri=IMAGE,
        ports=(8080,),
        health_route="/health",
        predict_route="/predict",
        env={"MODEL_PACKAGE_DIGEST": "3d43"},
    )
    spec = ModelSpec(
        display_name="digits-3d439c53e4a5",
        artifact_uri="gs://acme-models/models/digits/3d43/",
        container=container,
        labels={"environment": "dev"},
    )
    with client_for(vertex) as tool:
        model = tool.upload_model(spec)
        deployed_model_id = tool.deploy_model(endpoint, model, deploy_spec(min_replicas=2), {"0": 100})
    return model, f"{endpoint}/deployedModels/{deployed_model_id}"


def test_read_of_an_import_id_gives_inputs_and_outputs_update_can_use(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    model, import_id = deploy_outside_the_stack(vertex, endpoint)

    result = provider.read(import_id, {"api_endpoint": vertex.address, "poll_interval_seconds": 0.01})

    assert result.id == import_id
    imported = result.outs or {}
    assert imported["model_resource_name"] == model
    assert imported["deployed_model_id"] == import_id.rsplit("/", 1)[1]
    expected = normalize(props(vertex, endpoint, min_replicas=2, timeout_seconds=None, import_id=import_id))
    assert result.inputs == {key: expected[key] for key in INPUT_KEYS}

    vertex.calls.clear()
    news = props(vertex, endpoint, image=NEW_IMAGE)
    updated = provider.update(import_id, imported, news).outs or {}
    assert vertex.methods("UploadModel", "DeployModel", "UndeployModel", "DeleteModel") == [
        "ModelService/UploadModel",
        "EndpointService/DeployModel",
        "EndpointService/UndeployModel",
        "ModelService/DeleteModel",
    ]
    assert list(vertex.models) == [updated["model_resource_name"]]


def test_read_of_a_missing_import_returns_no_resource_and_a_bad_id_names_the_format(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    assert provider.read(f"{endpoint}/deployedModels/77", {"api_endpoint": vertex.address}).id == ""
    with pytest.raises(ImportIdError, match=r"expected projects/<project>/locations/<region>/endpoints/"):
        provider.read("77", {"api_endpoint": vertex.address})


def test_create_with_import_id_takes_over_the_deployment_unchanged_then_update_applies_the_stack(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    model, import_id = deploy_outside_the_stack(vertex, endpoint)
    declared = props(vertex, endpoint, import_id=import_id)  # the stack wants 1-3 replicas, not 2-3

    vertex.calls.clear()
    created = provider.create(declared)
    assert vertex.methods("UploadModel", "DeployModel", "MutateDeployedModel", "UndeployModel") == []
    assert created.id == import_id
    olds = created.outs or {}
    assert (olds["model_resource_name"], olds["min_replicas"]) == (model, 2)
    assert olds["api_endpoint"] == vertex.address

    # The next `pulumi up`: the engine diffs the stored outputs against the program.
    assert provider.diff(import_id, olds, declared).changes is True
    assert plan_update(olds, declared) == ["mutate"]
    provider.update(import_id, olds, declared)
    (on_endpoint,) = deployed(vertex, endpoint)
    assert on_endpoint.dedicated_resources.min_replica_count == 1
    assert on_endpoint.model == model


def test_create_refuses_an_import_id_on_another_endpoint(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    _, import_id = deploy_outside_the_stack(vertex, vertex.add_endpoint("5678"))
    vertex.calls.clear()
    with pytest.raises(ImportIdError, match=r"is in endpoint '.*/endpoints/5678', but the stack declares"):
        provider.create(props(vertex, endpoint, import_id=import_id))
    assert vertex.calls == []


def test_a_machine_change_with_new_labels_redeploys_and_relabels(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    olds = provider.create(props(vertex, endpoint)).outs or {}
    news = props(vertex, endpoint, machine_type="n1-standard-8", labels={"environment": "dev", "git-revision": "abc"})
    assert plan_update(olds, news) == ["redeploy", "labels"]

    provider.update("id", olds, news)
    assert dict(vertex.models[olds["model_resource_name"]].labels)["git-revision"] == "abc"


def test_delete_after_the_model_was_undeployed_deletes_the_model(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    outs = provider.create(props(vertex, endpoint)).outs or {}
    with client_for(vertex) as console:
        console.undeploy_model(endpoint, outs["deployed_model_id"], {})
    refreshed = provider.read("id", outs).outs or {}
    assert refreshed["deployed_model_id"] is None
    vertex.calls.clear()
    provider.delete("id", refreshed)
    assert "EndpointService/UndeployModel" not in vertex.calls
    assert vertex.models == {}


# --- failures ----------------------------------------------------------------------------------


def test_a_failed_upload_operation_is_one_clear_error(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    vertex.upload_error = (code_pb2.INVALID_ARGUMENT, "Container image not found in Artifact Registry.")
    with pytest.raises(VertexOperationFailed) as caught:
        provider.create(props(vertex, endpoint))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("uploading model 'digits-3d439c53e4a5' to projects/demo-project/locations/europe-west4")
    assert "failed with status INVALID_ARGUMENT: Container image not found in Artifact Registry." in message
    assert "EndpointService/DeployModel" not in vertex.calls


def test_a_deploy_timeout_is_clear_and_deletes_the_uploaded_model(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    vertex.deploy_never_completes = True
    with pytest.raises(VertexTimeout, match=r"did not finish within 0\.3 s; .*raise the deploy timeout"):
        provider.create(props(vertex, endpoint, timeout_seconds=0.3))
    assert vertex.methods()[-1] == "ModelService/DeleteModel"
    assert vertex.models == {}


def test_a_failed_rollout_keeps_the_old_deployment_and_drops_the_new_model(
    vertex: FakeVertex, provider: VertexModelDeploymentProvider
) -> None:
    endpoint = vertex.add_endpoint()
    olds = provider.create(props(vertex, endpoint)).outs or {}
    vertex.deploy_never_completes = True
    with pytest.raises(VertexTimeout):
        provider.update("id", olds, props(vertex, endpoint, image=NEW_IMAGE, timeout_seconds=0.3))
    assert list(vertex.models) == [olds["model_resource_name"]]
    assert [model.id for model in deployed(vertex, endpoint)] == [olds["deployed_model_id"]]
    assert "EndpointService/UndeployModel" not in vertex.calls


# --- the component under Pulumi's mocks --------------------------------------------------------

STACK_VALUES: dict[str, Any] = {
    "model-deploy:environment": "dev",
    "model-deploy:cloud": "gcp",
    "model-deploy:gitRevision": "0000000",
    "model-deploy:package": {
        "name": "digits",
        "version": "1.0.0",
        "uri": "gs://acme-ml-dev-models/models/digits/" + "3d" * 32 + "/",
        "digest": "3d" * 32,
        "image": "europe-west4-docker.pkg.dev/acme-ml-dev/model-serve/serve@sha256:" + "4f" * 32,
    },
    "model-deploy:gcp": {
        "project": "acme-ml-dev",
        "region": "europe-west4",
        "target": "vertex",
        "store": {
            "bucketName": "acme-ml-dev-models",
            "kmsKeyName": "projects/acme-ml-dev/locations/europe-west4/keyRings/ml/cryptoKeys/models",
            "repository": {"name": "model-serve"},
        },
        "vertex": {
            "endpointName": "digits-dev",
            "machineType": "n1-standard-4",
            "acceleratorType": "NVIDIA_TESLA_T4",
            "acceleratorCount": 1,
            "minReplicas": 1,
            "maxReplicas": 4,
            "cpuUtilizationTarget": 65,
            "acceleratorDutyCycleTarget": 70,
            "deployTimeoutSeconds": 1200,
        },
    },
}


class _GcpMocks(RecordingMocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == "gcp:vertex/aiEndpoint:AiEndpoint":
            state["name"] = "4242424242"
        return resource_id, state


def test_vertex_endpoint_declares_the_endpoint_and_the_deployment() -> None:
    config = load_stack_config(STACK_VALUES, stack="gcp-dev")
    component: list[VertexEndpoint] = []
    outputs: dict[str, Any] = {}

    def program() -> None:
        endpoint = VertexEndpoint(
            "digits",
            config,
            bucket_name="acme-ml-dev-models",
            service_account_email="vertex-serve@acme-ml-dev.iam.gserviceaccount.com",
        )
        component.append(endpoint)
        pulumi.export("predict_url", endpoint.predict_url)
        pulumi.export("endpoint_resource_name", endpoint.endpoint_resource_name)

    result = run_program(
        {}, stack="gcp-dev", program=program, monitor=RecordingMonitor(_GcpMocks(region="europe-west4"))
    )
    outputs = result.outputs

    ai_endpoint = result.one("gcp:vertex/aiEndpoint:AiEndpoint")
    assert ai_endpoint.inputs["location"] == "europe-west4"
    assert ai_endpoint.inputs["project"] == "acme-ml-dev"
    assert ai_endpoint.inputs["displayName"] == "digits-dev"
    assert ai_endpoint.inputs["labels"] == config.resource_labels
    assert ai_endpoint.inputs["labels"]["environment"] == "dev"
    assert ai_endpoint.inputs["encryptionSpec"] == {
        "kmsKeyName": "projects/acme-ml-dev/locations/europe-west4/keyRings/ml/cryptoKeys/models"
    }
    assert "trafficSplit" not in ai_endpoint.inputs  # owned by the deployment resource

    deployment = result.one("pulumi-python:dynamic:Resource")
    inputs = deployment.inputs
    assert deployment.parent == result.one("model-deploy:gcp:VertexEndpoint").urn
    assert inputs["endpoint"] == "projects/acme-ml-dev/locations/europe-west4/endpoints/4242424242"
    assert inputs["image"] == STACK_VALUES["model-deploy:package"]["image"]
    assert inputs["artifact_uri"] == "gs://acme-ml-dev-models/models/digits/" + "3d" * 32 + "/"
    assert inputs["ports"] == [8080]
    assert (inputs["health_route"], inputs["predict_route"]) == ("/health", "/predict")
    assert inputs["env"] == {"MODEL_PACKAGE_DIGEST": "3d" * 32}
    assert inputs["service_account"] == "vertex-serve@acme-ml-dev.iam.gserviceaccount.com"
    assert (inputs["machine_type"], inputs["accelerator_type"], inputs["accelerator_count"]) == (
        "n1-standard-4",
        "NVIDIA_TESLA_T4",
        1,
    )
    assert (inputs["min_replicas"], inputs["max_replicas"]) == (1, 4)
    assert (inputs["cpu_utilization_target"], inputs["accelerator_duty_cycle_target"]) == (65, 70)
    assert inputs["traffic_percent"] == 100
    assert inputs["timeout_seconds"] == 1200
    assert inputs["kms_key_name"] == "projects/acme-ml-dev/locations/europe-west4/keyRings/ml/cryptoKeys/models"
    assert inputs["labels"] == config.resource_labels
    assert inputs.get("api_endpoint") is None  # the regional endpoint
    assert outputs["predict_url"] == (
        "https://europe-west4-aiplatform.googleapis.com/v1/"
        "projects/acme-ml-dev/locations/europe-west4/endpoints/4242424242:predict"
    )
    assert component


def test_vertex_import_from_imports_the_endpoint_and_hands_the_deployment_its_import_id() -> None:
    values = copy.deepcopy(STACK_VALUES)
    values["model-deploy:gcp"]["vertex"]["importFrom"] = {"endpointId": "4242424242", "deployedModelId": "55"}
    config = load_stack_config(values, stack="gcp-dev")

    def program() -> None:
        VertexEndpoint(
            "digits",
            config,
            bucket_name="acme-ml-dev-models",
            service_account_email="vertex-serve@acme-ml-dev.iam.gserviceaccount.com",
        )

    result = run_program(
        {}, stack="gcp-dev", program=program, monitor=RecordingMonitor(_GcpMocks(region="europe-west4"))
    )
    endpoint = "projects/acme-ml-dev/locations/europe-west4/endpoints/4242424242"
    assert result.one("gcp:vertex/aiEndpoint:AiEndpoint").import_id == endpoint
    deployment = result.one("pulumi-python:dynamic:Resource")
    assert deployment.import_id == ""  # the engine cannot import it (pulumi/pulumi#16175): create does
    assert deployment.inputs["import_id"] == f"{endpoint}/deployedModels/55"
    assert deployment.inputs["endpoint"] == endpoint  # what create checks the import id against


def test_vertex_import_from_refuses_an_id_that_is_not_digits() -> None:
    values = copy.deepcopy(STACK_VALUES)
    values["model-deploy:gcp"]["vertex"]["importFrom"] = {"endpointId": "digits-dev", "deployedModelId": "55"}
    with pytest.raises(ConfigError, match=r"vertex\.importFrom\.endpointId: .*is not a Vertex AI id"):
        load_stack_config(values, stack="gcp-dev")
