"""The PyTorch-side formats (torch_export, torchscript, onnx) on real models.

Each format exports a live model into a real package directory via the builder,
loads it back the way the server does, and must reproduce the live model at the
example's batch size and at others. Nothing is mocked.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import torch

from model_package.builder import PackageSpec, build_package
from model_package.errors import ExportError, LoadError, PredictionError, UsageError
from model_package.example import load_arrays
from model_package.formats import ExportableFormat, detect_format, get_format
from model_package.manifest import Manifest, Signature, TensorSpec, read_manifest
from tests.model_package.torch_models import (
    dict_head_inputs,
    make_dict_head,
    make_mlp,
    make_two_in_two_out,
    mlp_inputs,
    two_in_two_out_inputs,
)

pytestmark = pytest.mark.torch

FORMATS = ["torch_export", "torchscript", "onnx"]
MODEL_FILES = {"torch_export": "model.pt2", "torchscript": "model.pt", "onnx": "model.onnx"}
EXAMPLE_ROWS = 4
# Same float32 kernels for the torch formats; ONNX Runtime may sum in another order.
RTOL, ATOL = 1e-5, 1e-6


def _t(array: np.ndarray) -> Any:
    return torch.from_numpy(array)


@dataclass(frozen=True)
class Case:
    """A model, how to make its inputs, how to call it by hand, and the signature it must get."""

    make_model: Callable[[], Any]
    make_inputs: Callable[..., dict[str, np.ndarray]]  # (rows, seed=0)
    call: Callable[[Any, dict[str, np.ndarray]], dict[str, Any]]
    signature: Signature


def _spec(name: str, dtype: str, *shape: int) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape)


CASES = {
    "mlp": Case(
        make_mlp,
        mlp_inputs,
        lambda m, a: {"output": m(_t(a["x"]))},
        Signature(inputs=(_spec("x", "float32", -1, 64),), outputs=(_spec("output", "float32", -1, 10),)),
    ),
    "two_in_two_out": Case(
        make_two_in_two_out,
        two_in_two_out_inputs,
        lambda m, a: dict(zip(["output_0", "output_1"], m(_t(a["features"]), _t(a["ids"])), strict=True)),
        Signature(
            inputs=(_spec("features", "float32", -1, 8), _spec("ids", "int64", -1, 4)),
            outputs=(_spec("output_0", "float32", -1, 3), _spec("output_1", "float32", -1, 3)),
        ),
    ),
}


def live_outputs(case: Case, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The live model's outputs, computed by hand (not through the code under test)."""
    with torch.inference_mode():
        return {name: tensor.numpy() for name, tensor in case.call(model, inputs).items()}


def exportable(name: str) -> ExportableFormat:
    fmt = get_format(name)
    assert hasattr(fmt, "save"), f"{name} must be exportable"
    return fmt  # type: ignore[return-value]


@pytest.fixture(scope="module", autouse=True)
def _few_threads() -> None:
    # Two CPUs in CI: more threads only add contention.
    torch.set_num_threads(2)


@dataclass(frozen=True)
class Packaged:
    fmt: ExportableFormat
    case: Case
    model: Any
    inputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    manifest: Manifest
    package_dir: Path


def build(fmt_name: str, case: Case, out_dir: Path, rows: int = EXAMPLE_ROWS) -> Packaged:
    """Export a fresh model of ``case`` into a package directory through the builder."""
    fmt = exportable(fmt_name)
    model = case.make_model()
    inputs = case.make_inputs(rows)
    expected = live_outputs(case, model, inputs)
    saved: dict[str, dict[str, np.ndarray]] = {}

    def stage(staging: Path) -> Any:
        artifact, reference = fmt.save(model, inputs, staging)
        saved["reference"] = reference
        return artifact

    spec = PackageSpec(
        name=f"{fmt_name.replace('_', '-')}-test",
        version="1.0.0",
        format=fmt_name,
        example_inputs=inputs,
        expected_outputs=expected,
    )
    manifest = build_package(out_dir, spec, stage)
    return Packaged(fmt, case, model, inputs, saved["reference"], manifest, out_dir)


