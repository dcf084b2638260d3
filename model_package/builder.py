"""Assemble a package directory: model files, example, optional user code, manifest.

The directory is built in a hidden sibling and renamed into place only when it
is complete, so a failed export never leaves a half-written package behind.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model_package._version import __version__
from model_package.errors import ExportError, MissingFileError, ModelPackageError, UsageError
from model_package.example import save_arrays, synthesize_inputs, trim_rows
from model_package.formats import LoadedModel, SavedArtifact, get_format
from model_package.formats.base import check_servable
from model_package.fresh_load import check_loads_in_fresh_process
from model_package.hashing import sha256_file
from model_package.manifest import (
    MANIFEST_FILENAME,
    SCHEMA_VERSION,
    Creation,
    Example,
    FileEntry,
    Manifest,
    UserCode,
    write_manifest,
)
from model_package.pipeline.attach import PipelineSource
from model_package.pipeline.schema import Pipeline

#: Writes the model into the staging directory it is given and describes what it wrote; an
#: exporter also returns the live model's outputs on the example (the verification reference).
Stager = Callable[[Path], SavedArtifact | tuple[SavedArtifact, Mapping[str, np.ndarray]]]
#: The metadata key the server reads its batch cap from (``inference.service.batching_settings``).
_BATCH_CAP_KEY = "serving.max_batch_size"
#: A check of a finished package, given its directory and manifest, before it is moved into place.
PackageCheck = Callable[[Path, Manifest], None]


@dataclass(frozen=True)
class PackageSpec:
    """Everything about a package that is not the model itself."""

    name: str
    version: str
    format: str
    example_inputs: Mapping[str, np.ndarray] | None
    """A few rows of real inputs; synthesized from the signature when absent (imports only)."""
    expected_outputs: Mapping[str, np.ndarray] | None = None
    """Outputs of the original model on ``example_inputs``; computed from the saved artifact when absent."""
    code_dir: Path | None = None
    rtol: float = 1e-4
    atol: float = 1e-5
    source: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    pipeline: PipelineSource | None = None
    """Pre- and post-processing to declare; its raw example's answers are computed from the saved model."""


def build_package(
    out_dir: Path,
    spec: PackageSpec,
    stage: Stager,
    *,
    overwrite: bool = False,
    fresh_load_check: bool = True,
    check: PackageCheck | None = None,
) -> Manifest:
    """Create the package directory ``out_dir`` and return its manifest.

    ``fresh_load_check``: when the model needs Python objects (Keras custom layers), load the
    staged package in a fresh interpreter first, as the server will (``model_package.fresh_load``).
    ``check`` runs on the finished package (its staging directory) before it is moved into place:
    raising refuses it, and ``out_dir`` (a package it would replace included) is left as it was.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a directory; --out names the package directory to create")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UsageError(f"{out_dir} already exists and is not empty; choose a new directory or pass --overwrite")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        # Absolute: errors from user code and frameworks name resolved paths, which must match to be hidden.
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent)).resolve()
    except OSError as exc:
        raise UsageError(f"cannot create the package directory {out_dir}: {exc.strerror or exc}") from exc
    try:
        with _naming_no_staging(staging, "the exported model"):
            staged = stage(staging)
        if isinstance(staged, tuple):
            artifact, reference = staged
            spec = replace(spec, expected_outputs=reference)
        else:
            artifact = staged
        with _naming_no_staging(staging, "the package"):
            manifest = _finish(staging, spec, artifact)
            if fresh_load_check:
                check_loads_in_fresh_process(staging, manifest)
            if check is not None:
                check(staging, manifest)
        _move_into_place(staging, out_dir)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` to ``out_dir``; a package already there is renamed aside first, deleted last.

    Renames are atomic and cannot half-happen: deleting the old package first lost both packages
    when the deletion failed or was interrupted (the staging directory is removed on the way out).
    """
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.replaced-", dir=out_dir.parent))
    aside.rmdir()  # a free name beside out_dir, on the same file system
    out_dir.rename(aside)
    try:
        staging.rename(out_dir)
    except BaseException:
        aside.rename(out_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _naming_no_staging(staging: Path, instead: str) -> Iterator[None]:
    """Errors raised inside without the staging directory's path: it is deleted, so it would point at nothing."""
    try:
        yield
    except ModelPackageError as exc:
        text = str(exc)
        if str(staging) not in text:
            raise
        raise type(exc)(text.replace(f"{staging}/", "").replace(str(staging), instead)) from exc


def _finish(staging: Path, spec: PackageSpec, artifact: SavedArtifact) -> Manifest:
    check_servable(artifact.signature)
    example = Example(rtol=spec.rtol, atol=spec.atol)
    if spec.example_inputs is not None:
        inputs = trim_rows(spec.example_inputs)
    else:
        inputs = synthesize_inputs(artifact.signature)
    save_arrays(staging / example.inputs, inputs)
    code = _copy_user_code(spec.code_dir, staging) if spec.code_dir is not None else None

    if spec.expected_outputs is not None:
        outputs = trim_rows(spec.expected_outputs)
    else:
        outputs = _predict_with_saved_artifact(staging, artifact, spec=spec, example=example, code=code, inputs=inputs)
    save_arrays(staging / example.outputs, outputs)
    pipeline = _stage_pipeline(staging, spec, artifact, example, code) if spec.pipeline is not None else None

    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=spec.name,
        version=spec.version,
        format=spec.format,  # type: ignore[arg-type]  # validated by pydantic
        framework=artifact.framework,
        model_path=artifact.model_path,
        serving_signature=artifact.serving_signature,
        signature=artifact.signature,
        example=example,
        code=code,
        files=hash_tree(staging),
        created=Creation(
            created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
            tool=f"model-package {__version__}",
            python=platform.python_version(),
            source=spec.source,
        ),
        metadata=_metadata(spec, artifact),
        pipeline=pipeline,
    )
    write_manifest(staging, manifest)
    return manifest


