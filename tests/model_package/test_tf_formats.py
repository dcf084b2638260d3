"""The TensorFlow-side formats (tf_savedmodel, keras) on real Keras 3 models.

Each format saves a live model, builds a real package directory from it with
the builder, loads it back the way the server does, and must reproduce the
live model at the example's batch size and at others. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_package.builder import PackageSpec, build_package  # noqa: E402
from model_package.errors import (  # noqa: E402
    ExportError,
    LoadError,
    MissingFileError,
    PredictionError,
    UsageError,
)
from model_package.example import load_arrays  # noqa: E402
from model_package.formats import LoadedModel, get_format  # noqa: E402
from model_package.manifest import Manifest, Signature, TensorSpec, read_manifest  # noqa: E402
from tests.model_package import keras_models  # noqa: E402  (after the importorskip guards)

pytestmark = pytest.mark.tensorflow

FORMATS = ["tf_savedmodel", "keras"]
MODEL_PATHS = {"tf_savedmodel": "model.savedmodel", "keras": "model.keras"}
EXAMPLE_ROWS = 4
# The package runs a traced graph, the live model runs eagerly: same kernels, tiny float differences at most.
RTOL, ATOL = 1e-5, 1e-6


def _fmt(name: str) -> Any:
    """The format object (typed Any: tests call save(), which only ExportableFormat declares)."""
    return get_format(name)


def _spec(name: str, dtype: str, *shape: int) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def _numpy(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in outputs.items()}


@dataclass(frozen=True)
class Case:
    """A model, how to make its inputs, how to call it by hand, and the signature both formats must give it."""

    make_model: Callable[[], Any]
    make_inputs: Callable[[Any, int, int], dict[str, np.ndarray]]  # (model, rows, seed)
    call: Callable[[Any, dict[str, np.ndarray]], dict[str, np.ndarray]]
    signature: Callable[[Any], Signature]


def _list_outputs_input(model: Any) -> str:
    return str(model.layers[0].name)  # the generated InputLayer name, see keras_models.list_outputs_inputs


CASES = {
    # One tensor out: named output_0 (what Keras' SavedModel export calls it), not after the layer.
    "mlp": Case(
        keras_models.make_mlp,
        lambda model, rows, seed: keras_models.mlp_inputs(rows, seed),
        lambda m, a: _numpy({"output_0": m(a["features"], training=False)}),
        lambda m: Signature(
            inputs=(_spec("features", "float32", -1, 64),), outputs=(_spec("output_0", "float32", -1, 10),)
        ),
    ),
    # Dict in, dict out: the keys are the names; both lists are in sorted (TensorFlow's flat) order.
    "two_in_two_out": Case(
        keras_models.make_two_in_two_out,
        lambda model, rows, seed: keras_models.two_in_two_out_inputs(rows, seed),
        lambda m, a: _numpy(m(dict(a), training=False)),
        lambda m: Signature(
            # category feeds an Embedding(20, ...): its ids are checked against the table.
            inputs=(
                _spec("category", "int32", -1, 3).model_copy(update={"valid_range": (0, 19)}),
                _spec("dense_features", "float32", -1, 8),
            ),
            outputs=(_spec("probs", "float32", -1, 5), _spec("score", "float32", -1, 1)),
        ),
    ),
    # An unnamed input and a list of outputs: input_layer_N and output_0/output_1 in both formats.
    "list_outputs": Case(
        keras_models.make_list_outputs,
        keras_models.list_outputs_inputs,
        lambda m, a: _numpy(
            dict(zip(["output_0", "output_1"], m(a[_list_outputs_input(m)], training=False), strict=True))
        ),
        lambda m: Signature(
            inputs=(_spec(_list_outputs_input(m), "float32", -1, 6),),
            outputs=(_spec("output_0", "float32", -1, 2), _spec("output_1", "float32", -1, 3)),
        ),
    ),
}


@dataclass(frozen=True)
class Packaged:
    """One model saved by one format, then built into a package and loaded back."""

    format_name: str
    case: Case
    model: Any
    inputs: dict[str, np.ndarray]
    staging: Path
    saved_path: str
    saved_signature: Signature
    reference: dict[str, np.ndarray]
    package_dir: Path
    manifest: Manifest
    loaded: LoadedModel


def _package(fmt_name: str, model: Any, inputs: dict[str, np.ndarray], root: Path) -> tuple[Path, Manifest]:
    """Build a package the way the CLI does: the live reference is computed by a first save()."""
    fmt = _fmt(fmt_name)
    reference_run = root / "reference-run"
    reference_run.mkdir()
    _, reference = fmt.save(model, inputs, reference_run)
    package_dir = root / "package"
    build_package(
        package_dir,
        PackageSpec(
            name="demo-model", version="1.0.0", format=fmt_name, example_inputs=inputs, expected_outputs=reference
        ),
        stage=lambda d: fmt.save(model, inputs, d)[0],
    )
    return package_dir, read_manifest(package_dir)


def _make_packaged(fmt_name: str, case_name: str, root: Path) -> Packaged:
    case = CASES[case_name]
    model = case.make_model()
    inputs = case.make_inputs(model, EXAMPLE_ROWS, 0)
    staging = root / "staging"
    staging.mkdir()
    artifact, reference = _fmt(fmt_name).save(model, inputs, staging)
    package_dir, manifest = _package(fmt_name, model, inputs, root)
    return Packaged(
        format_name=fmt_name,
        case=case,
        model=model,
        inputs=inputs,
        staging=staging,
        saved_path=artifact.model_path,
        saved_signature=artifact.signature,
        reference=reference,
        package_dir=package_dir,
        manifest=manifest,
        loaded=_fmt(fmt_name).load(package_dir, manifest),
    )


@pytest.fixture(
    scope="module",
    params=[(f, c) for f in FORMATS for c in CASES],
    ids=[f"{f}-{c}" for f in FORMATS for c in CASES],
)
def packaged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """Every (format, model) pair, saved, packaged and loaded once per module."""
    fmt_name, case_name = request.param
    return _make_packaged(fmt_name, case_name, tmp_path_factory.mktemp(f"{fmt_name}-{case_name}"))


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        np.testing.assert_allclose(got[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)


# -- every format x every model ----------------------------------------------------------------------------------


def test_save_describes_the_model_and_returns_the_live_outputs(packaged: Packaged) -> None:
    assert packaged.saved_path == MODEL_PATHS[packaged.format_name]
    assert packaged.saved_signature == packaged.case.signature(packaged.model)
    _assert_close(packaged.reference, packaged.case.call(packaged.model, packaged.inputs))


@pytest.mark.parametrize("rows", [EXAMPLE_ROWS, 1, 7])
def test_loaded_package_reproduces_the_live_model(packaged: Packaged, rows: int) -> None:
    inputs = packaged.inputs if rows == EXAMPLE_ROWS else packaged.case.make_inputs(packaged.model, rows, rows)
    got = packaged.loaded.predict(inputs)
    _assert_close(got, packaged.case.call(packaged.model, inputs))
    assert list(got) == [spec.name for spec in packaged.loaded.signature.outputs]


def test_builder_writes_a_consistent_package(packaged: Packaged) -> None:
    manifest = packaged.manifest
    assert manifest.format == packaged.format_name
    assert manifest.framework.name == "tensorflow"
    assert manifest.framework.version == tf.__version__
    assert manifest.model_path == MODEL_PATHS[packaged.format_name]
    assert manifest.signature == packaged.saved_signature
    model_files = [e.path for e in manifest.files if e.path.split("/")[0] == manifest.model_path]
    assert model_files, "the model's files must be hashed into the manifest"
    if packaged.format_name == "tf_savedmodel":
        assert f"{manifest.model_path}/saved_model.pb" in model_files
    # The bundled example is the live model's output, and the package reproduces it.
    example_inputs = load_arrays(packaged.package_dir / manifest.example.inputs)
    expected = load_arrays(packaged.package_dir / manifest.example.outputs)
    _assert_close(expected, packaged.reference)
    got = packaged.loaded.predict(example_inputs)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=manifest.example.rtol, atol=manifest.example.atol)


def test_import_of_the_saved_artifact_gives_the_same_signature(packaged: Packaged, tmp_path: Path) -> None:
    artifact = _fmt(packaged.format_name).import_artifact(packaged.staging / packaged.saved_path, tmp_path, None)
    assert artifact.model_path == packaged.saved_path
    expected = packaged.saved_signature
    if packaged.format_name == "tf_savedmodel":
        # A SavedModel holds a graph, not Keras layers: an export's Embedding id ranges are not found on import.
        unranged = tuple(spec.model_copy(update={"valid_range": None}) for spec in expected.inputs)
        expected = expected.model_copy(update={"inputs": unranged})
    assert artifact.signature == expected
    assert artifact.framework.name == "tensorflow"
    assert (tmp_path / artifact.model_path).exists()


def test_wrong_input_name_is_a_prediction_error(packaged: Packaged) -> None:
    inputs = dict(packaged.inputs)
    name = sorted(inputs)[0]
    inputs["not_an_input"] = inputs.pop(name)
    with pytest.raises(PredictionError, match=name):
        packaged.loaded.predict(inputs)


def test_wrong_input_shape_is_a_prediction_error(packaged: Packaged) -> None:
    inputs = dict(packaged.inputs)
    name = sorted(inputs)[0]
    inputs[name] = np.concatenate([inputs[name], inputs[name][:, :1]], axis=1)  # one feature too many
    with pytest.raises(PredictionError, match=f"'{name}'.*axis 1"):
        packaged.loaded.predict(inputs)


def test_concurrent_predictions_are_correct(packaged: Packaged) -> None:
    batches = [
        packaged.case.make_inputs(packaged.model, rows, seed) for seed, rows in enumerate([1, 2, 3, 5, 7, 8] * 4)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(packaged.loaded.predict, batches))
    for inputs, got in zip(batches, results, strict=True):
        _assert_close(got, packaged.case.call(packaged.model, inputs))


# -- failures every format must report clearly -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Packaged]:
    """The MLP packaged in each format, for tests that copy and damage a package."""
    return {name: _make_packaged(name, "mlp", tmp_path_factory.mktemp(f"mlp-{name}")) for name in FORMATS}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage_graph(savedmodel: Path) -> None:
    (savedmodel / "saved_model.pb").write_bytes(b"\x08\x01not a protobuf")


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:24] = bytes(255 - b for b in data[8:24])
    path.write_bytes(bytes(data))


# Damage the way a truncated download or a bad disk would (verify's hashes catch it too; load must not crash).
DAMAGE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "savedmodel-graph": ("tf_savedmodel", _garbage_graph),
    "savedmodel-weights": ("tf_savedmodel", lambda p: _flip_bytes(p / "variables/variables.data-00000-of-00001")),
    "keras-truncated": ("keras", _truncate),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupted_model_is_a_load_error(damage: str, mlp_packages: dict[str, Packaged], tmp_path: Path) -> None:
    fmt_name, corrupt = DAMAGE[damage]
    original = mlp_packages[fmt_name]
    package_dir = tmp_path / "package"
    shutil.copytree(original.package_dir, package_dir)
    model_path = package_dir / original.manifest.model_path
    corrupt(model_path)
    with pytest.raises(LoadError) as info:
        _fmt(fmt_name).load(package_dir, original.manifest)
    message = str(info.value)
    assert str(model_path) in message
    assert "\n" not in message
    with pytest.raises(LoadError):
        _fmt(fmt_name).import_artifact(model_path, tmp_path, None)


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_missing_model_file_is_a_load_error(fmt_name: str, mlp_packages: dict[str, Packaged], tmp_path: Path) -> None:
    original = mlp_packages[fmt_name]
    package_dir = tmp_path / "package"
    shutil.copytree(original.package_dir, package_dir)
    model_path = package_dir / original.manifest.model_path
    shutil.rmtree(model_path) if model_path.is_dir() else model_path.unlink()
    with pytest.raises(LoadError, match="missing"):
        _fmt(fmt_name).load(package_dir, original.manifest)


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_import_of_a_missing_path_is_a_missing_file_error(fmt_name: str, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        _fmt(fmt_name).import_artifact(tmp_path / "nope", tmp_path, None)


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_example_inputs_must_use_the_model_input_names(fmt_name: str, tmp_path: Path) -> None:
    model = keras_models.make_mlp()
    with pytest.raises(UsageError, match="features"):
        _fmt(fmt_name).save(model, {"x": keras_models.mlp_inputs(2)["features"]}, tmp_path)


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_fixed_batch_model_gets_a_dynamic_batch_dimension(fmt_name: str, tmp_path: Path) -> None:
    model = keras_models.make_fixed_batch()
    inputs = {"x": np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)}
    package_dir, manifest = _package(fmt_name, model, inputs, tmp_path)
    assert manifest.signature.inputs == (_spec("x", "float32", -1, 5),)
    loaded = _fmt(fmt_name).load(package_dir, manifest)
    for rows in (3, 11):
        batch = {"x": np.random.default_rng(rows).standard_normal((rows, 5)).astype(np.float32)}
        _assert_close(loaded.predict(batch), {"output_0": np.asarray(model(batch["x"], training=False))})


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_threads_after_tensorflow_started_are_ignored_with_a_warning(
    fmt_name: str, mlp_packages: dict[str, Packaged], caplog: pytest.LogCaptureFixture
) -> None:
    # TensorFlow is long initialised by the fixtures; its thread pool can no longer change.
    original = mlp_packages[fmt_name]
    current = tf.config.threading.get_intra_op_parallelism_threads()
    wanted = current + 1
    with caplog.at_level(logging.WARNING, logger="model_package.formats._tensorflow"):
        loaded = _fmt(fmt_name).load(original.package_dir, original.manifest, threads=wanted)
    assert f"threads={wanted} is ignored" in caplog.text
    _assert_close(loaded.predict(original.inputs), original.reference)


# -- tf_savedmodel specifics -------------------------------------------------------------------------------------


def test_savedmodel_import_names_what_is_missing(tmp_path: Path) -> None:
    not_a_savedmodel = tmp_path / "export"
    (not_a_savedmodel / "variables").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"saved_model\.pb is missing"):
        _fmt("tf_savedmodel").import_artifact(not_a_savedmodel, tmp_path, None)
    a_file = tmp_path / "model.pb"
    a_file.write_bytes(b"")
    with pytest.raises(UsageError, match="is a file"):
        _fmt("tf_savedmodel").import_artifact(a_file, tmp_path, None)


def test_savedmodel_without_serving_default_lists_its_signatures(tmp_path: Path) -> None:
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.predict = tf.function(
        lambda x: {"y": x * module.scale}, input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")]
    )
    source = tmp_path / "custom"
    tf.saved_model.save(module, str(source), signatures={"predict": module.predict.get_concrete_function()})
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(LoadError, match=r"no 'serving_default' signature \(it has \['predict'\]\)"):
        _fmt("tf_savedmodel").import_artifact(source, staging, None)
    assert not any(staging.iterdir()), "nothing is copied when the import fails"


def test_savedmodel_import_of_a_plain_tf_savedmodel(tmp_path: Path) -> None:
    """A SavedModel written by tf.saved_model.save (not Keras) imports, packages and predicts."""
    module = tf.Module()
    module.scale = tf.Variable([1.0, 2.0, 3.0])
    module.serve = tf.function(
        lambda x: {"scaled": x * module.scale, "total": tf.reduce_sum(x, axis=1)},
        input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")],
    )
    source = tmp_path / "plain"
    tf.saved_model.save(module, str(source), signatures={"serving_default": module.serve.get_concrete_function()})
    fmt = _fmt("tf_savedmodel")
    inputs = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    build_package(
        tmp_path / "package",
        PackageSpec(name="plain", version="1", format="tf_savedmodel", example_inputs=inputs),
        stage=lambda d: fmt.import_artifact(source, d, None),
    )
    manifest = read_manifest(tmp_path / "package")
    assert manifest.signature == Signature(
        inputs=(_spec("x", "float32", -1, 3),),
        outputs=(_spec("scaled", "float32", -1, 3), _spec("total", "float32", -1)),
    )
    assert manifest.framework.version == tf.__version__  # read from saved_model.pb
    got = fmt.load(tmp_path / "package", manifest).predict(inputs)
    _assert_close(got, {"scaled": inputs["x"] * [1.0, 2.0, 3.0], "total": inputs["x"].sum(axis=1)})


def test_savedmodel_subclassed_model_input_is_named_after_the_example(tmp_path: Path) -> None:
    model = keras_models.make_subclassed()
    inputs = {"pixels": np.random.default_rng(0).standard_normal((EXAMPLE_ROWS, 5)).astype(np.float32)}
    package_dir, manifest = _package("tf_savedmodel", model, inputs, tmp_path)
    assert manifest.signature == Signature(
        inputs=(_spec("pixels", "float32", -1, 5),), outputs=(_spec("logits", "float32", -1, 3),)
    )
    batch = {"pixels": np.random.default_rng(1).standard_normal((7, 5)).astype(np.float32)}
    got = _fmt("tf_savedmodel").load(package_dir, manifest).predict(batch)
    _assert_close(got, _numpy(model(batch["pixels"], training=False)))


def test_savedmodel_with_string_tensors(tmp_path: Path) -> None:
    """tf.string inputs and outputs are ``bytes`` in the signature and fixed-width bytes arrays in NumPy."""
    module = tf.Module()
    module.serve = tf.function(
        lambda text: {"upper": tf.strings.upper(text), "length": tf.strings.length(text)},
        input_signature=[tf.TensorSpec((None,), tf.string, name="text")],
    )
    source = tmp_path / "strings"
    tf.saved_model.save(module, str(source), signatures={"serving_default": module.serve.get_concrete_function()})
    fmt = _fmt("tf_savedmodel")
    inputs = {"text": np.array([b"abc", b"hello"])}
    build_package(
        tmp_path / "package",
        PackageSpec(name="strings", version="1", format="tf_savedmodel", example_inputs=inputs),
        stage=lambda d: fmt.import_artifact(source, d, None),
    )
    manifest = read_manifest(tmp_path / "package")
    assert manifest.signature.inputs == (_spec("text", "bytes", -1),)
    assert manifest.signature.outputs == (_spec("length", "int32", -1), _spec("upper", "bytes", -1))
    # A client may send str (e.g. decoded from JSON): TensorFlow encodes it as UTF-8.
    got = fmt.load(tmp_path / "package", manifest).predict({"text": np.array(["ok", "üb"])})
    assert got["upper"].dtype.kind == "S"
    assert got["upper"].tolist() == [b"OK", "üB".encode()]  # tf.strings.upper only maps ASCII by default
    assert got["length"].tolist() == [2, len("üb".encode())]  # bytes, not characters


# -- keras specifics ---------------------------------------------------------------------------------------------


def test_keras_lambda_layer_is_refused_in_safe_mode(mlp_packages: dict[str, Packaged], tmp_path: Path) -> None:
    model = keras_models.make_lambda_model()
    lambda_file = tmp_path / "lambda.keras"
    model.save(lambda_file)  # plain Keras saves it; only loading runs the lambda's bytecode
    fmt = _fmt("keras")

    with pytest.raises(LoadError, match=r"Lambda.*safe_mode") as imported:
        fmt.import_artifact(lambda_file, tmp_path, None)
    assert "tf_savedmodel format (the default for Keras models) saves the traced graph" in str(imported.value)

    # The server's path: a package whose model.keras was swapped for one with a lambda.
    package_dir = tmp_path / "package"
    shutil.copytree(mlp_packages["keras"].package_dir, package_dir)
    shutil.copyfile(lambda_file, package_dir / "model.keras")
    with pytest.raises(LoadError, match="Lambda"):
        fmt.load(package_dir, mlp_packages["keras"].manifest)

    # Exporting one fails early, at packaging time, not at deployment.
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ExportError, match="safe_mode=True") as raised:
        fmt.save(model, {"x": np.ones((2, 4), np.float32)}, staging)
    assert "tf_savedmodel format (the default for Keras models) saves the traced graph" in str(raised.value)


def test_keras_unregistered_subclassed_model_fails_at_export(tmp_path: Path) -> None:
    model = keras_models.make_subclassed()
    with pytest.raises(ExportError, match="register_keras_serializable"):
        _fmt("keras").save(model, {"pixels": np.ones((2, 5), np.float32)}, tmp_path)


def test_keras_import_refuses_other_files(tmp_path: Path) -> None:
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(UsageError, match=r"not a \.keras file"):
        _fmt("keras").import_artifact(legacy, tmp_path, None)


def test_keras_predictions_never_retrace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's Python code runs while loading (one trace), never per batch, whatever the batch size."""
    # Its custom layer lives in this test suite: the package is loaded here, never by a server, so
    # the builder's fresh-process check (which could not import the suite) does not apply.
    monkeypatch.setattr("model_package.builder.check_loads_in_fresh_process", lambda *_: None)
    model = keras_models.make_counting_model()
    inputs = {"x": np.random.default_rng(0).standard_normal((EXAMPLE_ROWS, 4)).astype(np.float32)}
    package_dir, manifest = _package("keras", model, inputs, tmp_path)
    loaded = _fmt("keras").load(package_dir, manifest)
    batches = [
        {"x": np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)} for rows in (1, 7, 3, 16, 7)
    ]
    traced = keras_models.CountingDense.python_calls
    results = [loaded.predict(batch) for batch in batches]
    assert keras_models.CountingDense.python_calls == traced
    for batch, got in zip(batches, results, strict=True):
        _assert_close(got, {"output_0": np.asarray(model(batch["x"], training=False))})


