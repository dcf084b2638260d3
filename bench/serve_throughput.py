"""Serving throughput, latency, start-up time and memory, against minimal FastAPI and bare Starlette apps.

    .venv/bin/python -m bench.serve_throughput            # 10 s per point (about 12 minutes in all)
    .venv/bin/python -m bench.serve_throughput --quick    # 3 s per point

Three workloads, each exported with ``export_model`` (format ``torch_export``)
from a seeded PyTorch model into a temp dir:

* ``tiny``: an MLP 64 -> 256 -> 256 -> 10, one row per request. The model costs
  microseconds, so this measures the server's own per-request overhead.
* ``cnn``: a small CNN on 3x64x64 images, one image per request as JSON, a few
  ms per forward on one core: compute-bound, plus 90 KB of JSON to parse.
* ``cnn-npy``: the same with ``application/x-npy`` bodies (no parsing cost).
* ``cnn-oip``: the same image as an Open Inference Protocol request with the
  binary tensor data extension (what Triton's clients send) to our
  ``/v2/models/{name}/infer``, outputs in binary; the baselines get ``.npy``
  bodies, their fastest binary format.

For each workload, in this order and one at a time:

1. the loaded model's own ``predict`` in a fresh process, in a loop for a few
   seconds per batch size (the best batch size is the in-process ceiling);
2. the package's verification (integrity + behaviour check) in a fresh
   process: what our server does at start-up and the baseline does not;
3. the baselines (``bench.baseline_app``: FastAPI, and bare Starlette as
   ``starlette``, each on uvicorn with uvloop and httptools,
   ``model.predict`` per request), our server with its defaults
   (``ours``: ``python -m inference serve``) and our server configured for
   throughput (``ours-workers``: ``MODEL_SERVER_WORKERS`` one per core and
   ``MODEL_SERVER_MAX_BATCH_SIZE=auto``), each started several times for its
   start-up-to-ready time (``Popen`` to the first 200 on ``/ping``), then, on
   the last start, driven by ``wrk -t1`` with the same POST body at 1, 8 and 64
   connections, after a short warm-up run at each. Idle memory is the PSS of
   the server's processes just after start-up (shared pages divided among
   the workers that share them), peak RSS the main process's ``VmHWM``.

All servers run on 127.0.0.1 with torch intra-op threads = the cores we may
use; so does ``wrk``, on the same cores (it costs every server alike).
Ratios are ours / baseline (and ours / in-process), measured in the same run.
Results are printed and written to ``bench/results/serve_throughput.json``.

On a shared machine other processes steal the same cores: before each measured
run we wait (bounded) for the machine to go idle, count the CPU time that
neither the server nor wrk used during the run, and measure a run again (up to
``--noisy-retries`` times) when others used more than a tenth of a core. The
table says when the reported numbers are still noisy. The exit code is 1 only
when a server failed requests or disagreed with the baseline; missed
performance targets are reported, not fatal.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 8, 64)
JSON = "application/json"
NPY = "application/x-npy"
OCTET = "application/octet-stream"
#: Our server with a worker per core and MODEL_SERVER_MAX_BATCH_SIZE=auto (``--workers``).
WORKERS_KIND = "ours-workers"
#: The bare Starlette baseline (the FastAPI one is "baseline").
STARLETTE_KIND = "starlette"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
#: A measured run during which other processes used more CPU than this (in cores) is reported as noisy.
NOISY_CORES = 0.1

_INPROCESS_CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from model_package.formats import get_format
from model_package.manifest import read_manifest
package, threads, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
batches = [int(b) for b in sys.argv[4].split(",")]
manifest = read_manifest(package)
model = get_format(manifest.format).load(package, manifest, threads=threads)
spec = manifest.signature.inputs[0]
rng = np.random.default_rng(0)
results = {}
for batch in batches:
    inputs = {spec.name: rng.standard_normal((batch, *spec.shape[1:])).astype(spec.dtype)}
    model.predict(inputs)  # first call per shape: allocator and kernel selection
    calls, start = 0, time.perf_counter()
    while True:
        model.predict(inputs)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    results[str(batch)] = {"rows_per_s": calls * batch / elapsed, "ms_per_call": 1000 * elapsed / calls}
print(json.dumps(results))
"""

