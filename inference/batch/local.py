"""``model-deploy-batch`` with a local ``--input``: score a file or directory in this process.

The package is loaded by :func:`inference.service.load_service`, exactly as the server loads it
(integrity and behaviour verification, user code, pipelines, decode limits, batching), and every
chunk goes through the same decode -> ``ModelService.predict`` -> encode path as a request to
``/invocations``. Expected failures print one line and exit non-zero; records that fail are
written to the errors file and make the exit non-zero unless ``--max-failed-records`` allows them.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.batch.model_calls import choose_rows, measurable, measure_rows, scoring_config, settled_rows
from inference.batch.parts import score_chunks
from inference.batch.scoring import Scorer, Terminated, raise_terminated
from inference.batch.sinks import OUTPUT_FORMATS, Checkpoint, Layout, assemble, fingerprint, manifest_digest
from inference.batch.sources import InputFile, bytes_read, check_fit, discover, read_chunks, total_bytes
from model_package.errors import ModelPackageError, UsageError
from model_package.logs import configure_logging
from model_package.progress import progress

if TYPE_CHECKING:
    from inference.codecs import DecodeLimits
    from model_package.manifest import Signature

_log = logging.getLogger(__name__)
PROG = "model-deploy-batch"
EXIT_RECORDS_FAILED = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
#: Records per request to the model: large enough to amortise per-request work, small enough that
#: a chunk stays far below the server's decode limit and a resumed run redoes little.
DEFAULT_BATCH_SIZE = 1024


def add_local_arguments(group: argparse._ArgumentGroup) -> None:
    """The options of local scoring (``--input``/``--output`` are shared and registered by the router)."""
    group.add_argument("--package", type=Path, help="model package directory or model.tar.gz (local --input)")
    group.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="sagemaker",
        help="write what SageMaker Batch Transform writes (<file>.out, one line per record) "
        "or what Vertex AI batch prediction writes (prediction.results-*/errors_stats-*) (default: sagemaker)",
    )
    group.add_argument(
        "--batch-size",
        type=_positive,
        default=DEFAULT_BATCH_SIZE,
        help="records per chunk, scored as one request (default: 1024; lowered to fit the server's per-request "
        "decode limit); the model is called with at most MODEL_SERVER_MAX_BATCH_SIZE rows, else the package's "
        "serving.max_batch_size, else the size measured when the run starts",
    )
    group.add_argument(
        "--max-failed-records",
        type=_non_negative,
        default=0,
        help="exit 0 if at most this many records failed (they are still listed in the errors file; default: 0)",
    )
    group.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=1.0,
        help="how often finished answers are written and the resume point saved (default: 1; 0: every batch)",
    )
    group.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes scoring at once, each a contiguous part of every file, joined in order into the same "
        "output (default: 1; auto: one per CPU, their compute threads split so workers x threads <= CPUs). "
        "Pays off when reading and encoding records costs more than the model (small models); a "
        "compute-bound model already uses every core from one process, and each worker holds its own copy of "
        "the model in memory",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_local(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Score ``args.input`` into ``args.output``; the process exit code."""
    # --log-format and --verbose are the router's (infra/batch/cli.py): both sides take them.
    configure_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    if args.package is None:
        parser.error("--package is required with a local --input")
    # SIGTERM stops a run as Ctrl-C does: the extracted package is removed and the line says how to go
    # on (it killed the process outright, leaving a copy of the package in the temporary directory).
    previous = signal.signal(signal.SIGTERM, raise_terminated) if _main_thread() else None
    try:
        return _run(args)
    except ModelPackageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"{PROG}: terminated; rerun the same command to continue where it stopped", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not an expected failure: keep the traceback reachable
        if args.verbose:
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if Path(args.input).is_dir() and output.resolve().is_relative_to(Path(args.input).resolve()):
        # Its results would be read back as input by the next run (or the resumption of this one).
        raise UsageError(f"--output {output} is inside --input {args.input}; choose a directory outside it")
    files = discover(Path(args.input))
    if args.package.is_file():
        with tempfile.TemporaryDirectory(prefix="model-batch-") as scratch:
            from model_package.archive import extract

            package_dir = Path(scratch) / "package"
            extract(args.package, package_dir)
            return _score_all(args, files, output, package_dir)
    if not args.package.is_dir():
        raise UsageError(f"--package {args.package} is neither a package directory nor a model.tar.gz")
    return _score_all(args, files, output, args.package)


