"""``model-deploy-batch --workers N`` on local files: the same output bytes as one process, spans that
start where one reader's chunks do, resumption after the main process or a worker is killed, and
one-line refusals."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from inference.batch import sources
from inference.batch.sources import JSON_LINES, InputFile, read_chunks, split_records
from tests.inference.batch_support import SLOW_CALLS_ENV, main
from tests.inference.test_batch_local import write_csv, write_jsonl

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def one_thread_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # Comparisons across worker counts are byte for byte: the same compute threads on both sides.
    monkeypatch.setenv("MODEL_SERVER_COMPUTE_THREADS", "1")


def run(*args: str | Path | int) -> int:
    return main([str(arg) for arg in args] + ["--no-progress"])


def outputs(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if not path.name.startswith(".")}


@pytest.mark.parametrize("output_format", ["sagemaker", "vertex"])
def test_several_workers_write_the_bytes_one_worker_writes(
    torch_package: Path, tmp_path: Path, output_format: str
) -> None:
    from tests.model_package import torch_models

    rows = torch_models.mlp_inputs(300, seed=8)["x"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    jsonl = write_jsonl(inputs / "a.jsonl", rows)
    lines = jsonl.read_bytes().splitlines()
    lines[40] = b"[1.0, 2.0]"  # a bad record (line 41) in the second span
    lines[7:7] = [b"", b"   "]  # blank lines are not records, but count as lines
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    write_csv(inputs / "b.csv", rows[:50])
    np.save(inputs / "c.npy", rows)
    common: list[str | Path | int] = [
        "--input",
        inputs,
        "--package",
        torch_package,
        "--batch-size",
        16,
        "--output-format",
        output_format,
    ]

    assert run(*common, "--output", tmp_path / "one") == 3
    assert run(*common, "--output", tmp_path / "three", "--workers", 3) == 3

    one, three = outputs(tmp_path / "one"), outputs(tmp_path / "three")
    assert one == three
    if output_format == "sagemaker":
        (error,) = [orjson.loads(line) for line in three["a.jsonl.out.errors"].splitlines()]
        assert error["record"] == 40 and error["line"] == 43
        assert len(three["c.npy.out"].splitlines()) == 300


def test_spans_hold_the_records_one_reader_chunks_them_into(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank and whitespace lines, a byte-order mark, no final line break, lines longer than a scan block."""
    monkeypatch.setattr(sources, "_SCAN_BLOCK", 7)
    rng = random.Random(0)
    for trial in range(200):
        lines = [
            rng.choice([b"[1]", b"", b"  ", b"\t\r", b"[2, 3]  ", b"x" * rng.randint(1, 20), b"\x0c"])
            for _ in range(rng.randint(0, 40))
        ]
        data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n"])
        if trial % 5 == 0:
            data = b"\xef\xbb\xbf" + rng.choice([b"", b"  ", b"[9]"]) + b"\n" + data
        path = tmp_path / f"{trial}.jsonl"
        path.write_bytes(data)
        file = InputFile(path, JSON_LINES, path.name)
        size = rng.randint(1, 4)
        whole = [(c.first, c.lines, c.records) for c in read_chunks(file, start=0, first_record=0, size=size) if len(c)]
        for parts in (1, 2, 3, 5):
            spans = split_records(file, parts, size)
            assert spans[0].start == 0 and spans[-1].end == len(data) and len(spans) <= parts
            chunks = [
                chunk
                for span in spans
                for chunk in read_chunks(
                    file,
                    start=span.start,
                    first_record=span.first_record,
                    size=size,
                    end=span.end,
                    anchor=(span.start, span.line),
                )
            ]
            assert [(c.first, c.lines, c.records) for c in chunks if len(c)] == whole, (data, parts, size)
            assert sum(chunk.nbytes for chunk in chunks) == len(data)  # the progress bar reaches the end


