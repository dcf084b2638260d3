"""The baselines for ``bench.serve_throughput``: the minimal app a team would write by hand.

    .venv/bin/python -m bench.baseline_app --model-dir PACKAGE --port 8081 [--framework starlette]

Two of them: FastAPI (the default), and bare Starlette (no framework layer: a plain ASGI
``Starlette`` app with two routes, the model called inline), the floor our server's own
overhead is measured against.

It loads the package with the same format loader as our server (no integrity
check, no warm-up), and answers ``POST /invocations`` by parsing the JSON body
with orjson (or an ``application/x-npy`` body with ``np.load``, pickle off),
calling ``model.predict`` directly on the event loop (no batching, no
validation beyond the loader's own) and returning ``{"predictions": ...}``
like our server does. ``GET /ping`` answers 200 as soon as the port is open,
since the model is loaded before it. uvicorn runs with uvloop and httptools and
without an access log, like our server; it only ever binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from model_package.formats import LoadedModel, get_format
from model_package.manifest import read_manifest

JSON = "application/json"
NPY = "application/x-npy"


def create_app(model: LoadedModel) -> FastAPI:
    """The two routes, closing over an already-loaded model."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    input_name = model.signature.inputs[0].name
    output_name = model.signature.outputs[0].name

    @app.get("/ping")
    async def ping() -> Response:
        return Response(b'{"status":"ready"}', media_type=JSON)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-type") == NPY:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        else:
            array = np.asarray(orjson.loads(body))
        outputs = model.predict({input_name: array})
        return Response(
            orjson.dumps({"predictions": outputs[output_name]}, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON
        )

    return app


def create_starlette_app(model: LoadedModel) -> Starlette:
    """The same two routes on bare Starlette: no dependency injection, no validation layer."""
    input_name = model.signature.inputs[0].name
    output_name = model.signature.outputs[0].name

    async def ping(_: StarletteRequest) -> StarletteResponse:
        return StarletteResponse(b'{"status":"ready"}', media_type=JSON)

    async def invocations(request: StarletteRequest) -> StarletteResponse:
        body = await request.body()
        if request.headers.get("content-type") == NPY:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        else:
            array = np.asarray(orjson.loads(body))
        outputs = model.predict({input_name: array})
        payload = orjson.dumps({"predictions": outputs[output_name]}, option=orjson.OPT_SERIALIZE_NUMPY)
        return StarletteResponse(payload, media_type=JSON)

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET"]), Route("/invocations", invocations, methods=["POST"])]
    )


def main(argv: list[str] | None = None) -> int:
    """Load the package and serve it until SIGTERM / SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch intra-op threads")
    parser.add_argument("--framework", choices=("fastapi", "starlette"), default="fastapi")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.model_dir)
    model = get_format(manifest.format).load(args.model_dir, manifest, threads=args.threads)
    uvicorn.run(
        create_app(model) if args.framework == "fastapi" else create_starlette_app(model),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
