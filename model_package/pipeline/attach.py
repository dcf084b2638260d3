"""Attach a pipeline at packaging: resolve its options against the model's signature and stage its files.

The CLI (``--image``, ``--tokenizer``, ``--ids``, ``--labels``, ``--top-k-items``, ``--embedding``,
``--raw-example``) and the Python API describe a pipeline with a :class:`PipelineSource`; what the
signature already says (the image input's size and layout, the first output) is not asked again.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model_package.errors import MissingFileError, UsageError
from model_package.manifest import Signature, TensorSpec
from model_package.pipeline.schema import Pipeline, RawExample

RAW_DIR = "example/raw"
TOKENIZER_PATH = "pipeline/tokenizer.json"
LABELS_PATH = "pipeline/labels.txt"


@dataclass(frozen=True)
class PipelineSource:
    """A pipeline as the packager describes it, before the signature fills in the rest."""

    input: Mapping[str, Any]
    """``{"kind": "image" | "text" | "ids", ...options}``; options the signature implies may be left out."""
    output: Mapping[str, Any]
    """``{"kind": "labels" | "top_k" | "embedding", ...options}``; ``output`` defaults to the model's first."""
    raw_examples: Sequence[Path]
    """Raw inputs (image files, UTF-8 texts, JSON objects) bundled as the example verification runs."""
    tokenizer: Path | None = None
    labels: Path | None = None


def stage_pipeline(source: PipelineSource, staging: Path, signature: Signature) -> Pipeline:
    """Copy the pipeline's files into the staging directory and return its manifest entry."""
    if not source.raw_examples:
        raise UsageError("a pipeline needs at least one raw example (--raw-example FILE) for verification to run")
    inputs = dict(source.input)
    outputs = dict(source.output)
    kind = inputs.get("kind")
    if kind == "image":
        _image_defaults(inputs, signature)
    elif kind == "text":
        if source.tokenizer is None:
            raise UsageError("a text pipeline needs its tokenizer.json (--tokenizer PATH)")
        _copy(source.tokenizer, staging / TOKENIZER_PATH)
        inputs["tokenizer"] = TOKENIZER_PATH
        names = {spec.name for spec in signature.inputs}
        inputs.setdefault("attention_mask", "attention_mask" if "attention_mask" in names else None)
        inputs.setdefault("token_type_ids", "token_type_ids" if "token_type_ids" in names else None)
    outputs.setdefault("output", signature.outputs[0].name)
    if outputs.get("kind") == "labels":
        if source.labels is not None:
            _copy(source.labels, staging / LABELS_PATH)
            outputs["labels"] = LABELS_PATH
        else:
            outputs["labels"] = None
    raw_paths = []
    for index, path in enumerate(source.raw_examples):
        target = f"{RAW_DIR}/{index}{path.suffix.lower()}"
        _copy(path, staging / target)
        raw_paths.append(target)
    try:
        return Pipeline.model_validate(
            {"input": inputs, "output": outputs, "example": RawExample(inputs=tuple(raw_paths)).model_dump()}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(f"pipeline option {where}: {first['msg']}") from exc


def _image_defaults(options: dict[str, Any], signature: Signature) -> None:
    if len(signature.inputs) != 1:
        raise UsageError(
            f"an image pipeline feeds a model with one input; this one takes {[s.name for s in signature.inputs]}"
        )
    spec = signature.inputs[0]
    options.setdefault("input", spec.name)
    if len(spec.shape) != 4:
        raise UsageError(f"an image pipeline needs a rank-4 image input; {spec.name!r} has shape {list(spec.shape)}")
    if "layout" not in options:
        options["layout"] = "NCHW" if spec.shape[1] in (1, 3) else "NHWC"
    height, width, channels = (
        (spec.shape[2], spec.shape[3], spec.shape[1]) if options["layout"] == "NCHW" else spec.shape[1:4]
    )
    if channels not in (1, 3):
        raise UsageError(
            f"input {spec.name!r} has {channels} channels on its {options['layout']} channel axis; "
            "images have 1 (L) or 3 (RGB/BGR)"
        )
    options.setdefault("channels", "L" if channels == 1 else "RGB")
    _image_pixel_type(options, spec)
    for key, value in (("height", height), ("width", width)):
        if key not in options:
            if value == -1:
                raise UsageError(f"input {spec.name!r} has a dynamic {key}; declare the size with --image size=HxW")
            options[key] = value


def _image_pixel_type(options: dict[str, Any], spec: TensorSpec) -> None:
    """A ``uint8`` image input takes the pixels as they are: the model scales them (a ``Rescaling`` layer).

    Float inputs get the pipeline's normalisation (by default ``pixel / 255``); the server casts the
    batch to the input's float type. A ``uint8`` input gets raw 0-255 values, so any normalisation
    asked for is refused here rather than fail every request with a dtype error.
    """
    if spec.dtype.startswith("float"):
        return
    if spec.dtype != "uint8":
        raise UsageError(
            f"input {spec.name!r} has dtype {spec.dtype}; an image pipeline feeds float inputs (normalised pixels) "
            "or uint8 inputs (raw pixels)"
        )
    identity = {"scale": 1.0, "mean": 0.0, "std": 1.0}
    asked = {
        key: _values(options[key])
        for key, neutral in identity.items()
        if key in options and any(float(value) != neutral for value in _values(options[key]))
    }
    if asked:
        shown = ",".join(f"{key}={'/'.join(f'{float(v):g}' for v in values)}" for key, values in asked.items())
        raise UsageError(
            f"input {spec.name!r} takes uint8 pixels (0-255, scaled by the model itself), so --image {shown} cannot "
            "apply; leave scale, mean and std out, or export a model whose input is float"
        )
    options.update({"scale": 1.0, "mean": (0.0,), "std": (1.0,)})


def _values(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise MissingFileError(f"{source} does not exist or is not a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def parse_image_options(text: str) -> dict[str, Any]:
    """``--image`` option text (``size=224x224,resize=256,mean=0.485/0.456/0.406``) to pipeline fields."""
    options: dict[str, Any] = {"kind": "image"}
    if not text:
        return options
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not value:
            raise UsageError(f"--image {text!r}: {part!r} must be KEY=VALUE")
        if key == "size":
            height, x, width = value.lower().partition("x")
            if not x or not height.isdigit() or not width.isdigit():
                raise UsageError(f"--image size={value!r} must be HEIGHTxWIDTH, e.g. 224x224")
            options["height"], options["width"] = int(height), int(width)
        elif key in ("mean", "std"):
            try:
                options[key] = [float(v) for v in value.split("/")]
            except ValueError:
                raise UsageError(f"--image {key}={value!r} must be numbers separated by '/'") from None
        elif key in ("resize",):
            if not value.isdigit():
                raise UsageError(f"--image resize={value!r} must be a whole number of pixels")
            options[key] = int(value)
        elif key == "scale":
            try:
                options[key] = float(value)
            except ValueError:
                raise UsageError(f"--image scale={value!r} must be a number") from None
        elif key in ("channels", "layout", "input"):
            options[key] = value.upper() if key != "input" else value
        else:
            raise UsageError(
                f"--image: unknown key {key!r}; keys: size, resize, channels, layout, scale, mean, std, input"
            )
    return options
