"""Local batch scoring (``model-deploy-batch`` with a local file): rows/s against the model's own limit,
and peak memory for two input sizes to show it does not grow with the input.

    .venv/bin/python -m bench.batch_local --quick     # about a minute: digits 100k vs 400k rows, CNN 2k images
    .venv/bin/python -m bench.batch_local             # digits 100k vs 1M rows, CNN 2k vs 8k images
    .venv/bin/python -m bench.batch_local --workers 1,2   # each input with --workers 1, then 2

Workloads: the digits MLP (``examples.digits``, 64 -> 64 -> 10) and the benchmark CNN
(``bench.serve_throughput.build_cnn``, 3x64x64 -> 10), each exported as ``torch_export``. The
in-process limit is ``model.predict``'s best rows/s over several batch sizes (digits 256-4096 rows,
CNN 8-1024 images: past its cache cliff a bigger batch is slower) in a fresh child process with the
same thread count. Each input is scored with the command's defaults (``default``: model calls of
the size it measures when the run starts, whole chunks for a small model) and, where the limit's
best size is below the chunk, with ``MODEL_SERVER_MAX_BATCH_SIZE`` set to it (model calls of that
size, chunks unchanged); each scoring run is a fresh child too, whose peak
RSS is its own high-water mark (``VmHWM``, Linux). rows/s of a run is what the command logs on finishing
(scoring only, after the package has loaded; with ``--workers`` N, after the last worker loaded
it). Peak RSS is the main process's; with N workers, the sum of every worker's too (each holds a
copy of the model). Inputs are float32 draws from a normal distribution as ``.npy`` and as JSON
Lines (one array per line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

_LIMIT_CHILD = r"""
import json, os, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path
import numpy as np
from inference.config import available_cpus
from model_package.formats import get_format
from model_package.manifest import read_manifest
package, sizes, seconds = Path(sys.argv[1]), [int(v) for v in sys.argv[2].split(",")], float(sys.argv[3])
manifest = read_manifest(package)
model = get_format(manifest.format).load(package, manifest, threads=available_cpus())
spec = manifest.signature.inputs[0]
best = (0.0, 0)
for batch in sizes:
    x = np.random.default_rng(0).standard_normal((batch, *spec.shape[1:]), dtype=np.float32)
    model.predict({spec.name: x})  # warm
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict({spec.name: x})
        rows += batch
    best = max(best, (rows / (time.perf_counter() - start), batch))
print(json.dumps({"rows_per_second": best[0], "batch": best[1]}))
"""

_SCORE_CHILD = r"""
import json, sys
from inference.batch.local import run_local
from infra.batch.cli import build_parser
parser = build_parser()  # the command's own options (--log-format and --verbose are the router's)
import threading, os, time
from pathlib import Path
peaks = {}
def watch():  # the workers' own high-water marks, read while they live (children only: cheap)
    while True:
        for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
            for child in children.read_text().split():
                try:
                    text = Path(f"/proc/{child}/status").read_text()
                    if "VmHWM:" in text:
                        peaks[child] = int(text.split("VmHWM:")[1].split()[0])
                except OSError:
                    pass
        time.sleep(0.1)
threading.Thread(target=watch, daemon=True).start()
code = run_local(parser.parse_args(sys.argv[1:]), parser)
# VmHWM, not ru_maxrss: exec starts a new address space (so a new high-water mark), while
# ru_maxrss carries over the peak of the forked copy of the benchmark process itself.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "max_rss_kib": int(hwm.split()[1]), "children_rss_kib": sum(peaks.values())}))
"""


@dataclass(frozen=True)
class Workload:
    name: str
    build: Callable[[Path], None]
    row_shape: tuple[int, ...]
    limit_batches: tuple[int, ...]
    """Batch sizes the in-process limit is measured at (the best counts: big batches are not always faster)."""
    sizes: dict[str, tuple[int, int]]
    """Per mode: (small, large) row counts."""
    jsonl_rows: dict[str, int]
    """Per mode: JSON Lines rows (text is 5x the size of .npy: one size is enough to show the rate)."""


def build_digits(out: Path) -> None:
    from examples.digits.torch_model import factory
    from model_package.export import export_model

    model, example = factory()
    export_model(model, example, out, name="digits", version="1.0.0", format="torch_export")


def build_cnn(out: Path) -> None:
    from bench.serve_throughput import build_cnn as build

    build(out)


WORKLOADS = (
    Workload(
        "digits",
        build_digits,
        (64,),
        (256, 1024, 4096),
        {"quick": (100_000, 400_000), "full": (100_000, 1_000_000)},
        {"quick": 200_000, "full": 1_000_000},
    ),
    Workload(
        "cnn",
        build_cnn,
        (3, 64, 64),
        (8, 16, 32, 64, 256, 1024),
        {"quick": (2_000, 2_000), "full": (2_000, 8_000)},
        {"quick": 500, "full": 2_000},
    ),
)


def env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def in_process_limit(package: Path, batches: tuple[int, ...], seconds: float) -> tuple[float, int]:
    """The model's best ``predict`` rows/s over ``batches``, and the batch size that gave it."""
    out = subprocess.run(
        [sys.executable, "-c", _LIMIT_CHILD, str(package), ",".join(map(str, batches)), str(seconds)],
        env=env(),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["rows_per_second"]), int(result["batch"])


