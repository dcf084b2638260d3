"""Image files to a model's input tensor: decode (Pillow), resize, crop, channel order, layout, normalise.

Decoding is bounded before it allocates: Pillow reads only the header in ``Image.open``, so the
pixel count is checked against the caller's cap before any pixel is decoded (a 100 KB PNG can
claim 50,000 x 50,000 pixels). Only JPEG and PNG are opened; Pillow's other decoders are never
reached from a request.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from model_package.errors import InputTooLargeError, InvalidInputError, LoadError
from model_package.pipeline.schema import ImageInput

if TYPE_CHECKING:
    from PIL import Image

#: The formats a request may hold; each has a Pillow decoder that is part of every wheel.
FORMATS = ("JPEG", "PNG")


def decode_images(items: Sequence[bytes], spec: ImageInput, *, max_pixels: int) -> np.ndarray:
    """One float32 batch in ``spec``'s layout from encoded images; ``max_pixels`` bounds the request's pixels.

    Raises :class:`InvalidInputError` naming the item for anything that is not a readable JPEG or
    PNG, and :class:`InputTooLargeError` when the images hold more than ``max_pixels`` pixels.
    """
    _require_pillow()
    rows = []
    remaining = max_pixels
    for index, data in enumerate(items):
        where = f"image {index}" if len(items) > 1 else "the image"
        image = _open(data, where)
        target = _resize_target(image.size, spec)
        # The resized image counts too: a shorter side scaled up to ``resize`` scales the longer one with
        # it, so a 4 KB PNG of 1 x 1,000,000 pixels became 36 x 36,000,000 (7 GB of memory) under the cap.
        pixels = max(image.width * image.height, target[0] * target[1])
        if pixels > remaining:
            resized = "" if target == image.size else f", {target[0]}x{target[1]} once resized for this model"
            raise InputTooLargeError(
                f"{where} is {image.width}x{image.height} pixels{resized}; this endpoint decodes at most "
                f"{max_pixels:,} pixels per request (derived from its body limit): send smaller or fewer images"
            )
        remaining -= pixels
        rows.append(_to_array(image, spec, target, where))
    return _normalise(np.stack(rows), spec)


def _require_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError as exc:  # pragma: no cover - Pillow is part of the serve extra
        raise LoadError("image pipelines need Pillow: pip install 'model-deploy[serve]'") from exc


def _open(data: bytes, where: str) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidInputError(f"{where} is empty; send the bytes of a JPEG or PNG file")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, above its own pixel limit; our cap is checked right after.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"{where} ({len(data):,} bytes starting {data[:8]!r}) is not a JPEG or PNG image; "
            "send image/jpeg or image/png"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"{where} is too large to decode: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"{where} is not a readable JPEG or PNG: {exc}") from None


def _resize_target(size: tuple[int, int], spec: ImageInput) -> tuple[int, int]:
    """The (width, height) an image of ``size`` is resized to before the crop."""
    if spec.resize is None:
        return (spec.width, spec.height)
    # torchvision's Resize(int): the shorter side becomes `resize`, the longer keeps the aspect ratio.
    width, height = size
    short, long = (width, height) if width <= height else (height, width)
    scaled_long = int(spec.resize * long / short)
    return (spec.resize, scaled_long) if width <= height else (scaled_long, spec.resize)


def _to_array(image: Image.Image, spec: ImageInput, target: tuple[int, int], where: str) -> np.ndarray:
    from PIL import Image

    mode = "L" if spec.channels == "L" else "RGB"
    try:
        # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target,
        # which makes a phone photo cost a fraction of its full decode.
        image.draft(mode, target)
        converted = image.convert(mode)
        if converted.size != target:
            converted = converted.resize(target, Image.Resampling.BILINEAR)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"{where} could not be decoded ({exc}); send a complete JPEG or PNG file") from None
    if spec.resize is not None:
        left = round((target[0] - spec.width) / 2.0)
        top = round((target[1] - spec.height) / 2.0)
        converted = converted.crop((left, top, left + spec.width, top + spec.height))
    array = np.asarray(converted, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if spec.channels == "BGR":
        array = array[:, :, ::-1]
    return array


def _normalise(batch: np.ndarray, spec: ImageInput) -> np.ndarray:
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    batch = (batch * np.float32(spec.scale) - mean) / std
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32)
