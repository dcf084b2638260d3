"""Large decodes leave the event loop's thread; small ones stay inline (a thread hop would cost more)."""

from __future__ import annotations

import asyncio
import threading

from inference.offload import OFF_LOOP_BYTES, Offloader


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
    start = time.perf_counter()
    np.array(cells, dtype=np.float64)
    one_call = time.perf_counter() - start  # what one conversion call holds the interpreter for

    decoded: dict[str, np.ndarray] = {}
    thread = threading.Thread(target=lambda: decoded.update(decode_request(body, "text/csv", signature)))
    gaps = []
    thread.start()
    last = time.perf_counter()
    while thread.is_alive():
        time.sleep(0.0005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    thread.join()
    np.testing.assert_allclose(decoded["x"], values.astype(np.float32))
    assert max(gaps) < one_call / 2, (
        f"this thread waited {max(gaps) * 1000:.0f} ms at once while the body was decoded "
        f"(one conversion call: {one_call * 1000:.0f} ms)"
    )
