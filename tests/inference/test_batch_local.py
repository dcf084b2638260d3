"""``model-deploy-batch`` on local files: the server's data plane, the managed engines' output layouts,
failed records reported in place, bad input refused in one line, and interrupted runs resumed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import orjson
import pytest

from model_package.errors import UsageError
from model_package.formats import get_format
from model_package.manifest import read_manifest
from tests.inference.batch_support import SLOW_CALLS_ENV, main

ROWS = 300


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    from tests.model_package import torch_models

    return torch_models.mlp_inputs(ROWS, seed=3)["x"]


@pytest.fixture(scope="module")
def expected(torch_package: Path, rows: np.ndarray) -> np.ndarray:
    """What the package's model answers for ``rows``, called directly (no server code in between)."""
    manifest = read_manifest(torch_package)
    model = get_format(manifest.format).load(torch_package, manifest, threads=1)
    (output,) = model.predict({"x": rows}).values()
    return np.asarray(output)


def write_jsonl(path: Path, rows: np.ndarray) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row.tolist()) + b"\n" for row in rows))
    return path


def write_csv(path: Path, rows: np.ndarray) -> Path:
    path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))
    return path


def out_rows(path: Path) -> list[list[float] | None]:
    """Each line of a SageMaker-layout JSON Lines .out; ``None`` for an empty (failed) line."""
    return [orjson.loads(line) if line else None for line in path.read_bytes().split(b"\n")[:-1]]


def run(*args: str | Path | int) -> int:
    return main([str(arg) for arg in args] + ["--no-progress"])


