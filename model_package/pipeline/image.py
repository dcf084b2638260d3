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
        pixels = image.width * image.height
        if pixels > remaining:
            raise InputTooLargeError(
                f"{where} is {image.width}x{image.height} pixels; this endpoint decodes at most {max_pixels:,} "
                f"pixels per request (derived from its body limit): send smaller or fewer images"
            )
        remaining -= pixels
        rows.append(_to_array(image, spec, where))
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


def _to_array(image: Image.Image, spec: ImageInput, where: str) -> np.ndarray:
    from PIL import Image

    mode = "L" if spec.channels == "L" else "RGB"
    width, height = image.size
    if spec.resize is None:
        target = (spec.width, spec.height)
    else:
        # torchvision's Resize(int): the shorter side becomes `resize`, the longer keeps the aspect ratio.
        short, long = (width, height) if width <= height else (height, width)
        scaled_long = int(spec.resize * long / short)
        target = (spec.resize, scaled_long) if width <= height else (scaled_long, spec.resize)
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
