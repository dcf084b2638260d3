"""The bundled example: named arrays stored as ``.npz`` that never needs pickle."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model_package.errors import IntegrityError, UsageError
from model_package.manifest import Signature

#: How many rows of the caller's example inputs a package keeps (enough to exercise batching).
MAX_EXAMPLE_ROWS = 4


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write named arrays to ``path`` as an uncompressed ``.npz``; object arrays are refused."""
    for name, array in arrays.items():
        if np.asarray(array).dtype.hasobject:
            raise UsageError(f"example array {name!r} has dtype object; use numeric, bool or fixed-width bytes arrays")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        # allow_pickle=False: a reader never needs pickle, and a writer never produces it.
        np.savez(handle, allow_pickle=False, **{name: np.asarray(a) for name, a in arrays.items()})


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read named arrays from an ``.npz`` with pickle disabled."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise IntegrityError(f"{path} is not a readable pickle-free .npz file: {exc}") from exc


def trim_rows(arrays: Mapping[str, np.ndarray], rows: int = MAX_EXAMPLE_ROWS) -> dict[str, np.ndarray]:
    """The first ``rows`` rows of every batched array (scalars unchanged)."""
    return {name: (np.asarray(a)[:rows] if np.asarray(a).ndim else np.asarray(a)) for name, a in arrays.items()}


def synthesize_inputs(signature: Signature, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic example inputs for a signature: dynamic dims become ``batch``.

    Floats are standard normal, integers and booleans zero (always valid as
    indices or masks). Byte-string inputs cannot be guessed, so they need real
    example inputs from the caller.
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = tuple(batch if dim == -1 else dim for dim in spec.shape)
        if spec.dtype == "bytes":
            raise UsageError(
                f"input {spec.name!r} takes byte strings, which cannot be synthesized; pass example inputs"
            )
        if spec.dtype.startswith("float"):
            arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            arrays[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return arrays