def _score_all(args: argparse.Namespace, files: list[InputFile], output: Path, package_dir: Path) -> int:
    from inference.config import available_cpus, load_config
    from model_package.manifest import read_manifest

    workers = available_cpus() if args.workers == "auto" else int(args.workers)
    checkpoint = Checkpoint(
        output, fingerprint(files, manifest_digest(package_dir), args.output_format, workers=workers)
    )
    manifest = read_manifest(package_dir)
    if manifest.code is None:
        check_fit(files, manifest.signature)  # before the output is created or the model loads
    resuming = checkpoint.open()
    state = checkpoint.progress
    # The server's own knobs (MODEL_SERVER_*) apply; platform variables do not describe this process.
    env = {name: value for name, value in os.environ.items() if name.startswith("MODEL_SERVER_")}
    if state.file >= len(files):
        # A finished run asked again (a pipeline's retry, say): nothing is left to score, so the model
        # is not loaded (nor its files verified again); the settings are still checked, as on any run.
        load_config(env, model_dir=package_dir)
        _log.info(
            "nothing left to score: the output holds a finished run",
            extra={"records": state.scored, "failed": state.failed, "output": str(output)},
        )
        return _exit_code(args, state.scored, state.failed, output)
    if resuming:
        _log.info(
            "resuming an interrupted run",
            extra={"file": state.file, "records_done": state.scored, "records_failed": state.failed},
        )
    layout = Layout(args.output_format, output, files)
    # What a resumed run had scored, so its progress bar starts there (workers add their spans' own below).
    done = sum(file.path.stat().st_size for file in files[: state.file]) + (
        bytes_read(files[state.file], 0, state.offset) if state.file < len(files) else 0
    )
    scored_before = state.scored
    if workers > 1:
        seconds = _score_with_workers(
            args,
            files,
            checkpoint=checkpoint,
            layout=layout,
            package_dir=package_dir,
            env=env,
            workers=workers,
            done=done,
        )
    else:
        from inference.service import load_service

        config = load_config(env, model_dir=package_dir)
        service = load_service(scoring_config(config, args.batch_size))
        args.batch_size = _fit_batch_size(args.batch_size, service.signature, service.limits)
        rows = choose_rows(
            checkpoint,
            settled=settled_rows(config, service.manifest, args.batch_size),
            chunk_rows=args.batch_size,
            input_bytes=total_bytes(files) - done,
            measure=functools.partial(measure_rows, service, args.batch_size) if measurable(service) else None,
        )
        if service.batcher is not None:
            service.batcher.max_batch_size = rows
        scorer = Scorer(service, output_format=args.output_format)
        started = time.perf_counter()
        try:
            with progress("scoring", total_bytes(files), enabled=not args.no_progress) as advance:
                advance(done)
                for index in range(state.file, len(files)):
                    _score_file(
                        index,
                        files[index],
                        args=args,
                        checkpoint=checkpoint,
                        scorer=scorer,
                        layout=layout,
                        advance=advance,
                    )
        finally:
            scorer.close()
        seconds = time.perf_counter() - started
    rows = state.scored - scored_before
    _log.info(
        "batch scoring finished",
        extra={
            "records": state.scored,
            "failed": state.failed,
            "files": len(files),
            "workers": workers,
            "seconds": round(seconds, 3),
            "records_per_second": round(rows / seconds) if seconds > 0 else None,
            "output": str(output),
        },
    )
    return _exit_code(args, state.scored, state.failed, output)


def _exit_code(args: argparse.Namespace, scored: int, failed: int, output: Path) -> int:
    """0, or the exit code (with its one line) of a run whose failed records are more than allowed."""
    if failed > args.max_failed_records:
        print(
            f"{PROG}: {failed} of {scored} records failed (allowed: {args.max_failed_records}); "
            f"they are listed in the errors files under {output}",
            file=sys.stderr,
        )
        return EXIT_RECORDS_FAILED
    return 0


