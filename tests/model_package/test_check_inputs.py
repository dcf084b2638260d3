"""``check_inputs``: what it refuses, and that inputs it already checked are not checked again."""

from __future__ import annotations

import numpy as np
import pytest

from model_package.errors import InvalidInputError
from model_package.formats.base import check_inputs
from model_package.manifest import Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 3)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
)


def test_inputs_are_cast_to_the_signature_and_refused_when_they_do_not_fit() -> None:
    checked = check_inputs(SIGNATURE, {"x": np.ones((2, 3), np.float64)})
    assert checked["x"].dtype == np.float32
    with pytest.raises(InvalidInputError, match="size 4 on axis 1; expected 3"):
        check_inputs(SIGNATURE, {"x": np.ones((2, 4), np.float32)})


def test_inputs_checked_against_a_signature_pass_it_again_as_they_are() -> None:
    # The server validates a request before batching; a request that runs alone then reaches
    # LoadedModel.predict, which checks its inputs again: that second check is free.
    checked = check_inputs(SIGNATURE, {"x": np.ones((2, 3), np.float32)})
    assert check_inputs(SIGNATURE, checked) is checked


def test_inputs_checked_against_another_signature_are_checked_again() -> None:
    other = Signature(inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 2)),), outputs=SIGNATURE.outputs)
    checked = check_inputs(SIGNATURE, {"x": np.ones((2, 3), np.float32)})
    with pytest.raises(InvalidInputError, match="size 3 on axis 1; expected 2"):
        check_inputs(other, checked)
