"""Live model -> export -> pack -> extract -> verify -> load -> the original's outputs, for every format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_package.archive import extract, pack
from model_package.errors import BehaviourMismatchError
from model_package.example import load_arrays, save_arrays
from model_package.export import export_model, import_artifact
from model_package.formats import get_format
from model_package.manifest import read_manifest
from model_package.verify import verify_behaviour


def _torch_live(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model(*(torch.from_numpy(v) for v in inputs.values()))
    return {"output": out.numpy()}


def _keras_live(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    return {"output_0": np.asarray(model(args, training=False))}


def _torch_case() -> tuple[Any, Callable[[int], dict[str, np.ndarray]], Callable[..., dict[str, np.ndarray]]]:
    from tests.model_package import torch_models

    return torch_models.make_mlp(), torch_models.mlp_inputs, _torch_live


def _keras_case() -> tuple[Any, Callable[[int], dict[str, np.ndarray]], Callable[..., dict[str, np.ndarray]]]:
    from tests.model_package import keras_models

    return keras_models.make_mlp(), keras_models.mlp_inputs, _keras_live


CASES = [
    pytest.param(_torch_case, "torch_export", marks=pytest.mark.torch, id="torch-torch_export"),
    pytest.param(_torch_case, "torchscript", marks=pytest.mark.torch, id="torch-torchscript"),
    pytest.param(_torch_case, "onnx", marks=pytest.mark.torch, id="torch-onnx"),
    pytest.param(_keras_case, "tf_savedmodel", marks=pytest.mark.tensorflow, id="keras-tf_savedmodel"),
    pytest.param(_keras_case, "keras", marks=pytest.mark.tensorflow, id="keras-keras"),
]


@pytest.mark.parametrize(("case", "fmt"), CASES)
def test_packaged_model_reproduces_the_live_model_at_any_batch_size(
    case: Callable[[], tuple[Any, Any, Any]], fmt: str, tmp_path: Path
) -> None:
    model, make_inputs, live = case()
    manifest = export_model(model, make_inputs(4), tmp_path / "pkg", name="e2e", version="1", format=fmt)
    assert manifest.format == fmt
    assert manifest.signature.inputs[0].shape[0] == -1, "the batch dimension must be dynamic"

    archive = pack(tmp_path / "pkg", tmp_path / "model.tar.gz")
    again = pack(tmp_path / "pkg", tmp_path / "again.tar.gz")
    assert archive.digest == again.digest
    fetched = extract(archive.path, tmp_path / "fetched", expected_digest=archive.digest)

    report = verify_behaviour(tmp_path / "fetched", fetched)
    assert report.worst <= 1e-5
    served = get_format(fetched.format).load(tmp_path / "fetched", fetched)
    for rows in (1, 7, 33):
        inputs = make_inputs(rows, seed=rows)
        want = live(model, inputs)
        got = served.predict(inputs)
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


@pytest.mark.torch
def test_import_a_saved_artifact_without_its_class_and_catch_a_changed_model(tmp_path: Path) -> None:
    """An .onnx file from elsewhere is packaged; swapping in different weights fails verification."""
    from tests.model_package import torch_models

    first = export_model(
        torch_models.make_mlp(), torch_models.mlp_inputs(4), tmp_path / "a", name="a", version="1", format="onnx"
    )
    imported = import_artifact(tmp_path / "a" / first.model_path, tmp_path / "imported", name="imported", version="1")
    assert imported.format == "onnx"
    assert imported.signature == first.signature
    verify_behaviour(tmp_path / "imported")

    # Same architecture, other weights: the package's bundled outputs no longer match.
    import torch

    torch.manual_seed(123)
    other = export_model(
        torch_models.MLP(), torch_models.mlp_inputs(4), tmp_path / "b", name="b", version="1", format="onnx"
    )
    save_arrays(tmp_path / "inputs.npz", load_arrays(tmp_path / "a" / "example" / "inputs.npz"))
    mismatched = import_artifact(
        tmp_path / "b" / other.model_path,
        tmp_path / "mismatched",
        name="mismatched",
        version="1",
        example_inputs=load_arrays(tmp_path / "inputs.npz"),
        expected_outputs=load_arrays(tmp_path / "a" / "example" / "outputs.npz"),
    )
    assert read_manifest(tmp_path / "mismatched") == mismatched
    with pytest.raises(BehaviourMismatchError, match=r"max abs error .* exceeds"):
        verify_behaviour(tmp_path / "mismatched")


@pytest.mark.torch
def test_user_code_ships_in_the_package_and_is_covered_by_the_digest(tmp_path: Path) -> None:
    """code/inference.py + requirements.txt (SageMaker's convention) are packaged, hashed and verified."""
    from model_package.errors import IntegrityError, MissingFileError
    from model_package.verify import verify_integrity
    from tests.model_package import torch_models

    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (code / "requirements.txt").write_text("scipy==1.17.1\n")
    (code / "helpers.py").write_text("SCALE = 2\n")
    manifest = export_model(
        torch_models.make_mlp(), torch_models.mlp_inputs(4), tmp_path / "pkg", name="with-code", version="1",
        code_dir=code,
    )  # fmt: skip
    assert manifest.code is not None
    assert manifest.code.entry_point == "code/inference.py"
    assert manifest.code.requirements == "code/requirements.txt"
    listed = {entry.path for entry in manifest.files}
    assert {"code/inference.py", "code/requirements.txt", "code/helpers.py"} <= listed

    (tmp_path / "pkg" / "code" / "inference.py").write_text("import os; os.system('curl evil')\n")
    with pytest.raises(IntegrityError, match=r"code/inference\.py"):
        verify_integrity(tmp_path / "pkg")

    (code / "inference.py").unlink()
    with pytest.raises(MissingFileError, match=r"no inference\.py"):
        export_model(
            torch_models.make_mlp(), torch_models.mlp_inputs(4), tmp_path / "pkg2", name="x", version="1",
            code_dir=code,
        )  # fmt: skip
    assert not (tmp_path / "pkg2").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no staging debris"
