"""What the post-deploy verification commands share (``infra.verify_aws``, ``infra.verify_gcp``).

The error classes and their exit codes, running the command (one line per outcome), reading
``pulumi stack output --json``, the package's bundled example, and the comparison of a
``{"predictions": [...]}`` answer with the bundled expected outputs within the manifest's tolerance.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model_package.errors import InvalidStoreURIError, ModelPackageError
from model_package.example import load_arrays
from model_package.manifest import Manifest, Signature, TensorSpec
from model_package.publish import parse_package_uri

# --- errors -------------------------------------------------------------------------------------


class VerifyError(Exception):
    """An expected verification failure: ``str(error)`` is the one line the user sees."""

    exit_code: int = 1


class UsageError(VerifyError):
    """The outputs or flags do not say what to verify."""

    exit_code = 2


class EndpointNotFoundError(VerifyError):
    """The endpoint or service does not exist (in that region)."""

    exit_code = 3


class EndpointNotReadyError(VerifyError):
    """The endpoint exists but is not ready to serve (not ``InService``, unhealthy, nothing deployed)."""

    exit_code = 4


class DeploymentMismatchError(VerifyError):
    """The endpoint runs another configuration or model than the stack deployed, or another package."""

    exit_code = 5


class SmokeTestError(VerifyError):
    """The smoke invocation failed, or its predictions differ from the bundled expected outputs."""

    exit_code = 6


class CloudCredentialsError(VerifyError):
    """No usable cloud credentials, or they are not allowed to make a call."""

    exit_code = 7


class CloudUnavailableError(VerifyError):
    """The cloud throttled the call after retries, could not be reached, or failed otherwise."""

    exit_code = 8


class PackageError(VerifyError):
    """The pinned package could not be fetched or read."""

    exit_code = 9


# --- the command --------------------------------------------------------------------------------


class Summarised(Protocol):
    """A verification result: the one line the command prints on success."""

    def summary(self) -> str: ...


def run_command(prog: str, verify: Callable[[], Summarised]) -> int:
    """Run ``verify`` and print its summary; a ``VerifyError`` is one line on stderr and its exit code."""
    try:
        result = verify()
    except VerifyError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(result.summary())
    return 0


def check_package_pin(package_uri: str, digest: str | None) -> None:
    """Refuse a package URI that pins no digest, or one that disagrees with the ``packageDigest`` output."""
    try:
        ref = parse_package_uri(package_uri)
    except InvalidStoreURIError as exc:
        raise UsageError(f"package URI {package_uri!r} is not a pinned package URI: {exc}") from None
    if digest and digest != ref.digest:
        raise UsageError(
            f"the stack outputs disagree: packageDigest is {digest} but the package URI pins {ref.digest}; "
            "re-export the outputs after `pulumi up`"
        )


def smoke_summary(rows: int | None, max_abs_error: float | None) -> str:
    """How the smoke test went, for the summary line."""
    if rows is None:
        return "smoke test skipped (--skip-smoke)"
    return f"smoke test passed ({rows} rows, max abs error {max_abs_error:.2g})"


# --- stack outputs ------------------------------------------------------------------------------


def load_outputs(path: str) -> dict[str, Any]:
    """Read ``pulumi stack output --json`` from a file, or from stdin for ``-``."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read stack outputs {path}: {exc.strerror or exc}") from None
    try:
        outputs = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"stack outputs {path} are not JSON ({exc}); write them with `pulumi stack output --json`"
        ) from None
    if not isinstance(outputs, dict):
        raise UsageError(f"stack outputs {path} are not a JSON object; write them with `pulumi stack output --json`")
    return outputs


