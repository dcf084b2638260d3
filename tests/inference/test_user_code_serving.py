"""User code through a real ``model-serve`` process: batched hooks, the Open Inference Protocol, bad input.

Each package is a real PyTorch model exported by ``export_model`` with a ``code/`` directory from
``user_code_fixtures/``; requests go over HTTP exactly as a platform would send them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.inference.server_fixtures import ServerProcess, start_server

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from tests.model_package.torch_models import dict_head_inputs, make_dict_head  # noqa: E402

pytestmark = pytest.mark.torch

FIXTURES = Path(__file__).parent / "user_code_fixtures"


def _package(tmp_path_factory: pytest.TempPathFactory, fixture: str) -> Path:
    from model_package.export import export_model

    out = tmp_path_factory.mktemp(fixture) / fixture
    export_model(make_dict_head(), dict_head_inputs(3), out, name=fixture, version="1", code_dir=FIXTURES / fixture)
    return out


def _serve(package: Path, tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, args=["--model-dir", str(package)], env=env)
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def batched_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _package(tmp_path_factory, "batched")


@pytest.fixture(scope="module")
def batched_server(batched_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Shared by the tests that only send requests (a start-up is seconds of importing torch).
    # A short wait to fill batches makes the merging certain however the threads are scheduled.
    directory = tmp_path_factory.mktemp("batched-server")
    yield from _serve(batched_package, directory, {"MODEL_SERVER_MAX_BATCH_DELAY_MS": "100"})


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(_package(tmp_path_factory, "image_hooks"), tmp_path_factory.mktemp("image-server"))


def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = make_dict_head()(torch.from_numpy(rows))
    return {name: value.numpy() for name, value in out.items()}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# predict_batch_fn over the adaptive batcher


def _concurrently(
    server: ServerProcess, bodies: list[dict[str, object]], path: str = "/invocations"
) -> list[httpx.Response]:
    responses: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(len(bodies))

    def call(index: int) -> None:
        barrier.wait()
        responses[index] = httpx.post(server.url + path, json=bodies[index], timeout=30)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [responses[index] for index in range(len(bodies))]


def test_batched_hook_merges_concurrent_requests_into_one_call(batched_server: ServerProcess) -> None:
    rows = [dict_head_inputs(1 + seed % 3, seed=seed)["x"] for seed in range(12)]
    responses = _concurrently(batched_server, [{"instances": r.tolist()} for r in rows])
    for response, sent in zip(responses, rows, strict=True):
        assert response.status_code == 200, response.text
        expected = reference(sent)
        np.testing.assert_allclose(response.json()["scores"], expected["scores"], rtol=1e-5, atol=1e-6)
        assert response.json()["best"] == expected["best"].tolist()
    # Requests were answered from shared predict_batch_fn calls, not one call each.
    assert max(int(response.headers["x-batch-requests"]) for response in responses) > 1


def test_a_poisoned_input_fails_only_its_own_request(batched_server: ServerProcess) -> None:
    rows = [dict_head_inputs(2, seed=seed)["x"] for seed in range(12)]
    rows[5][0, 0] = 666.0  # the one input the model cannot take
    responses = _concurrently(batched_server, [{"instances": r.tolist()} for r in rows])
    poisoned = responses.pop(5)
    assert poisoned.status_code == 500, poisoned.text
    body = poisoned.json()
    assert "predict_batch_fn in inference.py failed with RuntimeError" in body["error"]
    assert body["request_id"] == poisoned.headers["x-request-id"]
    assert "Traceback" not in poisoned.text
    for index, response in enumerate(responses):
        assert response.status_code == 200, (index, response.text)
    metrics = httpx.get(batched_server.url + "/metrics").text
    # The poisoned call held several requests, and they were answered after all (re-run one by one).
    assert 'model_server_batch_requests_bucket{le="1.0"}' in metrics
    log = batched_server.log()
    assert poisoned.headers["x-request-id"] in log and "RuntimeError: the model cannot take this row" in log
    assert "re-running them one by one" in log


def test_batched_hook_bad_input_is_a_400_for_that_request_only(batched_server: ServerProcess) -> None:
    with batched_server.client() as client:
        missing = client.post("/invocations", json={"rows": [[0.0] * 5]})
        malformed = client.post("/invocations", content=b"{not json", headers={"Content-Type": "application/json"})
        fine = client.post("/invocations", json={"instances": dict_head_inputs(1)["x"].tolist()})
    assert missing.status_code == 400 and missing.json() == {"error": "the body needs an 'instances' field"}
    assert malformed.status_code == 400
    assert malformed.json()["error"].startswith("input_fn rejected the request: ")
    assert fine.status_code == 200


def test_batched_hook_is_admitted_like_the_builtin_path(batched_package: Path, tmp_path: Path) -> None:
    """Readiness and the queue bound apply: a request beyond MODEL_SERVER_MAX_QUEUE is turned away with 503."""
    env = {
        "MODEL_SERVER_MAX_QUEUE": "1",
        "MODEL_SERVER_MAX_BATCH_DELAY_MS": "1000",
        "MODEL_SERVER_MAX_BATCH_SIZE": "64",
    }
    server = start_server(tmp_path, args=["--model-dir", str(batched_package)], env=env)
    try:
        responses = _concurrently(server, [{"instances": [[0.1] * 5]}] * 6)
    finally:
        server.terminate()
    statuses = [response.status_code for response in responses]
    assert 503 in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1" and "queue is full" in response.json()["error"]


# ---------------------------------------------------------------------------------------------------------------------
# The Open Inference Protocol reaches user code


def test_oip_infer_runs_the_packages_predict_fn(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    package = _package(tmp_path_factory, "model_fn_numpy")
    rows = dict_head_inputs(3, seed=4)["x"]
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}]}
    for server in _serve(package, tmp_path):
        with server.client() as client:
            response = client.post("/v2/models/model_fn_numpy/infer", json=request)
            wrong = client.post(
                "/v2/models/model_fn_numpy/infer",
                json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
            )
    assert response.status_code == 200, response.text
    outputs = {tensor["name"]: tensor for tensor in response.json()["outputs"]}
    doubled = rows * 2
    np.testing.assert_allclose(np.reshape(outputs["scores"]["data"], (3, 4)), doubled[:, :4], rtol=1e-6)
    assert outputs["best"]["data"] == doubled[:, :4].argmax(axis=-1).tolist()
    assert outputs["best"]["datatype"] == "INT64"
    # Validated against the signature before the hook runs, as on the built-in path.
    assert wrong.status_code == 400, wrong.text


def test_oip_infer_goes_through_predict_batch_fn(batched_server: ServerProcess) -> None:
    rows = dict_head_inputs(2, seed=9)["x"]
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 5], "data": rows.ravel().tolist()}]}
    with batched_server.client() as client:
        response = client.post("/v2/models/batched/infer", json=request)
        rows[0, 0] = 666.0
        poisoned = client.post(
            "/v2/models/batched/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 5], "data": rows.ravel().tolist()}]},
        )
    assert response.status_code == 200, response.text
    outputs = {tensor["name"]: tensor for tensor in response.json()["outputs"]}
    expected = reference(dict_head_inputs(2, seed=9)["x"])
    np.testing.assert_allclose(np.reshape(outputs["scores"]["data"], (2, 4)), expected["scores"], rtol=1e-5)
    assert poisoned.status_code == 500 and "predict_batch_fn" in poisoned.json()["error"]


# ---------------------------------------------------------------------------------------------------------------------
# Bad input is the client's 4xx; a bug in the code is our 5xx


def test_a_corrupt_upload_in_input_fn_is_a_400_naming_the_problem(image_server: ServerProcess) -> None:
    rng = np.random.default_rng(0)
    good = _jpeg(rng.integers(1, 255, (8, 8, 3)))
    with image_server.client() as client:
        ok = client.post("/invocations", content=good, headers={"Content-Type": "image/jpeg"})
        not_an_image = client.post(
            "/invocations", content=b"\xff\xd8 definitely not a jpeg", headers={"Content-Type": "image/jpeg"}
        )
        truncated = client.post("/invocations", content=good[: len(good) // 2], headers={"Content-Type": "image/jpeg"})
    assert ok.status_code == 200, ok.text
    assert not_an_image.status_code == 400, not_an_image.text
    assert not_an_image.json()["error"].startswith("input_fn could not read the image: cannot identify image file")
    assert " at 0x" not in not_an_image.text
    assert truncated.status_code == 400, truncated.text
    assert "input_fn could not decode the image" in truncated.json()["error"]
    assert "truncated" in truncated.json()["error"].lower()


def test_a_bug_in_predict_fn_stays_a_500_logged_under_the_request_id(image_server: ServerProcess) -> None:
    black = _png(np.zeros((4, 4, 3)))
    with image_server.client() as client:
        response = client.post("/invocations", content=black, headers={"Content-Type": "image/png"})
    assert response.status_code == 500
    body = response.json()
    assert body["error"].startswith("predict_fn in inference.py failed with ZeroDivisionError")
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    log = image_server.log()
    assert response.headers["x-request-id"] in log and "ZeroDivisionError" in log
