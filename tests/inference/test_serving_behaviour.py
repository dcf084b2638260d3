"""Load, deadlines, downloads and user code, through real `model-serve` processes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch import nn

from model_package.export import export_model
from model_package.publish import push
from tests.conftest import GcsEmulator
from tests.inference.server_fixtures import ServerProcess, free_port, start_server

pytestmark = pytest.mark.torch
FIXTURES = Path(__file__).parent / "user_code_fixtures"


class SlowModel(nn.Module):
    """20 ms (two fast cores) to a quarter of a second (one slow core) per call, whatever the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(384, 384) / 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.weight
        for _ in range(60):
            state = torch.tanh(state @ self.weight)
        return x @ state[:8, :2]


@pytest.fixture(scope="module")
def slow_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("slow") / "slow"
    inputs = {"x": np.ones((2, 8), dtype=np.float32)}
    export_model(SlowModel().eval(), inputs, out, name="slow", version="1", rtol=1e-3, atol=1e-4)
    return out


def _post_many(server: ServerProcess, count: int, stagger: float = 0.01) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("/invocations", json=[[1.0] * 8])
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join()
    return responses


# Health answered within 0.5 s while the model is busy: a bound on wall clock, which a clean-clone run
# with mypy beside the suite on a VM with CPU steal failed; so it runs alone, and again on failure.
@pytest.mark.timing
@pytest.mark.flaky(reruns=2)
def test_full_queue_answers_503_with_retry_after_and_health_stays_fast(slow_package: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_MAX_QUEUE": "1", "MODEL_SERVER_MAX_BATCH_SIZE": "1", "MODEL_SERVER_COMPUTE_THREADS": "1"},
    )
    try:
        pings: list[float] = []

        def ping_while_loaded() -> None:
            for _ in range(5):
                start = time.perf_counter()
                assert httpx.get(server.url + "/ping", timeout=2).status_code == 200
                pings.append(time.perf_counter() - start)
                time.sleep(0.05)

        pinger = threading.Thread(target=ping_while_loaded)
        pinger.start()
        responses = _post_many(server, 6)
        pinger.join()
        statuses = sorted(response.status_code for response in responses)
        assert 503 in statuses and 200 in statuses, statuses
        rejected = next(response for response in responses if response.status_code == 503)
        assert rejected.headers["retry-after"] == "1"
        assert "queue is full" in rejected.json()["error"]
        assert max(pings) < 0.5, f"health checks must not wait for the model: {pings}"
    finally:
        assert server.terminate() == 0


def test_requests_past_their_deadline_get_504_and_are_not_computed(slow_package: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_REQUEST_TIMEOUT_S": "0.05", "MODEL_SERVER_MAX_BATCH_SIZE": "1"},
    )
    try:
        # Eight at once, one model call each: from the third or fourth on, they wait past their 0.05 s
        # deadline in the queue even where a call takes 20 ms (0.15 s let all eight finish there).
        responses = _post_many(server, 8, stagger=0)
        statuses = [response.status_code for response in responses]
        assert 504 in statuses, statuses
        expired = next(response for response in responses if response.status_code == 504)
        assert "deadline" in expired.json()["error"]
        metrics = httpx.get(server.url + "/metrics").text
        computed = next(line for line in metrics.splitlines() if line.startswith("model_server_batch_rows_count"))
        assert float(computed.split()[-1]) < 8, "expired requests must be dropped, not computed"
        assert httpx.get(server.url + "/ping").status_code == 200
    finally:
        assert server.terminate() == 0


def test_package_downloaded_from_aip_storage_uri_and_pinned_digest(
    torch_package: Path, gcs_env: GcsEmulator, gcs_bucket: str, tmp_path: Path
) -> None:
    """Vertex AI copies artifacts to its own bucket and points AIP_STORAGE_URI at it: no digest in the path."""
    published = push(torch_package, f"gs://{gcs_bucket}/models", layout="uncompressed")
    env: dict[str, Any] = {
        "AIP_STORAGE_URI": published.uri,
        "STORAGE_EMULATOR_HOST": gcs_env.endpoint,
        "NO_GCE_CHECK": "true",
        "MODEL_PACKAGE_DIGEST": published.digest,
    }
    port = free_port()
    env["AIP_HTTP_PORT"] = str(port)
    server = start_server(tmp_path, args=[], env=env, port=port, health_path="/health")
    try:
        response = httpx.post(server.url + "/predict", json={"instances": [[0.0] * 64]})
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"][0]) == 10
    finally:
        assert server.terminate() == 0

    env["MODEL_PACKAGE_DIGEST"] = "0" * 64
    refused = start_server(tmp_path, args=[], env=env, port=free_port(), wait_ready=False)
    assert refused.process.wait(60) == 3
    assert "but the URI pins" in refused.log() or "digest" in refused.log()


def test_sagemaker_user_code_runs_unchanged_with_custom_attributes(tmp_path: Path) -> None:
    from tests.model_package import torch_models

    package = tmp_path / "with-code"
    export_model(
        torch_models.make_dict_head(), torch_models.dict_head_inputs(4), package, name="ranker", version="1",
        code_dir=FIXTURES / "with_context",
    )  # fmt: skip
    server = start_server(tmp_path, args=["serve", "--model-dir", str(package)])
    try:
        response = httpx.post(
            server.url + "/invocations",
            content=json.dumps(torch_models.dict_head_inputs(3)["x"].tolist()),
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                "X-Amzn-SageMaker-Custom-Attributes": "top_k=2;trace=abc",
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert np.asarray(body["top_k"]).shape == (3, 2)
        assert response.headers["x-amzn-sagemaker-custom-attributes"] == "trace=abc;model=with-code"
    finally:
        assert server.terminate() == 0
