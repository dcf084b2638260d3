"""Model formats: one module per format, imported lazily.

Importing this package never imports PyTorch or TensorFlow; a format's
framework is imported the first time that format is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from model_package.errors import MissingFileError, UnknownFormatError
from model_package.formats.base import (
    ExportableFormat,
    ImportOptions,
    LoadedModel,
    ModelFormat,
    SavedArtifact,
    Tensors,
    check_inputs,
)
from model_package.manifest import MODEL_FORMATS

__all__ = [
    "ExportableFormat",
    "ImportOptions",
    "LoadedModel",
    "ModelFormat",
    "SavedArtifact",
    "Tensors",
    "check_inputs",
    "detect_format",
    "get_format",
]

_EXTENSIONS = {
    ".pt2": "torch_export",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".onnx": "onnx",
    ".keras": "keras",
}


def get_format(name: str) -> ModelFormat:
    """The format module's ``FORMAT`` object for a manifest ``format`` value."""
    if name not in MODEL_FORMATS:
        raise UnknownFormatError(f"unknown model format {name!r}; supported formats: {', '.join(MODEL_FORMATS)}")
    module = importlib.import_module(f"model_package.formats.{name}")
    fmt: ModelFormat = module.FORMAT
    return fmt


def detect_format(source: Path) -> str:
    """Guess the format of a saved artifact from its name or directory contents."""
    if not source.exists():
        raise MissingFileError(f"{source} does not exist")
    if source.is_dir():
        if (source / "saved_model.pb").is_file():
            return "tf_savedmodel"
        raise UnknownFormatError(
            f"{source} is a directory without saved_model.pb; supported artifacts: a TensorFlow SavedModel "
            f"directory or a file ending in {', '.join(sorted(_EXTENSIONS))}"
        )
    fmt = _EXTENSIONS.get(source.suffix.lower())
    if fmt is None:
        raise UnknownFormatError(
            f"cannot tell the format of {source.name!r}; supported artifacts: files ending in "
            f"{', '.join(sorted(_EXTENSIONS))} or a SavedModel directory (or pass the format explicitly)"
        )
    return fmt
