"""``MODEL_SERVER_MAX_BATCH_SIZE=auto``: choose the batch-size cap by measuring the model at start-up.

Bigger batches are not always faster per row. Once a batch's activations outgrow the CPU caches,
rows per second can halve: the benchmark's small CNN runs 1,100 images/s at batch 16 and 570 at
batch 32 on two cores. A fixed cap of 64 then makes the server slowest exactly when it is busiest.

The sweep repeats the package's bundled example to each power of two up to the cap, times a few
calls of each (their median, which a pause of the machine in one of them does not move), and keeps
the largest size within 5 % of the best rows/s: the cap only binds under
load (at low load the batcher sends what is queued at once), and there a larger batch also spreads
the server's per-call costs (dispatch, concatenation, one wake-up per batch) over more requests,
which an in-process measurement does not see. It stops early once throughput falls below 70 % of the
best seen at two sizes in a row (past the cliff; one slow size can be a pause of the machine) or
when its time budget is spent, so it costs a fraction of a second
for small models and a few seconds at most for large ones.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

#: Sizes within this share of the best throughput count as equally fast; the largest wins.
GOOD_ENOUGH = 0.95
#: Throughput below this share of the best seen means the sweep is past the cache cliff.
PAST_THE_CLIFF = 0.7
#: Time spent timing each size (after one untimed call), and at least this many calls.
SECONDS_PER_SIZE = 0.1
MIN_CALLS = 3
#: Total time the sweep may take before it settles for what it has measured.
BUDGET_SECONDS = 3.0

Predict = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Tuning:
    """The chosen cap and the measured rows per second of each size tried."""

    max_batch_size: int
    rows_per_second: dict[int, float]
    seconds: float


def candidate_sizes(cap: int) -> list[int]:
    """1, 2, 4, ... up to ``cap`` (``cap`` itself included when it is not a power of two)."""
    sizes = [1 << shift for shift in range(cap.bit_length()) if 1 << shift <= cap]
    return sizes if sizes[-1] == cap else [*sizes, cap]


def repeat_rows(example: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """The example's rows repeated (cyclically) to exactly ``rows`` rows per input."""
    return {name: np.take(array, np.arange(rows) % array.shape[0], axis=0) for name, array in example.items()}


def tune_max_batch_size(
    predict: Predict,
    example: Mapping[str, np.ndarray],
    cap: int,
    *,
    budget_seconds: float = BUDGET_SECONDS,
    seconds_per_size: float = SECONDS_PER_SIZE,
    clock: Callable[[], float] = time.perf_counter,
) -> Tuning:
    """Measure ``predict`` at each candidate size up to ``cap`` and choose the cap (see the module doc)."""
    start = clock()
    rates: dict[int, float] = {}
    slow_before = False
    for size in candidate_sizes(cap):
        inputs = repeat_rows(example, size)
        predict(inputs)  # the first call per shape pays for allocation and kernel selection
        rates[size] = _rows_per_second(predict, inputs, size, seconds_per_size, clock)
        # Past the cliff only when two sizes in a row are slow: one slow size alone can be a pause of
        # the machine, or a small batch where the framework's threads first wake up (seen on the digits
        # MLP: 8,229 rows/s at 1 row, 5,575 at 2, millions at 1,024).
        below = rates[size] < PAST_THE_CLIFF * max(rates.values())
        if (below and slow_before) or clock() - start > budget_seconds:
            break
        slow_before = below
    best = max(rates.values())
    chosen = max(size for size, rate in rates.items() if rate >= GOOD_ENOUGH * best)
    return Tuning(chosen, rates, clock() - start)


def _rows_per_second(
    predict: Predict, inputs: Mapping[str, np.ndarray], size: int, seconds: float, clock: Callable[[], float]
) -> float:
    """Rows per second of ``predict``'s median call on ``inputs``, over ``seconds`` and :data:`MIN_CALLS` calls.

    The median call, not the mean nor the fastest: on a busy VM one pause inside a size's window
    cut its mean and made a smaller size look faster (a local batch run then called the model one
    row at a time); and a small size gets hundreds of calls in its window where a large one gets
    three, so its fastest call is luckier. The median ignores a pause in a minority of the calls
    and does not shift with their number.
    """
    durations: list[float] = []
    began = clock()
    while True:
        before = clock()
        predict(inputs)
        after = clock()
        durations.append(after - before)
        if len(durations) >= MIN_CALLS and after - began >= seconds:
            return size / max(statistics.median(durations), 1e-9)


def holds_up(
    predict: Predict,
    example: Mapping[str, np.ndarray],
    small: int,
    large: int,
    gain: float,
    *,
    rounds: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> bool:
    """Whether ``small`` rows per call still score ``gain`` times faster per row than ``large``, timed alternately.

    The sweep times one size after another, so a slow stretch of the machine (a neighbour's burst,
    the other worker loading its model) can fall on one size's window only. Alternating one call of
    each, ``rounds`` times, gives both sizes the same stretches; the medians decide.
    """
    inputs = {size: repeat_rows(example, size) for size in (small, large)}
    seconds_per_row: dict[int, list[float]] = {small: [], large: []}
    for _ in range(rounds):
        for size in (small, large):
            before = clock()
            predict(inputs[size])
            seconds_per_row[size].append((clock() - before) / size)
    return statistics.median(seconds_per_row[large]) >= gain * statistics.median(seconds_per_row[small])
