"""The README's main job: train, export, pack, verify, publish and fetch the digits models.

Run with ``./dev.sh demo`` (or ``python -m examples.digits.demo --out out``). Everything
stays on this machine: the store is a ``file://`` directory under ``--out``.
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
    """Train and package the PyTorch and Keras digits models; print a summary table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out"), help="working directory (default: ./out)")
    parser.add_argument("--only", choices=["torch", "keras"], help="package just one framework")
    args = parser.parse_args(argv)
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
