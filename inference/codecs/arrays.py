"""Shared conversions: decoded values -> input arrays of the signature's dtypes, outputs -> JSON-able values.

Every codec funnels its inputs through :func:`to_input_array` or
:func:`coerce`, so a float for an integer input or a string for a number is
refused with the same message whatever the media type. The happy path is a
single ``np.asarray`` plus at most one ``astype``; the Python-level walks over
elements only run to explain an error (or for ``bytes`` inputs, which have no
vectorised form).

``bytes`` inputs decode to object arrays of Python ``bytes``: variable length,
and unlike NumPy's ``S`` dtype they keep trailing NUL bytes.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from inference.codecs import json_blocks
from inference.codecs.base64_text import decode_base64
from inference.errors import BadRequestError, ModelError
from model_package.manifest import TensorSpec

# Squares of the largest finite float16, float32 and float64 (by item size); float64's square would
# overflow, and "sum of squares <= max" is then just "finite".
_SQUARED_MAX = {
    2: float(np.finfo(np.float16).max) ** 2,
    4: float(np.finfo(np.float32).max) ** 2,
    8: float(np.finfo(np.float64).max),
}

#: An element's index path (row first).
Path = tuple[int, ...]
#: Names an element in error messages: ``row 3 at index [1]`` for JSON, ``line 4, column 2`` for CSV.
Locator = Callable[[Path], str]


def locate_row(path: Path) -> str:
    """The default locator: the 0-based row index into the batch, then the index within the row."""
    if not path:
        return "the value"
    inner = "".join(f"[{index}]" for index in path[1:])
    return f"row {path[0]}" + (f" at index {inner}" if inner else "")


def locate_line(line_numbers: Sequence[int]) -> Locator:
    """A locator for bodies with one row per line (JSON Lines, CSV): rows named by their 1-based line."""

    def locate(path: Path) -> str:
        if not path:
            return "the value"
        inner = "".join(f"[{index}]" for index in path[1:])
        return f"line {line_numbers[path[0]]}" + (f" at index {inner}" if inner else "")

    return locate


# --------------------------------------------------------------------------- inputs


# Possessive (Python 3.11+): the engine keeps no backtracking point per character of a string. With
# `(?:[^"\\]|\\.)*` it kept one, about 115 bytes each: a 6 MB string in a request cost 690 MB and 0.6 s.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"\s*(:?)')


def _string_is_key(body: bytes) -> Iterator[bool]:
    """For each string in a (valid) JSON body, in order, whether it is an object key.

    ``bytes.find`` jumps from quote to quote at C speed and the regular expression only reads the
    strings themselves: a body of numbers (an image as JSON) costs a scan of its bytes, not a trip
    through the regex engine per byte (about 4x faster on a 240 KB image). A quote the expression
    cannot match cannot occur in valid JSON; it counts as a value, so the caller takes its careful
    path.
    """
    position = body.find(b'"')
    while position != -1:
        match = _JSON_STRING.match(body, position)
        if match is None:
            yield False
            return
        yield bool(match.group(1))
        position = body.find(b'"', match.end())


def count_string_values(body: bytes) -> int:
    """How many strings a (valid) JSON body holds other than object keys (see :func:`has_string_values`)."""
    return sum(1 for is_key in _string_is_key(body) if not is_key)


def count_strings(value: Any) -> int:
    """How many strings a parsed JSON value holds other than object keys."""
    # A loop, not recursion: orjson accepts 1,024 levels of nesting, deeper than Python's recursion
    # limit, and a client's RecursionError would be our 500.
    found = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found += 1
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


def refuse_non_numbers(value: Any, spec: TensorSpec, locate: Locator = locate_row) -> None:
    """Raise the wrong-value 400 for the first string (or, for a number input, boolean) in nested lists.

    Before NumPy sees them: NumPy would give every element of a list holding a string a fixed-width
    string dtype as wide as the longest one (a million numbers next to one long string would cost
    gigabytes), and reads ``[true, 2, 3]`` as ``[1, 2, 3]``, a boolean silently fed to a number.
    """
    refused: type | tuple[type, ...] = str if spec.dtype == "bool" else (str, bool)
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, list):
            stack.extend(((*path, index), child) for index, child in reversed(list(enumerate(item))))
        elif isinstance(item, refused):
            raise BadRequestError(f"{expects(spec)}; {locate(path)} has {_describe(item)}")


def may_hold_non_numbers(body: bytes) -> bool:
    """Whether a (valid) JSON body may hold strings (not object keys) or booleans: see :func:`to_input_array`.

    Booleans are found by their text, so a key or string containing ``true`` only costs a walk.
    """
    return may_hold_booleans(body) or has_string_values(body)


#: Bytes searched per call by :func:`may_hold_booleans`: each call holds the interpreter.
_SEARCH_BLOCK = 1 << 20


def may_hold_booleans(body: bytes) -> bool:
    """Whether a JSON body's text holds ``true`` or ``false``, searched a block at a time.

    ``b"true" in body`` over a 10 MB body held the interpreter 6-8 ms in one call (a search for a
    word is slower than for a byte), twice: the event loop, health checks included, waited that
    long. ``find`` with bounds reads the body in place, a megabyte per call (under 1 ms each).
    """
    for token in (b"true", b"false"):
        for start in range(0, len(body), _SEARCH_BLOCK):
            if body.find(token, start, start + _SEARCH_BLOCK + len(token) - 1) >= 0:
                return True
    return False


def has_string_values(body: bytes) -> bool:
    """Whether a (valid) JSON body holds a string anywhere but as an object key.

    Without one, no nested list in it can make NumPy build a fixed-width string array, whose size is
    the element count times the longest string (a long string among a million numbers would cost
    gigabytes); :func:`to_input_array` then skips its walk over the elements. Tokenises strings with
    one regular expression.
    """
    return not all(_string_is_key(body))


def to_input_array(
    value: Any,
    spec: TensorSpec,
    *,
    allow_non_finite: bool = False,
    locate: Locator = locate_row,
    strings: bool = True,
) -> np.ndarray:
    """A parsed JSON value (nested lists of numbers, booleans or strings) as an array of ``spec``'s dtype.

    Raises :class:`BadRequestError` naming the input and the first offending row;
    see :func:`coerce` for the casting rules. ``strings=False`` promises that ``value`` holds no
    string and no boolean (see :func:`may_hold_non_numbers`); otherwise a numeric input is first
    walked for them, refused before NumPy could widen every element to the longest string, or read
    ``true`` as 1.
    """
    if spec.dtype == "bytes":
        return _to_bytes_array(value, spec, locate)
    if strings:
        refuse_non_numbers(value, spec, locate)
    try:
        array = json_blocks.asarray(value)  # a long list a block of rows at a time: the loop gets its turns
    except ValueError as exc:
        # NumPy >= 1.24 refuses inhomogeneous nested lists; say which row is off instead of its message.
        _nested_shape(value, spec, locate)
        raise BadRequestError(f"input {spec.name!r} is not a regular array: {exc}") from exc
    return coerce(array, spec, allow_non_finite=allow_non_finite, source=value, locate=locate)


#: Below this magnitude a double holds every integer exactly.
_EXACT_DOUBLE_INTEGERS = float(2**53)


def coerce(
    array: np.ndarray,
    spec: TensorSpec,
    *,
    allow_non_finite: bool = False,
    source: Any = None,
    locate: Locator = locate_row,
) -> np.ndarray:
    """Cast ``array`` to ``spec``'s dtype, refusing casts that would change values.

    Integers may feed a float input; floats may feed an integer input only when
    integral and in range; 0/1 may feed a bool input; booleans and strings never
    feed a number. NaN and infinity in a float input are refused unless
    ``allow_non_finite``; narrowing casts that overflow (``1e300`` to
    ``float32``) always are. ``source`` (the parsed JSON the array came from, if
    any) lets messages point at the offending element even after NumPy turned a
    mixed list into strings.
    """
    if spec.dtype == "bytes":
        return _bytes_from_array(array, spec)
    target = np.dtype(spec.dtype)
    kind = array.dtype.kind
    if target.kind == "f" and kind in "iuf":
        # The hot path (JSON numbers -> float32). The sum of squares bounds every |x| and turns NaN or
        # infinity into NaN or inf, so one BLAS call proves every value finite and within the target's
        # range: the cast can then neither overflow nor warn. A false alarm (squares overflowing the
        # source dtype) only costs the careful path. Integers cannot be NaN and only overflow float16.
        if kind == "f" and not float(np.vdot(array, array)) <= _SQUARED_MAX[target.itemsize]:
            return _careful_float(array, spec, target, locate, allow_non_finite)
        if kind != "f" and target.itemsize == 2:
            return _careful_float(array, spec, target, locate, allow_non_finite)
        return array if array.dtype == target else array.astype(target)
    if array.dtype == target:
        return array
    if kind == "f" and target.kind in "iu" and source is not None and _beyond_exact_doubles(array):
        # NumPy read a mix of integers and floats (or integers past int64, for uint64) as float64,
        # which rounds integers from 2**53 on: read them from the JSON itself, exactly.
        return _exact_integers(source, array.shape, spec, target, locate)
    if kind in "OUS":
        # Strings, nulls, objects, or integers beyond 64 bits: NumPy fell back to a non-numeric dtype.
        return _coerce_objects(array, spec, target, source=source, locate=locate, allow_non_finite=allow_non_finite)
    if kind == "b":
        raise BadRequestError(f"{expects(spec)}; got true/false values")
    if kind not in "iuf":
        raise BadRequestError(f"{expects(spec)}; got an array of dtype {array.dtype}")
    if target.kind == "b":
        bad = (array != 0) & (array != 1)
        if bad.any():
            _raise_at(array, bad, spec, locate, "")
        return array.astype(target)
    return _to_int(array, spec, target, locate)


def _careful_float(
    array: np.ndarray, spec: TensorSpec, target: np.dtype[Any], locate: Locator, allow_non_finite: bool
) -> np.ndarray:
    """The cast with element-wise checks: overflow is always refused, NaN and infinity unless allowed."""
    with np.errstate(over="ignore", invalid="ignore"):
        # Overflow is reported below as a 400 naming the value, not as a RuntimeWarning in the server log.
        out = array if array.dtype == target else array.astype(target)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    overflow = bad & np.isfinite(array) if array.dtype.kind == "f" else bad
    if overflow.any():
        limit = float(np.finfo(out.dtype).max)
        _raise_at(array, overflow, spec, locate, f", beyond the {out.dtype} range (±{limit:.4g})")
    if not allow_non_finite:
        index = _first(bad)
        raise BadRequestError(
            f"input {spec.name!r} has {_describe(array[index].item())} at {locate(index)}; "
            "this endpoint accepts only finite numbers, no NaN or infinity"
        )
    return out


def _to_int(array: np.ndarray, spec: TensorSpec, target: np.dtype[Any], locate: Locator) -> np.ndarray:
    info = np.iinfo(target)
    if array.dtype.kind == "f":
        bad = ~(np.isfinite(array) & (array == np.trunc(array)))
        if bad.any():
            _raise_at(array, bad, spec, locate, "")
        # info.max + 1 is a power of two, exactly representable, so the comparison is exact.
        out_of_range = (array < info.min) | (array >= info.max + 1)
    else:
        out_of_range = (array < info.min) | (array > info.max)
    if out_of_range.any():
        _raise_at(array, out_of_range, spec, locate, f", outside the {target} range [{info.min}, {info.max}]")
    return array.astype(target)


def _first(mask: np.ndarray) -> Path:
    """The index of the first true element of ``mask``."""
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape))


def _coerce_objects(
    array: np.ndarray,
    spec: TensorSpec,
    target: np.dtype[Any],
    *,
    source: Any,
    locate: Locator,
    allow_non_finite: bool,
) -> np.ndarray:
    if source is None and array.dtype.kind in "US":
        raise BadRequestError(f"{expects(spec)}; got an array of strings (dtype {array.dtype})")
    tree = source if source is not None else array.tolist()
    accept_bool = target.kind == "b"
    for path, leaf in _leaves(tree):
        if not _is_number(leaf, accept_bool):
            raise BadRequestError(f"{expects(spec)}; {locate(path)} has {_describe(leaf)}")
    # Only numbers, yet NumPy chose dtype=object: integers beyond 64 bits.
    if target.kind == "f":
        return coerce(_as_float64(array, spec), spec, allow_non_finite=allow_non_finite, locate=locate)
    if target.kind in "iu":
        return _exact_integers(tree, array.shape, spec, target, locate)
    # A mixture NumPy would not unify (e.g. huge integers next to floats): convert element by element.
    return coerce(_as_float64(array, spec), spec, allow_non_finite=allow_non_finite, locate=locate)


def _beyond_exact_doubles(array: np.ndarray) -> bool:
    """Whether a float64 array holds a magnitude from 2**53, where doubles no longer hold every integer."""
    return bool(array.size) and not float(np.abs(array).max()) < _EXACT_DOUBLE_INTEGERS


def _exact_integers(
    tree: Any, shape: tuple[int, ...], spec: TensorSpec, target: np.dtype[Any], locate: Locator
) -> np.ndarray:
    """Parsed JSON numbers as ``target`` integers, element by element: never through float64.

    An integer literal stays exact whatever its size (``18446744073709551615`` is uint64's largest,
    not 1.8446744073709552e+19 and out of range); a float literal must be whole, and counts as the
    double it is. Only for the rare batch NumPy could not read as integers itself.
    """
    info = np.iinfo(target)
    values: list[int] = []
    for path, leaf in _leaves(tree):
        number = leaf
        if isinstance(leaf, float):
            if not leaf.is_integer():
                raise BadRequestError(f"{expects(spec)}; {locate(path)} has {_describe(leaf)}")
            number = int(leaf)
        if not isinstance(number, int) or isinstance(number, bool):
            raise BadRequestError(f"{expects(spec)}; {locate(path)} has {_describe(leaf)}")
        if not info.min <= number <= info.max:
            raise BadRequestError(
                f"{expects(spec)}; {locate(path)} has {leaf}, outside the {target} range [{info.min}, {info.max}]"
            )
        values.append(number)
    return np.array(values, dtype=target).reshape(shape)


def _as_float64(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    try:
        return np.array(array.tolist(), dtype=np.float64)
    except OverflowError:
        # An integer literal beyond float64's range (about 1.8e308): no model input can hold it.
        raise BadRequestError(f"{expects(spec)}; a number is too large to represent (beyond ±1.8e308)") from None


def _to_bytes_array(value: Any, spec: TensorSpec, locate: Locator) -> np.ndarray:
    shape = _nested_shape(value, spec, locate)
    if len(shape) > len(spec.shape):  # deeper than NumPy allows (64 axes) is a ValueError, a 500
        raise BadRequestError(
            f"input {spec.name!r} is nested {len(shape)} levels deep; it takes {len(spec.shape)} "
            f"(shape {list(spec.shape)}, -1 = any size)"
        )
    leaves = [_leaf_bytes(leaf, path, spec, locate) for path, leaf in _leaves(value)]
    out = np.empty(shape, dtype=object)
    out.reshape(-1)[:] = leaves
    return out


def _leaf_bytes(leaf: Any, path: Path, spec: TensorSpec, locate: Locator) -> bytes:
    if isinstance(leaf, str):
        return leaf.encode("utf-8")
    if isinstance(leaf, bytes):
        return leaf
    if isinstance(leaf, dict) and set(leaf) == {"b64"} and isinstance(leaf["b64"], str):
        try:
            return decode_base64(leaf["b64"])
        except (binascii.Error, ValueError) as exc:
            raise BadRequestError(
                f"input {spec.name!r}: {locate(path)} has invalid base64 in its 'b64' value ({exc})"
            ) from exc
    raise BadRequestError(
        f'input {spec.name!r} expects strings (or {{"b64": "..."}} objects for binary data); '
        f"{locate(path)} has {_describe(leaf)}"
    )


def _bytes_from_array(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    kind = array.dtype.kind
    if kind == "S":
        return array.astype(object)
    if kind == "U":
        flat = [text.encode("utf-8") for text in array.reshape(-1).tolist()]
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = flat
        return out
    if kind == "O" and all(isinstance(leaf, bytes) for leaf in array.reshape(-1).tolist()):
        return array
    raise BadRequestError(f"input {spec.name!r} expects strings or bytes; got an array of dtype {array.dtype}")


def _nested_shape(value: Any, spec: TensorSpec, locate: Locator) -> tuple[int, ...]:
    """The shape of nested lists, level by level; raises the 'ragged' error at the first irregular level.

    Each level is a flat list of its items, without their paths: a hostile body of one wide row and
    a million scalars is refused at its second item instead of after a Python step (and a path
    tuple) per item. An item's path is worked out from its flat index only for the message, which
    the levels above, being regular, make possible.
    """
    shape: list[int] = []
    level: list[Any] = [value]
    while True:
        first_is_list = isinstance(level[0], list)
        odd = next((index for index, item in enumerate(level) if isinstance(item, list) != first_is_list), None)
        if odd is not None:
            listed, scalar = (0, odd) if first_is_list else (odd, 0)
            raise BadRequestError(
                f"input {spec.name!r} is ragged: {locate(_path_of(listed, shape))} is a list but "
                f"{locate(_path_of(scalar, shape))} is a single value; every row must have the same shape"
            )
        if not first_is_list:
            return tuple(shape)
        length = len(level[0])
        odd = next((index for index, item in enumerate(level) if len(item) != length), None)
        if odd is not None:
            raise BadRequestError(
                f"input {spec.name!r} is ragged: {locate(_path_of(odd, shape))} has "
                f"{count(len(level[odd]), 'value')} but {locate(_path_of(0, shape))} has {length}; "
                "every row must have the same shape"
            )
        shape.append(length)
        if length == 0:
            return tuple(shape)
        level = [child for item in level for child in item]


def _path_of(flat_index: int, shape: list[int]) -> Path:
    """The path of the ``flat_index``-th item of a regular nesting of ``shape``."""
    return tuple(int(index) for index in np.unravel_index(flat_index, shape)) if shape else ()


def _leaves(tree: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(tree, list):
        for index, child in enumerate(tree):
            yield from _leaves(child, (*path, index))
    else:
        yield path, tree


def _is_number(leaf: Any, accept_bool: bool) -> bool:
    if isinstance(leaf, bool | np.bool_):
        return accept_bool
    return isinstance(leaf, int | float | np.integer | np.floating)


def _raise_at(array: np.ndarray, bad: np.ndarray, spec: TensorSpec, locate: Locator, reason: str) -> NoReturn:
    index = _first(bad)
    value = array[index].item()
    raise BadRequestError(f"{expects(spec)}; {locate(index)} has {_describe(value)}{reason}")


def count(number: int, noun: str) -> str:
    """``1 value``, ``3 values``: messages read better without ``1 values``."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def expects(spec: TensorSpec) -> str:
    """The start of a wrong-value message: ``input 'x' expects float32 numbers``."""
    kind = np.dtype(spec.dtype).kind
    noun = {"f": "numbers", "b": "booleans (true/false or 0/1)"}.get(kind, "integers")
    return f"input {spec.name!r} expects {spec.dtype} {noun}"