def output_value(outputs: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = outputs.get(key)
        if value is None:
            continue
        if value == "[secret]":
            raise UsageError(f"stack output {key} is a secret; export the outputs with `--show-secrets`")
        if not isinstance(value, str):
            raise UsageError(f"stack output {key} must be a string, got {type(value).__name__}")
        return value
    return None


# --- the package's example ----------------------------------------------------------------------


def read_example(package_dir: Path, manifest: Manifest) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    try:
        return load_arrays(package_dir / manifest.example.inputs), load_arrays(package_dir / manifest.example.outputs)
    except ModelPackageError as exc:
        raise PackageError(f"cannot read the package's bundled example: {exc}") from None


def compare_predictions(
    payload: Any, expected: Mapping[str, np.ndarray], signature: Signature, *, rtol: float, atol: float
) -> float:
    """Compare a ``{"predictions": [...]}`` answer with the expected outputs; return the max abs error.

    The layout is the serving container's (``inference.codecs.json_codec``): one entry per
    row, the value itself for a single output, ``{output_name: value}`` for several.
    Raises :class:`SmokeTestError` naming the output, and for numbers the max abs error.
    """
    if not isinstance(payload, Mapping) or not isinstance(payload.get("predictions"), list):
        raise SmokeTestError(f'the endpoint answered {preview(payload)}, not {{"predictions": [...]}}')
    rows: list[Any] = payload["predictions"]
    worst = 0.0
    for spec in signature.outputs:
        if spec.name not in expected:
            continue  # an output the example did not record cannot be compared
        want = np.asarray(expected[spec.name])
        expected_rows = want.shape[0] if want.ndim else 1
        if len(rows) != expected_rows:
            raise SmokeTestError(
                f"the endpoint answered {len(rows)} rows for output {spec.name!r}, expected {expected_rows}"
            )
        if len(signature.outputs) == 1:
            values = rows
        else:
            if not all(isinstance(row, Mapping) and spec.name in row for row in rows):
                raise SmokeTestError(f"the endpoint's predictions lack output {spec.name!r} in some rows")
            values = [row[spec.name] for row in rows]
        worst = max(worst, _compare_output(spec, values, want, rtol=rtol, atol=atol))
    return worst


def _compare_output(spec: TensorSpec, values: list[Any], want: np.ndarray, *, rtol: float, atol: float) -> float:
    if want.dtype.kind in "fiu":
        try:
            # JSON has no NaN; the server writes null for it, so null reads back as NaN.
            got = np.asarray(_nulls_to_nan(values), dtype=np.float64)
            if want.dtype.kind == "f":
                # Back to the output's own precision: a float32 written as its shortest decimal reads back
                # exactly as float32, so only real differences remain.
                got = got.astype(want.dtype).astype(np.float64)
        except (TypeError, ValueError):
            raise SmokeTestError(f"output {spec.name!r} is not numeric in the endpoint's answer") from None
        if got.shape != want.shape:
            raise SmokeTestError(f"output {spec.name!r} has shape {got.shape}, expected {want.shape}")
        reference = want.astype(np.float64)
        error = np.abs(got - reference)
        both_nan = np.isnan(got) & np.isnan(reference)
        error = np.where(both_nan, 0.0, error)
        error = np.where(np.isnan(error), np.inf, error)
        worst = float(error.max()) if error.size else 0.0
        if np.any(error > atol + rtol * np.abs(np.nan_to_num(reference))):
            raise SmokeTestError(
                f"output {spec.name!r} differs from the package's expected outputs: max abs error {worst:.3g} "
                f"exceeds the manifest tolerance (atol {atol:g} + rtol {rtol:g} x |expected|); the endpoint is "
                "not serving this package's model as exported"
            )
        return worst
    got_items = np.asarray(_texts(values), dtype=object)
    want_items = np.asarray(_texts(want.tolist()), dtype=object)
    if got_items.shape != want_items.shape or not np.array_equal(got_items, want_items):
        raise SmokeTestError(f"output {spec.name!r} differs from the package's expected outputs")
    return 0.0


def _nulls_to_nan(value: Any) -> Any:
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return [_nulls_to_nan(item) for item in value]
    return value


def _texts(value: Any) -> Any:
    # Byte strings travel as UTF-8 text or {"b64": ...}; bools and text as themselves.
    if isinstance(value, list):
        return [_texts(item) for item in value]
    if isinstance(value, Mapping) and set(value) == {"b64"}:
        return base64.b64decode(str(value["b64"]))
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return value


def preview(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")
