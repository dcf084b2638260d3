"""The SageMaker and Vertex AI contracts, through a real `model-serve` process and a real HTTP client."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_package.formats import get_format
from model_package.manifest import read_manifest
from tests.inference.server_fixtures import ServerProcess, counters, free_port, start_server

pytestmark = pytest.mark.torch


def reference(package: Path, x: np.ndarray) -> np.ndarray:
    manifest = read_manifest(package)
    model = get_format(manifest.format).load(package, manifest)
    return model.predict({"x": x})["output"]


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)


def test_ping_and_invocations_with_json(sagemaker_server: ServerProcess, torch_package: Path) -> None:
    with sagemaker_server.client() as client:
        ping = client.get("/ping")
        assert ping.status_code == 200
        x = rows(3)
        response = client.post(
            "/invocations", content=json.dumps(x.tolist()), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-request-id"]
        got = np.asarray(response.json()["predictions"], dtype=np.float32)
        np.testing.assert_allclose(got, reference(torch_package, x), rtol=1e-5, atol=1e-6)


def test_every_codec_on_invocations(sagemaker_server: ServerProcess, torch_package: Path) -> None:
    x = rows(2, seed=1)
    want = reference(torch_package, x)
    npy = io.BytesIO()
    np.save(npy, x, allow_pickle=False)
    npz = io.BytesIO()
    np.savez(npz, x=x)
    csv = "\n".join(",".join(repr(float(v)) for v in row) for row in x).encode()
    jsonl = b"\n".join(json.dumps(row).encode() for row in x.tolist())
    bodies = {
        "application/json; charset=utf-8": json.dumps({"instances": x.tolist()}).encode(),
        "text/csv; charset=UTF-8": csv,
        "application/x-npy": npy.getvalue(),
        "application/x-npz": npz.getvalue(),
        "application/jsonlines": jsonl,
    }
    with sagemaker_server.client() as client:
        for content_type, body in bodies.items():
            response = client.post(
                "/invocations", content=body, headers={"content-type": content_type, "accept": "application/x-npy"}
            )
            assert response.status_code == 200, (content_type, response.text)
            got = np.load(io.BytesIO(response.content), allow_pickle=False)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=content_type)
        csv_out = client.post("/invocations", content=csv, headers={"content-type": "text/csv", "accept": "text/csv"})
        assert csv_out.headers["content-type"].startswith("text/csv")
        assert len(csv_out.text.strip().splitlines()) == 2


@pytest.mark.parametrize(
    ("headers", "body", "status", "fragment"),
    [
        ({"content-type": "application/json"}, b"{not json", 400, "JSON"),
        ({"content-type": "application/json"}, b"[[1, 2, 3]]", 400, "x"),
        ({"content-type": "application/json"}, b"[]", 400, "empty"),
        ({"content-type": "application/json"}, json.dumps([[float("nan")] * 64]).encode(), 400, ""),
        ({"content-type": "application/xml"}, b"<x/>", 415, "application/json"),
        ({"content-type": "application/json", "accept": "image/png"}, b"[[0]]", 406, "application/json"),
    ],
    ids=["malformed", "wrong-shape", "empty-batch", "nan", "unsupported-type", "not-acceptable"],
)
def test_bad_requests_get_a_4xx_json_error_and_the_server_stays_healthy(
    sagemaker_server: ServerProcess, headers: dict[str, str], body: bytes, status: int, fragment: str
) -> None:
    with sagemaker_server.client() as client:
        response = client.post("/invocations", content=body, headers=headers)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert fragment in error
        assert "Traceback" not in response.text
        assert client.get("/ping").status_code == 200
        ok = client.post("/invocations", json=rows(1).tolist())
        assert ok.status_code == 200


def test_oversized_body_is_a_413_naming_the_limit(torch_package: Path, tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        tmp_path,
        args=["serve", "--model-dir", str(torch_package)],
        env={"SAGEMAKER_BIND_TO_PORT": str(port), "MODEL_SERVER_MAX_REQUEST_BYTES": "10000"},
        port=port,
    )
    try:
        with server.client() as client:
            response = client.post("/invocations", json=rows(40).tolist())
            assert response.status_code == 413
            assert "limit of 10000 bytes" in response.json()["error"]
            assert "asynchronous" in response.json()["error"]
            assert client.get("/ping").status_code == 200
    finally:
        assert server.terminate() == 0


def test_execution_parameters_and_metrics(sagemaker_server: ServerProcess) -> None:
    with sagemaker_server.client() as client:
        params = client.get("/execution-parameters").json()
        assert params["BatchStrategy"] == "MULTI_RECORD"
        assert params["MaxPayloadInMB"] == 6
        before = counters(client.get("/metrics").text)
        for _ in range(3):
            client.post("/invocations", json=rows(1).tolist())
        client.post("/invocations", content=b"nope", headers={"content-type": "application/json"})
        metrics = client.get("/metrics").text
    after = counters(metrics)
    requests = 'model_server_requests_total{route="/invocations",status="%s"}'
    assert after[requests % 200] - before.get(requests % 200, 0.0) == 3
    assert after[requests % 400] - before.get(requests % 400, 0.0) == 1
    assert "model_server_batch_rows_count" in metrics
    assert "model_server_model_load_seconds" in metrics
    assert 'model_server_model_info{format="torch_export",name="mlp",version="1.0.0"} 1.0' in metrics


def test_vertex_routes_from_the_environment(torch_package: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/v1/endpoints/123/deployedModels/456",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/123/deployedModels/456:predict",
    }
    server = start_server(
        tmp_path, args=["--model-dir", str(torch_package)], env=env, port=port, health_path=env["AIP_HEALTH_ROUTE"]
    )
    try:
        with server.client() as client:
            x = rows(2)
            response = client.post(env["AIP_PREDICT_ROUTE"], json={"instances": x.tolist(), "parameters": {}})
            assert response.status_code == 200, response.text
            got = np.asarray(response.json()["predictions"], dtype=np.float32)
            np.testing.assert_allclose(got, reference(torch_package, x), rtol=1e-5, atol=1e-6)
            assert client.post(env["AIP_PREDICT_ROUTE"], content=b"[1]").status_code == 400
    finally:
        assert server.terminate() == 0


def test_concurrent_requests_are_batched(torch_package: Path, tmp_path: Path) -> None:
    # A 20 ms batching window makes merging deterministic enough to assert on.
    server = start_server(
        tmp_path, args=["--model-dir", str(torch_package)], env={"MODEL_SERVER_MAX_BATCH_DELAY_MS": "20"}
    )
    x = rows(64, seed=3)
    want = reference(torch_package, x)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("/invocations", json=x[i : i + 1].tolist())
            results[i] = np.asarray(response.json()["predictions"], dtype=np.float32)

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for i in range(64):
            np.testing.assert_allclose(results[i][0], want[i], rtol=1e-5, atol=1e-6)
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        assert server.terminate() == 0
    counts = [line for line in metrics.splitlines() if line.startswith("model_server_batch_rows_count")]
    rows_sum = [line for line in metrics.splitlines() if line.startswith("model_server_batch_rows_sum")]
    assert float(rows_sum[0].split()[-1]) == 64
    assert float(counts[0].split()[-1]) <= 32, "concurrent requests must share model calls"


def test_sigterm_drains_in_flight_requests_and_exits_zero(torch_package: Path, tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        tmp_path,
        args=["serve", "--model-dir", str(torch_package)],
        # A 1.5 s batching window keeps the requests queued (in flight) while SIGTERM arrives.
        env={"SAGEMAKER_BIND_TO_PORT": str(port), "MODEL_SERVER_MAX_BATCH_DELAY_MS": "1500"},
        port=port,
    )
    statuses: list[int | str] = []

    def call() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                statuses.append(client.post("/invocations", json=rows(1).tolist()).status_code)
        except httpx.HTTPError as exc:
            statuses.append(repr(exc))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    _wait_for_queue_depth(server, 4)
    assert server.terminate() == 0
    for thread in threads:
        thread.join()
    assert statuses == [200, 200, 200, 200]
    assert "draining" in server.log()


def _wait_for_queue_depth(server: ServerProcess, depth: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = httpx.get(server.url + "/metrics", timeout=2).text
        line = next(line for line in metrics.splitlines() if line.startswith("model_server_queue_depth "))
        if float(line.split()[-1]) >= depth:
            return
        time.sleep(0.02)
    raise AssertionError(f"{depth} requests never queued up")


def test_a_tampered_package_refuses_to_start(torch_package: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(torch_package, broken)
    weights = broken / "model.pt2"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    server = start_server(tmp_path, args=["serve", "--model-dir", str(broken)], wait_ready=False)
    assert server.process.wait(60) == 3
    errors = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert any("model.pt2: sha256" in entry["message"] and entry["level"] == "error" for entry in errors)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/ping", timeout=1)
