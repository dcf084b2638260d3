"""Tokenizing a long text lets other threads run: the server's event loop (health checks) included.

``Tokenizer.encode`` holds the interpreter lock for the whole text: on a served text package, 5.5 MB of
text kept ``/ping`` and every other request waiting 20 s (a hostile-client review; 2 MB of one word:
0.9 s). The pipeline tokenizes through ``encode_batch``, which lets go of the lock while it works.
Here a thread counts while the main thread tokenizes one long word (no head of the text will do for
it, so the tokenizer reads all of it): with the lock held it cannot count at all.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")

from model_package.manifest import Signature, TensorSpec
from model_package.pipeline.schema import TextInput
from model_package.pipeline.text import TextEncoder
from tests.pipeline_models import train_tokenizer

#: Milliseconds decide this test: run alone (`./dev.sh test`), and again when a VM pause fails it.
pytestmark = [pytest.mark.timing, pytest.mark.flaky(reruns=2)]

#: One word this long takes the tokenizer about half a second here.
LETTERS = 1_500_000


def test_other_threads_run_while_a_long_text_is_tokenized(tmp_path: Path) -> None:
    signature = Signature(
        inputs=(
            TensorSpec(name="input_ids", dtype="int64", shape=(-1, -1)),
            TensorSpec(name="attention_mask", dtype="int64", shape=(-1, -1)),
        ),
        outputs=(TensorSpec(name="logits", dtype="float32", shape=(-1, 2)),),
    )
    encoder = TextEncoder(train_tokenizer(tmp_path / "t.json"), TextInput(max_length=16), signature)
    ticks: list[float] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            time.sleep(0.001)
            ticks.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.05)
    try:
        start = time.perf_counter()
        assert encoder.encode(["x" * LETTERS])["input_ids"].shape == (1, 3)
        end = time.perf_counter()
    finally:
        done.set()
        counter.join()
    during = [tick for tick in ticks if start < tick < end]
    assert end - start > 0.2, f"tokenizing took {end - start:.2f} s: too little to show anything; raise LETTERS"
    # Unhindered, about one a millisecond; with the lock held, none (or one at the edges).
    assert len(during) > 20, f"the other thread ran {len(during)} times in {end - start:.2f} s of tokenizing"
