"""``application/json``: the request forms of Vertex AI, TF Serving and SageMaker, and ``{"predictions": ...}``.

A request body is one of

* a bare list: the batch of a single-input model (``[[1, 2], [3, 4]]``);
* ``{"instances": [...]}`` (row format): one entry per row, a value for a
  single-input model or an object ``{input_name: value}`` per row;
* ``{"inputs": ...}`` (columnar format): the batch of a single-input model, or
  ``{input_name: batch}``;

optionally next to ``"parameters"`` (an object the protocols read; the codec
ignores it). Any other key is refused rather than ignored, so that a typo such
as ``"instance"`` fails loudly instead of predicting on nothing.

The response is ``{"predictions": [...]}`` with one entry per row: the row's
value for a single output, ``{output_name: value}`` for several. Byte strings
are written as UTF-8 text, or ``{"b64": "..."}`` when not valid UTF-8 (the
same object is accepted in requests). NaN and infinity in outputs become
``null``, since strict JSON has no spelling for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from inference.codecs import json_blocks, json_numbers
from inference.codecs.arrays import Locator, json_rows, locate_row, may_hold_non_numbers, ordered, to_input_array
from inference.codecs.base import Tensors
from inference.codecs.limits import DecodeLimits, check_structure
from inference.errors import BadRequestError, ModelError
from model_package.manifest import Signature

ACCEPTED_FORMS = (
    'a JSON list (the batch of a single-input model), {"instances": [...]} (one entry per row) or '
    '{"inputs": ...} (the batch, or an object with one batch per input name), optionally with "parameters"'
)
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class JsonInputs:
    """The data part of a JSON request: which accepted form it used, and its (parsed) value."""

    form: Literal["list", "instances", "inputs"]
    data: Any


def load_json(body: bytes, what: str = "the JSON body") -> Any:
    """Parse JSON with orjson, falling back to the standard library for what strict JSON lacks.

    The fallback reads ``NaN``/``Infinity`` (which Python's ``json.dumps``
    writes; whether they are allowed is decided later, per input) and a UTF-8
    byte-order mark, and words its errors with line and column. It only runs
    when orjson has already failed, so valid bodies are parsed once.
    """
    try:
        return json_blocks.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"{what} is not valid UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        # orjson stops at 1024 levels; the standard library then recurses until Python's limit.
        raise BadRequestError(f"{what} nests arrays or objects too deeply (over 1024 levels)") from None
    except ValueError as exc:
        # Python refuses to convert integers of more than 4,300 digits (CVE-2020-10735): no input
        # could hold one anyway.
        raise BadRequestError(f"{what} holds a number too long to read: {exc}") from None


def split_json_payload(body: bytes) -> tuple[JsonInputs, dict[str, Any]]:
    """Parse a JSON request body into its data and its ``"parameters"`` object (``{}`` when absent).

    Raises :class:`BadRequestError` for malformed JSON, unknown top-level keys or
    parameters that are not an object.
    """
    payload = load_json(body)
    try:
        return split_parsed_payload(payload)
    except BadRequestError:
        json_blocks.release(payload)  # a refused body is freed a block at a time, as an accepted one is
        raise


def split_parsed_payload(payload: Any) -> tuple[JsonInputs, dict[str, Any]]:
    """:func:`split_json_payload` for an already-parsed body."""
    if isinstance(payload, list):
        return JsonInputs("list", payload), {}
    if not isinstance(payload, dict):
        raise BadRequestError(f"a JSON request must be {ACCEPTED_FORMS}; got {_json_type(payload)} alone")
    parameters = payload.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise BadRequestError(f'"parameters" must be a JSON object, got {_json_type(parameters)}')
    keys = [key for key in payload if key != "parameters"]
    if keys == ["instances"]:
        return JsonInputs("instances", payload["instances"]), parameters
    if keys == ["inputs"]:
        return JsonInputs("inputs", payload["inputs"]), parameters
    if "instances" in keys and "inputs" in keys:
        raise BadRequestError(f'send either "instances" or "inputs", not both; the accepted forms are {ACCEPTED_FORMS}')
    unknown = [key for key in keys if key not in ("instances", "inputs")]
    problem = f"unexpected keys {unknown}" if unknown else 'no "instances" or "inputs" key'
    raise BadRequestError(f"JSON request has {problem}; send {ACCEPTED_FORMS}")


def decode_json_inputs(
    inputs: JsonInputs, signature: Signature, *, allow_non_finite: bool = False, strings: bool = True
) -> Tensors:
    """The named input batches of a split JSON request, cast to the signature's dtypes (see ``coerce``).

    ``strings=False``: the body held no string values and no booleans (``may_hold_non_numbers``), which
    saves a walk.
    Consumes ``inputs``: its batches are emptied once converted (see ``json_blocks.release``).
    """
    try:
        return _decode_json_inputs(inputs, signature, allow_non_finite=allow_non_finite, strings=strings)
    finally:
        json_blocks.release(inputs.data)


def _decode_json_inputs(inputs: JsonInputs, signature: Signature, *, allow_non_finite: bool, strings: bool) -> Tensors:
    specs = signature.inputs
    if inputs.form == "list":
        if len(specs) != 1:
            names = [spec.name for spec in specs]
            raise BadRequestError(
                f"a bare JSON list can only feed a single-input model; this model has inputs {names}: send "
                '{"instances": [{name: value, ...}, ...]} or {"inputs": {name: batch, ...}}'
            )
        return {
            specs[0].name: to_input_array(inputs.data, specs[0], allow_non_finite=allow_non_finite, strings=strings)
        }
    if inputs.form == "instances":
        if not isinstance(inputs.data, list):
            raise BadRequestError(f'"instances" must be a list with one entry per row, got {_json_type(inputs.data)}')
        return decode_instances(inputs.data, signature, allow_non_finite=allow_non_finite, strings=strings)
    data = inputs.data
    names = [spec.name for spec in specs]
    if isinstance(data, dict) and not is_b64_value(data, names):
        missing = [name for name in names if name not in data]
        extra = [name for name in data if name not in names]
        if missing or extra:
            raise BadRequestError(
                f'"inputs" must map exactly the input names {names} to their batches; '
                f"missing {missing}, unexpected {extra}"
            )
        return {
            spec.name: to_input_array(data[spec.name], spec, allow_non_finite=allow_non_finite, strings=strings)
            for spec in specs
        }
    if len(specs) != 1:
        raise BadRequestError(
            f'"inputs" must be an object mapping each input name to its batch for this model (inputs {names}); '
            f"got {_json_type(data)}"
        )
    return {specs[0].name: to_input_array(data, specs[0], allow_non_finite=allow_non_finite, strings=strings)}


def decode_instances(
    instances: list[Any],
    signature: Signature,
    *,
    allow_non_finite: bool = False,
    locate: Locator = locate_row,
    strings: bool = True,
) -> Tensors:
    """Row-format instances (``"instances"`` or JSON Lines records) as named batches.

    A single-input model takes each instance as that input's row, or as an
    object naming the input; a multi-input model takes objects with exactly
    one key per input. Only the object form loops in Python; the plain form is
    one ``np.asarray`` over the whole list.
    """
    specs = signature.inputs
    names = [spec.name for spec in specs]
    first = instances[0] if instances else None
    if len(specs) == 1 and not (isinstance(first, dict) and not is_b64_value(first, names)):
        return {
            specs[0].name: to_input_array(
                instances, specs[0], allow_non_finite=allow_non_finite, locate=locate, strings=strings
            )
        }
    expected = set(names)
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequestError(
                f"{locate((index,))} is {_json_type(instance)}; "
                + (
                    f"this model has inputs {names}, so each instance must be an object with those keys"
                    if len(specs) > 1
                    else "instances must all be values, or all objects keyed by the input name"
                )
            )
        if instance.keys() != expected:
            missing = [name for name in names if name not in instance]
            extra = [key for key in instance if key not in expected]
            raise BadRequestError(
                f"{locate((index,))} must have exactly the keys {names}; missing {missing}, unexpected {extra}"
            )
    return {
        spec.name: to_input_array(
            [instance[spec.name] for instance in instances],
            spec,
            allow_non_finite=allow_non_finite,
            locate=locate,
            strings=strings,
        )
        for spec in specs
    }


def is_b64_value(value: Any, input_names: list[str]) -> bool:
    """Whether an object is a ``{"b64": "..."}`` binary value rather than ``{input_name: value}``."""
    return isinstance(value, dict) and value.keys() == {"b64"} and "b64" not in input_names


def dumps(value: Any) -> bytes:
    """Serialise with orjson (NumPy arrays natively); an unserialisable output is a server-side error."""
    try:
        return orjson.dumps(value, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise ModelError(f"cannot encode the model outputs as JSON: {exc}") from exc


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


class JsonCodec:
    """``application/json`` requests (list, ``instances`` or ``inputs``) and ``{"predictions": ...}`` responses."""

    media_types: tuple[str, ...] = ("application/json",)
    media_type: str = "application/json"
    content_type: str = "application/json"
    text: bool = True

    def decode(
        self,
        body: bytes,
        params: Mapping[str, str],
        signature: Signature,
        *,
        allow_non_finite: bool = False,
        limits: DecodeLimits | None = None,
    ) -> Tensors:
        """Decode any accepted JSON request form; ``"parameters"`` is ignored here."""
        check_structure(body, signature, "JSON")
        if json_numbers.takes(signature.inputs):
            # The commonest large body, a batch of numbers for one float input, without a Python float per number.
            batch = json_numbers.numeric_batch(body)
            if batch is not None:
                spec = signature.inputs[0]
                return {spec.name: json_numbers.as_input(batch, spec, allow_non_finite=allow_non_finite)}
        inputs, _ = split_json_payload(body)
        return decode_json_inputs(
            inputs, signature, allow_non_finite=allow_non_finite, strings=may_hold_non_numbers(body)
        )

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """``{"predictions": [...]}``, one entry per row."""
        return dumps({"predictions": json_rows(ordered(outputs, signature.outputs))})

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """``{"instances": [...]}``, one entry per row (what a client sends)."""
        return dumps({"instances": json_rows(ordered(inputs, signature.inputs))})
