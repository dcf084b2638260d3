"""Chunks of one file (or one span of it) -> scored, written as checkpointed parts.

The loop both ways of running share: one process reading a whole file (``--workers 1``), and each
worker process of ``--workers N`` reading its span. ``state`` says where reading continues and how
many parts exist; ``save_state`` persists it after each part, so a killed run redoes at most the
records since the last checkpoint and never writes a record twice.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from inference.batch.scoring import Scorer, instance_json
from inference.batch.sinks import Layout, Progress, write_part
from inference.batch.sources import Chunk, InputFile

_log = logging.getLogger("inference.batch.local")
#: Answers buffered before a checkpoint at the latest, whatever --checkpoint-seconds says.
CHECKPOINT_BYTES = 16 * 1024 * 1024


def score_chunks(
    file: InputFile,
    chunks: Iterable[Chunk],
    *,
    state: Progress,
    parts: Path,
    save_state: Callable[[], None],
    scorer: Scorer,
    layout: Layout,
    checkpoint_seconds: float,
    advance: Callable[[int], None],
    stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Score ``chunks`` into parts; False if ``stop()`` asked to stop between two chunks (state saved)."""
    instance = functools.partial(instance_json, media_type=file.media_type)
    results: list[bytes] = []
    errors: list[bytes] = []
    pending = {"records": 0, "failed": 0, "bytes": 0, "offset": state.offset}
    last_save = time.monotonic()

    def save() -> None:
        """One part for everything scored since the last one, then the checkpoint that names it."""
        if not pending["records"] and pending["offset"] == state.offset:
            return
        write_part(parts, state.chunks, b"".join(results), b"".join(errors))
        state.chunks += 1
        state.records += pending["records"]
        state.scored += pending["records"]
        state.failed += pending["failed"]
        state.offset = pending["offset"]
        save_state()
        results.clear()
        errors.clear()
        pending.update(records=0, failed=0, bytes=0)

    for chunk in chunks:
        answers = scorer.score(chunk, file.media_type)
        result, error = layout.chunk_bytes(chunk, answers, functools.partial(instance, chunk))
        for i, failure in sorted(answers.failures.items()):
            _log.warning("record failed", extra={"file": file.name, "line": chunk.lines[i], "error": failure.error})
        results.append(result)
        errors.append(error)
        pending["records"] += len(chunk)
        pending["failed"] += len(answers.failures)
        pending["bytes"] += len(result) + len(error)
        pending["offset"] = chunk.end
        advance(chunk.nbytes)
        # Checkpoints cost two fsyncs: a few a second, not one per chunk (a resumed run redoes at most
        # the last interval's records, and never writes them twice).
        if time.monotonic() - last_save >= checkpoint_seconds or pending["bytes"] >= CHECKPOINT_BYTES:
            save()
            last_save = time.monotonic()
        if stop():
            save()
            return False
    save()
    return True
