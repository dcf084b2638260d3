"""Health checks are answered while a text pipeline tokenizes a long text, in a real server process.

``Tokenizer.encode`` holds the interpreter lock for the whole text: one 5.5 MB text kept ``/ping``
(and every other request) waiting 20 s on a served text package (a hostile-client review; 2 MB of
one word: ``/ping`` waited 0.9 s here). The pipeline now tokenizes through ``encode_batch``, which
lets go of the lock while it works. (In one process through httpx's ASGI transport the stall does
not show: the server's own event loop and sockets are what wait.)
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.inference.server_fixtures import ServerProcess

#: Milliseconds decide this test: run alone (`./dev.sh test`), and again when a VM pause fails it.
pytestmark = [pytest.mark.torch, pytest.mark.timing, pytest.mark.flaky(reruns=2)]

#: One word of this many letters: the tokenizer reads all of it (there is no earlier word to stop
#: at, so no head of the text will do), about a second of work here.
LETTERS = 2_000_000
#: The slowest health answer allowed meanwhile: a fraction of the tokenizing.
PING_S = 0.25


def test_health_is_answered_while_a_long_text_is_tokenized(text_server: ServerProcess) -> None:
    pings: list[float] = []
    done = threading.Event()

    def ping() -> None:
        with httpx.Client(base_url=text_server.url, timeout=30) as client:
            while not done.is_set():
                asked = time.perf_counter()
                assert client.get("/ping").status_code == 200
                pings.append(time.perf_counter() - asked)
                time.sleep(0.01)

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        start = time.perf_counter()
        response = httpx.post(
            text_server.url + "/invocations",
            content=b"x" * LETTERS,
            headers={"content-type": "text/plain"},
            timeout=60,
        )
        took = time.perf_counter() - start
    finally:
        done.set()
        pinger.join()
    assert response.status_code == 200, response.text
    assert took > 2 * PING_S, f"the text took {took:.2f} s: too little to show anything; raise LETTERS"
    assert max(pings) < PING_S, f"/ping took up to {max(pings):.2f} s while a {took:.2f} s request was tokenized"
