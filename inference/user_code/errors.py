"""How hooks say "the request is wrong" and how their other exceptions are told apart from bugs.

A hook raises :class:`BadInput` (or any :class:`inference.errors.ApiError`) to answer 4xx with its
own message. Without it, :func:`input_problem` recognises the exceptions that mean the *input* was
bad, so a corrupt upload is a 400 naming the problem instead of a 500 that pages someone.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from inference.errors import ApiError, BadRequestError, PayloadTooLargeError
from model_package.formats.base import one_line_error


class BadInput(BadRequestError):
    """Raise from any hook when the request itself is wrong: the client gets a 400 with this message.

    ``raise BadInput("field 'image' is missing")``: a failure of the request, never logged as a
    failure of the server and never counted in its 5xx metric.
    """


# Pillow's own exception classes, recognised by name so the server never imports Pillow for this.
_UNDECODABLE_IMAGE = "UnidentifiedImageError"  # PIL.Image.open: not an image format Pillow knows
_DECOMPRESSION_BOMB = "DecompressionBombError"  # more pixels than Image.MAX_IMAGE_PIXELS x 2


def input_problem(hook: str, exc: BaseException) -> ApiError | None:
    """The 4xx for an exception that says the request was bad, or ``None`` for a failure of the code.

    * From any hook: Pillow's ``UnidentifiedImageError`` (the bytes are no image) is a 400 and its
      ``DecompressionBombError`` (an image over the pixel limit) a 413: whichever hook opened the
      image, the bytes came from the client.
    * From ``input_fn``, whose job is to parse the body: a ``ValueError`` (bad JSON, bad base64, a
      ``UnicodeDecodeError``, the SageMaker toolkit's convention) and an ``OSError`` raised inside
      Pillow (a truncated or corrupt image: "image file is truncated", "broken data stream") are 400s,
      and so is a ``RecursionError`` (``json.loads`` on a body nested thousands of levels deep).

    Anything else (a ``KeyError`` in predict_fn, a framework error) stays a failure of the code: 500.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = one_line_error(exc)
    if _DECOMPRESSION_BOMB in names:
        return PayloadTooLargeError(f"{hook} refused the image: {detail}")
    if _UNDECODABLE_IMAGE in names:
        return BadRequestError(f"{hook} could not read the image: {detail}")
    if hook != "input_fn":
        return None
    if isinstance(exc, ValueError):
        return BadRequestError(f"input_fn rejected the request: {detail}")
    if isinstance(exc, RecursionError):
        # The standard library's json.loads (and other recursive parsers) raise this, not a
        # ValueError, for a body nested deeper than the interpreter's recursion limit.
        return BadRequestError("input_fn could not parse the request: it nests arrays or objects too deeply")
    if isinstance(exc, OSError) and _raised_in_pillow(exc):
        return BadRequestError(f"input_fn could not decode the image: {detail}")
    return None


def _raised_in_pillow(exc: BaseException) -> bool:
    """Whether the innermost frame that raised ``exc`` is Pillow's (its decoders raise plain OSError)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "PIL" in Path(frames[-1].filename).parts
