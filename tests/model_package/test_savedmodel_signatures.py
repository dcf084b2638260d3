"""SavedModels as ``tf.saved_model.save`` writes them: a chosen signature, unknown ranks, scalar signatures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from model_package.errors import LoadError, UsageError  # noqa: E402
from model_package.export import import_artifact  # noqa: E402
from model_package.formats import get_format  # noqa: E402
from model_package.manifest import read_manifest  # noqa: E402
from model_package.verify import verify_behaviour  # noqa: E402
from tests.model_package.conftest import CliRunner  # noqa: E402

pytestmark = pytest.mark.tensorflow

ROOT = Path(__file__).resolve().parents[2]


def _save(path: Path, spec: Any, key: str = "serving_default") -> Path:
    module = tf.Module()
    module.scale = tf.Variable(3.0)
    module.predict = tf.function(lambda x: {"y": x * module.scale}, input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={key: module.predict.get_concrete_function()})
    return path


def test_a_savedmodel_whose_only_signature_is_not_serving_default_is_served_by_choice(tmp_path: Path) -> None:
    source = _save(tmp_path / "custom", tf.TensorSpec((None, 2), tf.float32, name="x"), key="predict")
    with pytest.raises(LoadError, match=r"no 'serving_default' signature \(it has \['predict'\]\); choose one with "):
        import_artifact(source, tmp_path / "refused", name="custom", version="1")

    manifest = import_artifact(source, tmp_path / "pkg", name="custom", version="1", signature="predict")
    assert manifest.serving_signature == "predict"
    assert read_manifest(tmp_path / "pkg").serving_signature == "predict"
    verify_behaviour(tmp_path / "pkg")
    loaded = get_format("tf_savedmodel").load(tmp_path / "pkg", manifest)
    got = loaded.predict({"x": np.array([[1.0, 2.0]], np.float32)})
    np.testing.assert_allclose(got["y"], [[3.0, 6.0]])

    with pytest.raises(LoadError, match=r"no 'nope' signature \(it has \['predict'\]\)"):
        import_artifact(source, tmp_path / "wrong", name="custom", version="1", signature="nope")


def test_cli_import_takes_signature(tmp_path: Path, model_package_cli: CliRunner) -> None:
    source = _save(tmp_path / "custom", tf.TensorSpec((None, 2), tf.float32, name="x"), key="predict")
    args = ["import", str(source), "--name", "custom", "--version", "1", "-o", str(tmp_path / "pkg")]
    result = model_package_cli(*args, "--signature", "predict", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_manifest(tmp_path / "pkg").serving_signature == "predict"


def test_signature_option_on_another_format_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "model.keras"
    source.write_bytes(b"not read")
    with pytest.raises(UsageError, match="--signature applies to TensorFlow SavedModels"):
        import_artifact(source, tmp_path / "pkg", name="k", version="1", signature="predict")


def test_an_unknown_rank_input_is_refused_with_the_signature_to_save_instead(tmp_path: Path) -> None:
    source = _save(tmp_path / "anyrank", tf.TensorSpec(None, tf.float32, name="x"))
    with pytest.raises(LoadError) as caught:
        import_artifact(source, tmp_path / "pkg", name="anyrank", version="1")
    message = str(caught.value)
    assert "'x' has unknown rank (TensorSpec(None))" in message
    assert "tf.TensorSpec([None, None], tf.float32, name='x')" in message


def test_a_scalar_signature_fails_import_instead_of_every_request(tmp_path: Path) -> None:
    source = _save(tmp_path / "scalar", tf.TensorSpec([], tf.float32, name="x"))
    with pytest.raises(LoadError, match=r"input 'x'.*scalar.*tf\.TensorSpec\(\[None\]"):
        import_artifact(source, tmp_path / "pkg", name="scalar", version="1", example_inputs={"x": np.float32(2.0)})
    assert not (tmp_path / "pkg").exists()


def test_verify_refuses_a_package_with_a_scalar_signature(tmp_path: Path) -> None:
    source = _save(tmp_path / "rows", tf.TensorSpec([None], tf.float32, name="x"))
    manifest = import_artifact(source, tmp_path / "pkg", name="rows", version="1")
    scalar = manifest.signature.model_copy(
        update={"inputs": (manifest.signature.inputs[0].model_copy(update={"shape": ()}),)}
    )
    with pytest.raises(LoadError, match="input 'x' is a scalar"):
        verify_behaviour(tmp_path / "pkg", manifest.model_copy(update={"signature": scalar}))