def test_jsonl_csv_and_npy_each_give_one_line_per_record_in_order(
    torch_package: Path, rows: np.ndarray, expected: np.ndarray, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", rows)
    write_csv(inputs / "b.csv", rows)
    np.save(inputs / "c.npy", rows)
    # Batch size 64 does not divide 300: the last chunk is short.
    assert run("--input", inputs, "--output", tmp_path / "out", "--package", torch_package, "--batch-size", 64) == 0

    np.testing.assert_allclose(np.array(out_rows(tmp_path / "out" / "a.jsonl.out")), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(out_rows(tmp_path / "out" / "c.npy.out")), expected, rtol=1e-5, atol=1e-6)
    # CSV in, CSV out (what Batch Transform gets back from the container for text/csv).
    csv_out = np.loadtxt(tmp_path / "out" / "b.csv.out", delimiter=",", ndmin=2)
    np.testing.assert_allclose(csv_out, expected, rtol=1e-5, atol=1e-6)
    assert not list((tmp_path / "out").glob("*.errors"))


def test_vertex_layout_has_one_shard_per_file_with_instance_and_prediction(
    torch_package: Path, rows: np.ndarray, expected: np.ndarray, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_jsonl(inputs / "first.jsonl", rows[:100])
    write_csv(inputs / "second.csv", rows[100:])
    code = run("--input", inputs, "--output", tmp_path / "out", "--package", torch_package, "--output-format", "vertex")
    assert code == 0

    names = sorted(path.name for path in (tmp_path / "out").iterdir() if not path.name.startswith("."))
    assert names == [
        "prediction.errors_stats-00000-of-00002",
        "prediction.errors_stats-00001-of-00002",
        "prediction.results-00000-of-00002",
        "prediction.results-00001-of-00002",
    ]
    results = [
        orjson.loads(line)
        for shard in ("00000", "00001")
        for line in (tmp_path / "out" / f"prediction.results-{shard}-of-00002").read_bytes().splitlines()
    ]
    assert len(results) == ROWS
    np.testing.assert_allclose(np.array([r["instance"] for r in results]), rows, rtol=1e-6)
    np.testing.assert_allclose(np.array([r["prediction"] for r in results]), expected, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "out" / "prediction.errors_stats-00000-of-00002").read_bytes() == b""


def test_a_bad_record_fails_alone_and_is_named_in_the_errors_file(
    torch_package: Path, rows: np.ndarray, expected: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", rows[:10])
    lines = path.read_bytes().splitlines()
    lines[4] = b"[1.0, 2.0]"  # line 5: 2 values where the model takes 64
    path.write_bytes(b"\n".join(lines) + b"\n")

    assert run("--input", path, "--output", tmp_path / "sm", "--package", torch_package) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "1 of 10 records failed" in err and "Traceback" not in err

    answers = out_rows(tmp_path / "sm" / "data.jsonl.out")
    assert len(answers) == 10 and answers[4] is None
    # The records around the bad one keep their own predictions: nothing shifted.
    good = [i for i in range(10) if i != 4]
    np.testing.assert_allclose(np.array([answers[i] for i in good]), expected[good], rtol=1e-5, atol=1e-6)
    (error,) = [json.loads(line) for line in (tmp_path / "sm" / "data.jsonl.out.errors").read_text().splitlines()]
    assert error["record"] == 4 and error["line"] == 5 and error["status"] == 400 and "64" in error["error"]

    # Vertex AI's layout: the failed instance goes to errors_stats with a google.rpc status.
    code = run("--input", path, "--output", tmp_path / "vx", "--package", torch_package, "--output-format", "vertex")
    assert code == 3
    results = (tmp_path / "vx" / "prediction.results-00000-of-00001").read_bytes().splitlines()
    assert len(results) == 9
    (failure,) = [
        orjson.loads(line)
        for line in (tmp_path / "vx" / "prediction.errors_stats-00000-of-00001").read_bytes().splitlines()
    ]
    assert failure["instance"] == [1.0, 2.0]
    assert failure["error"]["status"] == "INVALID_ARGUMENT" and failure["error"]["message"].startswith("line 5:")

    # A tolerated failure still gets reported, but the run succeeds.
    assert (
        run("--input", path, "--output", tmp_path / "tolerant", "--package", torch_package, "--max-failed-records", 1)
        == 0
    )
    assert (tmp_path / "tolerant" / "data.jsonl.out.errors").is_file()


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, p: ["--input", d / "missing.jsonl", "--output", d / "o", "--package", p], "does not exist"),
        (lambda d, p: ["--input", d / "data.parquet", "--output", d / "o", "--package", p], "allowed: .jsonl"),
        (lambda d, p: ["--input", d / "data.jsonl", "--output", d / "o", "--package", d / "nope"], "--package"),
        (lambda d, p: ["--input", d / "data.jsonl", "--output", d / "data.jsonl", "--package", p], "not a writable"),
        (lambda d, p: ["--input", d / "data.jsonl", "--output", d / "full", "--package", p], "not empty"),
        (lambda d, p: ["--input", d / "fake.npy", "--output", d / "o", "--package", p], "not a readable .npy"),
        (
            lambda d, p: ["--input", d / "narrow.npy", "--output", d / "o", "--package", p],
            "its rows have shape [3], and this model's input 'x' takes rows of shape [64]",
        ),
        # PowerShell's default encoding: the first record was read (JSON detects UTF-16), the rest failed.
        (lambda d, p: ["--input", d / "ps.jsonl", "--output", d / "o", "--package", p], "it is UTF-16 text"),
        # Classic Mac OS line ends: the whole file was one record, "answer has 3 lines for 1 records".
        (lambda d, p: ["--input", d / "mac.csv", "--output", d / "o", "--package", p], "lone carriage return"),
        (lambda d, p: ["--input", d / "in", "--output", d / "in" / "out", "--package", p], "inside --input"),
        (lambda d, p: ["--input", d / "data.jsonl", "--output", d / "o", "--package", d / "in"], "not a model package"),
    ],
    ids=[
        "missing-input",
        "unsupported-extension",
        "no-package",
        "output-is-a-file",
        "foreign-output",
        "bad-npy",
        "npy-of-other-rows",
        "utf16-jsonl",
        "cr-only-csv",
        "output-inside-input",
        "directory-is-no-package",
    ],
)
def test_bad_invocations_fail_in_one_line(
    torch_package: Path,
    rows: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    make_args: Callable[[Path, Path], list[str | Path]],
    message: str,
) -> None:
    write_jsonl(tmp_path / "data.jsonl", rows[:3])
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    (tmp_path / "fake.npy").write_text("1,2,3\n")
    np.save(tmp_path / "narrow.npy", rows[:3, :3])
    (tmp_path / "ps.jsonl").write_bytes("".join(f"{row.tolist()}\n" for row in rows[:3]).encode("utf-16"))
    (tmp_path / "mac.csv").write_bytes(b"".join(b",".join(b"0.5" for _ in range(64)) + b"\r" for _ in range(3)))
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "data.jsonl", rows[:3])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "someone-elses.txt").write_text("x")
    assert run(*make_args(tmp_path, torch_package)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("model-deploy-batch:")]) == 1, err
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_output_of_another_input_is_not_resumed_onto(
    torch_package: Path, rows: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "data.jsonl", rows[:5])
    assert run("--input", tmp_path / "data.jsonl", "--output", tmp_path / "o", "--package", torch_package) == 0
    write_jsonl(tmp_path / "data.jsonl", rows[:6])
    assert run("--input", tmp_path / "data.jsonl", "--output", tmp_path / "o", "--package", torch_package) != 0
    assert "holds a run with another input (file names, sizes or modification times)" in capsys.readouterr().err
    write_jsonl(tmp_path / "data.jsonl", rows[:5])
    os.utime(tmp_path / "data.jsonl", ns=(0, 0))
    args = ("--input", tmp_path / "data.jsonl", "--output", tmp_path / "o", "--package", torch_package)
    assert run(*args, "--output-format", "vertex") != 0
    err = capsys.readouterr().err
    # It names what changed (it blamed the input or the package when only the output format had), and
    # its advice works: deleting the state directory alone left an output "not empty, no earlier run".
    assert "another input" in err and "and another --output-format" in err and "package" not in err.split("(see")[0]
    assert f"delete {tmp_path / 'o'} to start over" in err
    shutil.rmtree(tmp_path / "o")
    assert run(*args, "--output-format", "vertex") == 0