def _describe(leaf: Any) -> str:
    if leaf is None:
        return "null"
    if isinstance(leaf, bool):
        return "true" if leaf else "false"
    if isinstance(leaf, str):
        shown = leaf if len(leaf) <= 20 else leaf[:20] + "..."
        return f"a string ({shown!r})"
    if isinstance(leaf, dict):
        return "an object"
    if isinstance(leaf, list):
        return "a list"
    if isinstance(leaf, float) and math.isnan(leaf):
        return "NaN"
    if isinstance(leaf, float) and math.isinf(leaf):
        # JSON has no infinity: a client's 1e400 (or 5,000 digits in CSV) parses to it, and "has inf"
        # alone named a value they never sent.
        return f"{'-' if leaf < 0 else ''}infinity (a number beyond ±1.8e308 reads as infinity)"
    return repr(leaf)


def check_batch(tensors: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> None:
    """Refuse empty batches and single values where a batch was expected."""
    for spec in specs:
        array = tensors[spec.name]
        if not spec.shape:
            continue  # A scalar input has no batch dimension to check.
        if array.ndim == 0:
            raise BadRequestError(
                f"input {spec.name!r} must be a batch (a list with one entry per row), got a single value"
            )
        if array.shape[0] == 0:
            raise BadRequestError(f"empty batch: input {spec.name!r} has no rows; send at least one row")


# --------------------------------------------------------------------------- outputs


def ordered(arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> list[tuple[str, np.ndarray]]:
    """``arrays`` in signature order, then any names the signature lacks (user code may add outputs)."""
    names = [spec.name for spec in specs if spec.name in arrays]
    names += [name for name in arrays if name not in names]
    if not names:
        raise ModelError("the model returned no outputs")
    return [(name, np.asarray(arrays[name])) for name in names]


def batch_size(columns: Sequence[tuple[str, np.ndarray]]) -> int:
    """The shared first dimension of the outputs; raises :class:`ModelError` if they disagree."""
    sizes: dict[str, int] = {}
    for name, array in columns:
        if array.ndim == 0:
            raise ModelError(f"output {name!r} is a scalar; row-wise formats need a batch dimension")
        sizes[name] = array.shape[0]
    if len(set(sizes.values())) > 1:
        raise ModelError(f"outputs have different batch sizes: {sizes}")
    return next(iter(sizes.values()))


def is_text(array: np.ndarray) -> bool:
    """Whether an array holds strings or bytes (a ``bytes`` tensor) rather than numbers."""
    return array.dtype.kind in "OSU"


def json_column(name: str, array: np.ndarray) -> np.ndarray | list[Any]:
    """An output as something ``orjson`` serialises with ``OPT_SERIALIZE_NUMPY``.

    Numeric arrays stay arrays (orjson writes float32 with its shortest
    round-tripping repr, and fast); byte strings become UTF-8 text, or
    ``{"b64": ...}`` when they are not valid UTF-8, as TF Serving does.
    """
    if is_text(array):
        return [_json_text(leaf, name) for leaf in array.tolist()]
    if array.dtype.kind not in "biuf":
        raise ModelError(f"output {name!r} has dtype {array.dtype}, which the response formats cannot carry")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array)


def _json_text(leaf: Any, name: str) -> Any:
    if isinstance(leaf, list):
        return [_json_text(child, name) for child in leaf]
    if isinstance(leaf, bytes):
        try:
            return leaf.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(leaf).decode("ascii")}
    if isinstance(leaf, str | int | float | bool) or leaf is None:
        return leaf
    raise ModelError(f"output {name!r} holds a {type(leaf).__name__}, which the response formats cannot carry")


def json_rows(columns: Sequence[tuple[str, np.ndarray]]) -> np.ndarray | list[Any]:
    """Per-row values: the column itself for one output, ``[{name: value}, ...]`` for several."""
    if len(columns) == 1:
        name, array = columns[0]
        batch_size(columns)
        return json_column(name, array)
    rows = batch_size(columns)
    converted = [(name, json_column(name, array)) for name, array in columns]
    return [{name: column[index] for name, column in converted} for index in range(rows)]
