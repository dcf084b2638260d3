"""Scored chunks -> the files the managed engines write, checkpointed so a run can resume.

Layouts (``--output-format``):

- ``sagemaker``: ``<input name>.out`` per input file with one line per input record, in order, as
  Batch Transform writes with ``AssembleWith=Line`` ("Use batch transform to run inference",
  https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html: "the output file has the
  same name as the input file with .out appended"). Where a record failed its line is left empty,
  so line N of the output still answers line N of the input, and ``<input name>.out.errors`` lists
  the failures as JSON Lines ``{"record", "line", "status", "error"}``.
- ``vertex``: ``prediction.results-NNNNN-of-NNNNN`` JSON Lines ``{"instance", "prediction"}`` and
  ``prediction.errors_stats-NNNNN-of-NNNNN`` JSON Lines ``{"instance", "error": {"status",
  "message"}}``, one shard per input file (the PredictionResult message is "a line of JSONL in the
  batch prediction output file": https://cloud.google.com/vertex-ai/docs/reference/rest/Shared.Types/PredictionResult;
  the file names are those of "Get batch predictions from a custom trained model",
  https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions#retrieve_batch_prediction_results).

How resuming works: each scored chunk is written to its own part file (written to a temporary
name, fsynced, renamed), then ``progress.json`` records the chunk (same: temporary file + rename).
A part the checkpoint does not name is from a run killed between the two steps and is deleted, so
it is scored again exactly once. When a file is done its parts are joined into the final output
(again via rename), the checkpoint moves to the next file, and the parts are removed. Everything
lives in ``<output>/.batch-state/`` (kept after the run: a rerun of a finished run does nothing)
with the run's fingerprint (input files' names, sizes and modification times, the package's
manifest digest, the output format): a rerun with different input or package refuses to resume
onto that output.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

from inference.batch.scoring import Answers
from inference.batch.sources import Chunk, InputFile
from model_package.errors import MissingFileError, UsageError
from model_package.manifest import MANIFEST_FILENAME

STATE_DIR: Final = ".batch-state"
#: The rows per model call a run measured when it started, kept in its state directory.
MODEL_CALLS_FILE: Final = "model-calls.json"
_BLOCK = 1 << 20
OUTPUT_FORMATS: Final = ("sagemaker", "vertex")


@dataclass
class Progress:
    """Where the run is: files before ``file`` are finished; ``chunks`` parts of ``file`` are written."""

    file: int = 0
    chunks: int = 0
    records: int = 0
    """Records of ``file`` already scored."""
    offset: int = 0
    """Where reading ``file`` continues: a byte offset, or a row of a ``.npy``."""
    scored: int = 0
    """Records scored over the whole run (all files)."""
    failed: int = 0
    """Records that failed over the whole run."""


def fingerprint(
    files: Sequence[InputFile], package_digest: str, output_format: str, *, workers: int = 1
) -> dict[str, Any]:
    """What must not change between a run and its resumption (``workers`` only when several: runs
    of one worker keep the fingerprint they had before there was a choice)."""
    return ({"workers": workers} if workers > 1 else {}) | {
        "package_manifest_sha256": package_digest,
        "output_format": output_format,
        "inputs": [
            {"name": file.name, "size": (stat := file.path.stat()).st_size, "mtime_ns": stat.st_mtime_ns}
            for file in files
        ],
    }


#: Fingerprint keys, as a message names them.
_FINGERPRINT_PARTS: Final = {
    "inputs": "input (file names, sizes or modification times)",
    "package_manifest_sha256": "package",
    "output_format": "--output-format",
}
#: Held (flock) by the run writing the output; holds its pid.
LOCK_FILE: Final = "lock"


def _without_workers(print_: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in print_.items() if key != "workers"}


def manifest_digest(package_dir: Path) -> str:
    """The package's identity: its manifest lists every file's digest (verified when the package loads)."""
    manifest = package_dir / MANIFEST_FILENAME
    if not manifest.is_file():
        raise MissingFileError(f"--package {package_dir} holds no {MANIFEST_FILENAME}: not a model package")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()


class Checkpoint:
    """The run's state directory: fingerprint, progress and the parts of the file in progress."""

    def __init__(self, output: Path, print_: dict[str, Any]) -> None:
        self.output = output
        self.state = output / STATE_DIR
        self.fingerprint = print_
        self.progress = Progress()
        self._held: IO[str] | None = None

    def open(self) -> bool:
        """Start or resume; True when resuming. Raises ``UsageError`` for a different run's output."""
        try:
            self.output.mkdir(parents=True, exist_ok=True)
            self.state.mkdir(exist_ok=True)
            probe = self.state / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"--output {self.output} is not a writable directory: {exc.strerror or exc}") from None
        self._lock()
        saved = self.state / "fingerprint.json"
        progress_file = self.state / "progress.json"
        # With --workers, spans checkpoint on their own before the run's first file is done.
        started = progress_file.is_file() or any(self.state.glob("file-*/span-*/progress.json"))
        if saved.is_file() and not started:
            saved.unlink()  # a run that stopped before scoring anything (say, a package that failed to load)
            (self.state / MODEL_CALLS_FILE).unlink(missing_ok=True)  # measured for that run's package and input
            for leftover in self.state.glob("file-*"):
                shutil.rmtree(leftover)  # its span plan, or a part no checkpoint names
        if saved.is_file():
            earlier = orjson.loads(saved.read_bytes())
            if earlier != self.fingerprint and _without_workers(earlier) == _without_workers(self.fingerprint):
                # Spans are planned per worker count: another count would read another run's checkpoints.
                raise UsageError(
                    f"--output {self.output} holds a run started with --workers {earlier.get('workers', 1)}; "
                    f"rerun with --workers {earlier.get('workers', 1)} to continue it, or use a new output directory"
                )
            if earlier != self.fingerprint:
                changed = [
                    what for key, what in _FINGERPRINT_PARTS.items() if earlier.get(key) != self.fingerprint.get(key)
                ]
                raise UsageError(
                    f"--output {self.output} holds a run with another {' and another '.join(changed) or 'setting'} "
                    f"(see {saved}); use a new output directory, or delete {self.output} to start over"
                )
            self.progress = load_progress(progress_file) or Progress()
            self._drop_stale_parts()
            return True
        if any(path.name != STATE_DIR for path in self.output.iterdir()):
            # Not ours to write into: results of something else would be mixed with ours.
            raise UsageError(f"--output {self.output} is not empty and holds no earlier run of this command")
        _atomic_write(saved, orjson.dumps(self.fingerprint, option=orjson.OPT_INDENT_2))
        return False

    def _lock(self) -> None:
        """Hold the output for this run: two runs writing one output put answers on other records' lines.

        A second run started while the first still scores (a pipeline's retry, a second terminal)
        read and wrote the same checkpoint and parts: the first exited 0 with shifted and missing
        lines. ``flock`` is released by the kernel when the process ends, however it ends (flock(2):
        the lock goes with the last descriptor of its open file description), so a killed run never
        leaves the output locked.
        """
        handle = (self.state / LOCK_FILE).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UsageError(
                f"--output {self.output} is in use by another run of this command (pid {holder}); wait for it "
                "to finish (rerunning the same command then continues or reports it), or use another output directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._held = handle  # open for the life of the process: closing it would release the lock

    def parts(self, file: int) -> Path:
        return self.state / f"file-{file:05d}"

    def _drop_stale_parts(self) -> None:
        """Parts the checkpoint does not name: written by a run killed before it recorded them."""
        for directory in self.state.glob("file-*"):
            index = int(directory.name.removeprefix("file-"))
            if index < self.progress.file:
                shutil.rmtree(directory)  # finished files whose clean-up was interrupted
            elif index == self.progress.file:
                # Only a single reader's parts: with --workers, each span cleans its own directory.
                drop_stale_parts(directory, self.progress.chunks)

    def save(self) -> None:
        _atomic_write(self.state / "progress.json", orjson.dumps(asdict(self.progress)))

    def model_call_rows(self) -> int | None:
        """The rows per model call this run measured when it started (``None``: not measured yet)."""
        path = self.state / MODEL_CALLS_FILE
        return int(orjson.loads(path.read_bytes())["rows"]) if path.is_file() else None

    def record_model_call_rows(self, rows: int) -> None:
        """Keep a measured size for the run's workers and its resumption (see ``inference.batch.model_calls``)."""
        _atomic_write(self.state / MODEL_CALLS_FILE, orjson.dumps({"rows": rows}))


def drop_stale_parts(directory: Path, chunks: int) -> None:
    """Delete the parts in ``directory`` a checkpoint naming ``chunks`` of them does not cover."""
    for part in directory.glob("*.part"):
        if int(part.stem) >= chunks:
            part.unlink()
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink()


def save_progress(path: Path, progress: Progress) -> None:
    """Write ``progress`` all or nothing (a span's checkpoint, next to its parts)."""
    _atomic_write(path, orjson.dumps(asdict(progress)))


def load_progress(path: Path) -> Progress | None:
    return Progress(**orjson.loads(path.read_bytes())) if path.is_file() else None


class Layout:
    """One output format: how a chunk's answers become part bytes, and parts become output files."""

    def __init__(self, output_format: str, output: Path, files: Sequence[InputFile]) -> None:
        self.format = output_format
        self.output = output
        self.count = len(files)

    def chunk_bytes(self, chunk: Chunk, answers: Answers, instance: Callable[[int], bytes]) -> tuple[bytes, bytes]:
        """(result lines, error lines) of one chunk; ``instance(index)`` is the record as JSON bytes."""
        failures = answers.failures
        if self.format == "sagemaker":
            # Failed records keep their (empty) line, so line N of the output answers record N.
            results = b"\n".join(answers.lines) + b"\n" if answers.lines else b""
            errors = [
                orjson.dumps({"record": chunk.first + i, "line": chunk.lines[i], "status": f.status, "error": f.error})
                + b"\n"
                for i, f in sorted(failures.items())
            ]
            return results, b"".join(errors)
        ok = [
            b'{"instance":' + instance(i) + b',"prediction":' + line + b"}\n"
            for i, line in enumerate(answers.lines)
            if i not in failures
        ]
        bad = [
            b'{"instance":'
            + instance(i)
            + b',"error":'
            + orjson.dumps({"status": _grpc_status(f.status), "message": f"line {chunk.lines[i]}: {f.error}"})
            + b"}\n"
            for i, f in sorted(failures.items())
        ]
        return b"".join(ok), b"".join(bad)

    def targets(self, index: int, file: InputFile) -> tuple[Path, Path]:
        """(results file, errors file) of input file ``index``."""
        if self.format == "sagemaker":
            out = self.output / f"{file.name}.out"
            return out, out.with_name(out.name + ".errors")
        shard = f"{index:05d}-of-{self.count:05d}"
        return self.output / f"prediction.results-{shard}", self.output / f"prediction.errors_stats-{shard}"


def write_part(directory: Path, chunk_index: int, results: bytes, errors: bytes) -> None:
    """One chunk's answers, all or nothing: a part is either complete or absent."""
    directory.mkdir(exist_ok=True)
    _atomic_write(directory / f"{chunk_index:08d}.part", orjson.dumps([len(results)]) + b"\n" + results + errors)


def assemble(directory: Path, chunks: int, results: Path, errors: Path, *, always_errors: bool) -> None:
    """Join a file's parts into its outputs (temporary name, then rename: never half written).

    Parts are copied in blocks, so memory stays flat however large the output.
    """
    assemble_parts(part_paths(directory, chunks), results, errors, always_errors=always_errors)


def part_paths(directory: Path, chunks: int) -> list[Path]:
    """The first ``chunks`` parts of ``directory``, in order."""
    return [directory / f"{index:08d}.part" for index in range(chunks)]


def assemble_parts(parts: Sequence[Path], results: Path, errors: Path, *, always_errors: bool) -> None:
    """Join ``parts``, in order, into a file's outputs (see :func:`assemble`)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    error_parts: list[bytes] = []
    with _AtomicFile(results) as out:
        for path in parts:
            with path.open("rb") as part:
                remaining = orjson.loads(part.readline())[0]
                while remaining:
                    block = part.read(min(remaining, _BLOCK))
                    out.write(block)
                    remaining -= len(block)
                error_parts.append(part.read())
    error_bytes = b"".join(error_parts)
    if error_bytes or always_errors:
        _atomic_write(errors, error_bytes)
    elif errors.exists():
        errors.unlink()


def _grpc_status(status: int) -> str:
    # Vertex AI's Error.status is a google.rpc.Code name (PredictionResult.Error, linked above).
    return {400: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT"}.get(status, "INTERNAL")


class _AtomicFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")

    def __enter__(self) -> Any:
        self.handle = self.tmp.open("wb")
        return self.handle

    def __exit__(self, *exc: object) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if exc[0] is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    with _AtomicFile(path) as handle:
        handle.write(data)
