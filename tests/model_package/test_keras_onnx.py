"""The ``onnx`` format on live Keras 3 models (exported with tf2onnx, served with ONNX Runtime).

Each model goes through ``export_model(..., format="onnx")`` into a real
package, is loaded back with the format's loader, and must reproduce the live
model at several batch sizes, with the names, dtypes and shapes the
``tf_savedmodel`` format gives the same model. Nothing is mocked.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from model_package.errors import ExportError, UnknownFormatError, UsageError  # noqa: E402
from model_package.example import load_arrays  # noqa: E402
from model_package.export import EXPORT_FORMATS, export_model  # noqa: E402
from model_package.formats import LoadedModel, detect_format  # noqa: E402
from model_package.formats.onnx import FORMAT  # noqa: E402
from model_package.formats.tf_savedmodel import FORMAT as TF_SAVEDMODEL  # noqa: E402
from model_package.manifest import Manifest, Signature, read_manifest  # noqa: E402
from model_package.verify import verify_behaviour, verify_integrity  # noqa: E402
from tests.model_package import keras_models  # noqa: E402  (after the importorskip guards)

pytestmark = pytest.mark.tensorflow

EXAMPLE_ROWS = 4
# ONNX Runtime and TensorFlow run different float32 kernels (summation order, fused softmax).
RTOL, ATOL = 1e-5, 1e-6


def _numpy(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in outputs.items()}


@dataclass(frozen=True)
class Case:
    """A Keras model, how to make its inputs, and how to call it by hand with tf_savedmodel's output names."""

    make_model: Callable[[], Any]
    make_inputs: Callable[[Any, int, int], dict[str, np.ndarray]]  # (model, rows, seed)
    call: Callable[[Any, dict[str, np.ndarray]], dict[str, np.ndarray]]


def _first_input_layer(model: Any) -> str:
    return str(model.layers[0].name)


CASES = {
    # One tensor out: tf2onnx calls it "Identity:0"; the package must call it output_0, as tf_savedmodel does.
    "mlp": Case(
        keras_models.make_mlp,
        lambda model, rows, seed: keras_models.mlp_inputs(rows, seed),
        lambda m, a: _numpy({"output_0": m(a["features"], training=False)}),
    ),
    # Dict in, dict out: the input layers' names and the dict's keys.
    "two_in_two_out": Case(
        keras_models.make_two_in_two_out,
        lambda model, rows, seed: keras_models.two_in_two_out_inputs(rows, seed),
        lambda m, a: _numpy(m(dict(a), training=False)),
    ),
    # An unnamed input and a list out: the generated input layer name, output_0 and output_1 in list order.
    "list_outputs": Case(
        keras_models.make_list_outputs,
        keras_models.list_outputs_inputs,
        lambda m, a: _numpy(
            dict(zip(["output_0", "output_1"], m(a[_first_input_layer(m)], training=False), strict=True))
        ),
    ),
}


@dataclass(frozen=True)
class Packaged:
    """One Keras model exported end to end as an ONNX package, plus its tf_savedmodel signature."""

    case: Case
    model: Any
    inputs: dict[str, np.ndarray]
    package_dir: Path
    manifest: Manifest
    loaded: LoadedModel
    savedmodel_signature: Signature


