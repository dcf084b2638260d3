"""The declarative pipeline a package may carry (manifest schema 1.2): what the server does around the model.

A pipeline turns raw inputs (image files, text, JSON objects of ids) into the model's tensors and the
model's tensors into answers (labels and scores, top-k items, embeddings), with no Python from the
package: everything here is data, interpreted by :mod:`model_package.pipeline.runner`, so a package
from an untrusted store can be served with its pipeline. Documented in ``docs/manifest.md``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Spec(BaseModel):
    # Like the manifest: unknown fields of a newer minor version are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ImageInput(_Spec):
    """Image files in (JPEG or PNG), one model input out: decode, resize, crop, channels, normalise."""

    kind: Literal["image"] = "image"
    input: str = Field(min_length=1)
    """The model input the images become (float, rank 4)."""
    height: int = Field(ge=1, le=8192)
    width: int = Field(ge=1, le=8192)
    resize: int | None = Field(default=None, ge=1, le=8192)
    """Resize the shorter side to this many pixels, then crop ``height x width`` from the centre
    (torchvision's ``Resize(resize)`` + ``CenterCrop``); ``null`` resizes straight to ``height x width``."""
    channels: Literal["RGB", "BGR", "L"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    scale: float = 1.0 / 255.0
    """Pixel values (0-255) are multiplied by this first."""
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    """Then ``(value - mean) / std`` per channel (one value applies to every channel)."""

    @model_validator(mode="after")
    def _per_channel(self) -> ImageInput:
        count = 1 if self.channels == "L" else 3
        for field_name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, count):
                raise ValueError(f"{field_name} needs 1 or {count} values for {self.channels}, got {len(values)}")
        if any(value == 0 for value in self.std):
            raise ValueError("std values must not be 0")
        if self.resize is not None and self.resize < max(self.height, self.width):
            raise ValueError(f"resize {self.resize} is smaller than the {self.height}x{self.width} crop")
        return self

    @property
    def channel_count(self) -> int:
        """1 for ``L``, else 3."""
        return 1 if self.channels == "L" else 3


class TextInput(_Spec):
    """Text in, token ids out, through a Hugging Face ``tokenizers`` ``tokenizer.json`` in the package."""

    kind: Literal["text"] = "text"
    tokenizer: str = "pipeline/tokenizer.json"
    input_ids: str = "input_ids"
    attention_mask: str | None = "attention_mask"
    token_type_ids: str | None = None
    """Model input names for each tokenizer output (``null``: the model does not take it)."""
    max_length: int = Field(default=128, ge=1, le=65536)
    """Longer texts are truncated; a batch is padded to its longest text, never beyond this."""


class IdsInput(_Spec):
    """JSON objects of integer ids in (``{"user_id": 7, "candidates": [3, 9, 12]}``), one field per model input.

    Ranges come from the signature's ``valid_range``: an id outside it is a 400 on every route.
    """

    kind: Literal["ids"] = "ids"


class LabelsOutput(_Spec):
    """One score per class out: activation, top-k, class names."""

    kind: Literal["labels"] = "labels"
    output: str = Field(min_length=1)
    labels: str | None = "pipeline/labels.txt"
    """One class name per line, in output order; ``null`` answers class indices."""
    activation: Literal["softmax", "sigmoid", "none"] = "softmax"
    top_k: int = Field(default=5, ge=1)


class TopKOutput(_Spec):
    """Scores for candidates out, the best ``top_k`` answered as items."""

    kind: Literal["top_k"] = "top_k"
    output: str = Field(min_length=1)
    items: str | None = None
    """The model input holding the candidates' ids (answered as the items); ``null`` answers positions."""
    top_k: int = Field(default=10, ge=1)


class EmbeddingOutput(_Spec):
    """A vector out: token states pooled (mean over the attention mask, or the first token), normalised."""

    kind: Literal["embedding"] = "embedding"
    output: str = Field(min_length=1)
    pooling: Literal["mean", "cls", "none"] = "none"
    """``none`` for an output that is already one vector per row."""
    normalize: bool = True


class RawExample(_Spec):
    """Raw inputs bundled with the package and the pipeline's answers for them (what verification compares)."""

    inputs: tuple[str, ...] = Field(min_length=1)
    """One file per item under ``example/raw/``: an image, a UTF-8 text, or a JSON object of ids."""
    outputs: str = "example/raw_outputs.json"


PipelineInput = Annotated[ImageInput | TextInput | IdsInput, Field(discriminator="kind")]
PipelineOutput = Annotated[LabelsOutput | TopKOutput | EmbeddingOutput, Field(discriminator="kind")]


class Pipeline(_Spec):
    """The manifest's ``pipeline`` object (schema 1.2)."""

    input: PipelineInput
    output: PipelineOutput
    example: RawExample

    @field_validator("input", "output", mode="before")
    @classmethod
    def _known_kind(cls, value: object) -> object:
        # A newer minor version may add kinds; a reader that does not know one must refuse the pipeline
        # loudly rather than serve the model without the processing its clients rely on.
        if isinstance(value, dict) and value.get("kind") not in (
            "image",
            "text",
            "ids",
            "labels",
            "top_k",
            "embedding",
        ):
            raise ValueError(
                f"unknown pipeline kind {value.get('kind')!r}; this reader knows image, text, ids, "
                "labels, top_k and embedding: upgrade model-package"
            )
        return value

    def files(self) -> list[str]:
        """Every package file the pipeline references."""
        paths = [*self.example.inputs, self.example.outputs]
        if isinstance(self.input, TextInput):
            paths.append(self.input.tokenizer)
        if isinstance(self.output, LabelsOutput) and self.output.labels is not None:
            paths.append(self.output.labels)
        return paths