def _score_with_workers(
    args: argparse.Namespace,
    files: list[InputFile],
    *,
    checkpoint: Checkpoint,
    layout: Layout,
    package_dir: Path,
    env: dict[str, str],
    workers: int,
    done: int,
) -> float:
    """Score with ``workers`` processes; the seconds spent scoring (after the workers loaded the package)."""
    from inference.batch.workers import WorkerSetup, score_files
    from inference.codecs import DecodeLimits
    from inference.config import available_cpus, load_config
    from model_package.manifest import read_manifest

    # Chosen here, before the workers load the package: every span is cut at multiples of it.
    config = load_config(env, model_dir=package_dir)
    manifest = read_manifest(package_dir)
    limits = DecodeLimits.for_body_limit(config.max_request_bytes)
    batch_size = _fit_batch_size(args.batch_size, manifest.signature, limits)
    settled = settled_rows(config, manifest, batch_size)
    # Each worker's model threads get their share of the CPUs, unless MODEL_SERVER_COMPUTE_THREADS says.
    env = {"MODEL_SERVER_COMPUTE_THREADS": str(max(1, available_cpus() // workers)), **env}
    setup = WorkerSetup(
        package_dir=package_dir,
        env=env,
        batch_size=batch_size,
        output_format=args.output_format,
        log_format=args.log_format,
        level=logging.DEBUG if args.verbose else logging.INFO,
        parent=os.getpid(),
    )
    with progress("scoring", total_bytes(files), enabled=not args.no_progress) as advance:
        advance(done)
        return score_files(
            files,
            workers=workers,
            checkpoint=checkpoint,
            model_call_rows=functools.partial(
                choose_rows, checkpoint, settled=settled, chunk_rows=batch_size, input_bytes=total_bytes(files) - done
            ),
            measurable=manifest.code is None,
            layout=layout,
            setup=setup,
            checkpoint_seconds=args.checkpoint_seconds,
            advance=advance,
        )


def _score_file(
    index: int,
    file: InputFile,
    *,
    args: argparse.Namespace,
    checkpoint: Checkpoint,
    scorer: Scorer,
    layout: Layout,
    advance: Callable[[int], None],
) -> None:
    state = checkpoint.progress
    parts = checkpoint.parts(index)
    chunks = read_chunks(file, start=state.offset, first_record=state.records, size=args.batch_size)
    score_chunks(
        file,
        chunks,
        state=state,
        parts=parts,
        save_state=checkpoint.save,
        scorer=scorer,
        layout=layout,
        checkpoint_seconds=args.checkpoint_seconds,
        advance=advance,
    )
    target, errors_target = layout.targets(index, file)
    assemble(parts, state.chunks, target, errors_target, always_errors=layout.format == "vertex")
    state.file, state.chunks, state.records, state.offset = index + 1, 0, 0, 0
    checkpoint.save()
    if parts.exists():
        import shutil

        shutil.rmtree(parts)


def _fit_batch_size(requested: int, signature: Signature, limits: DecodeLimits) -> int:
    """``requested``, or fewer rows when that many would decode past the server's per-request limit.

    Known only for inputs whose every dimension but the batch is fixed; otherwise a chunk that is
    too large is split when the service refuses it (413), as a failing chunk is.
    """
    row_bytes = 0
    for spec in signature.inputs:
        if spec.dtype == "bytes" or any(size < 0 for size in spec.shape[1:]):
            return requested
        row_bytes += int(np.prod(spec.shape[1:], dtype=np.int64)) * np.dtype(spec.dtype).itemsize
    fitting = max(1, limits.max_bytes // max(1, row_bytes))
    if fitting < requested:
        _log.info(
            "batch size lowered to fit the per-request decode limit",
            extra={"requested": requested, "batch_size": fitting, "max_bytes": limits.max_bytes},
        )
        return fitting
    return requested


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or 'auto', got {text!r}") from None


def _positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
