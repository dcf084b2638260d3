"""Base64 as clients write it: the standard alphabet or the URL-safe one, on one line or wrapped.

Vertex AI's ``{"b64": ...}`` and the Open Inference Protocol's BYTES strings are standard base64,
but what a user pastes is often what a tool wrote: GNU ``base64`` wraps at 76 columns unless told
``-w 0``, MIME wraps too (RFC 2045, section 6.8), and JavaScript's and Go's URL encoders use ``-_``
and drop the padding (RFC 4648, section 5). All of these were a 400 "not valid base64". Anything else
outside the alphabet still is.
"""

from __future__ import annotations

import base64
import binascii

_LINE_BREAKS = str.maketrans("", "", "\r\n")
_URL_SAFE = str.maketrans("-_", "+/")


def decode_base64(text: str) -> bytes:
    """The bytes of ``text``; raises ``binascii.Error`` (a ``ValueError``) for anything but base64."""
    if "\n" in text or "\r" in text:
        text = text.translate(_LINE_BREAKS)
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise binascii.Error("both the standard and the URL-safe alphabet")
        text = text.translate(_URL_SAFE)
        text += "=" * (-len(text) % 4)  # URL-safe encoders often drop the padding
    return base64.b64decode(text, validate=True)