def test_the_progress_bar_counts_every_workers_bytes(
    torch_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    from inference.batch import local
    from tests.model_package import torch_models

    write_jsonl(tmp_path / "a.jsonl", torch_models.mlp_inputs(200, seed=9)["x"])
    counted: list[int] = []

    @contextmanager
    def progress(description: str, total: int | None, *, enabled: bool = True):  # type: ignore[no-untyped-def]
        counted.append(0)
        yield counted.append

    monkeypatch.setattr(local, "progress", progress)
    args: list[str | Path | int] = [
        "--input",
        tmp_path / "a.jsonl",
        "--output",
        tmp_path / "o",
        "--package",
        torch_package,
    ]
    assert run(*args, "--batch-size", 16, "--workers", 2) == 0
    assert sum(counted) == (tmp_path / "a.jsonl").stat().st_size


def test_another_worker_count_on_an_unfinished_output_is_refused_in_one_line(
    torch_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.model_package import torch_models

    write_jsonl(tmp_path / "a.jsonl", torch_models.mlp_inputs(20, seed=2)["x"])
    args: list[str | Path | int] = [
        "--input",
        tmp_path / "a.jsonl",
        "--output",
        tmp_path / "o",
        "--package",
        torch_package,
    ]
    assert run(*args, "--workers", 2) == 0
    capsys.readouterr()
    assert run(*args, "--workers", 3) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"model-deploy-batch: error: --output {tmp_path / 'o'} holds a run started with --workers 2; "
        "rerun with --workers 2 to continue it, or use a new output directory"
    ]
    assert run(*args, "--workers", 2) == 0  # the same count: a finished run, nothing to do


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_worker_count_is_refused_in_one_line(
    torch_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("--input", tmp_path / "a.jsonl", "--output", tmp_path / "o", "--package", torch_package, "--workers", value)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("model-deploy-batch: error: argument --workers:") and "'auto'" in err[-1]


def test_a_package_that_fails_to_load_in_the_workers_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.model_package import torch_models

    write_jsonl(tmp_path / "a.jsonl", torch_models.mlp_inputs(4, seed=2)["x"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"not": "a manifest"}')
    code = run("--input", tmp_path / "a.jsonl", "--output", tmp_path / "o", "--package", broken, "--workers", 2)
    assert code not in (0, 70)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("model-deploy-batch:")]) == 1


# ----------------------------------------------------------------------------- killed runs (subprocesses)


def command(data: Path, package: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tests.inference.batch_support", "--input", str(data), "--package", str(package),
        "--output", str(output), "--no-progress", *extra,
    ]  # fmt: skip


# Every model call of 32 rows, in the reference run and in the runs compared with it: the sweep that
# picks the rows per call otherwise measures afresh in each run, and on a busy machine it can pick 1 or
# 2, whose results differ from a 32-row call's in the last bit (other matrix kernels) and so in bytes.
ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "MODEL_SERVER_COMPUTE_THREADS": "1",
    "MODEL_SERVER_MAX_BATCH_SIZE": "32",
}
#: A run the test interrupts: its model calls are slowed, so it is still scoring at the kill point.
INTERRUPTED_ENV = {**ENV, **SLOW_CALLS_ENV}
# Checkpoints every 32 records: slow enough to be caught mid-way.
SLOW = ["--batch-size", "32", "--checkpoint-seconds", "0", "--workers", "2"]
# The run that finishes the job: the same chunks, checkpointed at the default interval (two fsyncs per
# 32 records cost the suite seconds, and the finishing run is not interrupted).
FINISH = ["--batch-size", "32", "--workers", "2"]


def scored_in_spans(output: Path) -> int:
    total = 0
    for path in (output / ".batch-state").glob("file-*/span-*/progress.json"):
        with contextlib.suppress(OSError, ValueError):  # replaced while read
            total += json.loads(path.read_text())["records"]
    return total