_VERIFY_CHILD = r"""
import json, sys, time
from pathlib import Path
from model_package.formats import get_format
from model_package.manifest import read_manifest
from model_package.verify import verify_behaviour, verify_integrity
package, threads = Path(sys.argv[1]), int(sys.argv[2])
manifest = read_manifest(package)
model = get_format(manifest.format).load(package, manifest, threads=threads)
start = time.perf_counter()
verify_integrity(package)
verify_behaviour(package, manifest, model=model)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

# wrk reads the body from a file: the CNN's JSON body is too large to inline in Lua comfortably.
_WRK_SCRIPT = """
local handle = assert(io.open({body_path!r}, "rb"))
wrk.method = "POST"
wrk.body = handle:read("*a")
handle:close()
wrk.headers["Content-Type"] = "{content_type}"
{extra_headers}"""

_CORRECTNESS = ("no failed requests", "same predictions as the baseline")
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """A package to serve, one request body, and the batch sizes to try in-process."""

    name: str
    description: str
    build: Callable[[Path], None]
    input_shape: tuple[int, ...]
    """Shape of one request's batch (one row)."""
    batch_sizes: tuple[int, ...]
    content_type: str = JSON
    """How the request body is encoded: JSON (what most clients send) or NumPy's .npy."""
    oip_binary: bool = False
    """Our server gets Open Inference Protocol requests with binary tensors (the baselines get ``content_type``)."""


def build_tiny(out: Path) -> None:
    """The tiny MLP (64 -> 256 -> 256 -> 10), exported as torch_export."""
    import torch
    from torch import nn

    from model_package.export import export_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    example = np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32)
    export_model(model, {"input": example}, out, name="bench-tiny-mlp", version="1.0.0", format="torch_export")


def build_cnn(out: Path) -> None:
    """The small CNN (3x64x64 -> 10), a few ms per image on one core, exported as torch_export."""
    import torch
    from torch import nn

    from model_package.export import export_model

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]

    torch.manual_seed(0)
    model = nn.Sequential(
        *conv(3, 32),
        nn.MaxPool2d(2),
        *conv(32, 64),
        *conv(64, 64),
        nn.MaxPool2d(2),
        *conv(64, 128),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).eval()
    example = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    export_model(model, {"input": example}, out, name="bench-small-cnn", version="1.0.0", format="torch_export")


WORKLOADS = {
    "tiny": Workload("tiny", "tiny MLP 64->256->256->10, 1 row/request", build_tiny, (1, 64), (1, 8, 64, 256)),
    "cnn": Workload(
        "cnn", "small CNN on 3x64x64, 1 image/request", build_cnn, (1, 3, 64, 64), (1, 2, 4, 8, 16, 32, 64)
    ),
    # The same model with binary bodies: what is left once JSON parsing (0.36 ms per image) is gone.
    "cnn-npy": Workload(
        "cnn-npy",
        "small CNN on 3x64x64, 1 image/request as application/x-npy",
        build_cnn,
        (1, 3, 64, 64),
        (1, 2, 4, 8, 16, 32, 64),
        NPY,
    ),
    "cnn-oip": Workload(
        "cnn-oip",
        "small CNN on 3x64x64, 1 image/request as OIP binary tensors (baselines: .npy)",
        build_cnn,
        (1, 3, 64, 64),
        (1, 2, 4, 8, 16, 32, 64),
        NPY,
        oip_binary=True,
    ),
}


@dataclass(frozen=True)
class Exchange:
    """How one server is asked for a prediction: path, body and headers (the same for every request)."""

    path: str
    body: bytes
    headers: Mapping[str, str]


