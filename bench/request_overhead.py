"""Where a small request's time goes, in one process, without sockets.

    .venv/bin/python -m bench.request_overhead          # ~30 s

On the benchmark's tiny MLP (64 -> 256 -> 256 -> 10, one row), prints microseconds per call of:

* the ``torch.export`` program through ``Module.__call__`` (its hooks) and through ``forward``
  (what ``model_package`` calls when the hooks have nothing to do);
* the package's ``LoadedModel.predict`` (input checks, tensor conversion, the call, outputs);
* one ``POST /invocations`` through the whole ASGI app (middleware, decoding, validation, the
  batcher's hop to the compute thread and back, encoding), one request at a time, and the same
  rows as KServe V1's ``{"instances": [...]}`` to ``/v1/models/{name}:predict`` and as an Open
  Inference Protocol JSON tensor to ``/v2/models/{name}/infer``;
* the same request through the bare Starlette baseline of ``bench.serve_throughput`` (router,
  orjson, the model called inline on the event loop): the floor for a server's own cost.

The difference between the last two is the server's own per-request cost. The numbers are
the best of ``--repeats`` runs (these machines are noisy); ratios within one run are what to
compare.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def best_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Best mean microseconds per call over ``repeats`` runs of ``calls`` calls."""
    for _ in range(min(calls, 500)):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return min(runs)


async def best_us_async(fn: Callable[[], Awaitable[object]], calls: int, repeats: int) -> float:
    """:func:`best_us` for a coroutine function."""
    for _ in range(min(calls, 500)):
        await fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            await fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return min(runs)


def main(argv: list[str] | None = None) -> int:
    """Build the tiny package, measure each layer, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="calls per run (default 5000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the best counts (default 5)")
    args = parser.parse_args(argv)

    import orjson
    import torch
    import uvloop

    from bench.asgi_scope import post_scope
    from bench.serve_throughput import build_tiny, request_body
    from inference.app import create_app
    from inference.config import load_config
    from inference.metrics import ServerMetrics
    from inference.service import load_service

    with tempfile.TemporaryDirectory(prefix="request-overhead-") as tmp:
        package = Path(tmp) / "tiny"
        build_tiny(package)
        config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=package)
        metrics = ServerMetrics()
        service = load_service(config, observer=metrics)
        app = create_app(service, config, metrics)
        assert service.model is not None
        model = service.model
        row = np.asarray(orjson.loads(request_body((1, 64))), dtype=np.float32)
        inputs = {service.signature.inputs[0].name: row}
        tensor = torch.from_numpy(row)
        module = torch.export.load(str(package / service.manifest.model_path)).module()
        gc.collect()
        gc.freeze()

        def through_call() -> object:
            with torch.inference_mode():
                return module(tensor)

        def through_forward() -> object:
            with torch.inference_mode():
                return module.forward(tensor)

        results = {
            "torch.export module, Module.__call__": best_us(through_call, args.calls, args.repeats),
            "torch.export module, forward": best_us(through_forward, args.calls, args.repeats),
            "LoadedModel.predict": best_us(lambda: model.predict(inputs), args.calls, args.repeats),
        }
        body = request_body((1, 64))
        scope = post_scope("/invocations", "application/json", len(body))

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"/invocations answered {message['status']}")

        async def request() -> None:
            await app(dict(scope), receive, send)

        def post_to(path: str, payload: bytes) -> Callable[[], Awaitable[None]]:
            """One JSON POST of ``payload`` to ``path`` through the app, as a coroutine function."""
            scope_of_post = post_scope(path, "application/json", len(payload))

            async def post_receive() -> dict[str, Any]:
                return {"type": "http.request", "body": payload, "more_body": False}

            async def post() -> None:
                await app(dict(scope_of_post), post_receive, send)

            return post

        # KServe V1's :predict: the same rows as {"instances": [...]}, through a route with a parameter.
        v1_request = post_to(f"/v1/models/{service.name}:predict", b'{"instances": ' + body + b"}")
        # The Open Inference Protocol's JSON form: the same row as one FP32 tensor of shape [1, 64].
        spec = service.signature.inputs[0]
        v2_body = orjson.dumps(
            {"inputs": [{"name": spec.name, "shape": [1, 64], "datatype": "FP32", "data": orjson.loads(body)[0]}]}
        )
        v2_request = post_to(f"/v2/models/{service.name}/infer", v2_body)

        async def serve() -> tuple[float, float, float]:
            await service.start()  # once: a stopped service does not start again
            try:
                invocations = await best_us_async(request, args.calls, args.repeats)
                v1 = await best_us_async(v1_request, args.calls, args.repeats)
                return invocations, v1, await best_us_async(v2_request, args.calls, args.repeats)
            finally:
                await service.stop()

        (
            results["POST /invocations through the app"],
            results["POST /v1/models/{name}:predict through the app"],
            results["POST /v2/models/{name}/infer (OIP JSON) through the app"],
        ) = uvloop.run(serve())

        from bench.baseline_app import create_starlette_app

        starlette_app = create_starlette_app(model)

        async def bare() -> None:
            await starlette_app(dict(scope), receive, send)

        async def serve_bare() -> float:
            return await best_us_async(bare, args.calls, args.repeats)

        results["POST /invocations through bare Starlette (model inline)"] = uvloop.run(serve_bare())

    width = max(len(name) for name in results)
    for name, micros in results.items():
        print(f"{name:<{width}}  {micros:7.1f} µs")
    server = results["POST /invocations through the app"] - results["LoadedModel.predict"]
    print(f"{'the server around the model':<{width}}  {server:7.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
