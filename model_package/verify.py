"""Verify a package: integrity against its manifest, and behaviour on its bundled example."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_package.errors import BehaviourMismatchError, IntegrityError
from model_package.example import load_arrays
from model_package.formats import LoadedModel, get_format
from model_package.formats.base import check_servable
from model_package.hashing import ProgressCallback, sha256_file
from model_package.manifest import MANIFEST_FILENAME, Manifest, read_manifest


@dataclass(frozen=True)
class BehaviourReport:
    """How far the packaged model's outputs are from the bundled expected outputs."""

    max_abs_error: dict[str, float]
    """Per output name, the largest absolute difference seen."""
    rtol: float
    atol: float
    pipeline_error: float | None = None
    """With a declared pipeline: the largest score difference on the bundled raw example."""

    @property
    def worst(self) -> float:
        """The largest absolute error over all outputs."""
        return max(self.max_abs_error.values(), default=0.0)


def verify_integrity(
    package_dir: Path,
    progress: ProgressCallback | None = None,
    *,
    known_sha256: Mapping[str, str] | None = None,
) -> Manifest:
    """Check that ``package_dir`` holds exactly the files its manifest lists, byte for byte.

    ``known_sha256`` holds digests computed while the files were written (extraction), so
    they are not read back a second time.
    """
    known = known_sha256 or {}
    manifest = read_manifest(package_dir)
    check_file_set(package_dir, manifest)
    for entry in manifest.files:
        path = package_dir / entry.path
        size = path.stat().st_size
        if size != entry.size:
            raise IntegrityError(f"{entry.path}: size is {size} bytes, the manifest says {entry.size}: file corrupted")
        actual = known.get(entry.path) or sha256_file(path, progress)
        if actual != entry.sha256:
            raise IntegrityError(
                f"{entry.path}: sha256 is {actual}, the manifest says {entry.sha256}: "
                "the file was modified or corrupted"
            )
    return manifest


def check_file_set(package_dir: Path, manifest: Manifest) -> None:
    """Check that ``package_dir`` holds exactly the regular files the manifest lists (no hashing).

    Anything else is refused: symbolic links, FIFOs, sockets and devices (reading a FIFO would
    block the server forever), and empty directories, which no manifest entry can account for.
    """
    present: set[str] = set()
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir).as_posix()
        if path.is_symlink():
            raise IntegrityError(f"{relative} is a symbolic link; packages hold regular files only")
        if path.is_dir():
            if not any(path.iterdir()):
                raise IntegrityError(f"{relative} is an empty directory; packages hold regular files only")
        elif not path.is_file():
            raise IntegrityError(
                f"{relative} is not a regular file (a FIFO, socket or device); packages hold regular files only"
            )
        elif relative != MANIFEST_FILENAME:
            present.add(relative)
    listed = {entry.path for entry in manifest.files}
    missing = sorted(listed - present)
    if missing:
        raise IntegrityError(f"{package_dir}: files listed in the manifest are missing: {', '.join(missing[:5])}")
    extra = sorted(present - listed)
    if extra:
        raise IntegrityError(
            f"{package_dir}: files not listed in the manifest: {', '.join(extra[:5])} "
            "(a package holds exactly the files its manifest lists)"
        )


def verify_behaviour(
    package_dir: Path,
    manifest: Manifest | None = None,
    *,
    model: LoadedModel | None = None,
    threads: int | None = None,
    mismatch_advice: str = "",
) -> BehaviourReport:
    """Load the package with its format's loader (the one the server uses) and compare outputs.

    Raises :class:`BehaviourMismatchError` when an output differs beyond the
    manifest's tolerance, reporting the largest absolute error (then ``mismatch_advice``).
    """
    manifest = manifest or read_manifest(package_dir)
    check_servable(manifest.signature)
    if model is None:
        model = get_format(manifest.format).load(package_dir, manifest, threads=threads)
    inputs = load_arrays(package_dir / manifest.example.inputs)
    expected = load_arrays(package_dir / manifest.example.outputs)
    actual = model.predict(inputs)
    errors: dict[str, float] = {}
    for name, want in expected.items():
        if name not in actual:
            raise BehaviourMismatchError(f"the model returned no output {name!r}; it returned {sorted(actual)}")
        got = np.asarray(actual[name])
        if got.shape != want.shape:
            raise BehaviourMismatchError(
                f"output {name!r} has shape {list(got.shape)}, the bundled example expects {list(want.shape)}"
            )
        if want.dtype.kind in "SUbO" or got.dtype.kind in "SUbO":
            # Strings and booleans match exactly or not at all.
            errors[name] = 0.0 if np.array_equal(got, want) else float("inf")
            if errors[name]:
                raise BehaviourMismatchError(f"output {name!r} differs from the bundled example (exact match required)")
            continue
        errors[name] = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
        if not np.allclose(got, want, rtol=manifest.example.rtol, atol=manifest.example.atol):
            raise BehaviourMismatchError(
                f"output {name!r} differs from the bundled example: max abs error {errors[name]:.3g} exceeds "
                f"rtol={manifest.example.rtol}, atol={manifest.example.atol}{mismatch_advice}"
            )
    pipeline_error = None
    if manifest.pipeline is not None:
        # The same interpreter the server runs, on the raw example: a green check means the
        # processing around the model works too (decoders present, tokenizer readable, labels fit).
        from model_package.pipeline.runner import PipelineRunner

        runner = PipelineRunner(package_dir, manifest, axis_rules=getattr(model, "axis_rules", None))
        pipeline_error = runner.verify(model.predict, rtol=manifest.example.rtol, atol=manifest.example.atol)
    return BehaviourReport(
        max_abs_error=errors, rtol=manifest.example.rtol, atol=manifest.example.atol, pipeline_error=pipeline_error
    )
