"""Load, deadlines, downloads and user code, through real `model-serve` processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from model_package.export import export_model
from model_package.publish import push
from tests.conftest import GcsEmulator
from tests.inference.server_fixtures import free_port, start_server
from tests.inference.slow_model import post_many, slow_package

pytestmark = pytest.mark.torch
FIXTURES = Path(__file__).parent / "user_code_fixtures"
__all__ = ["slow_package"]  # the fixture, imported for pytest


def test_requests_past_their_deadline_get_504_and_are_not_computed(slow_package: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_REQUEST_TIMEOUT_S": "0.05", "MODEL_SERVER_MAX_BATCH_SIZE": "1"},
    )
    try:
        # Eight at once, one model call each: from the third or fourth on, they wait past their 0.05 s
        # deadline in the queue even where a call takes 20 ms (0.15 s let all eight finish there).
        responses = post_many(server, 8, stagger=0)
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
