"""The README's main job: train, package, publish, then deploy locally and serve the digits model.

    ./dev.sh demo                  # package both models, deploy the PyTorch one, query it, shut it down
    ./dev.sh demo --keep-serving   # ... and leave the endpoint running
    ./dev.sh demo status           # is it running, and where
    ./dev.sh demo down             # stop it (SIGTERM: it drains, then exits 0)

Everything stays on this machine: the store is a ``file://`` directory under ``--out``, and
the endpoint is the real serving entrypoint in its own process, started the way SageMaker
starts the container, bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from examples.digits.data import INPUT_NAME, accuracy, load_digits_split
from model_package.archive import pack
from model_package.errors import ModelPackageError
from model_package.export import export_model
from model_package.formats import get_format
from model_package.logs import configure_logging
from model_package.publish import pull, push
from model_package.verify import verify_behaviour

_log = logging.getLogger("examples.digits.demo")


@dataclass(frozen=True)
class Outcome:
    """One packaged model's numbers for the summary."""

    label: str
    format: str
    digest: str
    uri: str
    archive_bytes: int
    live_accuracy: float
    packaged_accuracy: float
    max_abs_error: float
    seconds: float


def run_one(label: str, train: Callable[[], object], fmt: str, out: Path, store_uri: str) -> Outcome:
    """Train one model, package it in ``fmt``, publish it and check the fetched copy."""
    start = time.monotonic()
    split = load_digits_split()
    model = train()
    live = _live_logits(model, split.x_test)
    package_dir = out / "packages" / f"digits-{label}-{fmt}"
    manifest = export_model(
        model,
        {INPUT_NAME: split.x_test[:4]},
        package_dir,
        name=f"digits-{label}-{fmt}",
        version="1.0.0",
        format=fmt,
        overwrite=True,
        metadata={"dataset": "sklearn digits", "task": "10-class image classification"},
    )
    archive = pack(package_dir, out / "archives" / f"digits-{label}-{fmt}.tar.gz")
    _log.info("packed", extra={"package": manifest.name, "digest": archive.digest, "bytes": archive.size})

    published = push(archive.path, store_uri)
    fetched_dir = out / "fetched" / f"digits-{label}-{fmt}"
    if fetched_dir.exists():
        shutil.rmtree(fetched_dir)
    fetched = pull(published.uri, fetched_dir)

    # The fetched copy is loaded exactly as the serving container will load it.
    served = get_format(fetched.format).load(fetched_dir, fetched)
    report = verify_behaviour(fetched_dir, fetched, model=served)
    packaged = served.predict({INPUT_NAME: split.x_test})
    logits = next(iter(packaged.values()))
    return Outcome(
        label=label,
        format=fmt,
        digest=archive.digest,
        uri=published.uri,
        archive_bytes=archive.size,
        live_accuracy=accuracy(live, split.y_test),
        packaged_accuracy=accuracy(logits, split.y_test),
        max_abs_error=report.worst,
        seconds=time.monotonic() - start,
    )