# -- without TensorFlow ------------------------------------------------------------------------------------------


def test_missing_tensorflow_is_a_load_error_naming_the_extra(mlp_packages: dict[str, Packaged]) -> None:
    packages = {name: str(packaged.package_dir) for name, packaged in mlp_packages.items()}
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["tensorflow"] = None  # makes `import tensorflow` raise ImportError
        from pathlib import Path
        from model_package.errors import LoadError
        from model_package.formats import get_format
        from model_package.manifest import read_manifest
        for name, package in {packages!r}.items():
            try:
                get_format(name).load(Path(package), read_manifest(Path(package)))
            except LoadError as exc:
                print(name, exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line in lines:
        assert "TensorFlow is not installed" in line
        assert "'tensorflow' extra" in line


def _fixed_batch(*, rows: int = 1, reshaped: bool) -> tuple[Any, dict[str, np.ndarray]]:
    """``keras.Input(batch_size=rows)``; with ``reshaped``, a graph that really needs that many rows (TF1-era code)."""
    inputs = keras.Input((6,), batch_size=rows, name="x")
    hidden = keras.ops.reshape(inputs, (rows, 2, 3)) if reshaped else inputs
    outputs = keras.layers.Dense(2)(hidden)
    outputs = keras.ops.reshape(outputs, (rows, 4)) if reshaped else outputs
    return keras.Model(inputs, outputs), {"x": np.random.default_rng(0).random((rows, 6)).astype(np.float32)}


@pytest.mark.parametrize("fmt_name", ["tf_savedmodel", "keras"])
def test_a_model_that_runs_one_row_per_call_is_served_one_row_per_call(fmt_name: str, tmp_path: Path) -> None:
    """It exported as if it took batches, and every batched call on the endpoint was a 500."""
    import httpx

    from inference.service import ModelService
    from model_package.export import export_model
    from tests.inference.in_process import run

    model, inputs = _fixed_batch(reshaped=True)
    manifest = export_model(model, inputs, tmp_path / "p", name="one", version="1", format=fmt_name)

    assert manifest.metadata["serving.max_batch_size"] == "1"
    rows = np.random.default_rng(1).random((3, 6)).astype(np.float32)
    expected = [np.asarray(model(rows[i : i + 1], training=False))[0] for i in range(3)]

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        answers = await asyncio.gather(*(client.post("/invocations", json=rows.tolist()) for _ in range(4)))
        for answer in answers:
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-6)

    run(tmp_path / "p", scenario)
    with pytest.raises(ExportError, match=r"serving.max_batch_size=8 asks for batches the model cannot run"):
        export_model(
            model,
            inputs,
            tmp_path / "q",
            name="one",
            version="1",
            format=fmt_name,
            metadata={"serving.max_batch_size": "8"},
        )


@pytest.mark.parametrize("fmt_name", ["tf_savedmodel", "keras"])
def test_a_model_that_runs_only_at_its_examples_batch_of_two_is_refused(fmt_name: str, tmp_path: Path) -> None:
    model, inputs = _fixed_batch(rows=2, reshaped=True)

    with pytest.raises(ExportError, match=r"fails on a batch of 3 rows although the example had 2") as raised:
        _fmt(fmt_name).save(model, inputs, tmp_path)

    assert "keras.Input(shape=...) without batch_size" in str(raised.value)


@pytest.mark.parametrize("fmt_name", ["tf_savedmodel", "keras"])
def test_a_declared_batch_size_the_graph_does_not_need_still_exports(fmt_name: str, tmp_path: Path) -> None:
    model, inputs = _fixed_batch(reshaped=False)

    package_dir, manifest = _package(fmt_name, model, inputs, tmp_path)

    rows = np.random.default_rng(1).random((3, 6)).astype(np.float32)
    got = _fmt(fmt_name).load(package_dir, manifest).predict({"x": rows})
    assert next(iter(got.values())).shape == (3, 2)