def score(package: Path, data: Path, output: Path, workers: int, model_batch: int | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCORE_CHILD,
            "--input",
            str(data),
            "--output",
            str(output),
            "--package",
            str(package),
            "--no-progress",
            "--log-format",
            "json",
            "--workers",
            str(workers),
        ],
        env={**env(), **({"MODEL_SERVER_MAX_BATCH_SIZE": str(model_batch)} if model_batch else {})},
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(f"scoring {data} failed:\n{out.stderr[-2000:]}")
    finished = [json.loads(line) for line in out.stderr.splitlines() if '"batch scoring finished"' in line]
    return {
        "rows_per_second": finished[-1]["records_per_second"],
        "peak_rss_mib": (result["max_rss_kib"] + result["children_rss_kib"]) / 1024,
    }


def score_once(package: Path, data: Path, output: Path, workers: int, model_batch: int | None) -> dict[str, Any]:
    """One fresh run into ``output``, removed afterwards (outputs of large inputs are large)."""
    try:
        return score(package, data, output, workers, model_batch)
    finally:
        subprocess.run(["rm", "-rf", str(output)], check=True)


def write_inputs(directory: Path, shape: tuple[int, ...], rows: int, jsonl_rows: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    npy = directory / f"rows-{rows}.npy"
    # Written in blocks through a memory map: the benchmark itself stays small too.
    out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(rows, *shape))
    for begin in range(0, rows, 50_000):
        end = min(rows, begin + 50_000)
        out[begin:end] = rng.standard_normal((end - begin, *shape), dtype=np.float32)
    out.flush()
    jsonl = directory / f"rows-{jsonl_rows}.jsonl"
    if not jsonl.exists():
        with jsonl.open("wb") as handle:
            for begin in range(0, jsonl_rows, 10_000):
                block = np.asarray(out[begin : min(jsonl_rows, begin + 10_000)])
                handle.write(b"".join(orjson.dumps(row) + b"\n" for row in block.tolist()))
    del out
    return npy, jsonl


def run(workload: Workload, mode: str, root: Path, workers: list[int], repeat: int) -> list[dict[str, Any]]:
    package = root / workload.name / "package"
    workload.build(package)
    limit, best_batch = in_process_limit(package, workload.limit_batches, 1.0 if mode == "quick" else 3.0)
    rows: list[dict[str, Any]] = []
    small, large = workload.sizes[mode]
    # The defaults (model calls of the size the run measures), and, where the model is faster on smaller
    # batches, of the limit's best size through MODEL_SERVER_MAX_BATCH_SIZE (chunks stay whole).
    model_batches: list[int | None] = [None] if best_batch >= 1024 else [None, best_batch]
    for count in dict.fromkeys((small, large)):
        npy, jsonl = write_inputs(root / workload.name, workload.row_shape, count, workload.jsonl_rows[mode])
        inputs = [npy] if count != small else [npy, jsonl]
        for data in inputs:
            for count_workers in workers:
                for model_batch in model_batches:
                    # Best of ``repeat`` runs: on a shared machine, other work only ever slows a run down.
                    measured = max(
                        (
                            score_once(
                                package, data, root / workload.name / f"out-{data.name}", count_workers, model_batch
                            )
                            for _ in range(repeat)
                        ),
                        key=lambda result: result["rows_per_second"],
                    )
                    shown = count if data.suffix == ".npy" else workload.jsonl_rows[mode]
                    rows.append(
                        {
                            "workload": workload.name,
                            "input": data.suffix,
                            "rows": shown,
                            "workers": count_workers,
                            "model_batch": model_batch or "default",
                            "limit": limit,
                            "limit_batch": best_batch,
                            **measured,
                        }
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.batch_local", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (about a minute)")
    parser.add_argument("--workloads", default="digits,cnn", help="comma-separated: digits, cnn")
    parser.add_argument("--workers", default="1,2", help="comma-separated --workers values to run each input with")
    parser.add_argument("--repeat", type=int, default=1, help="runs per input and worker count; the best is shown")
    args = parser.parse_args(argv)
    workers = [int(value) for value in args.workers.split(",")]
    mode = "quick" if args.quick else "full"
    chosen = [w for w in WORKLOADS if w.name in args.workloads.split(",")]
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        for workload in chosen:
            results += run(workload, mode, Path(scratch), workers, args.repeat)
    print(
        f"{'workload':8} {'input':6} {'rows':>9} {'workers':>7} {'calls of':>8} {'rows/s':>9} "
        f"{'limit rows/s (batch)':>20} {'% limit':>7} {'peak RSS MiB':>12}"
    )
    for r in results:
        print(
            f"{r['workload']:8} {r['input']:6} {r['rows']:>9,} {r['workers']:>7} {r['model_batch']!s:>8} "
            f"{r['rows_per_second']:>9,.0f} {r['limit']:>12,.0f} ({r['limit_batch']:>5}) "
            f"{100 * r['rows_per_second'] / r['limit']:>6.0f}% {r['peak_rss_mib']:>12,.0f}"
        )
    print(f"({time.perf_counter() - started:.0f} s, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
