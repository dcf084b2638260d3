"""``model-deploy-verify-gcp``: Cloud Run against a real ``model-serve``, Vertex AI against the fake gRPC server.

The Cloud Run service is the serving container's entrypoint started with the environment the
stack gives it (``PORT``, ``K_SERVICE``, the ``AIP_*`` routes) on a real exported package, which
is also published to a ``file://`` store so the command pulls and digest-checks it as it would
from the bucket. The Vertex AI endpoint is :class:`tests.infra.fake_vertex.FakeVertex`, spoken to
by the real GAPIC clients over a real channel, answering ``Predict`` with canned predictions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.cloud import aiplatform_v1

from inference.codecs import encode_response
from infra.verify_common import UsageError
from infra.verify_gcp import main, target_from
from model_package.example import load_arrays
from model_package.manifest import Manifest, read_manifest
from model_package.publish import push
from tests.inference.server_fixtures import ServerProcess, free_port, start_server
from tests.infra.fake_vertex import PARENT, FakeVertex


@dataclass(frozen=True)
class Published:
    """A real exported package, and where it was pushed."""

    path: Path
    manifest: Manifest
    uri: str
    digest: str


def _export(root: Path, name: str, *, perturb: bool) -> Path:
    import torch

    from model_package.export import export_model
    from tests.model_package.torch_models import make_mlp, mlp_inputs

    model = make_mlp()
    if perturb:  # another model with the same signature: it answers, but not with this package's outputs
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.25)
    path = root / name
    export_model(model, mlp_inputs(3), path, name=name, version="1.0.0")
    return path


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("verify-gcp")
    store = f"file://{root / 'store'}"
    published = {}
    for name, perturb in (("mlp", False), ("mlp-other", True)):
        path = _export(root, name, perturb=perturb)
        pushed = push(path, store)
        published[name] = Published(path, read_manifest(path), pushed.uri, pushed.digest)
    return published


def _serve(package: Path, tmp_path: Path) -> ServerProcess:
    port = free_port()
    return start_server(
        tmp_path,
        args=["--model-dir", str(package)],
        env={
            "PORT": str(port),
            "K_SERVICE": "mlp",
            "AIP_HEALTH_ROUTE": "/health",
            "AIP_PREDICT_ROUTE": "/predict",
        },
        port=port,
        health_path="/health",
    )


def _stop(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(10)


@pytest.fixture(scope="module")
def service(packages: dict[str, Published], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _serve(packages["mlp"].path, tmp_path_factory.mktemp("serve"))
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def other_service(packages: dict[str, Published], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _serve(packages["mlp-other"].path, tmp_path_factory.mktemp("serve-other"))
    yield server
    _stop(server)


def cloud_run_outputs(url: str, package: Published, **changes: Any) -> dict[str, Any]:
    """What ``pulumi stack output --json`` prints for a Cloud Run stack."""
    outputs = {
        "target": "cloudrun",
        "project": "demo-project",
        "region": "europe-west4",
        "serviceName": "mlp",
        "serviceUrl": url,
        "packageUri": package.uri,
        "packageDigest": package.digest,
    }
    outputs.update(changes)
    return outputs


def run(outputs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["--stack-outputs", str(path), *flags])
    out, err = capsys.readouterr()
    return code, out + err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- Cloud Run ----------------------------------------------------------------------------------


def test_cloud_run_service_serving_the_package_passes(
    service: ServerProcess, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(cloud_run_outputs(service.url + "/", packages["mlp"]), tmp_path, capsys, "--no-auth")
    assert code == 0, text
    line = one_line(text)
    assert line.startswith(f"OK: Cloud Run service {service.url} is healthy (/health 200), serving mlp@1.0.0")
    assert "smoke test passed (3 rows" in line


def test_cloud_run_flags_work_without_outputs(
    service: ServerProcess, packages: dict[str, Published], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--service-url", service.url, "--package-uri", packages["mlp"].uri, "--no-auth"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("OK: Cloud Run service")


def test_cloud_run_service_serving_another_package_fails(
    other_service: ServerProcess, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(cloud_run_outputs(other_service.url, packages["mlp"]), tmp_path, capsys, "--no-auth")
    assert code == 6
    line = one_line(text)
    assert line.startswith("model-deploy-verify-gcp: error: output ")
    assert "differs from the package's expected outputs: max abs error" in line


def test_cloud_run_service_down_is_a_clear_unreachable_message(
    packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, text = run(cloud_run_outputs(url, packages["mlp"]), tmp_path, capsys, "--no-auth")
    assert code == 8
    line = one_line(text)
    assert f"cannot reach {url}/health" in line
    assert "check serviceUrl and that the service is deployed" in line


def test_cloud_run_wrong_health_route_is_not_found(
    service: ServerProcess, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = cloud_run_outputs(service.url, packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--no-auth", "--health-route", "/healthz")
    assert code == 3
    assert "answered HTTP 404" in one_line(text)


def test_cloud_run_identity_token_failure_is_one_line(
    service: ServerProcess,
    packages: dict[str, Published],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.auth.exceptions
    import google.oauth2.id_token

    def no_credentials(*_: Any, **__: Any) -> str:
        raise google.auth.exceptions.DefaultCredentialsError("Neither metadata server or valid service account found.")

    monkeypatch.setattr(google.oauth2.id_token, "fetch_id_token", no_credentials)
    code, text = run(cloud_run_outputs(service.url, packages["mlp"]), tmp_path, capsys)
    assert code == 7
    line = one_line(text)
    assert f"cannot get an identity token for {service.url}" in line
    assert "--no-auth" in line


# --- Vertex AI ----------------------------------------------------------------------------------


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    fake = FakeVertex().start()
    yield fake
    fake.stop()


def _served(package: Published, shift: float = 0.0) -> list[Any]:
    """The predictions the serving container answers for the bundled example (its own JSON codec)."""
    manifest = package.manifest
    expected = load_arrays(package.path / manifest.example.outputs)
    outputs = {name: (array + shift if shift else array) for name, array in expected.items()}
    body, _ = encode_response(outputs, "application/json", manifest.signature)
    return list(json.loads(body)["predictions"])


def _deploy(vertex: FakeVertex, *, traffic: int = 100) -> tuple[str, str]:
    endpoint_name = vertex.add_endpoint("1234")
    model_name = f"{PARENT}/models/55"
    vertex.models[model_name] = aiplatform_v1.Model(name=model_name, display_name="mlp")
    endpoint = vertex.endpoints[endpoint_name]
    endpoint.deployed_models.append(aiplatform_v1.DeployedModel(id="77", model=model_name))
    endpoint.traffic_split = {"77": traffic}
    return endpoint_name, model_name


def vertex_outputs(endpoint: str, model: str, package: Published, **changes: Any) -> dict[str, Any]:
    """What ``pulumi stack output --json`` prints for a Vertex AI stack."""
    outputs = {
        "target": "vertex",
        "project": "demo-project",
        "region": "europe-west4",
        "endpointId": endpoint.rsplit("/", 1)[-1],
        "endpointResourceName": endpoint,
        "deployedModelId": "77",
        "modelResourceName": model,
        "predictUrl": f"https://europe-west4-aiplatform.googleapis.com/v1/{endpoint}:predict",
        "packageUri": package.uri,
        "packageDigest": package.digest,
    }
    outputs.update(changes)
    return outputs


def test_vertex_endpoint_serving_the_model_passes(
    vertex: FakeVertex, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, model = _deploy(vertex)
    vertex.predictions = _served(packages["mlp"])
    outputs = vertex_outputs(endpoint, model, packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--api-endpoint", vertex.address)
    assert code == 0, text
    line = one_line(text)
    assert line.startswith(f"OK: Vertex AI endpoint {endpoint} serves model {model} as deployed model 77 (100% of")
    assert "smoke test passed (3 rows, max abs error 0)" in line
    assert vertex.methods() == ["EndpointService/GetEndpoint", "PredictionService/Predict"]
    _, request = vertex.requests[-1]
    instances = aiplatform_v1.PredictRequest.to_dict(request)["instances"]
    example = load_arrays(packages["mlp"].path / packages["mlp"].manifest.example.inputs)
    np.testing.assert_allclose(np.asarray(instances, dtype=np.float32), next(iter(example.values())))


def test_vertex_deployed_model_missing_fails(
    vertex: FakeVertex, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, _ = _deploy(vertex)
    vertex.predictions = _served(packages["mlp"])
    expected = f"{PARENT}/models/99"
    outputs = vertex_outputs(endpoint, expected, packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--api-endpoint", vertex.address)
    assert code == 5
    line = one_line(text)
    assert f"endpoint {endpoint} has no deployed model of {expected} (deployed: 77 ({PARENT}/models/55))" in line
    assert "PredictionService/Predict" not in vertex.methods()


def test_vertex_model_without_traffic_fails(
    vertex: FakeVertex, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, model = _deploy(vertex, traffic=0)
    outputs = vertex_outputs(endpoint, model, packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--api-endpoint", vertex.address)
    assert code == 5
    assert f"model {model} (deployed model 77) receives no traffic on endpoint {endpoint}" in one_line(text)


def test_vertex_predictions_mismatch_fails(
    vertex: FakeVertex, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, model = _deploy(vertex)
    vertex.predictions = _served(packages["mlp"], shift=0.5)
    outputs = vertex_outputs(endpoint, model, packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--api-endpoint", vertex.address)
    assert code == 6
    line = one_line(text)
    assert "deployed model 77: output " in line
    assert "max abs error 0.5 exceeds the manifest tolerance" in line


def test_vertex_prediction_error_is_a_smoke_failure(
    vertex: FakeVertex, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import grpc

    endpoint, model = _deploy(vertex)
    vertex.predict_error = (grpc.StatusCode.FAILED_PRECONDITION, "the model server answered 400: bad instances")
    code, text = run(
        vertex_outputs(endpoint, model, packages["mlp"]), tmp_path, capsys, "--api-endpoint", vertex.address
    )
    assert code == 6
    assert "FAILED_PRECONDITION: the model server answered 400: bad instances" in one_line(text)


def test_vertex_missing_endpoint_is_not_found(
    vertex: FakeVertex, packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"{PARENT}/endpoints/404"
    outputs = vertex_outputs(endpoint, f"{PARENT}/models/55", packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--api-endpoint", vertex.address)
    assert code == 3
    assert f"endpoint {endpoint} does not exist" in one_line(text)


def test_vertex_unreachable_api_is_unavailable(
    packages: dict[str, Published], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    outputs = vertex_outputs(f"{PARENT}/endpoints/1234", f"{PARENT}/models/55", packages["mlp"])
    code, text = run(outputs, tmp_path, capsys, "--api-endpoint", address, "--timeout", "5")
    assert code == 8
    assert "cannot reach Vertex AI to get endpoint" in one_line(text)


# --- outputs ------------------------------------------------------------------------------------


def test_missing_outputs_name_the_key_and_the_flag() -> None:
    with pytest.raises(UsageError, match=r"missing serviceUrl \(or --service-url\) for Cloud Run"):
        target_from({}, {})
    with pytest.raises(UsageError, match=r"missing endpointResourceName \(or --endpoint\)"):
        target_from({"target": "vertex", "packageUri": "file:///s/mlp/" + "a" * 64 + "/"}, {})


def test_vertex_endpoint_from_project_region_and_id() -> None:
    uri = "gs://bucket/packages/mlp/" + "a" * 64 + "/model.tar.gz"
    target = target_from(
        {"target": "vertex", "project": "p", "region": "us-central1", "endpointId": "9", "packageUri": uri}, {}
    )
    assert (target.endpoint, target.project, target.region) == (
        "projects/p/locations/us-central1/endpoints/9",
        "p",
        "us-central1",
    )


def test_outputs_that_disagree_on_the_digest_are_refused() -> None:
    uri = "gs://bucket/packages/mlp/" + "a" * 64 + "/model.tar.gz"
    with pytest.raises(UsageError, match="packageDigest is"):
        target_from({"serviceUrl": "https://x.run.app", "packageUri": uri, "packageDigest": "b" * 64}, {})


def test_stack_outputs_from_stdin(
    service: ServerProcess,
    packages: dict[str, Published],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(cloud_run_outputs(service.url, packages["mlp"]))))
    assert main(["--stack-outputs", "-", "--no-auth", "--skip-smoke"]) == 0
    assert "smoke test skipped" in capsys.readouterr().out
