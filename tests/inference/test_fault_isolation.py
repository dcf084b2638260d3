"""A model failure is the server's fault (5xx, logged) and fails only the request that caused it.

Real ``model-serve`` processes serving a real PyTorch package: an embedding lookup with an id past
the table's end makes ``forward()`` raise, on input that fits the signature (int64, right shape).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from inference.codecs import encode_request
from model_package.export import export_model
from model_package.manifest import read_manifest
from tests.inference.server_fixtures import start_server

pytestmark = pytest.mark.torch
NPZ = "application/x-npz"


@pytest.fixture(scope="module")
def embedding_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.model_package import torch_models

    out = tmp_path_factory.mktemp("embedding") / "two"
    model = torch_models.make_two_in_two_out()
    export_model(model, torch_models.two_in_two_out_inputs(4), out, name="two", version="1")
    # Export records the table's valid ids, which the server checks (a 400) before the model runs.
    # Drop the range, as a package imported without one would have, so that forward() itself fails.
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for spec in manifest["signature"]["inputs"]:
        spec.pop("valid_range", None)
    manifest_path.write_text(json.dumps(manifest))
    return out


def _body(package: Path, *, ids: int | None = None, seed: int = 0) -> bytes:
    from tests.model_package import torch_models

    inputs = torch_models.two_in_two_out_inputs(2, seed=seed)
    if ids is not None:
        inputs["ids"][:] = ids  # past the 20-row embedding table: forward() raises IndexError
    return encode_request(inputs, NPZ, read_manifest(package).signature)


def test_a_model_failure_is_a_logged_500_and_the_requests_batched_with_it_succeed(
    embedding_package: Path, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(embedding_package)],
        # A long batching window, so the good and the bad requests land in one batch.
        env={"MODEL_SERVER_MAX_BATCH_DELAY_MS": "400", "MODEL_SERVER_MAX_BATCH_SIZE": "64"},
    )
    results: dict[str, httpx.Response] = {}
    lock = threading.Lock()

    def post(name: str, body: bytes) -> None:
        response = httpx.post(
            server.url + "/invocations",
            content=body,
            headers={"Content-Type": NPZ, "X-Request-ID": f"req-{name}"},
            timeout=30,
        )
        with lock:
            results[name] = response

    try:
        threads = [threading.Thread(target=post, args=(f"good{i}", _body(embedding_package, seed=i))) for i in range(4)]
        threads.append(threading.Thread(target=post, args=("bad", _body(embedding_package, ids=99))))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
    for index in range(4):
        good = results[f"good{index}"]
        assert good.status_code == 200, good.text
    bad = results["bad"]
    assert bad.status_code == 500, bad.text
    assert bad.json()["request_id"] == "req-bad"
    assert "shape" not in bad.text and "[10, " not in bad.text, "the body must not describe the batch"
    log = server.log()
    assert "req-bad" in log and "Traceback" in log and "IndexError" in log, log[-3000:]
    assert "re-running them one by one" in log, "the batch must have been isolated, not run apart from the start"


def test_an_input_that_does_not_fit_the_signature_is_a_400_naming_it(embedding_package: Path, tmp_path: Path) -> None:
    server = start_server(tmp_path, args=["--model-dir", str(embedding_package)])
    try:
        response = httpx.post(
            server.url + "/invocations",
            json={"instances": [{"features": [1.0] * 7, "ids": [1, 2, 3, 4]}]},
            timeout=30,
        )
    finally:
        server.terminate()
    assert response.status_code == 400, response.text
    assert "features" in response.json()["error"]
    assert "Traceback" not in server.log()
