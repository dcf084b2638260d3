"""User code against the built-in path on the same model: ``predict_fn``, ``predict_batch_fn``, no code.

    .venv/bin/python -m bench.user_code_throughput            # 8 s per point
    .venv/bin/python -m bench.user_code_throughput --quick    # 3 s per point

One model per workload (``bench.serve_throughput``'s tiny MLP and small CNN, built the same way),
exported three times: without code (the built-in path), with a ``code/inference.py`` whose
``predict_fn`` calls the model (one request per model call, behind the admission gate), and with
one whose ``predict_batch_fn`` concatenates the inputs of concurrent requests into one model call
(the adaptive batcher). Both scripts keep the default ``input_fn``/``output_fn`` (the server's
codecs), so only the prediction path differs. Each server is started in turn on 127.0.0.1 and
driven by ``wrk -t1`` with one JSON row/image per request at 1 and 64 connections (after a short
warm-up), on the same cores. Prints req/s, p50 and p99 and writes
``bench/results/user_code_throughput.json``; exit code 1 when a server failed requests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.serve_throughput import (
    JSON,
    REPO,
    LoadPoint,
    Settings,
    build_cnn,
    build_tiny,
    request_body,
    run_wrk,
    servers_stopped_at_exit,
    start_server,
)

CONNECTIONS = (1, 64)

PREDICT_FN = """
def predict_fn(data, model):
    return model.predict(data)
"""

PREDICT_BATCH_FN = """
import numpy as np


def predict_batch_fn(inputs, model):
    merged = {name: np.concatenate([item[name] for item in inputs]) for name in inputs[0]}
    outputs = model.predict(merged)
    predictions, offset = [], 0
    for item in inputs:
        rows = len(next(iter(item.values())))
        predictions.append({name: value[offset : offset + rows] for name, value in outputs.items()})
        offset += rows
    return predictions
"""

VARIANTS: dict[str, str | None] = {"built-in": None, "predict_fn": PREDICT_FN, "predict_batch_fn": PREDICT_BATCH_FN}
WORKLOADS: dict[str, tuple[Callable[[Path], None], tuple[int, ...]]] = {
    "tiny": (build_tiny, (1, 64)),
    "cnn": (build_cnn, (1, 3, 64, 64)),
}


def package_with_code(base: Path, code: str | None, out: Path) -> Path:
    """``base`` as it is (no code), or its artifact re-packaged with ``code`` as ``code/inference.py``."""
    if code is None:
        return base
    from model_package.example import load_arrays
    from model_package.export import import_artifact
    from model_package.manifest import read_manifest

    manifest = read_manifest(base)
    code_dir = out.parent / f"{out.name}-code"
    code_dir.mkdir(parents=True)
    (code_dir / "inference.py").write_text(code)
    import_artifact(
        base / manifest.model_path,
        out,
        name=manifest.name,
        version=manifest.version,
        format=manifest.format,
        example_inputs=load_arrays(base / manifest.example.inputs),
        expected_outputs=load_arrays(base / manifest.example.outputs),
        code_dir=code_dir,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured wrk run (default 8)")
    parser.add_argument("--quick", action="store_true", help="3 s per measured run, 1 s warm-up")
    parser.add_argument("--workloads", default="tiny,cnn", help="comma-separated subset of: tiny, cnn")
    parser.add_argument("--max-batch-size", type=int, help="MODEL_SERVER_MAX_BATCH_SIZE for every server")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "user_code_throughput.json")
    args = parser.parse_args(argv)
    duration, warmup = (3.0, 1.0) if args.quick else (args.duration, 2.0)
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    if not names or any(name not in WORKLOADS for name in names):
        parser.error(f"--workloads takes a subset of {', '.join(WORKLOADS)}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    cores = len(os.sched_getaffinity(0))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-user-code-") as tmp:
        root = Path(tmp)
        settings = Settings(
            threads=cores,
            ours_env={} if args.max_batch_size is None else {"MODEL_SERVER_MAX_BATCH_SIZE": str(args.max_batch_size)},
            logs=root,
            duration=duration,
            warmup=warmup,
            inprocess_seconds=0,
            startup_repeats=1,
            quiet_wait=0,
            noisy_retries=0,
            workers=1,
        )
        print(f"{cores} cores, wrk -t1 on the same cores, {duration:g} s per point after {warmup:g} s warm-up")
        for name in names:
            build, shape = WORKLOADS[name]
            base = root / name
            build(base)
            body = root / f"{name}.json"
            body.write_bytes(request_body(shape, JSON))
            script = root / f"{name}.lua"
            script.write_text(
                f"local handle = assert(io.open({str(body)!r}, 'rb'))\nwrk.method = 'POST'\n"
                f"wrk.body = handle:read('*a')\nhandle:close()\nwrk.headers['Content-Type'] = '{JSON}'\n"
            )
            results[name] = {}
            for variant, code in VARIANTS.items():
                package = package_with_code(base, code, root / f"{name}-{variant}")
                with servers_stopped_at_exit() as live:
                    server = start_server("ours", package, settings, live)
                    points: list[LoadPoint] = []
                    for connections in CONNECTIONS:
                        run_wrk(server.port, script, connections, warmup, server.process.pid, path="/invocations")
                        point = run_wrk(
                            server.port, script, connections, duration, server.process.pid, path="/invocations"
                        )
                        failed |= point.errors > 0
                        points.append(point)
                        print(
                            f"{name:<5} {variant:<17} c={connections:<3} {point.requests_per_s:>8.0f} req/s  "
                            f"p50 {point.p50_ms:>8.2f} ms  p99 {point.p99_ms:>8.2f} ms  errors {point.errors}",
                            flush=True,
                        )
                results[name][variant] = [asdict(point) for point in points]
    for name, variants in results.items():
        builtin = {p["connections"]: p for p in variants["built-in"]}
        for variant, measured in variants.items():
            for row in measured:
                share = row["requests_per_s"] / builtin[row["connections"]]["requests_per_s"]
                print(
                    f"{name:<5} {variant:<17} c={row['connections']:<3.0f} {share:>6.0%} of the built-in path's req/s"
                )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {"cores": cores, "duration_s": duration, "max_batch_size": args.max_batch_size, "results": results}
    args.output.write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