PackageFactory = Callable[[str, str], Packaged]


@pytest.fixture(scope="module")
def package_of(tmp_path_factory: pytest.TempPathFactory) -> PackageFactory:
    """Build (once per module) the package of a format and a case."""
    cache: dict[tuple[str, str], Packaged] = {}

    def get(fmt_name: str, case_name: str) -> Packaged:
        if (fmt_name, case_name) not in cache:
            out_dir = tmp_path_factory.mktemp("pkg") / f"{fmt_name}-{case_name}"
            cache[fmt_name, case_name] = build(fmt_name, CASES[case_name], out_dir)
        return cache[fmt_name, case_name]

    return get


@pytest.fixture(params=[(f, c) for f in FORMATS for c in CASES], ids=lambda p: f"{p[0]}-{p[1]}")
def packaged(request: pytest.FixtureRequest, package_of: PackageFactory) -> Packaged:
    fmt_name, case_name = request.param
    return package_of(fmt_name, case_name)


def test_builder_writes_a_complete_package(packaged: Packaged) -> None:
    root, manifest = packaged.package_dir, packaged.manifest
    fmt = packaged.fmt.name
    assert read_manifest(root) == manifest
    assert manifest.format == fmt
    assert manifest.model_path == MODEL_FILES[fmt]
    for path in (MODEL_FILES[fmt], "example/inputs.npz", "example/outputs.npz"):
        assert (root / path).is_file(), path
        assert manifest.file(path).size == (root / path).stat().st_size
    assert manifest.framework.name == ("onnx" if fmt == "onnx" else "torch")
    want = packaged.case.signature
    if fmt != "torchscript" and packaged.case is CASES["two_in_two_out"]:
        # ids index a 20-row embedding: formats that record the graph note the valid range.
        ids = want.inputs[1].model_copy(update={"valid_range": (0, 19)})
        want = want.model_copy(update={"inputs": (want.inputs[0], ids)})
    assert manifest.signature == want
    assert detect_format(root / manifest.model_path) == fmt

    example_in = load_arrays(root / "example/inputs.npz")
    example_out = load_arrays(root / "example/outputs.npz")
    assert example_in.keys() == packaged.inputs.keys()
    for name, array in packaged.inputs.items():
        np.testing.assert_array_equal(example_in[name], array)
    # The reference save() returns is the live model's output, which the builder stored.
    assert list(packaged.reference) == [spec.name for spec in manifest.signature.outputs]
    for name, array in packaged.reference.items():
        np.testing.assert_allclose(example_out[name], array, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rows", [EXAMPLE_ROWS, 1, 7])
def test_loaded_package_matches_live_model(packaged: Packaged, rows: int) -> None:
    loaded = packaged.fmt.load(packaged.package_dir, packaged.manifest, threads=2)
    inputs = packaged.inputs if rows == EXAMPLE_ROWS else packaged.case.make_inputs(rows, seed=rows)
    got = loaded.predict(inputs)
    want = live_outputs(packaged.case, packaged.model, inputs)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape == (rows, *want[name].shape[1:])
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL, err_msg=name)


