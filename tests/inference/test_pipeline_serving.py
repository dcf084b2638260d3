"""A package's declared image pipeline served over real HTTP: files in, labels out, bad media refused."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference.codecs import encode_request
from model_package.manifest import read_manifest
from tests.inference.server_fixtures import ServerProcess, start_server
from tests.pipeline_models import LABELS, encode_image, package_image_classifier, sample_images

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def image_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_image_classifier(tmp_path_factory.mktemp("served") / "pkg")


@pytest.fixture(scope="module")
def server(image_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A 1 MiB body limit, so the pixel cap (4 MiB of RGB: about 1.4 million pixels) is easy to reach.
    process = start_server(
        tmp_path_factory.mktemp("logs"),
        args=["serve", "--model-dir", str(image_package)],
        env={"MODEL_SERVER_MAX_REQUEST_BYTES": str(1024 * 1024)},
    )
    yield process
    assert process.terminate() == 0


def _expected(image_package: Path) -> list[dict[str, object]]:
    answers: list[dict[str, object]] = json.loads((image_package / "example/raw_outputs.json").read_text())
    return answers


def test_an_uploaded_jpeg_gets_labels_and_scores(server: ServerProcess, image_package: Path) -> None:
    expected = _expected(image_package)
    with server.client() as client:
        for path, want in zip(sample_images(), expected, strict=True):
            response = client.post("/invocations", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200, response.text
            (answer,) = response.json()["predictions"]
            assert answer["labels"] == want["labels"]
            assert np.allclose(answer["scores"], want["scores"], atol=1e-5)
            assert sorted(answer["labels"]) == sorted(LABELS)


def test_vertex_b64_instances_and_kserve_v1_get_the_same_answers(server: ServerProcess, image_package: Path) -> None:
    expected = _expected(image_package)
    instances = [{"b64": base64.b64encode(path.read_bytes()).decode()} for path in sample_images()]
    with server.client() as client:
        for route in ("/predict", "/v1/models/tiny-image:predict"):
            response = client.post(route, json={"instances": instances})
            assert response.status_code == 200, (route, response.text)
            answers = response.json()["predictions"]
            assert [a["labels"] for a in answers] == [w["labels"] for w in expected]


def test_base64_as_tools_write_it_gets_the_same_answers(server: ServerProcess, image_package: Path) -> None:
    """GNU base64 wraps at 76 columns unless told -w 0, and URL-safe encoders use -_ without padding:
    both were a 400 "not valid base64"."""
    import textwrap

    expected = _expected(image_package)
    files = [path.read_bytes() for path in sample_images()]
    wrapped = ["\n".join(textwrap.wrap(base64.b64encode(data).decode(), 76)) + "\n" for data in files]
    url_safe = [base64.urlsafe_b64encode(data).decode().rstrip("=") for data in files]
    with server.client() as client:
        for encoded in (wrapped, url_safe):
            response = client.post("/predict", json={"instances": [{"b64": text} for text in encoded]})
            assert response.status_code == 200, response.text
            assert [a["labels"] for a in response.json()["predictions"]] == [w["labels"] for w in expected]
        mixed = client.post("/predict", json={"instances": [{"b64": "ab-+"}]})
    assert mixed.status_code == 400
    assert "not valid base64" in mixed.json()["error"]


def test_png_and_application_x_image_are_read(server: ServerProcess) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    with server.client() as client:
        png = client.post("/invocations", content=encode_image(pixels, "PNG"), headers={"Content-Type": "image/png"})
        same = client.post(
            "/invocations", content=encode_image(pixels, "PNG"), headers={"Content-Type": "application/x-image"}
        )
    assert png.status_code == 200, png.text
    assert png.json() == same.json()


def test_bad_media_is_a_400_naming_what_was_wrong(server: ServerProcess) -> None:
    truncated = sample_images()[0].read_bytes()[:20_000]
    with server.client() as client:
        garbage = client.post("/invocations", content=b"GIF89a not an image", headers={"Content-Type": "image/jpeg"})
        cut = client.post("/invocations", content=truncated, headers={"Content-Type": "image/jpeg"})
        bad_b64 = client.post("/predict", json={"instances": [{"b64": "@@@"}]})
        not_image = client.post("/predict", json={"instances": [[1, 2, 3]]})
    assert garbage.status_code == 400
    assert "is not a JPEG or PNG image" in garbage.json()["error"]
    assert cut.status_code == 400
    assert "truncated" in cut.json()["error"]
    assert bad_b64.status_code == 400
    assert "not valid base64" in bad_b64.json()["error"]
    assert not_image.status_code == 400
    assert '{"b64"' in not_image.json()["error"]


def test_an_image_over_the_pixel_cap_is_a_413_before_it_is_decoded(server: ServerProcess) -> None:
    from PIL import Image

    # A 2000x2000 PNG of one colour compresses to a few KB but would decode to 12 MB.
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 2000), (10, 20, 30)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 100_000
    with server.client() as client:
        response = client.post("/invocations", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert "2000x2000 pixels" in response.json()["error"]


def test_a_thin_image_counts_its_resized_pixels_against_the_cap(server: ServerProcess) -> None:
    """The pipeline scales the shorter side to 36: a 1 x 20,000 PNG (a few hundred bytes, 20,000 pixels,
    far under the cap) became 36 x 720,000 (26 million pixels, 300 MB as float32) and was scored."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 20_000), (10, 20, 30)).save(buffer, format="PNG")
    with server.client() as client:
        response = client.post("/invocations", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413, response.text
    assert "1x20000 pixels, 36x720000 once resized" in response.json()["error"]


def test_a_media_type_the_pipeline_cannot_read_is_a_415_listing_the_allowed_ones(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.post("/invocations", content=b"hello", headers={"Content-Type": "audio/wav"})
        refused = client.post(
            "/invocations",
            content=sample_images()[0].read_bytes(),
            headers={"Content-Type": "image/jpeg", "Accept": "text/csv"},
        )
    assert response.status_code == 415
    assert "image/jpeg" in response.json()["error"]
    assert refused.status_code == 406


def test_tensors_still_reach_the_model_directly(server: ServerProcess, image_package: Path) -> None:
    manifest = read_manifest(image_package)
    batch = np.zeros((1, 3, 32, 32), dtype=np.float32)
    body = encode_request({"x": batch}, "application/x-npy", manifest.signature)
    with server.client() as client:
        response = client.post(
            "/invocations", content=body, headers={"Content-Type": "application/x-npy", "Accept": "application/json"}
        )
    assert response.status_code == 200, response.text
    (row,) = response.json()["predictions"]
    assert len(row) == 2 and all(isinstance(value, float) for value in row)  # raw logits: no labels, no softmax


def test_oip_bytes_tensor_of_base64_images_gets_label_and_score_tensors(
    server: ServerProcess, image_package: Path
) -> None:
    expected = _expected(image_package)
    data = [base64.b64encode(path.read_bytes()).decode() for path in sample_images()]
    request = {"id": "r1", "inputs": [{"name": "photo", "datatype": "BYTES", "shape": [2], "data": data}]}
    with server.client() as client:
        response = client.post("/v2/models/tiny-image/infer", json=request)
        bad = client.post(
            "/v2/models/tiny-image/infer",
            json={"inputs": [{"name": "photo", "datatype": "BYTES", "shape": [1], "data": ["bm90IGFuIGltYWdl"]}]},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1"
    outputs = {tensor["name"]: tensor for tensor in body["outputs"]}
    assert outputs["labels"]["datatype"] == "BYTES" and outputs["labels"]["shape"] == [2, 2]
    assert outputs["labels"]["data"] == [label for answer in expected for label in answer["labels"]]
    assert np.allclose(outputs["scores"]["data"], [s for answer in expected for s in answer["scores"]], atol=1e-5)
    assert bad.status_code == 400
    assert "is not a JPEG or PNG image" in bad.json()["error"]


def test_tritonclient_sends_images_as_binary_bytes_and_reads_the_labels(
    server: ServerProcess, image_package: Path
) -> None:
    """Triton's HTTP client sends BYTES inputs as binary tensor data by default (length-prefixed files)."""
    httpclient = pytest.importorskip("tritonclient.http")
    triton_utils = pytest.importorskip("tritonclient.utils")

    expected = _expected(image_package)
    photos = np.array([path.read_bytes() for path in sample_images()], dtype=np.object_)
    tensor = httpclient.InferInput("photo", [len(photos)], "BYTES")
    tensor.set_data_from_numpy(photos, binary_data=True)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        result = client.infer("tiny-image", [tensor], request_id="r-9")
        assert result.get_response()["id"] == "r-9"
        # The client asks for binary outputs (binary_data_output), and gets them: labels as BYTES elements.
        assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0
        labels = [label.decode() for label in result.as_numpy("labels").reshape(-1)]
        assert labels == [label for answer in expected for label in answer["labels"]]
        scores = result.as_numpy("scores").reshape(-1)
        assert np.allclose(scores, [s for answer in expected for s in answer["scores"]], atol=1e-5)
        # Each element is a whole file: a truncated one is the pipeline's 400, named.
        broken = httpclient.InferInput("photo", [1], "BYTES")
        broken.set_data_from_numpy(np.array([photos[0][:100]], dtype=np.object_), binary_data=True)
        with pytest.raises(triton_utils.InferenceServerException, match="image"):
            client.infer("tiny-image", [broken])
    finally:
        client.close()


@pytest.mark.parametrize(
    ("binary", "declared", "message"),
    [
        (b"\x05\x00\x00\x00abc", 7, "bytes of the tensor's binary data are left"),  # a length past the data
        (b"\x03\x00\x00\x00abc", 9, "bytes of binary data are left"),  # binary_data_size past the body
        (b"\x03\x00\x00\x00abcXY", 7, "bytes after the binary data of every input"),  # bytes no input claims
    ],
)
def test_lying_binary_image_tensors_are_400s(server: ServerProcess, binary: bytes, declared: int, message: str) -> None:
    header = json.dumps(
        {"inputs": [{"name": "photo", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": declared}}]}
    ).encode()
    with server.client() as client:
        response = client.post(
            "/v2/models/tiny-image/infer",
            content=header + binary,
            headers={"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"},
        )
        no_header = client.post("/v2/models/tiny-image/infer", content=header)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    assert no_header.status_code == 400
    assert "no Inference-Header-Content-Length" in no_header.json()["error"]


def test_preprocessing_is_admitted_like_the_model_call_full_queue_503_and_deadline_504(image_package: Path) -> None:
    import asyncio

    from inference.codecs import DecodeLimits
    from inference.errors import DeadlineExceededError, OverloadedError
    from inference.pipeline import PipelineService
    from model_package.formats import get_format

    manifest = read_manifest(image_package)
    model = get_format(manifest.format).load(image_package, manifest)
    photo = sample_images()[0].read_bytes()

    async def predict(inputs: dict[str, np.ndarray], *, timeout: float, from_client: bool) -> dict[str, np.ndarray]:
        assert not from_client  # the pipeline made these inputs (ModelService.predict's flag)
        return dict(model.predict(inputs))

    async def scenario() -> list[object]:
        pipeline = PipelineService(
            image_package, manifest, limits=DecodeLimits.for_body_limit(6 * 1024 * 1024), threads=1, max_queue=1
        )
        await pipeline.start()
        calls = [pipeline.answer([photo] * 8, predict, timeout=30) for _ in range(3)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        late = await asyncio.gather(pipeline.answer([photo] * 64, predict, timeout=0.001), return_exceptions=True)
        await pipeline.stop()
        return [*outcomes, *late]

    first, second, third, late = asyncio.run(scenario())
    assert isinstance(first, list) and isinstance(second, list)  # one running, one waiting: both answered
    assert isinstance(third, OverloadedError)  # the queue (1) was full: 503 with Retry-After
    assert third.headers == {"Retry-After": "1"}
    assert isinstance(late, DeadlineExceededError)  # 64 photos cannot be decoded in 1 ms: 504