def _live_logits(model: Any, x: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict"):  # Keras
        return np.asarray(model.predict(x, verbose=0))
    import torch

    with torch.inference_mode():
        return np.asarray(model(torch.from_numpy(x)).numpy())


def main(argv: list[str] | None = None) -> int:
    """Package the digits models, deploy one locally and query it (or report/stop a kept deployment)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=["run", "status", "down"], default="run")
    parser.add_argument("--out", type=Path, default=Path("out"), help="working directory (default: ./out)")
    parser.add_argument("--only", choices=["torch", "keras"], help="package just one framework")
    parser.add_argument("--keep-serving", action="store_true", help="leave the local endpoint running")
    args = parser.parse_args(argv)
    if args.action != "run":
        return _status_or_down(args.action, args.out.resolve() / "endpoint")
    # TensorFlow prints CPU-feature notices from C++ at import unless told not to.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_logging("text")
    out: Path = args.out.resolve()
    store_uri = (out / "store").as_uri()

    from examples.digits import keras_model, torch_model

    jobs = [
        ("torch", torch_model.train, "torch_export"),
        ("torch", torch_model.train, "onnx"),
        ("keras", keras_model.train, "tf_savedmodel"),
        ("keras", keras_model.train, "onnx"),
    ]
    outcomes = []
    try:
        for label, train, fmt in jobs:
            if args.only and args.only != label:
                continue
            _log.info(f"packaging the {label} model as {fmt}")
            outcomes.append(run_one(label, train, fmt, out, store_uri))
    except ModelPackageError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return exc.exit_code
    _print_summary(outcomes)
    served = next((o for o in outcomes if o.format == "torch_export"), outcomes[0] if outcomes else None)
    if served is None:
        return 0
    try:
        return serve_and_query(served.uri, out / "endpoint", keep_serving=args.keep_serving)
    except ModelPackageError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return exc.exit_code


def serve_and_query(package_uri: str, workdir: Path, *, keep_serving: bool) -> int:
    """Deploy the package locally as SageMaker would, send the held-out set, print accuracy and latency."""
    import httpx

    from inference import local_deploy

    print(f"\ndeploying {package_uri} locally (SageMaker container contract)")
    start = time.monotonic()
    deployment = local_deploy.deploy(package_uri, workdir)
    ready_seconds = time.monotonic() - start
    split = load_digits_split()
    latencies = []
    predictions = []
    with httpx.Client(base_url=deployment.url, timeout=30) as client:
        for row in split.x_test:
            sent = time.perf_counter()
            response = client.post("/invocations", json=[row.tolist()])
            latencies.append(time.perf_counter() - sent)
            response.raise_for_status()
            predictions.append(response.json()["predictions"][0])
        whole = client.post("/invocations", json={"instances": split.x_test.tolist()}).json()["predictions"]
    served_accuracy = accuracy(np.asarray(predictions), split.y_test)
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    print(f"endpoint {deployment.url} ready in {ready_seconds:.1f} s (pid {deployment.pid}, log {deployment.log_path})")
    print(
        f"{len(latencies)} held-out digits, one request each: accuracy {served_accuracy:.3f}, "
        f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )
    print(f"the whole held-out set in one request: accuracy {accuracy(np.asarray(whole), split.y_test):.3f}")
    if keep_serving:
        print(f"still serving at {deployment.url}; stop it with: ./dev.sh demo down")
        return 0
    code = local_deploy.down(workdir)
    print(f"endpoint stopped (SIGTERM, drained, exit code {code})")
    return 0 if code == 0 else 1


def _status_or_down(action: str, workdir: Path) -> int:
    from inference import local_deploy

    if action == "down":
        code = local_deploy.down(workdir)
        print("no local endpoint is running" if code is None else f"endpoint stopped (exit code {code})")
        return 0
    deployment = local_deploy.status(workdir)
    if deployment is None:
        print("no local endpoint is running")
        return 1
    state = "ready" if local_deploy.is_ready(deployment) else "not ready"
    print(f"{state}: {deployment.url} (pid {deployment.pid}) serving {deployment.package_uri}")
    return 0


def _print_summary(outcomes: list[Outcome]) -> None:
    print()
    print(
        f"{'model':<8} {'format':<14} {'digest':<16} {'KiB':>6} {'acc live':>9} {'acc pkg':>8} {'max err':>9} {'s':>5}"
    )
    for o in outcomes:
        print(
            f"{o.label:<8} {o.format:<14} {o.digest[:12] + '...':<16} {o.archive_bytes / 1024:>6.0f} "
            f"{o.live_accuracy:>9.3f} {o.packaged_accuracy:>8.3f} {o.max_abs_error:>9.1e} {o.seconds:>5.1f}"
        )
    print()
    for o in outcomes:
        print(f"published {o.uri}")


if __name__ == "__main__":
    sys.exit(main())