def wait_for(process: subprocess.Popen[bytes], output: Path, records: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if scored_in_spans(output) >= records:
            return
        time.sleep(0.002)
    raise AssertionError(f"the run ended or stalled before {records} records were scored")


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


RECORDS = 16_000
"""Enough that a run checkpointing every 32 records is still scoring long after 2,000 are done."""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, torch_package: Path) -> tuple[Path, bytes]:
    """A JSON Lines file of ``RECORDS`` records and what one worker writes for it."""
    from tests.model_package import torch_models

    directory = tmp_path_factory.mktemp("big")
    data = write_jsonl(directory / "big.jsonl", torch_models.mlp_inputs(RECORDS, seed=5)["x"])
    # In this process (a subprocess would import torch again): the same settings as ENV.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_SERVER_COMPUTE_THREADS", "1")
        patch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", "32")
        assert run("--input", data, "--package", torch_package, "--output", directory / "ref", "--batch-size", 32) == 0
    return data, (directory / "ref" / "big.jsonl.out").read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_run_killed_mid_way_resumes_with_every_record_scored_once(
    torch_package: Path,
    tmp_path: Path,
    big: tuple[Path, bytes],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rerun scores what is left, once, and its progress bar starts where the spans stopped (it
    counted only what was left, so a resumed run's bar ended short of its total)."""
    from contextlib import contextmanager

    from inference.batch import local

    data, expected = big
    output = tmp_path / "o"
    victim = subprocess.Popen(
        command(data, torch_package, output, *SLOW), env=INTERRUPTED_ENV, stderr=subprocess.DEVNULL
    )
    wait_for(victim, output, 2_000)
    workers = workers_of(victim.pid)
    assert len(workers) == 2
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    # An orphaned worker would go on writing beside the rerun.
    assert not any(alive(pid) for pid in workers), "workers outlived the killed run"
    assert 0 < scored_in_spans(output) < RECORDS
    # Before any file is finished, the spans' checkpoints alone still mark the output as this run's.
    capsys.readouterr()
    assert run("--input", data, "--package", torch_package, "--output", output, *SLOW[:-1], "3") == 2
    assert "holds a run started with --workers 2" in capsys.readouterr().err

    counted: list[int] = []

    @contextmanager
    def progress(description: str, total: int | None, *, enabled: bool = True):  # type: ignore[no-untyped-def]
        assert total == data.stat().st_size
        yield counted.append

    monkeypatch.setattr(local, "progress", progress)
    monkeypatch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", "32")  # as in ENV (one compute thread: the autouse fixture)
    assert run("--input", data, "--package", torch_package, "--output", output, *FINISH) == 0  # in this process
    assert "resuming an interrupted run" in capsys.readouterr().err
    assert sum(counted) == data.stat().st_size
    assert json.loads((output / ".batch-state" / "progress.json").read_text())["scored"] == RECORDS
    assert (output / "big.jsonl.out").read_bytes() == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_dead_worker_and_then_ctrl_c_each_stop_the_run_in_one_line_and_the_third_run_finishes(
    torch_package: Path, tmp_path: Path, big: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two interruptions of one job, as a laptop sees them: a worker killed (as the kernel's
    out-of-memory killer would), then Ctrl-C on the run that resumed it; the third run's output is
    the bytes of an uninterrupted run."""
    data, expected = big
    output = tmp_path / "o"
    run_ = subprocess.Popen(command(data, torch_package, output, *SLOW), env=INTERRUPTED_ENV, stderr=subprocess.PIPE)
    wait_for(run_, output, 2_000)
    os.kill(workers_of(run_.pid)[0], signal.SIGKILL)
    _, stderr = run_.communicate(timeout=120)
    assert run_.returncode == 70, stderr
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("model-deploy-batch: error: a scoring worker process died") and "rerun" in last
    assert b"Traceback" not in stderr

    scored = scored_in_spans(output)
    run_ = subprocess.Popen(command(data, torch_package, output, *SLOW), env=INTERRUPTED_ENV, stderr=subprocess.PIPE)
    wait_for(run_, output, scored + 500)  # resumed, and scoring
    workers = workers_of(run_.pid)
    run_.send_signal(signal.SIGINT)  # the main process only (a terminal would signal them all)
    _, stderr = run_.communicate(timeout=60)
    assert run_.returncode == 130, stderr
    assert stderr.decode().strip().splitlines()[-1].startswith("model-deploy-batch: interrupted")
    assert not any(alive(pid) for pid in workers)

    monkeypatch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", "32")  # as in ENV (one compute thread: the autouse fixture)
    assert run("--input", data, "--package", torch_package, "--output", output, *FINISH) == 0  # in this process
    assert (output / "big.jsonl.out").read_bytes() == expected


def test_workers_run_this_code_even_when_an_earlier_path_entry_shadows_it(
    torch_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers start with the parent's ``sys.path``; an ``inference`` package earlier in it (what
    importing a ``tests/…/model.py:factory`` once left there) made every worker fail to start."""
    from tests.model_package import torch_models

    shadow = tmp_path / "shadow" / "inference"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(shadow.parent))
    write_jsonl(tmp_path / "a.jsonl", torch_models.mlp_inputs(40, seed=3)["x"])
    args: list[str | Path | int] = ["--input", tmp_path / "a.jsonl", "--package", torch_package, "--batch-size", 16]
    assert run(*args, "--output", tmp_path / "o", "--workers", 2) == 0
    assert len((tmp_path / "o" / "a.jsonl.out").read_bytes().splitlines()) == 40
