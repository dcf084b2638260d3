"""``application/x-npz``: named NumPy arrays in a zip archive (what ``np.savez`` writes), one per input or output.

Members are read with :mod:`zipfile` and parsed by :func:`read_npy`, so the
same no-pickle, header-must-match rules apply. Compressed archives
(``np.savez_compressed``) are accepted up to the server's decode limit
(:mod:`inference.codecs.limits`, 4 x the body limit), checked against the sizes the archive
declares before anything is decompressed, so that a small body cannot expand into gigabytes; without
limits (direct callers) :data:`MAX_EXPANDED_BYTES` applies.
Responses are stored uncompressed (model outputs rarely compress well, and
compression costs latency) with a fixed timestamp, so equal outputs give equal
bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np

from inference.codecs.arrays import ordered
from inference.codecs.base import Tensors
from inference.codecs.limits import DecodeLimits
from inference.codecs.npy_codec import NPZ_MEDIA_TYPE, input_from_npy, write_npy
from inference.errors import BadRequestError, PayloadTooLargeError
from model_package.manifest import Signature

#: The most uncompressed data an npz request may hold (1 GiB).
MAX_EXPANDED_BYTES = 1 << 30
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class NpzCodec:
    """``application/x-npz``: one array per input name in, one per output name out."""

    media_types: tuple[str, ...] = (NPZ_MEDIA_TYPE,)
    media_type: str = NPZ_MEDIA_TYPE
    content_type: str = NPZ_MEDIA_TYPE
    text: bool = False

    def decode(
        self,
        body: bytes,
        params: Mapping[str, str],
        signature: Signature,
        *,
        allow_non_finite: bool = False,
        limits: DecodeLimits | None = None,
    ) -> Tensors:
        """Decode an archive holding exactly one ``<input name>.npy`` per signature input."""
        names = [spec.name for spec in signature.inputs]
        try:
            archive = zipfile.ZipFile(io.BytesIO(body))
        except Exception as exc:
            # zipfile fails on hostile archives with BadZipFile, NotImplementedError, ValueError, OSError
            # and more; the body is in memory, so every one of them means a corrupt archive, not a bad disk.
            raise BadRequestError(f"the {NPZ_MEDIA_TYPE} body is not a valid .npz (zip) archive: {exc}") from exc
        with archive:
            listed = [
                (_array_name(info.filename), info) for info in archive.infolist() if not info.filename.endswith("/")
            ]
            members = dict(listed)
            if len(members) < len(listed):
                # A zip may hold one name twice (or x and x.npy); which copy fed the model was the last's, silently.
                seen: set[str] = set()
                twice = next(name for name, _ in listed if name in seen or seen.add(name))  # type: ignore[func-returns-value]
                raise BadRequestError(
                    f"the {NPZ_MEDIA_TYPE} body holds array {twice!r} more than once; send each input's array once"
                )
            missing = [name for name in names if name not in members]
            extra = [name for name in members if name not in names]
            if missing or extra:
                raise BadRequestError(
                    f"the {NPZ_MEDIA_TYPE} body must hold exactly the arrays {names} (one per input); "
                    f"missing {missing}, unexpected {extra}"
                )
            # zipfile stops a member at its declared size (and fails its CRC), so the declared sizes
            # bound what decompression can allocate.
            expanded = sum(info.file_size for info in members.values())
            if limits is not None:
                limits.check_size(expanded, f"the {NPZ_MEDIA_TYPE} body")
            elif expanded > MAX_EXPANDED_BYTES:
                raise PayloadTooLargeError(
                    f"the {NPZ_MEDIA_TYPE} body expands to {expanded} bytes, over the {MAX_EXPANDED_BYTES}-byte "
                    "limit; split the batch into smaller requests"
                )
            tensors: Tensors = {}
            for spec in signature.inputs:
                what = f"array {spec.name!r} of the {NPZ_MEDIA_TYPE} body"
                try:
                    data = archive.read(members[spec.name])
                except Exception as exc:
                    # Corrupt data or offsets (BadZipFile, zlib.error, ValueError), an unsupported compression
                    # method (NotImplementedError) or an encrypted member (RuntimeError): all the client's doing.
                    raise BadRequestError(f"cannot read {what}: {exc}") from exc
                tensors[spec.name] = input_from_npy(data, spec, what, allow_non_finite=allow_non_finite, limits=limits)
        return tensors

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """Every output as ``<output name>.npy``, in signature order."""
        return _archive(ordered(outputs, signature.outputs))

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """Every input as ``<input name>.npy`` (what a client sends)."""
        return _archive(ordered(inputs, signature.inputs))


def _array_name(filename: str) -> str:
    return filename.removesuffix(".npy")


def _archive(columns: list[tuple[str, np.ndarray]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in columns:
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), write_npy(name, array))
    return buffer.getvalue()