def test_predict_is_safe_from_several_threads(packaged: Packaged) -> None:
    loaded = packaged.fmt.load(packaged.package_dir, packaged.manifest, threads=1)
    batches = [packaged.case.make_inputs(rows, seed=rows) for rows in (1, 2, 3, 5, 8, 13)]
    expected = [live_outputs(packaged.case, packaged.model, batch) for batch in batches]
    results: dict[int, dict[str, np.ndarray]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(5):
                results[index] = loaded.predict(batches[index])
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, want in enumerate(expected):
        for name in want:
            np.testing.assert_allclose(results[index][name], want[name], rtol=RTOL, atol=ATOL)


def test_import_of_saved_file_gives_the_same_signature(packaged: Packaged, tmp_path: Path) -> None:
    source = packaged.package_dir / packaged.manifest.model_path
    # Only TorchScript needs example inputs; the others must read the signature from the file.
    examples = packaged.inputs if packaged.fmt.name == "torchscript" else None
    artifact = packaged.fmt.import_artifact(source, tmp_path, examples)
    assert artifact.signature == packaged.manifest.signature
    assert artifact.model_path == packaged.manifest.model_path
    assert artifact.framework == packaged.manifest.framework
    assert (tmp_path / artifact.model_path).read_bytes() == source.read_bytes()


def test_wrong_inputs_raise_prediction_error_naming_the_problem(packaged: Packaged) -> None:
    loaded = packaged.fmt.load(packaged.package_dir, packaged.manifest)
    first = packaged.manifest.signature.inputs[0]
    good = dict(packaged.inputs)

    bad_width = {**good, first.name: np.zeros((2, first.shape[1] + 1), dtype=first.dtype)}
    with pytest.raises(PredictionError, match=rf"input '{first.name}' has size {first.shape[1] + 1} on axis 1"):
        loaded.predict(bad_width)

    renamed = {("not_" + k if k == first.name else k): v for k, v in good.items()}
    with pytest.raises(PredictionError, match=rf"missing \['{first.name}'\], unexpected \['not_{first.name}'\]"):
        loaded.predict(renamed)

    with pytest.raises(PredictionError, match="expected rank 2"):
        loaded.predict({**good, first.name: np.zeros(3, dtype=first.dtype)})


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_corrupt_model_file_raises_load_error(package_of: PackageFactory, fmt_name: str, tmp_path: Path) -> None:
    packaged = package_of(fmt_name, "mlp")
    package = tmp_path / "pkg"
    shutil.copytree(packaged.package_dir, package)
    model_file = package / packaged.manifest.model_path
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])  # a truncated download

    with pytest.raises(LoadError, match=str(model_file.name)) as excinfo:
        packaged.fmt.load(package, packaged.manifest)
    assert "\n" not in str(excinfo.value)
    with pytest.raises(LoadError):
        packaged.fmt.import_artifact(model_file, tmp_path / "staging", packaged.inputs)

    model_file.write_bytes(b"this is not a model at all")
    with pytest.raises(LoadError, match=r"cannot|not a"):
        packaged.fmt.load(package, packaged.manifest)


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_single_row_example_still_gives_a_dynamic_batch(fmt_name: str, tmp_path: Path) -> None:
    case = CASES["mlp"]
    result = build(fmt_name, case, tmp_path / "pkg", rows=1)
    assert result.manifest.signature == case.signature
    loaded = result.fmt.load(result.package_dir, result.manifest)
    for rows in (1, 3):
        inputs = mlp_inputs(rows, seed=10 + rows)
        np.testing.assert_allclose(
            loaded.predict(inputs)["output"], live_outputs(case, result.model, inputs)["output"], rtol=RTOL, atol=ATOL
        )


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_dict_outputs_are_named_by_their_keys(fmt_name: str, tmp_path: Path) -> None:
    model = make_dict_head()
    inputs = dict_head_inputs(3)
    artifact, reference = exportable(fmt_name).save(model, inputs, tmp_path)
    assert [(s.name, s.dtype, s.shape) for s in artifact.signature.outputs] == [
        ("scores", "float32", (-1, 4)),
        ("best", "int64", (-1,)),
    ]
    with torch.inference_mode():
        want = model(_t(inputs["x"]))
    np.testing.assert_allclose(reference["scores"], want["scores"].numpy())
    np.testing.assert_array_equal(reference["best"], want["best"].numpy())


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_example_inputs_must_be_named_after_forward_parameters(fmt_name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"named after the parameters of MLP\.forward\(\).*\['x'\].*\['features'\]"):
        exportable(fmt_name).save(make_mlp(), {"features": mlp_inputs(2)["x"]}, tmp_path)


