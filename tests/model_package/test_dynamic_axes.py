"""Dynamic axes beyond the batch: declared, detected, exported, loaded and run at other lengths.

Real tiny models, exported through the public API, loaded back the way the
server loads them and compared with the live model at lengths the example
never had.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import torch

from model_package.dynamic_axes import parse_dynamic_axes, resolve_dynamic_axes
from model_package.errors import UsageError
from model_package.example import save_arrays
from model_package.export import export_model, import_artifact
from model_package.formats import get_format
from model_package.manifest import Manifest, read_manifest
from tests.model_package import torch_models
from tests.model_package.conftest import CliRunner

pytestmark = pytest.mark.torch

TORCH_FORMATS = ["torch_export", "torchscript", "onnx"]
ATOL = 1e-5


def _load(package: Path) -> tuple[Manifest, object]:
    manifest = read_manifest(package)
    return manifest, get_format(manifest.format).load(package, manifest)


def _live(model: torch.nn.Module, inputs: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    with torch.inference_mode():
        out: torch.Tensor = model(*(torch.from_numpy(inputs[name]) for name in names))
    return out.numpy()


def _shapes(manifest: Manifest) -> dict[str, list[int]]:
    return {spec.name: list(spec.shape) for spec in (*manifest.signature.inputs, *manifest.signature.outputs)}


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
def test_transformer_inputs_get_a_dynamic_sequence_axis_and_run_at_any_length(fmt: str, tmp_path: Path) -> None:
    model = torch_models.make_tiny_encoder()
    export_model(model, torch_models.token_inputs(3, 6), tmp_path / "pkg", name="enc", version="1", format=fmt)

    manifest, loaded = _load(tmp_path / "pkg")
    assert _shapes(manifest) == {"input_ids": [-1, -1], "attention_mask": [-1, -1], "output": [-1, 3]}
    for length in (4, 11):
        inputs = torch_models.token_inputs(2, length, seed=length)
        got = loaded.predict(inputs)["output"]  # type: ignore[attr-defined]
        np.testing.assert_allclose(got, _live(model, inputs, ["input_ids", "attention_mask"]), atol=ATOL)


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
def test_declared_dynamic_axis_serves_other_candidate_counts(fmt: str, tmp_path: Path) -> None:
    model = torch_models.make_candidate_scorer()
    export_model(
        model,
        torch_models.candidate_inputs(3, 5),
        tmp_path / "pkg",
        name="rec",
        version="1",
        format=fmt,
        dynamic_axes={"candidates": [1]},
    )

    manifest, loaded = _load(tmp_path / "pkg")
    assert _shapes(manifest) == {"user_id": [-1], "candidates": [-1, -1], "output": [-1, -1]}
    for count in (2, 9):
        inputs = torch_models.candidate_inputs(2, count, seed=count)
        got = loaded.predict(inputs)["output"]  # type: ignore[attr-defined]
        assert got.shape == (2, count)
        np.testing.assert_allclose(got, _live(model, inputs, ["user_id", "candidates"]), atol=ATOL)


def test_a_fixed_non_batch_axis_is_named_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        export_model(
            torch_models.make_candidate_scorer(),
            torch_models.candidate_inputs(3, 5),
            tmp_path / "pkg",
            name="rec",
            version="1",
        )
    manifest = read_manifest(tmp_path / "pkg")
    assert _shapes(manifest)["candidates"] == [-1, 5]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "fixed" in r.getMessage()]
    assert len(warnings) == 1
    assert "candidates[1]=5" in warnings[0]
    assert "--dynamic-axes NAME=AXIS" in warnings[0]


def test_declaring_no_axes_overrides_detection(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = torch_models.make_tiny_encoder()
    with caplog.at_level(logging.WARNING):
        export_model(
            model,
            torch_models.token_inputs(3, 6),
            tmp_path / "pkg",
            name="enc",
            version="1",
            dynamic_axes={"input_ids": [], "attention_mask": []},
        )
    manifest, loaded = _load(tmp_path / "pkg")
    assert _shapes(manifest)["input_ids"] == [-1, 6]
    assert any("input_ids[1]=6" in r.getMessage() for r in caplog.records)
    with pytest.raises(Exception, match="axis 1"):
        loaded.predict(torch_models.token_inputs(2, 7))  # type: ignore[attr-defined]


def test_a_traced_torchscript_file_is_imported_with_declared_dynamic_axes(tmp_path: Path) -> None:
    model = torch_models.make_candidate_scorer()
    example = torch_models.candidate_inputs(2, 5)
    traced = torch.jit.trace(model, (torch.from_numpy(example["user_id"]), torch.from_numpy(example["candidates"])))
    source = tmp_path / "scorer.pt"
    traced.save(str(source))

    import_artifact(
        source,
        tmp_path / "pkg",
        name="rec",
        version="1",
        example_inputs=example,
        dynamic_axes={"candidates": [1]},
    )
    manifest, loaded = _load(tmp_path / "pkg")
    assert _shapes(manifest) == {"user_id": [-1], "candidates": [-1, -1], "output": [-1, -1]}
    inputs = torch_models.candidate_inputs(3, 8, seed=1)
    np.testing.assert_allclose(
        loaded.predict(inputs)["output"],  # type: ignore[attr-defined]
        _live(model, inputs, ["user_id", "candidates"]),
        atol=ATOL,
    )


def test_dynamic_axes_on_a_format_that_records_its_shapes_are_refused(tmp_path: Path) -> None:
    export_model(
        torch_models.make_candidate_scorer(),
        torch_models.candidate_inputs(3, 5),
        tmp_path / "pkg",
        name="rec",
        version="1",
        format="onnx",
    )
    with pytest.raises(UsageError, match=r"records its own input shapes.*Re-export"):
        import_artifact(
            tmp_path / "pkg" / "model.onnx",
            tmp_path / "again",
            name="rec",
            version="1",
            dynamic_axes={"candidates": [1]},
        )


def test_resolution_rules() -> None:
    ids = np.zeros((2, 7), np.int64)
    floats = np.zeros((2, 7), np.float32)
    assert resolve_dynamic_axes({"input_ids": ids, "x": floats}, None) == {"input_ids": (1,)}
    # Floats named like token inputs are not token inputs; negative axes count from the end; 0 is implicit.
    assert resolve_dynamic_axes({"input_ids": floats}, None) == {}
    assert resolve_dynamic_axes({"x": floats}, {"x": [0, -1]}) == {"x": (1,)}
    with pytest.raises(UsageError, match=r"'y', which is not an input; the inputs are \['x'\]"):
        resolve_dynamic_axes({"x": floats}, {"y": [1]})
    with pytest.raises(UsageError, match="axis 2 does not exist"):
        resolve_dynamic_axes({"x": floats}, {"x": [2]})
    assert parse_dynamic_axes(["a=1,2", "b=", "a=3"]) == {"a": (1, 2, 3), "b": ()}
    with pytest.raises(UsageError, match="NAME=AXES"):
        parse_dynamic_axes(["a"])
    with pytest.raises(UsageError, match="comma-separated integers"):
        parse_dynamic_axes(["a=x"])


def test_cli_export_takes_dynamic_axes_from_the_option_and_the_factory(
    tmp_path: Path, model_package_cli: CliRunner
) -> None:
    factory = tmp_path / "factory.py"
    factory.write_text(
        textwrap.dedent(
            """
            from tests.model_package import torch_models

            def plain():
                return torch_models.make_candidate_scorer(), torch_models.candidate_inputs(3, 5)

            def declared():
                return torch_models.make_candidate_scorer(), torch_models.candidate_inputs(3, 5), {"candidates": [1]}
            """
        )
    )
    result = model_package_cli(
        "export", f"{factory}:plain", "--name", "a", "--version", "1", "-o", str(tmp_path / "a"),
        "--dynamic-axes", "candidates=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _shapes(read_manifest(tmp_path / "a"))["candidates"] == [-1, -1]
    result = model_package_cli(
        "export", f"{factory}:declared", "--name", "b", "--version", "1", "-o", str(tmp_path / "b"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert _shapes(read_manifest(tmp_path / "b"))["candidates"] == [-1, -1]

    result = model_package_cli(
        "export", f"{factory}:plain", "--name", "c", "--version", "1", "-o", str(tmp_path / "c"),
        "--dynamic-axes", "candidate=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "model-package: error: dynamic axes were declared for 'candidate', which is not an input; "
        "the inputs are ['candidates', 'user_id']"
    )


def test_cli_import_of_torchscript_takes_dynamic_axes(tmp_path: Path, model_package_cli: CliRunner) -> None:
    model = torch_models.make_candidate_scorer()
    example = torch_models.candidate_inputs(2, 5)
    traced = torch.jit.trace(model, (torch.from_numpy(example["user_id"]), torch.from_numpy(example["candidates"])))
    traced.save(str(tmp_path / "scorer.pt"))
    save_arrays(tmp_path / "example.npz", example)
    result = model_package_cli(
        "import", str(tmp_path / "scorer.pt"), "--name", "rec", "--version", "1", "-o", str(tmp_path / "pkg"),
        "--example-inputs", str(tmp_path / "example.npz"), "--dynamic-axes", "candidates=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _shapes(read_manifest(tmp_path / "pkg"))["candidates"] == [-1, -1]