def test_a_second_run_on_an_output_in_use_is_refused_and_the_first_keeps_it(tmp_path: Path) -> None:
    """Two runs on one output wrote each other's parts: the first exited 0 with shifted and missing lines."""
    from inference.batch.sinks import Checkpoint

    print_ = {"inputs": [], "output_format": "sagemaker", "package_manifest_sha256": "0" * 64}
    first = Checkpoint(tmp_path / "o", print_)
    assert first.open() is False
    with pytest.raises(
        UsageError, match=rf"--output .* is in use by another run of this command \(pid {os.getpid()}\)"
    ):
        Checkpoint(tmp_path / "o", print_).open()
    del first  # the run ends (however it ends, the kernel releases its lock)
    Checkpoint(tmp_path / "o", print_).open()  # the output is free again


def test_a_finished_run_rerun_changes_nothing_and_loads_nothing(
    torch_package: Path,
    rows: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pipeline's retry of a finished job: the same exit code at once, not after loading the model
    (seconds to minutes for a large one) to score nothing."""
    from inference import service
    from inference.batch import workers

    lines = write_jsonl(tmp_path / "data.jsonl", rows[:20]).read_bytes().splitlines()
    lines[3] = b"[1.0, 2.0]"  # one bad record: the rerun still says the run had more than --max-failed-records 0
    (tmp_path / "data.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    args = ("--input", tmp_path / "data.jsonl", "--output", tmp_path / "o", "--package", torch_package)
    assert run(*args, "--max-failed-records", 1) == 0
    first = (tmp_path / "o" / "data.jsonl.out").read_bytes()

    def no_loading(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("a finished run loaded the package again")

    monkeypatch.setattr(service, "load_service", no_loading)
    monkeypatch.setattr(workers, "score_files", no_loading)
    capsys.readouterr()
    assert run(*args, "--max-failed-records", 1) == 0
    assert "nothing left to score" in capsys.readouterr().err
    assert run(*args) == 3
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("model-deploy-batch: 1 of 20 records failed")
    assert (tmp_path / "o" / "data.jsonl.out").read_bytes() == first
    # The settings are still checked, as on any run.
    monkeypatch.setenv("MODEL_SERVER_MAX_BATCH_SIZE", "abc")
    assert run(*args, "--max-failed-records", 1) == 2
    assert "MODEL_SERVER_MAX_BATCH_SIZE" in capsys.readouterr().err


def test_a_run_killed_mid_way_resumes_without_scoring_twice_or_losing_records(
    torch_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.model_package import torch_models

    records = 16_000  # a run checkpointing every 32 records is still scoring long after 2,000 are done
    big = torch_models.mlp_inputs(records, seed=5)["x"]
    write_jsonl(tmp_path / "big.jsonl", big)
    common = ["--input", str(tmp_path / "big.jsonl"), "--package", str(torch_package), "--no-progress"]
    # The run to interrupt checkpoints every 32 records, so it is slow enough to be caught mid-way.
    slow = ["--batch-size", "32", "--checkpoint-seconds", "0"]
    command = [sys.executable, "-m", "tests.inference.batch_support", *common]
    # Model calls of 32 rows in every run: calls of other sizes (the sweep measures afresh in each run,
    # and on a busy machine can pick 1 or 2 rows) differ from them in the last bit, so in bytes.
    # One compute thread on both sides: the reference runs in this process, the others in subprocesses.
    same = {"MODEL_SERVER_MAX_BATCH_SIZE": "32", "MODEL_SERVER_COMPUTE_THREADS": "1"}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **same}
    for name, value in same.items():
        monkeypatch.setenv(name, value)

    assert run(*common, "--output", tmp_path / "ref") == 0  # the reference, in this process

    victim = subprocess.Popen(
        [*command, *slow, "--output", str(tmp_path / "o")], env={**env, **SLOW_CALLS_ENV}, stderr=subprocess.DEVNULL
    )
    progress = tmp_path / "o" / ".batch-state" / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if progress.is_file() and json.loads(progress.read_text())["scored"] >= 2_000:
            break
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    done = json.loads(progress.read_text())
    assert 0 < done["scored"] < records, "the run was killed before it had started or after it had finished"

    capsys.readouterr()
    assert run(*common, *slow, "--output", tmp_path / "o") == 0  # resumed in this process
    assert "resuming an interrupted run" in capsys.readouterr().err
    finished = json.loads(progress.read_text())
    assert finished["scored"] == records  # every record counted once: none scored twice
    assert (tmp_path / "o" / "big.jsonl.out").read_bytes() == (tmp_path / "ref" / "big.jsonl.out").read_bytes()


def test_an_image_pipeline_package_scores_b64_lines_like_vertex_file_lists(tmp_path: Path) -> None:
    """Each line {"b64": <file bytes>} (what Vertex AI makes of a file list) goes through the pipeline."""
    import base64

    from tests.pipeline_models import package_image_classifier, sample_images

    package = package_image_classifier(tmp_path / "pkg")
    images = [path.read_bytes() for path in sample_images()]
    lines = [orjson.dumps({"b64": base64.b64encode(data).decode()}) for data in images]
    lines.insert(1, orjson.dumps({"b64": base64.b64encode(b"not an image").decode()}))
    (tmp_path / "files.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    code = run("--input", tmp_path / "files.jsonl", "--output", tmp_path / "o", "--package", package)
    assert code == 3
    answers = out_rows(tmp_path / "o" / "files.jsonl.out")
    assert len(answers) == len(images) + 1 and answers[1] is None
    assert all(isinstance(answer, dict) and answer for i, answer in enumerate(answers) if i != 1)
    (error,) = [json.loads(line) for line in (tmp_path / "o" / "files.jsonl.out.errors").read_text().splitlines()]
    assert error["line"] == 2 and "not a JPEG or PNG" in error["error"]


def test_user_code_packages_are_scored_one_record_per_call(tmp_path: Path) -> None:
    from model_package.export import export_model
    from tests.model_package import torch_models

    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text("def predict_fn(data, model):\n    return model.predict(data)\n")
    package = tmp_path / "pkg"
    export_model(
        torch_models.make_dict_head(), torch_models.dict_head_inputs(2), package, name="uc", version="1", code_dir=code
    )
    rows = torch_models.dict_head_inputs(5, seed=4)["x"]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    assert run("--input", tmp_path / "rows.jsonl", "--output", tmp_path / "o", "--package", package) == 0
    answers = out_rows(tmp_path / "o" / "rows.jsonl.out")
    assert len(answers) == 5 and all(answer is not None for answer in answers)


def test_ctrl_c_stops_with_one_line_and_the_rerun_finishes_the_job(torch_package: Path, tmp_path: Path) -> None:
    from tests.model_package import torch_models

    rows = torch_models.mlp_inputs(12_000, seed=6)["x"]  # still scoring long after 1,000 are done
    write_jsonl(tmp_path / "rows.jsonl", rows)
    command = [
        sys.executable, "-m", "tests.inference.batch_support", "--input", str(tmp_path / "rows.jsonl"),
        "--package", str(torch_package), "--output", str(tmp_path / "o"), "--no-progress",
        "--batch-size", "32", "--checkpoint-seconds", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **SLOW_CALLS_ENV}
    run_ = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    progress = tmp_path / "o" / ".batch-state" / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run_.poll() is None:
        if progress.is_file() and json.loads(progress.read_text())["scored"] >= 1_000:
            break
        time.sleep(0.002)
    run_.send_signal(signal.SIGINT)
    _, stderr = run_.communicate(timeout=60)
    assert run_.returncode == 130, stderr
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("model-deploy-batch: interrupted") and "Traceback" not in stderr.decode()

    assert run(*command[3:]) == 0  # the rerun, in this process (a subprocess would import torch again)
    assert len((tmp_path / "o" / "rows.jsonl.out").read_bytes().splitlines()) == len(rows)
    assert json.loads(progress.read_text())["scored"] == len(rows)


def test_a_run_whose_package_failed_to_load_does_not_block_the_output_directory(
    torch_package: Path, rows: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "data.jsonl", rows[:4])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"not": "a manifest"}')
    args = ("--input", tmp_path / "data.jsonl", "--output", tmp_path / "o")
    assert run(*args, "--package", broken) != 0
    assert "Traceback" not in capsys.readouterr().err
    # Nothing was scored, so the fixed package may use the same output directory.
    assert run(*args, "--package", torch_package) == 0
    assert len(out_rows(tmp_path / "o" / "data.jsonl.out")) == 4


def test_ctrl_c_inside_a_chunk_waits_for_the_chunk_and_leaves_the_service_able_to_stop(
    torch_package: Path, rows: np.ndarray
) -> None:
    """A SIGINT that lands while a chunk is in flight is raised once the chunk is done.

    Raised inside the event loop's run, ``KeyboardInterrupt`` left it mid-request, and stopping the
    service afterwards once failed with "Event loop stopped before Future completed": the command
    reported an internal error instead of "interrupted" (seen in the full suite's Ctrl-C test).
    """
    from inference.batch.scoring import Scorer
    from inference.batch.sources import JSON_LINES, Chunk
    from inference.config import load_config
    from inference.service import load_service

    service = load_service(load_config({}, model_dir=torch_package))
    scorer = Scorer(service, output_format="sagemaker")
    records = [orjson.dumps(row.tolist()) for row in rows[:4]]
    chunk = Chunk(first=0, lines=[1, 2, 3, 4], end=0, nbytes=0, records=records)
    real_request = scorer._request
    finished: list[int] = []

    async def interrupted_request(*args: object) -> list[bytes]:
        # Ctrl-C while the loop waits on the chunk's work (the model runs in another thread).
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        await asyncio.sleep(0.5)
        lines: list[bytes] = await real_request(*args)  # type: ignore[arg-type]
        finished.append(len(lines))
        return lines

    scorer._request = interrupted_request  # type: ignore[method-assign,assignment]
    with pytest.raises(KeyboardInterrupt):
        scorer.score(chunk, JSON_LINES)
    assert finished == [4], "the chunk in the model is finished before the interrupt is raised"
    scorer.close()


def test_a_csv_record_with_a_huge_field_fails_alone_in_the_vertex_layout(
    torch_package: Path, rows: np.ndarray, tmp_path: Path
) -> None:
    """Its error record quotes it as text: the csv module refuses fields over 128 KiB."""
    data = tmp_path / "in.csv"
    write_csv(data, rows[:3])
    lines = data.read_text().splitlines()
    lines[1] = '"' + "9" * 200_000 + '"' + ",1" * 63
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = run("--input", data, "--output", out, "--package", torch_package, "--output-format", "vertex")
    assert code == 3, "one record failed; the others were scored"
    (errors,) = out.glob("prediction.errors_stats-*")
    (failed,) = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert failed["error"]["status"] == "INVALID_ARGUMENT" and failed["instance"].startswith('"999')
    (results,) = out.glob("prediction.results-*")
    assert len(results.read_bytes().splitlines()) == 2


def test_a_chunk_slower_than_the_servers_request_deadline_is_still_scored(
    torch_package: Path, rows: np.ndarray, expected: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's deadline stopped a run at its first slow chunk as an "internal error" (exit 70):
    with the default 55 s, any model slower than about 19 rows/s at the default 1,024-row chunks."""
    from model_package.formats import _torch

    predict = _torch.TorchLoadedModel.predict

    def slow(self: _torch.TorchLoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.2)
        return predict(self, inputs)

    monkeypatch.setattr(_torch.TorchLoadedModel, "predict", slow)
    monkeypatch.setenv("MODEL_SERVER_REQUEST_TIMEOUT_S", "0.05")
    data = write_jsonl(tmp_path / "data.jsonl", rows[:20])
    assert run("--input", data, "--output", tmp_path / "o", "--package", torch_package) == 0
    answers = out_rows(tmp_path / "o" / "data.jsonl.out")
    np.testing.assert_allclose(np.array(answers), expected[:20], rtol=1e-5, atol=1e-6)


def test_sigterm_stops_like_ctrl_c_removes_the_extracted_package_and_the_rerun_finishes(
    torch_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``timeout``, Kubernetes and systemd stop with SIGTERM, which killed the run outright: no line,
    exit 143 from the signal, and the package extracted from model.tar.gz left in the temporary directory."""
    import tempfile

    from model_package.archive import pack
    from model_package.formats import _torch
    from tests.model_package import torch_models

    archive = tmp_path / "model.tar.gz"
    pack(torch_package, archive)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    predict = _torch.TorchLoadedModel.predict

    def slow(self: _torch.TorchLoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.02)
        return predict(self, inputs)

    monkeypatch.setattr(_torch.TorchLoadedModel, "predict", slow)
    rows = torch_models.mlp_inputs(2_000, seed=8)["x"]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    args = ("--input", data, "--output", tmp_path / "o", "--package", archive, "--batch-size", 16)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert run(*args, "--checkpoint-seconds", 0) == 143
    finally:
        timer.cancel()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("model-deploy-batch: terminated; rerun")
    assert not list(scratch.iterdir()), "the extracted package is removed"
    scored = json.loads((tmp_path / "o" / ".batch-state" / "progress.json").read_text())["scored"]
    assert 0 < scored < len(rows)

    monkeypatch.setattr(_torch.TorchLoadedModel, "predict", predict)
    assert run(*args) == 0
    answers = out_rows(tmp_path / "o" / "rows.jsonl.out")
    assert len(answers) == len(rows) and all(answer is not None for answer in answers)


def test_input_files_that_cannot_fit_are_refused_before_anything_is_scored(
    torch_package: Path, rows: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated .npy was found only when reached (the files before it scored, the run then stuck
    on a changed input), and a .npy of the wrong rows failed each record alone: 50,000 error lines."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", rows[:5])
    np.save(inputs / "b.npy", rows[:50])
    (inputs / "b.npy").write_bytes((inputs / "b.npy").read_bytes()[:300])
    assert run("--input", inputs, "--output", tmp_path / "o", "--package", torch_package) == 2
    assert "b.npy is truncated: its header promises 50 rows" in capsys.readouterr().err
    assert not (tmp_path / "o").exists(), "nothing scored, nothing written"

    (inputs / "b.npy").unlink()
    np.save(inputs / "c.npy", rows[:50, :8].reshape(50, 2, 4))
    assert run("--input", inputs, "--output", tmp_path / "o", "--package", torch_package) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        "c.npy: its rows have shape [2, 4], and this model's input 'x' takes rows of shape [64] "
        "(-1 = any size); its first axis counts records"
    )


def test_sequences_of_different_lengths_are_scored_in_one_request_per_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's rows must share one length, so a chunk of mixed lengths failed and was halved down
    to runs of one length: 2,911 failed requests for 3,000 records, 24x slower than one length."""
    from model_package.export import export_model
    from model_package.formats import _torch
    from tests.model_package import torch_models

    package = tmp_path / "enc"
    export_model(torch_models.make_tiny_encoder(), torch_models.token_inputs(2, 6), package, name="enc", version="1")
    rng = np.random.default_rng(4)
    records = []
    for length in rng.integers(3, 9, size=60):
        ids = rng.integers(1, 20, size=length).tolist()
        records.append({"input_ids": ids, "attention_mask": [1] * int(length)})
    (tmp_path / "seq.jsonl").write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    calls: list[int] = []
    predict = _torch.TorchLoadedModel.predict

    def counted(self: _torch.TorchLoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["input_ids"]))
        return predict(self, inputs)

    monkeypatch.setattr(_torch.TorchLoadedModel, "predict", counted)
    calls.clear()
    assert run("--input", tmp_path / "seq.jsonl", "--output", tmp_path / "o", "--package", package) == 0
    lengths = {len(record["input_ids"]) for record in records}
    assert len(calls) == len(lengths) + 1, calls  # the warm-up's call on the bundled example, then one per length
    answers = out_rows(tmp_path / "o" / "seq.jsonl.out")
    manifest = read_manifest(package)
    model = get_format(manifest.format).load(package, manifest, threads=1)
    for index in range(len(records)):
        alone = {name: np.array([records[index][name]]) for name in ("input_ids", "attention_mask")}
        np.testing.assert_allclose(answers[index], next(iter(model.predict(alone).values()))[0], atol=1e-5)

    # A bad record among them still fails alone, the others keep their answers.
    lines = (tmp_path / "seq.jsonl").read_bytes().splitlines()
    lines[17] = b'{"input_ids": [1, 2, 3], "attention_mask": [1, 1]}'
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert run("--input", tmp_path / "bad.jsonl", "--output", tmp_path / "b", "--package", package) == 3
    with_bad = out_rows(tmp_path / "b" / "bad.jsonl.out")
    assert with_bad[17] is None
    others = [answer for index, answer in enumerate(with_bad) if index != 17]
    np.testing.assert_allclose(np.array(others), np.array(answers[:17] + answers[18:]), atol=1e-5)


def test_a_records_message_names_its_line_in_the_file(torch_package: Path, rows: np.ndarray, tmp_path: Path) -> None:
    """A failed record is retried alone, and its message counted lines in that one-record retry: the
    record on line 8 was "line 1 of the JSON Lines body" in the errors file."""
    path = write_jsonl(tmp_path / "data.jsonl", rows[:10])
    lines = path.read_bytes().splitlines()
    lines[7] = b"[1.0, 2.0"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert run("--input", path, "--output", tmp_path / "o", "--package", torch_package) == 3
    (error,) = [json.loads(line) for line in (tmp_path / "o" / "data.jsonl.out.errors").read_text().splitlines()]
    assert error["line"] == 8 and error["error"].startswith("line 8 of the JSON Lines body is not valid JSON"), error
