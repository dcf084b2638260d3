"""An uploaded JPEG answered with labels (the package's image pipeline) versus the same model fed JSON floats.

    .venv/bin/python -m bench.image_upload               # 20 s per mode
    .venv/bin/python -m bench.image_upload --seconds 5

One package: a small CNN on 3x224x224 images exported with ``--image resize=256`` and a 10-class
labels file, so both modes run the very same model through the very same server
(``python -m inference serve`` on 127.0.0.1, default settings):

* ``jpeg``: ``POST /invocations`` with ``Content-Type: image/jpeg`` and the bytes of
  scikit-learn's ``china.jpg`` (640x427, 197 KB); the server decodes, resizes, crops, normalises,
  runs the model and answers the top-5 labels and scores.
* ``json``: the same photo preprocessed on the client (3x224x224 float32, what a client without
  the pipeline must send) as an Open Inference Protocol JSON tensor to
  ``POST /v2/models/bench-image/infer``, answered with the 10 logits. (With a pipeline, JSON on
  ``/invocations`` means raw inputs; tensors go through OIP or ``.npy``/``.npz``/CSV.)

Each mode runs ``--clients`` closed-loop clients (one keep-alive connection each) for ``--seconds``
after a short warm-up, and reports requests per second, median latency and bytes on the wire per
request (request body + response body). Results go to stdout and ``bench/results/image_upload.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "image_upload.json"


def build_package(root: Path) -> Path:
    """Export the benchmark CNN with an image -> labels pipeline; return the package directory."""
    import torch
    from torch import nn

    from examples.scenarios.images import photos
    from model_package.export import export_model
    from model_package.pipeline.attach import PipelineSource, parse_image_options

    class Cnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layers = nn.Sequential(
                nn.Conv2d(3, 8, 7, stride=4),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(16, 10),
            )

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.layers(image)
            return logits

    labels = root / "labels.txt"
    labels.write_text("\n".join(f"class-{i}" for i in range(10)) + "\n")
    example = {"image": np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)}
    source = PipelineSource(
        input=parse_image_options("resize=256,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"),
        output={"kind": "labels", "top_k": 5},
        raw_examples=[photos()[0]],
        labels=labels,
    )
    export_model(Cnn().eval(), example, root / "package", name="bench-image", version="1", pipeline=source)
    return root / "package"


def json_floats_body(package: Path, jpeg: bytes) -> bytes:
    """The photo preprocessed exactly as the server would, as an OIP JSON tensor (what a client must do without it)."""
    import orjson

    from model_package.manifest import read_manifest
    from model_package.pipeline.runner import PipelineRunner

    manifest = read_manifest(package)
    (array,) = PipelineRunner(package, manifest).preprocess([jpeg]).values()
    tensor = {"name": "image", "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1)}
    return orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(package: Path, port: int) -> subprocess.Popen[bytes]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH") if key in os.environ}
    env.update({"PORT": str(port), "MODEL_SERVER_HOST": "127.0.0.1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "inference", "serve", "--model-dir", str(package)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the server did not become ready in 120 s")


def drive(port: int, path: str, body: bytes, content_type: str, *, seconds: float, clients: int) -> dict[str, Any]:
    """Closed-loop clients for ``seconds``: requests per second, p50 latency, bytes per request."""
    latencies: list[float] = []
    response_bytes: list[int] = []
    failures = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        nonlocal failures
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        sizes: list[int] = []
        bad = 0
        while time.monotonic() < stop_at:
            sent = time.perf_counter()
            connection.request("POST", path, body, {"Content-Type": content_type})
            response = connection.getresponse()
            payload = response.read()
            mine.append(time.perf_counter() - sent)
            sizes.append(len(payload))
            bad += response.status != 200
        with lock:
            latencies.extend(mine)
            response_bytes.extend(sizes)
            failures += bad

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    return {
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
        "request_bytes": len(body),
        "response_bytes": int(np.mean(response_bytes)),
        "failures": failures,
        "requests": len(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="JPEG upload -> labels versus JSON floats -> logits")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    from examples.scenarios.images import photos

    jpeg = photos()[0].read_bytes()
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        package = build_package(Path(tmp))
        floats = json_floats_body(package, jpeg)
        port = free_port()
        server = start_server(package, port)
        try:
            results = {}
            modes = (
                ("jpeg", "/invocations", jpeg, "image/jpeg"),
                ("json", "/v2/models/bench-image/infer", floats, "application/json"),
            )
            for mode, path, body, content_type in modes:
                drive(port, path, body, content_type, seconds=2, clients=args.clients)  # warm-up
                results[mode] = drive(port, path, body, content_type, seconds=args.seconds, clients=args.clients)
        finally:
            server.terminate()
            server.wait(30)
    print(f"{'mode':<6} {'req/s':>8} {'p50 ms':>8} {'request bytes':>14} {'response bytes':>15} {'failures':>9}")
    for mode, row in results.items():
        print(
            f"{mode:<6} {row['requests_per_second']:>8} {row['p50_ms']:>8} {row['request_bytes']:>14,} "
            f"{row['response_bytes']:>15,} {row['failures']:>9}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds": args.seconds, "clients": args.clients, **results}, indent=2) + "\n")
    return 1 if any(row["failures"] for row in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