def oip_binary_body(array: np.ndarray, input_name: str) -> tuple[bytes, int]:
    """An OIP inference request with ``array`` as binary tensor data (Triton's layout), and its JSON length."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(array.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": array.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + array.astype("<f4").tobytes(), len(header)


def predictions_of(payload: bytes, headers: Mapping[str, str]) -> np.ndarray:
    """The first output of a response: ``{"predictions"}`` JSON, or an OIP response with binary outputs."""
    length = headers.get("inference-header-content-length")
    if length is None:
        return np.asarray(orjson.loads(payload)["predictions"], dtype=np.float64)
    header = orjson.loads(payload[: int(length)])
    first = header["outputs"][0]
    size = first["parameters"]["binary_data_size"]
    data = payload[int(length) : int(length) + size]
    return np.frombuffer(data, dtype="<f4").reshape(first["shape"]).astype(np.float64)


def request_body(shape: tuple[int, ...], content_type: str = JSON) -> bytes:
    """One request: a bare JSON list with 4 decimals, as a client sending real features would, or .npy."""
    values = np.round(np.random.default_rng(1).standard_normal(shape), 4)
    if content_type == NPY:
        buffer = io.BytesIO()
        np.save(buffer, values.astype(np.float32), allow_pickle=False)
        return buffer.getvalue()
    return orjson.dumps(values.tolist())


# --------------------------------------------------------------------------- processes


@dataclass
class Server:
    """A server process under test."""

    kind: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ready_seconds: float = 0.0
    idle_rss_mib: float = 0.0
    idle_pss_mib: float = 0.0

    def stop(self) -> int | None:
        """SIGTERM (our server drains), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        return self.process.returncode


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """The few variables a child needs, without this shell's MODEL_SERVER_* or platform variables."""
    return {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}


@dataclass(frozen=True)
class Settings:
    """How to run the servers and the load: fixed for the whole run."""

    threads: int
    """torch intra-op threads of every process (the cores we may use)."""
    ours_env: Mapping[str, str]
    """Extra MODEL_SERVER_* variables for our server."""
    logs: Path
    duration: float
    warmup: float
    inprocess_seconds: float
    startup_repeats: int
    quiet_wait: float
    """Longest wait for other processes to go quiet before each measured run."""
    noisy_retries: int
    """How often a run is measured again when other processes used more than NOISY_CORES during it."""
    workers: int
    """MODEL_SERVER_WORKERS of the ``ours-workers`` server (1: that server is not run)."""


