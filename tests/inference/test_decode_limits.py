"""Small bodies that decode into huge arrays: refused with 413 (or 400) before the server allocates them.

A real ``model-serve`` process serving the 64-feature MLP with a 1,000,000-byte body limit, so every
request may decode to at most 4,000,000 bytes. The server's peak RSS (``VmHWM``) is read from
``/proc`` before and after each hostile request: what a bomb costs is what an operator would see.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference.codecs.limits import DecodeLimits
from inference.codecs.oip_json import decode_tensor
from inference.errors import PayloadTooLargeError
from tests.inference.server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.torch
BODY_LIMIT = 1_000_000
# Growth of peak RSS a single request may cause: the decoded bound (4 MB) plus parsing overhead.
MAX_PEAK_GROWTH = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def server(torch_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("decode-limits"),
        args=["--model-dir", str(torch_package)],
        env={"MODEL_SERVER_MAX_REQUEST_BYTES": str(BODY_LIMIT)},
    )
    yield process
    process.terminate()


def _peak_rss(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _post(server: ServerProcess, body: bytes, content_type: str) -> tuple[httpx.Response, int]:
    # The server is shared: a peak reached by an earlier request would hide this one's, so the peak is
    # reset to the current RSS first (writing 5 to clear_refs, Linux >= 4.0: proc(5), /proc/pid/clear_refs).
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")
    before = _peak_rss(server)
    response = httpx.post(server.url + "/invocations", content=body, headers={"Content-Type": content_type}, timeout=60)
    return response, _peak_rss(server) - before


def test_a_compressed_npz_of_zeros_is_a_413_naming_the_limit(server: ServerProcess) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((200_000, 64), dtype=np.float32))  # 51 MB in ~50 KB
    body = buffer.getvalue()
    assert len(body) < BODY_LIMIT
    response, growth = _post(server, body, "application/x-npz")
    assert response.status_code == 413, response.text[:300]
    assert "4,000,000 bytes" in response.json()["error"]
    assert growth < MAX_PEAK_GROWTH


def test_one_long_string_among_json_numbers_costs_no_memory(server: ServerProcess) -> None:
    rows = [[0] * 64 for _ in range(7_000)]
    rows[-1][-1] = "x" * 400  # NumPy would widen all 448,000 elements to 400 characters: 717 MB
    body = httpx.Request("POST", "/", json={"instances": rows}).content
    assert len(body) < BODY_LIMIT
    response, growth = _post(server, body, "application/json")
    assert response.status_code == 400, response.text[:300]
    assert "row 6999 at index [63]" in response.json()["error"]
    assert growth < MAX_PEAK_GROWTH, f"peak RSS grew by {growth / 2**20:.0f} MiB"


def test_one_long_csv_cell_costs_no_memory(server: ServerProcess) -> None:
    lines = [",".join(["0"] * 64)] * 7_000
    lines[-1] = ",".join(["0"] * 63 + ["1" + " " * 400])  # a number padded with 400 spaces
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) < BODY_LIMIT
    response, growth = _post(server, body, "text/csv")
    assert response.status_code == 200, response.text[:300]
    assert growth < MAX_PEAK_GROWTH, f"peak RSS grew by {growth / 2**20:.0f} MiB"


def test_a_request_within_the_body_limit_but_too_many_rows_names_the_row_limit() -> None:
    limits = DecodeLimits.for_body_limit(BODY_LIMIT)
    with pytest.raises(PayloadTooLargeError, match=r"at most 15,625 rows of this model's input"):
        limits.check_rows({"x": np.zeros((20_000, 64), dtype=np.float32)})
    limits.check_rows({"x": np.zeros((15_625, 64), dtype=np.float32)})


def test_an_oip_bytes_tensor_with_one_long_string_is_a_413() -> None:
    limits = DecodeLimits.for_body_limit(BODY_LIMIT)
    data = ["a"] * 100_000 + ["b" * 1_000]  # a fixed-width array of 100 MB
    with pytest.raises(PayloadTooLargeError, match="BYTES input 'text'"):
        decode_tensor("text", "BYTES", [len(data)], data, limits=limits)
