"""``application/x-npy``: one NumPy array in the ``.npy`` format, for a single-input model or single output.

Bodies are read without pickle and without trusting the header: the declared
shape and dtype must account for exactly the bytes that follow (a header
claiming a terabyte cannot make the server allocate one, as ``np.load`` on a
stream would), object dtypes are refused, and the data is viewed with
``np.frombuffer`` rather than read in chunks.

``bytes`` outputs are written as fixed-width ``S`` arrays (``.npy`` cannot hold
variable-length strings without pickle); ``S`` and ``U`` request arrays feed
``bytes`` inputs.
"""

from __future__ import annotations

import io
import math
import reprlib
from collections.abc import Mapping

import numpy as np
from numpy.lib import format as npy_format

from inference.codecs.arrays import coerce, ordered
from inference.codecs.base import Tensors
from inference.codecs.limits import DecodeLimits
from inference.errors import BadRequestError, ModelError, NotAcceptableError
from model_package.manifest import Signature, TensorSpec

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"


def read_npy(data: bytes, what: str) -> np.ndarray:
    """Parse one ``.npy`` file; raises :class:`BadRequestError` naming ``what`` when it is not a safe, whole one."""
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
        else:
            # Version 3 only differs for structured dtypes with non-ASCII field names, which inputs never use.
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported; write version 1.0 or 2.0")
    except Exception as exc:
        # NumPy parses the header with a tokenizer and ast.literal_eval, which fail on hostile input with
        # ValueError, SyntaxError, TokenError, TypeError and more: all of them mean "not an .npy file".
        raise BadRequestError(f"{what} is not a valid .npy array: {exc}") from exc
    if not all(type(size) is int for size in shape):
        # NumPy's header check takes any int, and True is one; reshaping by it then raised TypeError (a 500).
        raise BadRequestError(
            # repr: the header is a Python literal, so True is quoted as the client wrote it (not JSON's true)
            f"{what} is not a valid .npy array: its header's shape {reprlib.repr(shape)} is not whole numbers"
        )
    if dtype.hasobject:
        raise BadRequestError(
            f"{what} has dtype {dtype}, which .npy can only store with pickle, and pickled data is refused; "
            "send numeric arrays, or strings as fixed-width 'S'/'U' arrays"
        )
    offset = stream.tell()
    count = math.prod(shape)
    expected = count * dtype.itemsize
    if len(data) - offset != expected:
        raise BadRequestError(
            f"{what} declares shape {list(shape)} of {dtype} ({expected} bytes of data) but holds "
            f"{len(data) - offset} bytes after its header"
        )
    try:
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        return flat.reshape(shape[::-1]).transpose() if fortran_order else flat.reshape(shape)
    except ValueError as exc:  # e.g. a zero-size dtype
        raise BadRequestError(f"{what} is not a valid .npy array: {exc}") from exc


def input_from_npy(
    data: bytes, spec: TensorSpec, what: str, *, allow_non_finite: bool = False, limits: DecodeLimits | None = None
) -> np.ndarray:
    """A ``.npy`` file as ``spec``'s batch, cast to its dtype and writable (frombuffer views are read-only).

    With ``limits``, the size after the cast to ``spec``'s dtype is checked before casting.
    """
    raw = read_npy(data, what)
    if limits is not None and spec.dtype != "bytes":
        limits.check_size(raw.size * max(raw.itemsize, np.dtype(spec.dtype).itemsize), what)
    array = coerce(raw, spec, allow_non_finite=allow_non_finite)
    return array if array.flags.writeable else array.copy()


def write_npy(name: str, array: np.ndarray) -> bytes:
    """One output as ``.npy`` bytes, without pickle."""
    if array.dtype.kind == "O":
        array = _fixed_width_bytes(name, array)
    buffer = io.BytesIO()
    npy_format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _fixed_width_bytes(name: str, array: np.ndarray) -> np.ndarray:
    leaves: list[bytes] = []
    for leaf in array.reshape(-1).tolist():
        if isinstance(leaf, str):
            leaves.append(leaf.encode("utf-8"))
        elif isinstance(leaf, bytes):
            leaves.append(leaf)
        else:
            raise ModelError(f"output {name!r} holds a {type(leaf).__name__}, which .npy cannot store without pickle")
    return np.array(leaves, dtype=np.bytes_).reshape(array.shape)


class NpyCodec:
    """``application/x-npy``: the single input's batch in, the single output out."""

    media_types: tuple[str, ...] = (NPY_MEDIA_TYPE,)
    media_type: str = NPY_MEDIA_TYPE
    content_type: str = NPY_MEDIA_TYPE
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
        """Decode the body as the batch of the model's only input."""
        names = [spec.name for spec in signature.inputs]
        if len(names) != 1:
            raise BadRequestError(
                f"{NPY_MEDIA_TYPE} carries one array but this model has inputs {names}; "
                f"send {NPZ_MEDIA_TYPE} with one array per input name"
            )
        spec = signature.inputs[0]
        what = f"the {NPY_MEDIA_TYPE} body"
        return {spec.name: input_from_npy(body, spec, what, allow_non_finite=allow_non_finite, limits=limits)}

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """The only output as ``.npy``; several outputs raise :class:`NotAcceptableError` pointing to npz."""
        return self._encode(ordered(outputs, signature.outputs), "output")

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """The only input as ``.npy``."""
        return self._encode(ordered(inputs, signature.inputs), "input")

    def _encode(self, columns: list[tuple[str, np.ndarray]], kind: str) -> bytes:
        if len(columns) != 1:
            names = [name for name, _ in columns]
            raise NotAcceptableError(
                f"{NPY_MEDIA_TYPE} holds a single array but there are {len(columns)} {kind}s {names}; "
                f"use {NPZ_MEDIA_TYPE} instead"
            )
        name, array = columns[0]
        return write_npy(name, array)