def _metadata(spec: PackageSpec, artifact: SavedArtifact) -> dict[str, str]:
    """The package's metadata: the user's, plus the batch cap of a model that runs one row a call."""
    metadata = dict(spec.metadata)
    if artifact.max_batch_size is None:
        return metadata
    declared = metadata.setdefault(_BATCH_CAP_KEY, str(artifact.max_batch_size))
    if not declared.isdigit() or int(declared) > artifact.max_batch_size:
        raise ExportError(
            f"metadata {_BATCH_CAP_KEY}={declared} asks for batches the model cannot run: it runs "
            f"{artifact.max_batch_size} row per call (it fails on more); leave the key out or set it to "
            f"{artifact.max_batch_size}"
        )
    return metadata


def _stage_pipeline(
    staging: Path, spec: PackageSpec, artifact: SavedArtifact, example: Example, code: UserCode | None
) -> Pipeline:
    """Stage the pipeline's files and bundle its answers on the raw example, from the saved model.

    The answers come from the artifact as the server loads it (not the live model): the tensor example
    already proves the export is faithful; this one proves the processing around it.
    """
    from model_package.pipeline.attach import stage_pipeline
    from model_package.pipeline.runner import PipelineRunner

    assert spec.pipeline is not None
    pipeline = stage_pipeline(spec.pipeline, staging, artifact.signature)
    answers_path = staging / pipeline.example.outputs
    answers_path.write_text("[]\n", encoding="utf-8")  # listed in the provisional manifest, rewritten below
    model, provisional = _load_staged(staging, artifact, spec=spec, example=example, code=code, pipeline=pipeline)
    runner = PipelineRunner(staging, provisional, axis_rules=getattr(model, "axis_rules", None))
    answers = runner.run(runner.example_items(), model.predict)
    answers_path.write_text(json.dumps(answers, indent=1) + "\n", encoding="utf-8")
    return pipeline


def _predict_with_saved_artifact(
    staging: Path,
    artifact: SavedArtifact,
    *,
    spec: PackageSpec,
    example: Example,
    code: UserCode | None,
    inputs: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    model, _ = _load_staged(staging, artifact, spec=spec, example=example, code=code, pipeline=None)
    return dict(model.predict(inputs))


def _load_staged(
    staging: Path,
    artifact: SavedArtifact,
    *,
    spec: PackageSpec,
    example: Example,
    code: UserCode | None,
    pipeline: Pipeline | None,
) -> tuple[LoadedModel, Manifest]:
    # Build a provisional manifest so the loader sees exactly what the server will see.
    provisional = Manifest(
        schema_version=SCHEMA_VERSION,
        name=spec.name,
        version=spec.version,
        format=spec.format,  # type: ignore[arg-type]
        framework=artifact.framework,
        model_path=artifact.model_path,
        serving_signature=artifact.serving_signature,
        signature=artifact.signature,
        example=example.model_copy(update={"outputs": example.inputs}),
        code=code,
        files=hash_tree(staging),
        created=Creation(created_at="", tool="", python=""),
        pipeline=pipeline,
    )
    return get_format(spec.format).load(staging, provisional), provisional


def _copy_user_code(code_dir: Path, staging: Path) -> UserCode:
    entry = code_dir / "inference.py"
    if not entry.is_file():
        raise MissingFileError(f"{code_dir} has no inference.py; user code must define its hooks in code/inference.py")
    shutil.copytree(code_dir, staging / "code", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    requirements = "code/requirements.txt" if (code_dir / "requirements.txt").is_file() else None
    return UserCode(entry_point="code/inference.py", requirements=requirements)


def hash_tree(root: Path, progress: Callable[[int], None] | None = None) -> tuple[FileEntry, ...]:
    """A sorted FileEntry per regular file under ``root``, except the manifest itself.

    Empty directories (a SavedModel's unused ``assets/``) are removed first: a package is exactly
    its files, and verification refuses a directory that holds none.
    """
    _remove_empty_directories(root)
    entries = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise UsageError(f"{relative} is a symbolic link; packages hold regular files only")
        if not path.is_file() or relative == MANIFEST_FILENAME:
            continue
        entries.append(FileEntry(path=relative, sha256=sha256_file(path, progress), size=path.stat().st_size))
    return tuple(entries)


def _remove_empty_directories(root: Path) -> None:
    # Deepest first, so a directory whose only content was empty directories goes too.
    for path in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
