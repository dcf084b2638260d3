"""Rows per model call in a local batch run: settled once per run, the same in every worker and after a resume.

A chunk (``--batch-size`` records) is one request to the service, whose batcher cuts it into model
calls of at most this many rows. Small models are fastest on whole chunks; a compute-bound one can
be twice as fast below its cache cliff (the benchmark CNN runs 1,024-image calls at half the rate of
16-image calls), so no fixed default fits both. In order:

1. ``MODEL_SERVER_MAX_BATCH_SIZE`` as a number;
2. the package's ``serving.max_batch_size`` metadata, unless the variable says ``auto``;
3. measured when the run starts, with the package's bundled example, as the server's
   ``MODEL_SERVER_MAX_BATCH_SIZE=auto`` measures it, and kept only when it is clearly faster than
   whole chunks (:data:`CLEAR_GAIN`), in the sweep and again when the two sizes are timed
   alternately: a model whose rate only grows with the batch keeps whole chunks, whatever the
   timing noise (a busy VM once made one row per call look fastest for such a model).

Never more than a chunk. A measured size is saved in the run's checkpoint, so the run's workers and
its resumption call the model with the same rows: the output stays the same bytes as one
uninterrupted process's. Two separate runs may measure different sizes, and rows batched
differently can differ in their last bits: set the variable for bit-identical reruns. Inputs under
:data:`MEASURE_FROM_BYTES` are not measured: they are scored before a measurement would pay off.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from inference.batch_tuning import holds_up, tune_max_batch_size

if TYPE_CHECKING:
    from inference.batch.sinks import Checkpoint
    from inference.config import ServerConfig
    from inference.service import ModelService
    from model_package.manifest import Manifest

_log = logging.getLogger("inference.batch.local")

#: A measured size below the chunk is used only when it is at least this much faster than the largest size measured.
CLEAR_GAIN = 1.25
#: Inputs smaller than this are scored in whole chunks without a measurement (a second at most).
MEASURE_FROM_BYTES = 1 << 20
#: At most this long measuring, and this long per size (the server's start-up sweep: 3 s and 0.1 s). A
#: small model's sweep then takes about half a second, the benchmark CNN's about one. At 20 ms per
#: size the CNN's 64 images sometimes timed within 5 % of its best 32 and won.
MEASURE_BUDGET_S = 1.5
MEASURE_SECONDS_PER_SIZE = 0.05
#: The longest call the check against whole chunks makes (see ``_reference_rows``).
REFERENCE_CALL_S = 0.25


def settled_rows(config: ServerConfig, manifest: Manifest, chunk_rows: int) -> int | None:
    """The rows per model call the environment or the package sets; ``None`` when they are to be measured."""
    if isinstance(config.max_batch_size, int):
        return min(config.max_batch_size, chunk_rows)
    if config.max_batch_size is None and "serving.max_batch_size" in manifest.metadata:
        from inference.service import batching_settings

        return min(batching_settings(config, manifest)[0], chunk_rows)
    return None


def choose_rows(
    checkpoint: Checkpoint,
    *,
    settled: int | None,
    chunk_rows: int,
    input_bytes: int,
    measure: Callable[[], int] | None,
) -> int:
    """The run's rows per model call: settled, else what the run measured earlier, else measured now.

    ``measure`` is ``None`` when the model's calls are not the service's to size (user code).
    """
    if settled is not None:
        return settled
    recorded = checkpoint.model_call_rows()
    if recorded is not None:
        return min(recorded, chunk_rows)
    if measure is None or input_bytes < MEASURE_FROM_BYTES or chunk_rows == 1:
        return chunk_rows
    rows = measure()
    checkpoint.record_model_call_rows(rows)
    return rows


def measure_rows(service: ModelService, chunk_rows: int) -> int:
    """The rows per model call that score fastest, on the compute thread that will run the model."""
    from model_package.example import load_arrays

    model, batcher = service.model, service.batcher
    assert model is not None and batcher is not None
    example = load_arrays(service.package_dir / service.manifest.example.inputs)
    tuning = batcher.run_on_compute_thread(
        lambda: tune_max_batch_size(
            model.predict,
            example,
            chunk_rows,
            budget_seconds=MEASURE_BUDGET_S,
            seconds_per_size=MEASURE_SECONDS_PER_SIZE,
        )
    )
    rates = tuning.rows_per_second
    largest = max(rates)
    rows = tuning.max_batch_size if max(rates.values()) >= CLEAR_GAIN * rates[largest] else chunk_rows
    reference = _reference_rows(rates, chunk_rows)
    if rows < chunk_rows and not batcher.run_on_compute_thread(
        lambda: holds_up(model.predict, example, rows, reference, CLEAR_GAIN)
    ):
        rows = chunk_rows  # the gain was the machine's, not the model's
    _log.info(
        "rows per model call measured",
        extra={
            "model_call_rows": rows,
            "rows_per_second": {size: round(rate) for size, rate in rates.items()},
            "seconds": round(tuning.seconds, 3),
            "pin_with": f"MODEL_SERVER_MAX_BATCH_SIZE={rows}",
        },
    )
    return rows


def _reference_rows(rates: dict[int, float], chunk_rows: int) -> int:
    """What a smaller size must beat, timed alternately: whole chunks, the run's other choice.

    Not merely the largest size the sweep reached: on a busy VM every call of the MLP's framework
    threads waited out a scheduler slice (16 ms for 2 or 4 rows), the sweep stopped at 4 rows as
    "past the cliff", 1 row beat 4, and the run called the model a row at a time, 31-65 times
    slower than whole chunks (which amortise that wait). A slow model's whole chunk could take
    minutes, so at most the rows :data:`REFERENCE_CALL_S` holds at the best rate measured.
    """
    affordable = int(max(rates.values()) * REFERENCE_CALL_S)
    return max(*rates, min(chunk_rows, affordable))


def measurable(service: ModelService) -> bool:
    """Whether the service sizes the model's calls itself (not user code's hooks)."""
    return service.user_code is None and service.model is not None and service.batcher is not None


#: A chunk's deadline in a local run: no client waits for it, so only a hung model should reach it.
CHUNK_TIMEOUT_S = 24 * 3600.0


def scoring_config(config: ServerConfig, chunk_rows: int) -> ServerConfig:
    """``config`` for loading the service that scores chunks.

    Whole chunks are the cap on model calls (set to the chosen rows once known), and a chunk has a
    day, not the server's request deadline: with the default 55 s, any model slower than about 19
    rows/s stopped the run at its first 1,024-row chunk as an "internal error" (a deadline is for a
    client who stops waiting; here nobody does, and ``MODEL_SERVER_REQUEST_TIMEOUT_S`` does not apply).
    """
    return dataclasses.replace(config, max_batch_size=chunk_rows, request_timeout=CHUNK_TIMEOUT_S)
