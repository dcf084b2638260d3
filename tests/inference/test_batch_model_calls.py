"""How many rows each model call of a local batch run gets: configured, else measured once per run and kept.

A compute-bound model scored in whole 1,024-record chunks ran at half its rate (past its cache
cliff); the run now measures the model when it starts, keeps a smaller size only when it is clearly
faster, and records it so the run's workers and its resumption call the model the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from inference.batch import model_calls
from inference.batch_tuning import Tuning
from model_package.formats import _torch
from tests.inference.batch_support import main

#: Over model_calls.MEASURE_FROM_BYTES as .npy (64 float32 per row): large enough to be measured.
MEASURED_ROWS = 5_000


def run(*args: str | Path | int) -> int:
    return main([str(arg) for arg in args] + ["--no-progress"])


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every model call in this process."""
    seen: list[int] = []
    predict = _torch.TorchLoadedModel.predict

    def recorded(self: _torch.TorchLoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(int(next(iter(inputs.values())).shape[0]))
        return predict(self, inputs)

    monkeypatch.setattr(_torch.TorchLoadedModel, "predict", recorded)
    return seen


@pytest.fixture
def big_npy(tmp_path: Path) -> Path:
    from tests.model_package import torch_models

    path = tmp_path / "in" / "x.npy"
    path.parent.mkdir()
    np.save(path, torch_models.mlp_inputs(MEASURED_ROWS, seed=11)["x"])
    assert path.stat().st_size >= model_calls.MEASURE_FROM_BYTES
    return path


def with_a_cliff(predict: object, example: object, cap: int, **_: object) -> Tuning:
    """What the sweep measures on a model whose rate halves past 8 rows."""
    return Tuning(8, {1: 100.0, 2: 200.0, 4: 390.0, 8: 800.0, 16: 400.0}, 0.01)


def scoring_calls(calls: list[int]) -> list[int]:
    """The calls of the scoring itself: the first is the warm-up's (the bundled example)."""
    return calls[1:]


def test_a_model_past_its_cache_cliff_gets_the_measured_rows_and_a_resumed_run_keeps_them(
    torch_package: Path, big_npy: Path, tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_calls, "tune_max_batch_size", with_a_cliff)
    monkeypatch.setattr(model_calls, "holds_up", lambda *_, **__: True)  # timed alternately, the cliff is still there
    out = tmp_path / "out"
    from inference.batch import scoring

    score = scoring.Scorer.score
    chunks: list[int] = []  # the run is stopped after its first chunk, as Ctrl-C would

    def stop_after_one(self: scoring.Scorer, chunk: object, media_type: str) -> object:
        if chunks:
            raise KeyboardInterrupt
        chunks.append(1)
        return score(self, chunk, media_type)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring.Scorer, "score", stop_after_one)
    assert run("--input", big_npy, "--output", out, "--package", torch_package, "--checkpoint-seconds", 0) == 130
    assert set(scoring_calls(calls)) == {8}, "the chunk of 1,024 rows went to the model 8 rows at a time"
    assert orjson.loads((out / ".batch-state" / "model-calls.json").read_bytes()) == {"rows": 8}

    def no_second_measurement(*_: object, **__: object) -> Tuning:
        raise AssertionError("a resumed run measured the model again")

    monkeypatch.setattr(model_calls, "tune_max_batch_size", no_second_measurement)
    monkeypatch.setattr(scoring.Scorer, "score", score)
    calls.clear()
    assert run("--input", big_npy, "--output", out, "--package", torch_package) == 0
    assert set(scoring_calls(calls)) == {8} and sum(scoring_calls(calls)) == MEASURED_ROWS - 1024
    assert len((out / "x.npy.out").read_bytes().splitlines()) == MEASURED_ROWS


def test_a_resumed_npy_runs_progress_bar_counts_the_rows_scored_before(
    torch_package: Path, big_npy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    from inference.batch import local, scoring

    score = scoring.Scorer.score
    chunks: list[int] = []

    def stop_after_two(self: scoring.Scorer, chunk: object, media_type: str) -> object:
        if len(chunks) == 2:
            raise KeyboardInterrupt
        chunks.append(1)
        return score(self, chunk, media_type)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring.Scorer, "score", stop_after_two)
    out = tmp_path / "out"
    assert run("--input", big_npy, "--output", out, "--package", torch_package, "--checkpoint-seconds", 0) == 130
    monkeypatch.setattr(scoring.Scorer, "score", score)
    counted: list[int] = []

    @contextmanager
    def progress(description: str, total: int | None, *, enabled: bool = True):  # type: ignore[no-untyped-def]
        yield counted.append

    monkeypatch.setattr(local, "progress", progress)
    assert run("--input", big_npy, "--output", out, "--package", torch_package) == 0
    header = big_npy.stat().st_size - MEASURED_ROWS * 64 * 4  # the bar counts rows' bytes
    assert sum(counted) == big_npy.stat().st_size - header


