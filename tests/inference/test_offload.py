"""Large decodes leave the event loop's thread; small ones stay inline (a thread hop would cost more)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

import pytest

from inference.entrypoint import SWITCH_INTERVAL_S
from inference.offload import OFF_LOOP_BYTES, Offloader

#: Milliseconds decide these tests: run alone (`./dev.sh test`), and again when a VM's pause (a 0.16 ms
#: sleep seen taking 5-29 ms, 1 to 5 times in 100) fails one; a defect fails every run.
pytestmark = [pytest.mark.timing, pytest.mark.flaky(reruns=2)]


def test_large_work_runs_off_the_event_loop_thread_and_small_work_inline() -> None:
    offload = Offloader()

    async def main() -> tuple[str, str]:
        loop_thread = threading.current_thread().name
        small = await offload.run(100, lambda: threading.current_thread().name)
        large = await offload.run(OFF_LOOP_BYTES, lambda: threading.current_thread().name)
        assert small == loop_thread
        return small, large

    try:
        small, large = asyncio.run(main())
    finally:
        offload.shutdown()
    assert large != small and large.startswith("codec")


def test_decoding_a_large_csv_body_off_the_loop_lets_the_loop_run_meanwhile() -> None:
    # Offloading only helps if the codec thread lets go of the interpreter: a single NumPy call
    # converting every cell holds it throughout (over 100 ms for this body on the benchmark VMs),
    # and the event loop (health checks) could not run a line of Python until it returned.
    import time

    import numpy as np

    from inference.codecs import decode_request
    from model_package.manifest import Signature, TensorSpec

    values = np.random.default_rng(0).standard_normal((9_000, 64))
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in values).encode()
    signature = Signature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 64)),),
        outputs=(TensorSpec(name="y", dtype="float32", shape=(-1,)),),
    )
    cells = [line.split(",") for line in body.decode().splitlines()]
    calls = []
    for _ in range(3):
        start = time.perf_counter()
        np.array(cells, dtype=np.float64)
        calls.append(time.perf_counter() - start)
    one_call = min(calls)  # what one conversion call holds the interpreter for

    decoded: dict[str, np.ndarray] = {}
    longest = _longest_wait_while(lambda: decoded.update(decode_request(body, "text/csv", signature)))
    np.testing.assert_allclose(decoded["x"], values.astype(np.float32))
    assert longest < one_call / 2, (
        f"this thread waited {longest * 1000:.0f} ms at once while the body was decoded "
        f"(one conversion call: {one_call * 1000:.0f} ms)"
    )


def _longest_wait_while(work: Callable[[], object], trials: int = 3) -> float:
    """The longest this thread waited for the interpreter while ``work`` ran on another thread.

    With the server's switch interval, and no garbage collection meanwhile (its pauses are not
    the decoder's doing, and vary with whatever else the test process holds). The best of a few
    runs: a hold in the decoder shows in every run, a pause of the (shared, noisy) VM in some.
    """
    import gc
    import time

    runs = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.disable()
    try:
        for _ in range(trials):
            thread = threading.Thread(target=work)
            gaps = [0.0]
            thread.start()
            last = time.perf_counter()
            while thread.is_alive():
                time.sleep(0.0005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
            thread.join()
            runs.append(max(gaps))
    finally:
        gc.enable()
        sys.setswitchinterval(interval)
    return min(runs)


@pytest.mark.parametrize("form", ["instances", "list", "oip"])
def test_decoding_a_large_json_body_off_the_loop_lets_the_loop_run_meanwhile(form: str) -> None:
    # orjson parses without the interpreter, but one np.asarray over the parsed numbers of a large
    # body holds it throughout (20-40 ms for a 5 MB body on the benchmark VMs), and so did freeing
    # them in one cascade: the event loop (health checks) waited that long at once however the
    # decoding was offloaded (bench.health_under_load --format json: /ping p99 161 ms, max 228 ms).
    # Those holds grow with the body, the decoder's blocks do not: a 10 MB body keeps them apart.
    import time

    import numpy as np
    import orjson

    from inference.codecs import decode_request
    from inference.codecs.oip_json import parse_infer_request
    from model_package.manifest import Signature, TensorSpec

    values = np.random.default_rng(0).standard_normal((18_000, 64)).round(6)
    signature = Signature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 64)),),
        outputs=(TensorSpec(name="y", dtype="float32", shape=(-1,)),),
    )
    decoded: dict[str, np.ndarray] = {}
    if form == "oip":
        data = values.ravel().tolist()
        body = orjson.dumps(
            {"id": "big", "inputs": [{"name": "x", "shape": [18_000, 64], "datatype": "FP32", "data": data}]}
        )

        def decode() -> None:
            decoded.update(parse_infer_request(body, signature).inputs)
    else:
        data = values.tolist()
        body = orjson.dumps({"instances": data} if form == "instances" else data)

        def decode() -> None:
            decoded.update(decode_request(body, "application/json", signature))

    calls = []
    for _ in range(3):  # the first call also pays for fresh memory: the warm ones are what decoding pays
        start = time.perf_counter()
        np.asarray(data)
        calls.append(time.perf_counter() - start)
    one_call = min(calls)  # what one conversion call holds the interpreter for

    longest = _longest_wait_while(decode)
    np.testing.assert_allclose(decoded["x"], values.astype(np.float32))
    assert longest < one_call / 2, (
        f"this thread waited {longest * 1000:.1f} ms at once while the body was decoded "
        f"(one conversion call: {one_call * 1000:.1f} ms)"
    )