def start_server(kind: str, package: Path, settings: Settings, live: list[Server]) -> Server:
    """Start ``kind`` ("ours" or "baseline") on a free loopback port and wait for /ping."""
    port = free_port()
    log_path = settings.logs / f"{kind}-{port}.log"
    env = base_env()
    if kind.startswith("ours"):
        cmd = [sys.executable, "-m", "inference", "serve", "--model-dir", str(package)]
        env.update({"SAGEMAKER_BIND_TO_PORT": str(port), "MODEL_SERVER_HOST": "127.0.0.1", **settings.ours_env})
        if kind == WORKERS_KIND:
            # The configuration for throughput: a worker per core, batch cap measured at start-up.
            env["MODEL_SERVER_WORKERS"] = str(settings.workers)
            env.setdefault("MODEL_SERVER_MAX_BATCH_SIZE", "auto")
    else:
        cmd = [sys.executable, "-m", "bench.baseline_app", "--model-dir", str(package), "--port", str(port)]
        cmd += ["--threads", str(settings.threads)]
        if kind == STARLETTE_KIND:
            cmd += ["--framework", "starlette"]
        # Our entrypoint sets the OpenMP pool size from the CPU quota; give the baseline the same.
        env["OMP_NUM_THREADS"] = str(settings.threads)
    with log_path.open("wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    server = Server(kind, process, port, log_path)
    live.append(server)
    deadline = start + READY_TIMEOUT
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
        if _get_status(port, "/ping") == 200:
            server.ready_seconds = time.perf_counter() - start
            break
        time.sleep(0.01)
    else:
        raise RuntimeError(f"{kind} server not ready within {READY_TIMEOUT:g} s; see {log_path}")
    time.sleep(0.5)  # let start-up garbage settle before reading the idle footprint
    server.idle_rss_mib = proc_status_mib(process.pid, "VmRSS")
    server.idle_pss_mib = tree_pss_mib(process.pid)
    return server


def _get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def post(port: int, exchange: Exchange) -> np.ndarray:
    """One POST of ``exchange``; the first output's predictions."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30.0)
    try:
        conn.request("POST", exchange.path, exchange.body, dict(exchange.headers))
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {exchange.path} on port {port} answered {response.status}: {payload[:500]!r}")
        return predictions_of(payload, {name.lower(): value for name, value in response.getheaders()})
    finally:
        conn.close()


def proc_status_mib(pid: int, key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of ``pid`` from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live children (the workers of a multi-process server), from /proc."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    return pids


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` and its children, in MiB: what the processes really cost together.

    RSS counts a page shared by several processes (the workers' copy-on-write model weights, the
    framework's libraries) once per process; PSS divides it among them, so the sum is honest.
    """
    total_kib = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


_TICKS = os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU seconds all cores have spent busy since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _TICKS  # minus idle and iowait


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children (all their threads), from /proc."""
    total = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def cpu_busy_fraction(seconds: float) -> float:
    """The share of all CPUs' time spent busy over ``seconds``: what other processes use."""
    before = busy_cpu_seconds()
    time.sleep(seconds)
    return (busy_cpu_seconds() - before) / seconds / len(os.sched_getaffinity(0))


def wait_until_quiet(max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until the machine is idle; the busy share seen last.

    Between runs only other processes use the CPUs: on a shared machine a point
    measured next to someone's test suite is not worth reporting.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy_fraction(0.5)
        if busy < 0.05 or time.monotonic() >= deadline:
            return busy


def run_child(code: str, *args: str, timeout: float) -> Any:
    """Run ``code`` in a fresh interpreter and parse the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, cwd=REPO, timeout=timeout
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def servers_stopped_at_exit() -> Iterator[list[Server]]:
    """A list to register servers in; every one still running is stopped on the way out, even on errors."""
    live: list[Server] = []
    try:
        yield live
    finally:
        for server in live:
            server.stop()


# --------------------------------------------------------------------------- wrk


@dataclass
class LoadPoint:
    """One wrk run."""

    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    """Non-2xx responses plus socket errors (connect, read, write, timeout)."""
    other_cpu_cores: float = 0.0
    """CPU used during the run by processes other than the server and wrk, in cores (noise)."""


def run_wrk(port: int, script: Path, connections: int, seconds: float, server_pid: int, *, path: str) -> LoadPoint:
    """``wrk -t1 -c<connections> -d<seconds>s --latency`` against ``path``, parsed.

    Also accounts for the machine's CPU time during the run: what neither the
    server nor wrk used was used by someone else, and is reported as noise.
    """
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(script), f"http://127.0.0.1:{port}{path}"]
    busy, server_cpu = busy_cpu_seconds(), process_cpu_seconds(server_pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    others = busy_cpu_seconds() - busy - (process_cpu_seconds(server_pid) - server_cpu) - wrk_cpu
    point = parse_wrk(out, connections)
    point.other_cpu_cores = max(0.0, others / wall)
    return point


def parse_wrk(out: str, connections: int) -> LoadPoint:
    """Requests/sec, the 50 % and 99 % latencies, and the error counts of wrk's ``--latency`` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    percentiles = {
        int(m.group(1)): float(m.group(2)) * _UNITS_MS[m.group(3)]
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)
    }
    if rate is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise RuntimeError(f"cannot parse wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return LoadPoint(connections, float(rate.group(1)), percentiles[50], percentiles[99], int(total.group(1)), errors)


# --------------------------------------------------------------------------- measurement


@dataclass
class ServerResult:
    """Everything measured on one server for one workload."""

    kind: str
    ready_seconds: list[float]
    idle_rss_mib: float
    peak_rss_mib: float
    idle_pss_mib: float
    points: list[LoadPoint]
    exit_code: int | None = None

    @property
    def ready_median(self) -> float:
        """Median start-up-to-ready time."""
        return statistics.median(self.ready_seconds)

    def at(self, connections: int) -> LoadPoint:
        """The load point at ``connections``."""
        return next(p for p in self.points if p.connections == connections)


@dataclass
class WorkloadResult:
    """One workload: in-process ceiling, verification cost, both servers, targets."""

    name: str
    description: str
    body_bytes: int
    inprocess: dict[str, dict[str, float]]
    verification_seconds: list[float]
    servers: dict[str, ServerResult]
    outputs_match: bool
    targets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def inprocess_best(self) -> tuple[int, float]:
        """(batch size, rows/s) of the best in-process batch size."""
        batch, best = max(self.inprocess.items(), key=lambda item: item[1]["rows_per_s"])
        return int(batch), best["rows_per_s"]


def measure_server(
    kind: str,
    package: Path,
    *,
    script: Path,
    exchange: Exchange,
    settings: Settings,
    live: list[Server],
) -> tuple[ServerResult, np.ndarray]:
    """Start ``kind`` ``startup_repeats`` times, then load the last one at each concurrency."""
    ready: list[float] = []
    for attempt in range(settings.startup_repeats):
        server = start_server(kind, package, settings, live)
        ready.append(server.ready_seconds)
        if attempt < settings.startup_repeats - 1:
            server.stop()
    prediction = post(server.port, exchange)
    points = []
    for connections in CONCURRENCY:
        if settings.warmup > 0:
            run_wrk(server.port, script, connections, settings.warmup, server.process.pid, path=exchange.path)
        trials: list[LoadPoint] = []
        for _ in range(1 + settings.noisy_retries):
            wait_until_quiet(settings.quiet_wait)
            trials.append(
                run_wrk(server.port, script, connections, settings.duration, server.process.pid, path=exchange.path)
            )
            if trials[-1].other_cpu_cores <= NOISY_CORES:
                break
        point = min(trials, key=lambda trial: trial.other_cpu_cores)
        points.append(point)
        print(
            f"  {kind:<8} c={connections:<3} {point.requests_per_s:>9.0f} req/s  p50 {point.p50_ms:>8.3f} ms  "
            f"p99 {point.p99_ms:>8.3f} ms  errors {point.errors}  other processes {point.other_cpu_cores:.2f} cores",
            flush=True,
        )
    peak = proc_status_mib(server.process.pid, "VmHWM")
    result = ServerResult(kind, ready, server.idle_rss_mib, peak, server.idle_pss_mib, points)
    result.exit_code = server.stop()
    return result, prediction


def run_workload(workload: Workload, root: Path, settings: Settings) -> WorkloadResult:
    """Build the package, then measure in-process, verification, baseline and ours, one after the other."""
    package = root / workload.name
    workload.build(package)
    body = request_body(workload.input_shape, workload.content_type)
    baseline_exchange = Exchange("/invocations", body, {"Content-Type": workload.content_type, "Accept": JSON})
    ours_exchange = baseline_exchange
    if workload.oip_binary:
        from model_package.manifest import read_manifest

        manifest = read_manifest(package)
        image = np.load(io.BytesIO(body), allow_pickle=False)
        oip_body, json_length = oip_binary_body(image, manifest.signature.inputs[0].name)
        headers = {"Content-Type": OCTET, "Inference-Header-Content-Length": str(json_length)}
        ours_exchange = Exchange(f"/v2/models/{manifest.name}/infer", oip_body, headers)
    scripts: dict[str, Path] = {}
    for label, exchange in (("baseline", baseline_exchange), ("ours", ours_exchange)):
        body_path = root / f"{workload.name}-{label}-body"
        body_path.write_bytes(exchange.body)
        extra = "".join(
            f'wrk.headers["{name}"] = "{value}"\n' for name, value in exchange.headers.items() if name != "Content-Type"
        )
        scripts[label] = root / f"{workload.name}-{label}.lua"
        scripts[label].write_text(
            _WRK_SCRIPT.format(
                body_path=str(body_path), content_type=exchange.headers["Content-Type"], extra_headers=extra
            )
        )

    print(f"{workload.name}: in-process predict, {settings.inprocess_seconds:g} s per batch size", flush=True)
    wait_until_quiet(settings.quiet_wait)
    inprocess = run_child(
        _INPROCESS_CHILD,
        str(package),
        str(settings.threads),
        str(settings.inprocess_seconds),
        ",".join(str(b) for b in workload.batch_sizes),
        timeout=60 + 2 * len(workload.batch_sizes) * settings.inprocess_seconds,
    )
    verification = [
        float(run_child(_VERIFY_CHILD, str(package), str(settings.threads), timeout=120)["seconds"])
        for _ in range(settings.startup_repeats)
    ]
    servers: dict[str, ServerResult] = {}
    predictions: dict[str, np.ndarray] = {}
    with servers_stopped_at_exit() as live:
        for kind in ("baseline", STARLETTE_KIND, "ours", *([WORKERS_KIND] if settings.workers > 1 else [])):
            label = "ours" if kind.startswith("ours") else "baseline"
            servers[kind], predictions[kind] = measure_server(
                kind,
                package,
                script=scripts[label],
                exchange=ours_exchange if label == "ours" else baseline_exchange,
                settings=settings,
                live=live,
            )
    base = predictions["baseline"]
    match = all(
        got.shape == base.shape and bool(np.allclose(got, base, rtol=1e-4, atol=1e-5)) for got in predictions.values()
    )
    result = WorkloadResult(workload.name, workload.description, len(body), inprocess, verification, servers, match)
    result.targets = evaluate_targets(result)
    return result


def evaluate_targets(result: WorkloadResult) -> list[dict[str, Any]]:
    """Issue 12's targets for this workload, for each of our configurations, with the measured values.

    Against the bare Starlette baseline (the floor for a server's own cost) where it ran, else FastAPI:
    tiny MLP at 1 connection p50 <= the floor's, at 64 connections >= 2x its throughput with
    p99 < 25 ms (in one process: ``ours``); the CNN at 64 connections >= 90 % of the model's
    in-process rows/s with JSON bodies, >= 95 % with binary ones; start-up <= 1.3x and idle
    memory <= 1.15x the floor's.
    """
    floor = result.servers.get(STARLETTE_KIND, result.servers["baseline"])
    targets: list[dict[str, Any]] = []

    def target(name: str, value: float, limit: float, met: bool, unit: str) -> None:
        targets.append({"target": name, "value": value, "limit": limit, "unit": unit, "met": met})

    for kind, ours in result.servers.items():
        if not kind.startswith("ours"):
            continue
        if result.name == "tiny":
            top, floor_top = ours.at(64), floor.at(64)
            wanted = 2 * floor_top.requests_per_s
            met = top.requests_per_s >= wanted
            target(f"{kind}: c=64 >= 2x bare Starlette", top.requests_per_s, wanted, met, "req/s")
            target(f"{kind}: c=64 p99 < 25 ms", top.p99_ms, 25.0, top.p99_ms < 25.0, "ms")
            p50, floor_p50 = ours.at(1).p50_ms, floor.at(1).p50_ms
            target(f"{kind}: c=1 p50 <= bare Starlette's", p50, floor_p50, p50 <= floor_p50, "ms")
        if result.name.startswith("cnn"):
            top = ours.at(64)
            share = 0.90 if result.name == "cnn" else 0.95
            ceiling = share * result.inprocess_best[1]
            met = top.requests_per_s >= ceiling
            target(f"{kind}: c=64 >= {share:.0%} of in-process", top.requests_per_s, ceiling, met, "req/s")
        allowed = 1.3 * floor.ready_median
        met = ours.ready_median <= allowed
        target(f"{kind}: start-up <= 1.3x bare Starlette", ours.ready_median, allowed, met, "s")
        limit = 1.15 * floor.idle_pss_mib
        target(
            f"{kind}: idle memory (PSS) <= 1.15x bare Starlette",
            ours.idle_pss_mib,
            limit,
            ours.idle_pss_mib <= limit,
            "MiB",
        )
    errors = sum(p.errors for s in result.servers.values() for p in s.points)
    target("no failed requests", errors, 0, errors == 0, "requests")
    target("same predictions as the baseline", float(result.outputs_match), 1, result.outputs_match, "")
    return targets


# --------------------------------------------------------------------------- report


def ratio(ours: float, reference: float) -> str:
    """``ours / reference`` as ``1.23x``, or ``-`` when the reference is zero."""
    return f"{ours / reference:.2f}x" if reference else "-"


def print_workload(result: WorkloadResult, settings: str) -> None:
    """The table for one workload: absolute numbers and ratios to the baseline, then the targets."""
    base = result.servers["baseline"]
    batch, best = result.inprocess_best
    single = result.inprocess.get("1", {}).get("rows_per_s", 0.0)
    print()
    print(f"== {result.description} (body {result.body_bytes} bytes); ours: {settings}")
    print(f"   in-process predict: best {best:,.0f} rows/s at batch {batch}; {single:,.0f} rows/s at batch 1")
    header = (
        f"{'conns':>5} {'server':<13} | {'req/s':>8} {'vs base':>7} {'vs inproc':>9} | "
        f"{'p50':>8} {'vs base':>7} | {'p99':>9} {'vs base':>7}"
    )
    print(header)
    print("-" * len(header))
    for connections in CONCURRENCY:
        b = base.at(connections)
        for kind, server in result.servers.items():
            o = server.at(connections)
            print(
                f"{connections:>5} {kind:<13} | {o.requests_per_s:>8,.0f} "
                f"{ratio(o.requests_per_s, b.requests_per_s):>7} "
                f"{ratio(o.requests_per_s, best):>9} | {o.p50_ms:>6.2f}ms {ratio(o.p50_ms, b.p50_ms):>7} | "
                f"{o.p99_ms:>7.2f}ms {ratio(o.p99_ms, b.p99_ms):>7}"
            )
    noise = max(p.other_cpu_cores for server in result.servers.values() for p in server.points)
    print(
        f"other processes used at most {noise:.2f} cores during a measured run"
        + (" (noisy)" if noise > NOISY_CORES else "")
    )
    verification = statistics.median(result.verification_seconds)
    print(f"package verification alone {verification:.3f} s; start-up to ready (median of {len(base.ready_seconds)}):")
    for kind, server in result.servers.items():
        print(
            f"   {kind:<13} ready {server.ready_median:.2f} s ({server.ready_median / base.ready_median:.2f}x); "
            f"idle PSS {server.idle_pss_mib:.0f} MiB ({server.idle_pss_mib / base.idle_pss_mib:.2f}x), "
            f"idle RSS of the main process {server.idle_rss_mib:.0f} MiB, its peak {server.peak_rss_mib:.0f} MiB"
        )
    for t in result.targets:
        if not t["unit"]:
            detail = "yes" if t["met"] else "no"
        else:
            digits = {"req/s": 0, "ms": 3, "s": 2, "MiB": 0, "requests": 0}[t["unit"]]
            detail = f"{t['value']:,.{digits}f} {t['unit']} (limit {t['limit']:,.{digits}f} {t['unit']})"
        print(f"   [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {detail}")


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def main(argv: list[str] | None = None) -> int:
    """Measure every workload, print the tables, and write the numbers as JSON under bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s per measured run, 1 s warm-up, 1 s in-process")
    parser.add_argument("--warmup", type=float, help="seconds of the wrk warm-up run before each point (default 2)")
    parser.add_argument("--inprocess-seconds", type=float, help="seconds per in-process batch size (default 3)")
    parser.add_argument("--startup-repeats", type=int, default=3, help="starts per server for the start-up time")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="max seconds to wait for an idle machine before each run"
    )
    parser.add_argument(
        "--noisy-retries", type=int, default=2, help="re-measure a run this often when other processes were busy"
    )
    parser.add_argument(
        "--workloads", default="tiny,cnn,cnn-npy,cnn-oip", help="comma-separated subset of: tiny, cnn, cnn-npy, cnn-oip"
    )
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads of every process under test (default: the cores we may use)"
    )
    parser.add_argument("--max-batch-size", type=int, help="MODEL_SERVER_MAX_BATCH_SIZE for our server")
    parser.add_argument("--max-batch-delay-ms", type=float, help="MODEL_SERVER_MAX_BATCH_DELAY_MS for our server")
    parser.add_argument(
        "--workers",
        type=int,
        help="MODEL_SERVER_WORKERS of the third server, ours-workers (default: one per core; 1 skips it)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "serve_throughput.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.inprocess_seconds is None:
        args.inprocess_seconds = 1.0 if args.quick else 3.0
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names or args.startup_repeats < 1:
        parser.error(f"--workloads takes a subset of {', '.join(WORKLOADS)}; --startup-repeats must be >= 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")

    cores = len(os.sched_getaffinity(0))
    threads = args.threads or cores
    ours_env: dict[str, str] = {}
    if args.threads is not None:
        # Otherwise our server sizes its pool from the same CPU affinity (or a tighter cgroup quota).
        ours_env["MODEL_SERVER_COMPUTE_THREADS"] = str(threads)
    if args.max_batch_size is not None:
        ours_env["MODEL_SERVER_MAX_BATCH_SIZE"] = str(args.max_batch_size)
    if args.max_batch_delay_ms is not None:
        ours_env["MODEL_SERVER_MAX_BATCH_DELAY_MS"] = f"{args.max_batch_delay_ms:g}"
    described = ", ".join(f"{k}={v}" for k, v in ours_env.items()) or "server defaults (max batch 64, delay 0 ms)"
    load_before = os.getloadavg()
    busy_before = cpu_busy_fraction(1.0)
    print(
        f"{cores} cores, torch threads {threads}, wrk -t1 on the same cores, {args.duration:g} s per point after "
        f"{args.warmup:g} s warm-up; before the run: load average {load_before[0]:.2f}, CPU busy {busy_before:.0%}",
        flush=True,
    )
    if busy_before > NOISY_CORES / cores:
        print("warning: the machine is not idle; other processes compete for the same cores", flush=True)

    results: list[WorkloadResult] = []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        settings = Settings(
            threads,
            ours_env,
            logs,
            args.duration,
            args.warmup,
            args.inprocess_seconds,
            args.startup_repeats,
            args.quiet_wait,
            args.noisy_retries,
            args.workers or cores,
        )
        for name in names:
            results.append(run_workload(WORKLOADS[name], Path(tmp), settings))
    for result in results:
        print_workload(result, described)

    report = {
        "cores": cores,
        "torch_threads": threads,
        "cpu_busy_before": busy_before,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "concurrency": list(CONCURRENCY),
        "load_generator": "wrk -t1 --latency (same machine, loopback)",
        "ours_env": ours_env,
        "ours_settings": described,
        "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0],
        "workloads": {
            r.name: {
                "description": r.description,
                "body_bytes": r.body_bytes,
                "inprocess_rows_per_s": r.inprocess,
                "inprocess_best": {"batch": r.inprocess_best[0], "rows_per_s": r.inprocess_best[1]},
                "verification_seconds": r.verification_seconds,
                "outputs_match": r.outputs_match,
                "servers": {kind: {**asdict(s), "ready_median_s": s.ready_median} for kind, s in r.servers.items()},
                "ratios_over_baseline": {
                    kind: {
                        str(c): {
                            "requests_per_s": _div(s.at(c).requests_per_s, r.servers["baseline"].at(c).requests_per_s),
                            "p50": _div(s.at(c).p50_ms, r.servers["baseline"].at(c).p50_ms),
                            "p99": _div(s.at(c).p99_ms, r.servers["baseline"].at(c).p99_ms),
                        }
                        for c in CONCURRENCY
                    }
                    for kind, s in r.servers.items()
                    if kind != "baseline"
                },
                "targets": r.targets,
            }
            for r in results
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")
    # Missed performance targets are findings, not failures: exit 1 only when the servers misbehaved.
    correct = all(t["met"] for r in results for t in r.targets if t["target"] in _CORRECTNESS)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