@pytest.fixture(scope="module", params=list(CASES))
def packaged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """Every model, exported through export_model(format="onnx") and loaded once per module."""
    case = CASES[request.param]
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    model = case.make_model()
    inputs = case.make_inputs(model, EXAMPLE_ROWS, 0)
    manifest = export_model(
        model, inputs, root / "package", name=f"keras-{request.param.replace('_', '-')}", version="1.0.0", format="onnx"
    )
    savedmodel_dir = root / "savedmodel"
    savedmodel_dir.mkdir()
    savedmodel_artifact, _ = TF_SAVEDMODEL.save(model, inputs, savedmodel_dir)
    return Packaged(
        case=case,
        model=model,
        inputs=inputs,
        package_dir=root / "package",
        manifest=manifest,
        loaded=FORMAT.load(root / "package", manifest, threads=2),
        savedmodel_signature=savedmodel_artifact.signature,
    )


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype, name
        assert got[name].shape == expected.shape, name
        np.testing.assert_allclose(got[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)


def test_export_model_writes_a_verifiable_onnx_package(packaged: Packaged) -> None:
    root, manifest = packaged.package_dir, packaged.manifest
    assert read_manifest(root) == manifest
    assert manifest.format == "onnx"
    assert manifest.model_path == "model.onnx"
    assert manifest.framework.name == "onnx"
    assert detect_format(root / manifest.model_path) == "onnx"
    assert verify_integrity(root) == manifest
    verify_behaviour(root, manifest)
    # The bundled expected outputs are the live Keras model's, not the exported graph's.
    _assert_close(load_arrays(root / manifest.example.outputs), packaged.case.call(packaged.model, packaged.inputs))


def test_signature_equals_the_tf_savedmodel_export_of_the_same_model(packaged: Packaged) -> None:
    assert packaged.manifest.signature == packaged.savedmodel_signature
    assert all(
        spec.shape[0] == -1 for spec in (*packaged.manifest.signature.inputs, *packaged.manifest.signature.outputs)
    )


@pytest.mark.parametrize("rows", [EXAMPLE_ROWS, 1, 7])
def test_loaded_package_reproduces_the_live_model(packaged: Packaged, rows: int) -> None:
    inputs = packaged.inputs if rows == EXAMPLE_ROWS else packaged.case.make_inputs(packaged.model, rows, rows)
    got = packaged.loaded.predict(inputs)
    _assert_close(got, packaged.case.call(packaged.model, inputs))
    assert list(got) == [spec.name for spec in packaged.manifest.signature.outputs]


def test_save_returns_the_live_outputs_named_like_the_graph(tmp_path: Path) -> None:
    model = keras_models.make_two_in_two_out()
    inputs = keras_models.two_in_two_out_inputs(3)
    artifact, reference = FORMAT.save(model, inputs, tmp_path)
    assert artifact.model_path == "model.onnx"
    assert list(reference) == [spec.name for spec in artifact.signature.outputs] == ["probs", "score"]
    _assert_close(reference, CASES["two_in_two_out"].call(model, inputs))


def test_single_row_example_still_gives_a_dynamic_batch(tmp_path: Path) -> None:
    model = keras_models.make_fixed_batch()  # built for batches of exactly 8 rows
    manifest = export_model(
        model, {"x": np.ones((1, 5), np.float32)}, tmp_path / "pkg", name="fixed", version="1", format="onnx"
    )
    assert [spec.shape for spec in manifest.signature.inputs] == [(-1, 5)]
    loaded = FORMAT.load(tmp_path / "pkg", manifest)
    for rows in (1, 3):
        x = np.random.default_rng(rows).standard_normal((rows, 5)).astype(np.float32)
        _assert_close(loaded.predict({"x": x}), {"output_0": np.asarray(model(x, training=False))})


def test_example_inputs_must_use_the_keras_input_names(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"named \['x'\].*\['features'\].*keras\.Input"):
        FORMAT.save(keras_models.make_mlp(), {"x": keras_models.mlp_inputs(2)["features"]}, tmp_path)


def test_unconvertible_op_is_a_one_line_export_error(tmp_path: Path) -> None:
    class BesselLayer(keras.layers.Layer):  # type: ignore[misc]  # keras is untyped
        def call(self, inputs: Any) -> Any:
            return tf.math.bessel_i1e(inputs)  # tf2onnx has no converter for BesselI1e

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, BesselLayer()(inputs))
    with pytest.raises(
        ExportError, match=r"cannot convert the TensorFlow ops \['BesselI1e'\].*'tf_savedmodel'"
    ) as info:
        FORMAT.save(model, {"x": np.ones((2, 4), np.float32)}, tmp_path)
    assert "\n" not in str(info.value)


def test_constants_tf2onnx_leaves_as_inputs_are_named_with_the_format_that_keeps_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An adapted Normalization: the message listed a stray input and warnings advised a dynamic batch axis."""
    data = np.random.default_rng(1).normal(100, 20, size=(50, 5)).astype(np.float32)
    normalization = keras.layers.Normalization()
    normalization.adapt(data)
    inputs = keras.Input((5,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1)(normalization(inputs)))

    with pytest.raises(ExportError, match=r"tf2onnx left tensors of the model as inputs .*'tf_savedmodel' format"):
        FORMAT.save(model, {"features": data[:4]}, tmp_path)

    assert not [record for record in caplog.records if "batch" in record.getMessage()]


def test_missing_tf2onnx_is_an_export_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what `import tf2onnx` sees when it is not installed
    with pytest.raises(ExportError, match=r"needs tf2onnx.*install the 'tensorflow' extra") as info:
        FORMAT.save(keras_models.make_mlp(), keras_models.mlp_inputs(2), tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "model.onnx").exists()


def test_onnx_is_an_export_format_for_keras_models(tmp_path: Path) -> None:
    assert EXPORT_FORMATS["tensorflow"] == ("tf_savedmodel", "keras", "onnx")
    with pytest.raises(UnknownFormatError, match=r"tf_savedmodel, keras, onnx"):
        export_model(
            keras_models.make_mlp(),
            keras_models.mlp_inputs(2),
            tmp_path / "pkg",
            name="m",
            version="1",
            format="torchscript",
        )


def test_a_tensorflow_object_that_is_not_a_keras_model_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"exports torch\.nn\.Modules and Keras 3 models, got Module"):
        FORMAT.save(tf.Module(), {"x": np.ones((2, 3), np.float32)}, tmp_path)


def test_keras_export_never_imports_torch(tmp_path: Path) -> None:
    # A fresh interpreter (this one may have imported torch for other tests); torch is installed there.
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from model_package.export import export_model
        from tests.model_package import keras_models

        manifest = export_model(
            keras_models.make_mlp(), keras_models.mlp_inputs(3), Path({str(tmp_path / "pkg")!r}),
            name="no-torch", version="1.0.0", format="onnx",
        )
        print(manifest.format, [spec.name for spec in manifest.signature.outputs], "torch" in sys.modules)
        """
    )
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "onnx ['output_0'] False"