def test_a_small_model_keeps_whole_chunks_whatever_the_measurement_says(
    torch_package: Path, big_npy: Path, tmp_path: Path, calls: list[int]
) -> None:
    """A real measurement: the MLP's rate only grows with the batch, so no smaller size is clearly faster."""
    assert run("--input", big_npy, "--output", tmp_path / "out", "--package", torch_package) == 0
    assert orjson.loads((tmp_path / "out" / ".batch-state" / "model-calls.json").read_bytes()) == {"rows": 1024}
    scoring = scoring_calls(calls)[-(MEASURED_ROWS // 1024 + 1) :]
    assert scoring == [1024] * (MEASURED_ROWS // 1024) + [MEASURED_ROWS % 1024], calls


def test_a_busy_machine_does_not_make_one_row_per_call_the_choice(
    torch_package: Path, big_npy: Path, tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded VM every call of several rows waited a scheduler slice (16 ms): the sweep stopped at
    4 rows, 1 row beat 4 when timed alternately, and the run went a row at a time, 31-65x slower."""
    predict = _torch.TorchLoadedModel.predict

    def busy(self: _torch.TorchLoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if int(next(iter(inputs.values())).shape[0]) > 1:
            time.sleep(0.016)
        return predict(self, inputs)

    monkeypatch.setattr(_torch.TorchLoadedModel, "predict", busy)
    # What the sweep measured in that run: 29,359 rows/s at 1 row, 125 and 286 at 2 and 4, then it stopped.
    stopped = Tuning(1, {1: 29_359.0, 2: 125.0, 4: 286.0}, 0.3)
    monkeypatch.setattr(model_calls, "tune_max_batch_size", lambda *_, **__: stopped)

    assert run("--input", big_npy, "--output", tmp_path / "out", "--package", torch_package) == 0
    assert orjson.loads((tmp_path / "out" / ".batch-state" / "model-calls.json").read_bytes()) == {"rows": 1024}


def test_model_calls_follow_model_server_max_batch_size_while_chunks_stay_whole(
    torch_package: Path, tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compute-bound model is fastest below its cache cliff: the server's batch-size knob sets the call size."""
    from model_package.formats import get_format
    from model_package.manifest import read_manifest
    from tests.model_package import torch_models

    rows = torch_models.mlp_inputs(300, seed=3)["x"]
    manifest = read_manifest(torch_package)
    (expected,) = get_format(manifest.format).load(torch_package, manifest, threads=1).predict({"x": rows}).values()
    calls.clear()
    monkeypatch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", "16")
    np.save(tmp_path / "x.npy", rows)
    assert run("--input", tmp_path / "x.npy", "--output", tmp_path / "out", "--package", torch_package) == 0
    answers = [orjson.loads(line) for line in (tmp_path / "out" / "x.npy.out").read_bytes().splitlines()]
    np.testing.assert_allclose(np.array(answers), expected, rtol=1e-5, atol=1e-6)
    scoring = scoring_calls(calls)
    assert max(scoring) == 16 and sum(scoring) == 300, calls


def test_configured_rows_win_and_small_inputs_are_not_measured(
    torch_package: Path, tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.model_package import torch_models

    def never(*_: object, **__: object) -> Tuning:
        raise AssertionError("measured although the rows were settled")

    monkeypatch.setattr(model_calls, "tune_max_batch_size", never)
    small = tmp_path / "small.npy"
    np.save(small, torch_models.mlp_inputs(300, seed=2)["x"])
    assert run("--input", small, "--output", tmp_path / "a", "--package", torch_package) == 0
    assert scoring_calls(calls) == [300], "a small input is one whole chunk, not measured"
    assert not (tmp_path / "a" / ".batch-state" / "model-calls.json").exists()

    calls.clear()
    monkeypatch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", "64")
    big = tmp_path / "big.npy"
    np.save(big, torch_models.mlp_inputs(MEASURED_ROWS, seed=2)["x"])
    assert run("--input", big, "--output", tmp_path / "b", "--package", torch_package) == 0
    assert max(scoring_calls(calls)) == 64


def test_workers_measure_once_and_write_what_one_process_writes(
    torch_package: Path,
    big_npy: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run("--input", big_npy, "--output", tmp_path / "two", "--package", torch_package, "--workers", 2) == 0
    assert capfd.readouterr().err.count("rows per model call measured") == 1, "once, by one of the two workers"
    rows = orjson.loads((tmp_path / "two" / ".batch-state" / "model-calls.json").read_bytes())["rows"]
    # One process calling the model with the rows the workers measured: another run measures afresh,
    # and beside a busy neighbour (CI's mypy) it measured 256 rows where the workers' run measured 1;
    # rows batched differently differ in their last bits.
    monkeypatch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", str(rows))
    assert run("--input", big_npy, "--output", tmp_path / "one", "--package", torch_package) == 0
    assert (tmp_path / "two" / "x.npy.out").read_bytes() == (tmp_path / "one" / "x.npy.out").read_bytes()
