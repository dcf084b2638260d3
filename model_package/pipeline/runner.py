"""Interpret a package's declared pipeline: raw items to tensors, tensors to answers, and the raw example check.

A raw item is what one client instance is once the transport is peeled off: the bytes of an image
file, a text, or a JSON object of ids. The server (``inference.pipeline``) turns HTTP bodies into
items; packaging and verification read them from ``example/raw/``. Both then go through this
module, so a green check means the server's processing works on the bundled example.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_package.errors import (
    BehaviourMismatchError,
    InputTooLargeError,
    IntegrityError,
    InvalidInputError,
    UsageError,
)
from model_package.formats.axis_rules import AxisRules
from model_package.manifest import Manifest, Signature
from model_package.pipeline.outputs import answer_embeddings, answer_items, answer_labels
from model_package.pipeline.schema import (
    EmbeddingOutput,
    IdsInput,
    ImageInput,
    LabelsOutput,
    Pipeline,
    TextInput,
    TopKOutput,
)

RawItem = bytes | str | dict[str, Any]
Tensors = dict[str, np.ndarray]
PredictFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]

#: Pixels one request may decode when no server limit applies (packaging, verification): Pillow's own default.
DEFAULT_MAX_PIXELS = 89_478_485


class PipelineRunner:
    """A package's pipeline, loaded (tokenizer, labels) and ready to run from any thread."""

    def __init__(
        self,
        package_dir: Path,
        manifest: Manifest,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_tensor_bytes: int | None = None,
        axis_rules: AxisRules | None = None,
    ) -> None:
        """``max_pixels`` bounds the source pixels one request decodes, ``max_tensor_bytes`` the tensors it becomes;
        ``axis_rules`` are the loaded model's (texts are truncated to the most tokens it takes)."""
        if manifest.pipeline is None:
            raise UsageError(f"package {manifest.name!r} declares no pipeline")
        self.package_dir = package_dir
        self.pipeline: Pipeline = manifest.pipeline
        self.signature: Signature = manifest.signature
        self.max_pixels = max_pixels
        self.max_tensor_bytes = max_tensor_bytes
        self._text = None
        spec = self.pipeline.input
        self._image_dtype = next(
            (s.dtype for s in manifest.signature.inputs if isinstance(spec, ImageInput) and s.name == spec.input), None
        )
        if isinstance(spec, TextInput):
            from model_package.pipeline.text import TextEncoder

            longest = axis_rules.most.get((spec.input_ids, 1)) if axis_rules is not None else None
            self._text = TextEncoder(package_dir / spec.tokenizer, spec, manifest.signature, longest=longest)
        self._labels: list[str] | None = None
        output = self.pipeline.output
        if isinstance(output, LabelsOutput) and output.labels is not None:
            self._labels = read_labels(package_dir / output.labels)

    @property
    def kind(self) -> str:
        """``image``, ``text`` or ``ids``: what a client sends."""
        return self.pipeline.input.kind

    def preprocess(self, items: Sequence[RawItem]) -> Tensors:
        """The model's named inputs for ``items`` (one row each); raises ``InvalidInputError`` naming a bad item."""
        if not items:
            raise InvalidInputError("the request holds no instances; send at least one")
        spec = self.pipeline.input
        if isinstance(spec, ImageInput):
            from model_package.pipeline.image import decode_images

            self._check_tensor_bytes(len(items) * spec.channel_count * spec.height * spec.width * 4, len(items))
            batch = decode_images(
                [_as_bytes(item, i) for i, item in enumerate(items)], spec, max_pixels=self.max_pixels
            )
            if self._image_dtype == "uint8":  # raw pixels (attach allows no normalisation): whole numbers 0-255
                batch = batch.astype(np.uint8)
            return {spec.input: batch}
        if isinstance(spec, TextInput):
            assert self._text is not None
            return self._text.encode([_as_text(item, i) for i, item in enumerate(items)], self._check_tensor_bytes)
        assert isinstance(spec, IdsInput)
        return ids_to_tensors(items, self.signature)

    def _check_tensor_bytes(self, size: int, rows: int) -> None:
        """Refuse (413) a request whose tensors would exceed the bound, before they are allocated."""
        if self.max_tensor_bytes is not None and size > self.max_tensor_bytes:
            raise InputTooLargeError(
                f"the request's {rows:,} instances become {size:,} bytes of model input; this endpoint accepts at "
                f"most {self.max_tensor_bytes:,} per request: split it into smaller requests"
            )

    def postprocess(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        """One answer per row: labels and scores, top-k items, or an embedding."""
        spec = self.pipeline.output
        scores = np.asarray(outputs[spec.output])
        if isinstance(spec, LabelsOutput):
            return answer_labels(scores, spec, self._labels)
        if isinstance(spec, TopKOutput):
            return answer_items(scores, spec, inputs)
        assert isinstance(spec, EmbeddingOutput)
        text = self.pipeline.input if isinstance(self.pipeline.input, TextInput) else None
        return answer_embeddings(scores, spec, inputs, text)

    def smallest_answer(self) -> dict[str, Any]:
        """An answer no real one is shorter than, in any encoding: empty class names (or index 0),
        scores of 0.0, and as few of them as an answer can hold (top-k of the classes; one candidate;
        the embedding's fixed width, else one value). Sizes the answer before any work is done."""
        spec = self.pipeline.output
        if isinstance(spec, EmbeddingOutput):
            width = next((s.shape[-1] for s in self.signature.outputs if s.name == spec.output), -1)
            return {"embedding": [0.0] * max(width, 1)}
        if isinstance(spec, TopKOutput):
            return {"items": [0], "scores": [0.0]}
        classes = next((s.shape[-1] for s in self.signature.outputs if s.name == spec.output), -1)
        count = min(spec.top_k, classes) if classes > 0 else 1
        # Empty, not the shortest name: which name is shortest depends on the encoding ("犬" is 1
        # character, 3 bytes of UTF-8; a quote is 1 byte, 2 in JSON).
        shortest: Any = "" if self._labels else 0
        return {"labels": [shortest] * count, "scores": [0.0] * count}

    def run(self, items: Sequence[RawItem], predict: PredictFn) -> list[dict[str, Any]]:
        """Preprocess, predict, postprocess: the whole pipeline in one call (packaging and verification)."""
        inputs = self.preprocess(items)
        return self.postprocess(inputs, predict(inputs))

    def example_items(self) -> list[RawItem]:
        """The bundled raw example, read as the server would receive it."""
        return [read_raw_item(self.package_dir / path, self.kind) for path in self.pipeline.example.inputs]

    def verify(self, predict: PredictFn, *, rtol: float, atol: float) -> float:
        """Run the bundled raw example and compare with the bundled answers; returns the largest score error.

        Labels and items must match exactly, scores and embeddings within ``rtol``/``atol``.
        """
        actual = self.run(self.example_items(), predict)
        path = self.package_dir / self.pipeline.example.outputs
        try:
            expected = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{self.pipeline.example.outputs} is not readable JSON: {exc}") from exc
        return compare_answers(actual, expected, rtol=rtol, atol=atol)


def compare_answers(actual: list[dict[str, Any]], expected: Any, *, rtol: float, atol: float) -> float:
    """The largest numeric difference between two answer lists; raises ``BehaviourMismatchError`` beyond tolerance."""
    if not isinstance(expected, list) or len(expected) != len(actual):
        raise BehaviourMismatchError(
            f"the pipeline answered {len(actual)} items for the raw example; the package expects "
            f"{len(expected) if isinstance(expected, list) else 'a list'}"
        )
    worst = 0.0
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        if not isinstance(want, dict) or set(got) != set(want):
            raise BehaviourMismatchError(f"raw example item {index}: answer keys {sorted(got)} differ from {want!r}")
        for key, value in got.items():
            if key in ("labels", "items"):
                if value != want[key]:
                    raise BehaviourMismatchError(
                        f"raw example item {index}: {key} {value} differ from the bundled {want[key]}"
                    )
                continue
            have, need = np.asarray(value, dtype=np.float64), np.asarray(want[key], dtype=np.float64)
            if have.shape != need.shape:
                raise BehaviourMismatchError(
                    f"raw example item {index}: {key} has {have.size} values, expected {need.size}"
                )
            error = float(np.max(np.abs(have - need), initial=0.0))
            worst = max(worst, error)
            if not np.allclose(have, need, rtol=rtol, atol=atol):
                raise BehaviourMismatchError(
                    f"raw example item {index}: {key} differ from the bundled answer by up to {error:.3g} "
                    f"(rtol={rtol}, atol={atol})"
                )
    return worst


def ids_to_tensors(items: Sequence[RawItem], signature: Signature) -> Tensors:
    """JSON objects of integers, one per row, to one array per model input (ranges are checked by the caller)."""
    names = [spec.name for spec in signature.inputs]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInputError(
                f"instance {index} is {type(item).__name__}; send an object with the fields {names}"
            )
        missing = [name for name in names if name not in item]
        extra = [name for name in item if name not in columns]
        if missing or extra:
            raise InvalidInputError(
                f"instance {index} must have exactly the fields {names}; missing {missing}, unexpected {extra}"
            )
        for name in names:
            columns[name].append(item[name])
    tensors: Tensors = {}
    for spec in signature.inputs:
        values = columns[spec.name]
        _check_integers(spec.name, values, len(spec.shape))
        try:
            array = np.asarray(values)
        except ValueError:
            raise InvalidInputError(
                f"field {spec.name!r} has lists of different lengths across instances; one request's "
                "instances must have the same number of values (send them as separate requests)"
            ) from None
        if array.dtype.kind == "f":  # integral numbers written as 1.0 (checked above)
            array = array.astype(np.int64)
        if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
            array = array[:, None]  # a scalar id per instance for an input shaped [batch, 1]
        tensors[spec.name] = array
    return tensors


#: The range of the int64 arrays ids become: past it, NumPy wraps a float's conversion around.
_INT64 = (-(2**63), 2**63 - 1)


def _check_integers(name: str, values: list[Any], rank: int) -> None:
    """Refuse anything but integers of int64's range, in lists nested no deeper than the input's ``rank``
    allows (a row holds ``rank - 1``): ``1e300`` was refused as the -9223372036854775808 it wrapped to,
    and candidates nested 500 deep as "lists of different lengths"."""
    stack = [(value, 1) for value in values]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list):
            if depth >= rank:
                takes = f"lists {rank - 1} deep" if rank > 1 else "one id"
                raise InvalidInputError(
                    f"field {name!r} nests lists deeper than its input takes ({takes} per instance)"
                )
            stack.extend((item, depth + 1) for item in value)
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))
        ):
            raise InvalidInputError(f"field {name!r} holds {value!r}; ids are integers")
        elif not _INT64[0] <= value <= _INT64[1]:
            raise InvalidInputError(f"field {name!r} holds {value!r}, outside the int64 range {list(_INT64)}")


def read_labels(path: Path) -> list[str]:
    """Class names, one per line (trailing blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path.name} is not a readable UTF-8 labels file: {exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UsageError(f"{path} holds no labels; write one class name per line")
    return [line.strip() for line in lines]


def read_raw_item(path: Path, kind: str) -> RawItem:
    """One raw example file as the item it stands for: image bytes, UTF-8 text, or a JSON object."""
    data = path.read_bytes()
    if kind == "image":
        return data
    try:
        text = data.decode("utf-8")
        return text if kind == "text" else dict(json.loads(text))
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise UsageError(
            f"raw example {path.name} is not {'UTF-8 text' if kind == 'text' else 'a JSON object'}: {exc}"
        ) from exc


def _as_bytes(item: RawItem, index: int) -> bytes:
    if not isinstance(item, bytes):
        raise InvalidInputError(f'instance {index} is not an image; send the file\'s bytes, or {{"b64": ...}} in JSON')
    return item


def _as_text(item: RawItem, index: int) -> str:
    if not isinstance(item, str):
        raise InvalidInputError(f"instance {index} is {type(item).__name__}; this model takes text strings")
    return item