def test_save_restores_the_training_flag(tmp_path: Path) -> None:
    model = make_mlp().train()
    inputs = mlp_inputs(4)
    _, reference = exportable("torch_export").save(model, inputs, tmp_path)
    assert model.training
    # The reference is computed in eval mode (dropout off), so it is deterministic.
    model.eval()
    np.testing.assert_allclose(reference["output"], live_outputs(CASES["mlp"], model, inputs)["output"])


def test_torchscript_import_requires_example_inputs(package_of: PackageFactory, tmp_path: Path) -> None:
    packaged = package_of("torchscript", "two_in_two_out")
    source = packaged.package_dir / packaged.manifest.model_path
    with pytest.raises(UsageError, match=r"pass example inputs .*--example-inputs"):
        packaged.fmt.import_artifact(source, tmp_path, None)
    wrong = {"not_" + k: v for k, v in packaged.inputs.items()}
    with pytest.raises(UsageError, match="name the arrays"):
        packaged.fmt.import_artifact(source, tmp_path, wrong)


def test_unexportable_model_raises_export_error(tmp_path: Path) -> None:
    class DataDependent(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            # The output's batch size depends on the values, not the input shape.
            return x[x.sum(dim=1) > 0] if bool(x.sum() > 0) else x

    with pytest.raises(ExportError, match=r"torch\.export could not export DataDependent"):
        exportable("torch_export").save(DataDependent(), mlp_inputs(4), tmp_path)


def test_pt2_with_pickled_payload_is_refused_without_unpickling(package_of: PackageFactory, tmp_path: Path) -> None:
    packaged = package_of("torch_export", "mlp")
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return (open, (str(marker), "w"))  # would create the marker file if ever unpickled

    buffer = io.BytesIO()
    torch.save(Payload(), buffer)
    source = packaged.package_dir / packaged.manifest.model_path
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                data = buffer.getvalue()
            dst.writestr(info, data)

    with pytest.raises(LoadError, match=r"refusing to load .*sample inputs"):
        packaged.fmt.import_artifact(evil, tmp_path / "staging", None)
    assert not marker.exists()


class BakesBatchSize(torch.nn.Module):
    """Traces fine, but int() freezes the example's batch size into the trace."""

    def forward(self, x: Any) -> Any:
        rows = int(x.shape[0])
        return x.reshape(rows, 8, 8).sum(dim=2)


class PythonBranch(torch.nn.Module):
    """Python control flow on a tensor value: torch.export refuses it, tracing records the branch taken."""

    def forward(self, x: Any) -> Any:
        return torch.tanh(x) * 2 if bool(x.abs().sum() >= 0) else x


@pytest.mark.parametrize("fmt_name", ["torchscript", "onnx"])
def test_export_that_freezes_the_batch_size_is_rejected(fmt_name: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"fails on a batch of 5 rows although the example had 4"):
        exportable(fmt_name).save(BakesBatchSize(), mlp_inputs(4), tmp_path)


def test_onnx_falls_back_to_the_legacy_exporter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = PythonBranch()
    with caplog.at_level(logging.WARNING, logger="model_package.formats.onnx"):
        artifact, _ = exportable("onnx").save(model, mlp_inputs(4), tmp_path)
    assert "retrying with the legacy TorchScript-based exporter" in caplog.text
    assert artifact.signature == CASES["mlp"].signature.model_copy(
        update={"outputs": (TensorSpec(name="output", dtype="float32", shape=(-1, 64)),)}
    )
    loaded = exportable("onnx").load(tmp_path, _manifest_for(artifact, tmp_path))
    for rows in (1, 7):
        inputs = mlp_inputs(rows, seed=rows)
        with torch.inference_mode():
            want = model(_t(inputs["x"])).numpy()
        np.testing.assert_allclose(loaded.predict(inputs)["output"], want, rtol=RTOL, atol=ATOL)


def test_onnx_import_copies_external_data(package_of: PackageFactory, tmp_path: Path) -> None:
    import onnx

    packaged = package_of("onnx", "mlp")
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    proto = onnx.load(str(packaged.package_dir / packaged.manifest.model_path))
    onnx.save_model(
        proto,
        str(source_dir / "classifier.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="classifier.weights",
        size_threshold=0,
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    artifact = packaged.fmt.import_artifact(source_dir / "classifier.onnx", staging, None)
    assert sorted(p.name for p in staging.iterdir()) == ["classifier.weights", "model.onnx"]
    assert artifact.signature == packaged.manifest.signature
    loaded = packaged.fmt.load(staging, _manifest_for(artifact, staging))
    inputs = mlp_inputs(7, seed=7)
    want = live_outputs(packaged.case, packaged.model, inputs)["output"]
    np.testing.assert_allclose(loaded.predict(inputs)["output"], want, rtol=RTOL, atol=ATOL)

    # A file pointing its weights outside its own directory is refused, not followed.
    for tensor in proto.graph.initializer:
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value="../outside.bin")
        tensor.ClearField("raw_data")
    onnx.save_model(proto, str(source_dir / "escaping.onnx"))
    with pytest.raises(UsageError, match=r"external data '\.\./outside\.bin' outside its directory"):
        packaged.fmt.import_artifact(source_dir / "escaping.onnx", tmp_path / "other", None)


def _manifest_for(artifact: Any, root: Path) -> Manifest:
    """A manifest for a bare staging directory, so a format can load what it just wrote."""
    from model_package.builder import hash_tree
    from model_package.example import save_arrays
    from model_package.manifest import SCHEMA_VERSION, Creation, Example

    first = artifact.signature.inputs[0]
    save_arrays(root / "example/inputs.npz", {first.name: np.zeros((1, *first.shape[1:]), first.dtype)})
    save_arrays(root / "example/outputs.npz", {first.name: np.zeros((1, *first.shape[1:]), first.dtype)})
    return Manifest(
        schema_version=SCHEMA_VERSION,
        name="staging",
        version="0",
        format="onnx",
        framework=artifact.framework,
        model_path=artifact.model_path,
        signature=artifact.signature,
        example=Example(),
        files=hash_tree(root),
        created=Creation(created_at="", tool="tests", python=""),
    )


def test_onnx_package_loads_and_predicts_without_torch(package_of: PackageFactory) -> None:
    packaged = package_of("onnx", "mlp")
    # A fresh interpreter where `import torch` fails, as in an onnxruntime-only serving image.
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        from pathlib import Path
        from model_package.errors import LoadError
        from model_package.example import load_arrays
        from model_package.formats import get_format
        from model_package.manifest import read_manifest

        root = Path({str(packaged.package_dir)!r})
        model = get_format("onnx").load(root, read_manifest(root), threads=1)
        print(sorted(model.predict(load_arrays(root / "example/inputs.npz"))))
        try:
            get_format("torch_export")
        except LoadError as exc:
            print("LoadError:", exc)
        """
    )
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "['output']"
    assert "install the 'torch' extra" in result.stdout.splitlines()[1]


def test_torchscript_saves_an_already_scripted_module_as_is(tmp_path: Path) -> None:
    case = CASES["two_in_two_out"]
    live = case.make_model()
    torch.jit.save(torch.jit.script(live), str(tmp_path / "scripted.pt"))
    reloaded = torch.jit.load(str(tmp_path / "scripted.pt"))  # no Python signature, only a TorchScript schema
    staging = tmp_path / "staging"
    staging.mkdir()
    artifact, reference = exportable("torchscript").save(reloaded, case.make_inputs(3), staging)
    assert artifact.signature == case.signature
    want = live_outputs(case, live, case.make_inputs(3))
    for name in want:
        np.testing.assert_allclose(reference[name], want[name], rtol=RTOL, atol=ATOL)
